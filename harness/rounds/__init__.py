"""Rounds (``harness -m``): one MLflow parent run with a child per job, on whichever Hydra launcher.

``sweep`` is the round sweeper (Hydra's basic sweeper with the round around it), ``hygiene`` the
rule that a performance job has its host to itself, ``jobs`` what each job reports and the round
table. Hydra finds the sweeper through the package ``hydra_plugins.harness_rounds``, whose source is
``hydra/hydra_plugins/harness_rounds`` here (pyproject.toml installs it under that name).
"""
