"""``hydra/sweeper=harness_round`` and ``harness_peak``: Hydra's basic sweeper with a round around it."""

from dataclasses import dataclass
from typing import Optional

from hydra.core.config_store import ConfigStore

from harness.rounds import sweep


class RoundSweeper(sweep.RoundSweeper):
    """Defined here because Hydra registers a plugin under the module that defines it, and
    instantiates plugins from ``hydra_plugins`` only."""


@dataclass
class RoundSweeperConf:
    _target_: str = "hydra_plugins.harness_rounds.round_sweeper.RoundSweeper"
    # As the basic sweeper: launch the jobs this many at a time (1: one after another, on any launcher)
    max_batch_size: Optional[int] = None  # noqa: UP045 (OmegaConf reads the annotation: no X | None)
    params: Optional[dict[str, str]] = None  # noqa: UP045
    kind: str = "round"  # round: one MLflow parent run per round; peak: each job is its own search


ConfigStore.instance().store(group="hydra/sweeper", name="harness_round", node=RoundSweeperConf, provider="harness")
ConfigStore.instance().store(group="hydra/sweeper", name="harness_peak", node=RoundSweeperConf(kind="peak"),
                             provider="harness")
