"""Hydra's entry to the harness's round sweeper (harness/rounds/sweep.py).

Hydra instantiates sweepers only from the ``hydra_plugins`` namespace and finds their configs by
importing it: ``hydra/sweeper=harness_round`` (conf/config.yaml) and ``harness_peak``
(conf/peak.yaml). The logic lives in ``harness.rounds``; this package only names it.

Its source lives in harness/rounds/hydra/; pyproject.toml's package finder (``where``) installs it
as ``hydra_plugins.harness_rounds``, in a wheel and in an editable install alike.
"""
