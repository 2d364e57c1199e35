"""One MLflow run as the readers of the store see it: ``harness-compare`` and its report."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class RunView:
    """What compare needs of one MLflow run."""

    run_id: str
    name: str
    status: str
    params: Mapping[str, str]
    metrics: Mapping[str, float]
    tags: Mapping[str, str]
    start_time: int | None = None  # ms since the epoch

    @property
    def label(self) -> str:
        return f"{self.name} ({self.run_id[:8]})"

    @classmethod
    def of(cls, run) -> RunView:
        return cls(run.info.run_id, run.info.run_name or run.info.run_id[:8], run.info.status,
                   dict(run.data.params), dict(run.data.metrics), dict(run.data.tags), run.info.start_time)
