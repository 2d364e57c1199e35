"""Peak-load search (``harness-peak``): the highest Server / Interactive target QPS LoadGen calls VALID.

``settings`` holds the ``peak:`` config and the configs of the runs; ``search`` the bracket-and-
bisect algorithm and how a probe's limiting constraint is read; ``report`` the table, progress
lines, ``peak.json`` and ``peak.png``; ``cli`` the Hydra entry point and the MLflow parent run.
"""

from harness.peak.search import Outcome, Probe, Search, plan
from harness.peak.settings import PeakConfig

__all__ = ["Outcome", "PeakConfig", "Probe", "Search", "plan"]
