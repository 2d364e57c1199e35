"""What each job of a round reports, which jobs shared a host at the same time, and the round table.

A job's report travels two ways: as the job's return value back to the launching process (every
Hydra launcher pickles it back), and as its MLflow child run (tags ``host``, ``started_at``,
``ended_at``, ``job_num``, ``overrides``), which is how a resumed round learns what an earlier
attempt finished. Both give the same :class:`JobReport`.
"""

from __future__ import annotations

import datetime
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

ROUND_KEY = "round"  # config group of a job's place in a round: never part of what the job is
NO_REPORT = "NO REPORT"  # a job that neither returned nor left a run: killed, lost, or never started
ROUND_TABLE = "round_table.txt"  # in the round directory, and an artifact of the round's parent run


def job_overrides(overrides: Iterable[str]) -> tuple[str, ...]:
    """A job's own overrides: what `harness <overrides>` repeats; ``round.*`` (set per launch) left out."""
    return tuple(o for o in overrides if not o.lstrip("+~").startswith(f"{ROUND_KEY}."))


def job_key(overrides: Iterable[str]) -> tuple[str, ...]:
    """Which job of a round this is, whatever the order of its overrides: a resume matches by it."""
    return tuple(sorted(job_overrides(overrides)))


def timestamp(seconds: float) -> str:
    """Epoch seconds as the ISO 8601 UTC text of the ``started_at`` / ``ended_at`` tags (ms)."""
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).isoformat(timespec="milliseconds")


def from_timestamp(text: str | None) -> float | None:
    try:
        return datetime.datetime.fromisoformat(text).timestamp() if text else None
    except ValueError:
        return None


@dataclass(frozen=True)
class JobReport:
    """One job's outcome: its status, exit code, where and when it ran, and its headline figures.

    ``status`` is MLflow's (FINISHED, FAILED, KILLED); ``started`` / ``ended`` are epoch seconds
    around the benchmark on ``host`` (SUT start-up included: loading a model disturbs a
    neighbour's measurement as much as serving does). ``metrics`` use the names of
    :mod:`harness.tracking.schema`.
    """

    overrides: tuple[str, ...]
    status: str
    exit_code: int
    num: int | None = None
    host: str | None = None
    started: float | None = None
    ended: float | None = None
    run_id: str | None = None
    run_dir: str | None = None
    scenario: str | None = None
    sut: str | None = None
    mode: str | None = None
    verdict: str | None = None  # the harness's (tag `validity`): VALID, INVALID, BEHIND, FAILED
    accuracy: str | None = None  # the accuracy verdict (tag `accuracy_verdict`): PASS, FAIL, NO_TARGET
    metrics: Mapping[str, float] = field(default_factory=dict)
    error: str | None = None

    @classmethod
    def of_run(cls, run: Any) -> JobReport:
        """The report an MLflow child run holds (``mlflow.entities.Run``)."""
        tags, info = run.data.tags, run.info
        started = from_timestamp(tags.get("started_at"))
        ended = from_timestamp(tags.get("ended_at"))
        num = tags.get("job_num")
        code = tags.get("exit_code")
        status = info.status if info.status in ("FINISHED", "FAILED", "KILLED") else NO_REPORT
        return cls(overrides=tuple(shlex.split(tags.get("overrides", ""))), status=status,
                   exit_code=int(code) if code and code.isdigit() else (0 if status == "FINISHED" else 1),
                   num=int(num) if num and num.isdigit() else None, host=tags.get("host"),
                   started=started, ended=ended, run_id=info.run_id, run_dir=tags.get("run_dir"),
                   scenario=tags.get("scenario"), sut=tags.get("sut"), mode=tags.get("mode"),
                   verdict=tags.get("validity"), accuracy=tags.get("accuracy_verdict"),
                   metrics=dict(run.data.metrics), error=tags.get("error"))

    @property
    def key(self) -> tuple[str, ...]:
        return job_key(self.overrides)

    @property
    def label(self) -> str:
        return f"job {self.num}" if self.num is not None else "job"


def overlaps(reports: Sequence[JobReport]) -> dict[int, list[int]]:
    """For each report (by index), the others that ran on the same host at an overlapping time."""
    found: dict[int, list[int]] = {i: [] for i in range(len(reports))}
    timed = [(i, r) for i, r in enumerate(reports) if r.host and r.started is not None and r.ended is not None]
    for a, (i, r) in enumerate(timed):
        for j, s in timed[a + 1:]:
            if r.host == s.host and r.started < s.ended and s.started < r.ended:
                found[i].append(j)
                found[j].append(i)
    return found


def _swept(reports: Sequence[JobReport | None], jobs: Sequence[Sequence[str]]) -> list[str]:
    """Per job, the overrides that tell it from the round's other jobs (those whose values differ)."""
    parsed = [dict(o.split("=", 1) if "=" in o else (o, "") for o in job_overrides(j)) for j in jobs]
    keys = [k for k in dict.fromkeys(k for p in parsed for k in p) if len({p.get(k) for p in parsed}) > 1]
    return [" ".join(f"{k}={p[k]}" for k in keys if k in p) for p in parsed]


def _figure(metrics: Mapping[str, float], name: str, fmt: str, unit: str = "") -> str:
    value = metrics.get(name)
    return "-" if value is None else f"{value:{fmt}}{unit}"


def round_table(jobs: Sequence[Sequence[str]], reports: Sequence[JobReport | None], parent: str | None = None,
                shared: Mapping[int, Sequence[int]] | None = None) -> str:
    """The round's table: one line per job (``reports[i]`` is job ``i``'s, None when it never
    reported), then a line per job that did not finish and per job that shared its host."""
    shared = shared or {}
    counts: dict[str, int] = {}
    for r in reports:
        status = r.status if r is not None else NO_REPORT
        counts[status] = counts.get(status, 0) + 1
    order = ("FINISHED", "FAILED", "KILLED", NO_REPORT)
    head = f"round of {len(jobs)} runs: " + ", ".join(f"{counts[s]} {s}" for s in order if s in counts)
    if parent:
        head += f" · MLflow parent run {parent}"
    rows = [head, f"{'job':<5}{'scenario':<14}{'sut':<10}{'result':<10}{'accuracy':<10}{'samples/s':>12}"
                  f"{'tokens/s':>12}{'TTFT p99':>11}{'TPOT p99':>11}  {'errors':<8}{'host':<14}overrides"]
    notes = []
    for i, (overrides, r, swept) in enumerate(zip(jobs, reports, _swept(reports, jobs), strict=True)):
        if r is None:
            rows.append(f"{i:<5}{'-':<14}{'-':<10}{NO_REPORT:<10}{'-':<10}{'-':>12}{'-':>12}{'-':>11}{'-':>11}  "
                        f"{'-':<8}{'-':<14}{swept}")
            notes.append(f"job {i} ({shlex.join(job_overrides(overrides)) or 'no overrides'}) never reported: "
                         "no return from the launcher and no MLflow run (killed, lost, or never started)")
            continue
        m = r.metrics
        result = r.verdict if r.status == "FINISHED" and r.verdict and r.verdict != "none" else (
            r.status if r.status != "FINISHED" else "-")
        accuracy = r.accuracy if r.accuracy and r.accuracy != "none" else "-"
        errors = "-" if m.get("errors") is None else f"{m['errors']:g}"
        rows.append(f"{i:<5}{r.scenario or '-':<14}{r.sut or '-':<10}{result:<10}{accuracy:<10}"
                    f"{_figure(m, 'samples_per_second', ',.1f'):>12}{_figure(m, 'tokens_per_second', ',.0f'):>12}"
                    f"{_figure(m, 'ttft_p99_ms', '.1f', 'ms'):>11}{_figure(m, 'tpot_p99_ms', '.2f', 'ms'):>11}  "
                    f"{errors:<8}{r.host or '-':<14}{swept}")
        if r.status != "FINISHED":
            why = f": {r.error}" if r.error else ""
            notes.append(f"job {i} {r.status} (exit {r.exit_code}){why}"[:400])
        if shared.get(i):
            others = ", ".join(f"job {j}" for j in shared[i])
            notes.append(f"job {i} shared {r.host} with {others} at the same time"
                         + ("" if r.mode == "accuracy" else ": its performance figures were measured alongside"))
    return "\n".join(rows + notes)
