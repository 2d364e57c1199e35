"""Judging scores against the MLPerf accuracy targets and output-length guards.

A metric passes when ``score >= reference x accuracy_target`` (MLPerf's 99% / 99.9% targets),
compared as the official checker does: the score as written in accuracy.txt against the
unrounded product (llama3.1-8b rouge1 needs 38.7792 x 0.99 = 38.391408, so 38.3914 fails).
References come from the benchmark config (MLPERF_FACTS.md) or from an earlier run named by
``benchmark.accuracy_reference_run`` (e.g. the fp32 run of the same model). The length guard
keeps a system from gaming ROUGE with short or padded outputs: ``gen_len`` (total characters,
scaled to the samples scored when that is not the full dataset) or ``tokens_per_sample`` within
the benchmark's band. A target metric the harness could not compute (``not_scored``, e.g.
Mixtral's MBXP) is not judged: the verdict is then INCOMPLETE, never PASS.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.config import BenchmarkConfig
from harness.errors import AccuracyError

PASS, FAIL, NO_TARGET, INCOMPLETE = "PASS", "FAIL", "NO_TARGET", "INCOMPLETE"


@dataclass(frozen=True)
class Check:
    """One judged quantity: ``value`` must be >= ``minimum`` and <= ``maximum`` (when set)."""

    metric: str
    value: float | None
    minimum: float | None
    maximum: float | None = None
    reference: float | None = None
    not_judged: str | None = None  # why the value could not be computed (then it is None)

    @property
    def passed(self) -> bool:
        if self.value is None:
            return False
        return ((self.minimum is None or self.value >= self.minimum)
                and (self.maximum is None or self.value <= self.maximum))

    def describe(self) -> str:
        """Why the check fails (or that it holds), for the summary and the audit. Limits print with
        10 significant digits, so an exact threshold such as 38.391408 is not shown as 38.3914."""
        if self.value is None:
            return f"{self.metric} not judged: {self.not_judged}" if self.not_judged else f"{self.metric} missing"
        if self.minimum is not None and self.value < self.minimum:
            return f"{self.metric} {self.value:.10g} < {self.minimum:.10g} required"
        if self.maximum is not None and self.value > self.maximum:
            return f"{self.metric} {self.value:.10g} > {self.maximum:.10g} allowed"
        return f"{self.metric} {self.value:.10g} ok"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "pass": self.passed}


def reference_scores(benchmark: BenchmarkConfig) -> tuple[dict[str, float], str]:
    """The reference scores and where they come from (the benchmark, or a reference run)."""
    if not benchmark.accuracy_reference_run:
        refs = {k: float(v) for k, v in benchmark.accuracy_reference.items() if v is not None}
        return refs, f"benchmark {benchmark.name}"
    from harness.results import RESULTS_FILE, ResultsError, ResultsMissing, RunResult  # results imports Check

    path = Path(benchmark.accuracy_reference_run).expanduser()
    results = path / RESULTS_FILE if path.is_dir() else path
    try:
        accuracy = RunResult.load(results).accuracy
    except ResultsMissing as exc:
        raise AccuracyError(f"benchmark.accuracy_reference_run: {results} not found") from exc
    except ResultsError as exc:
        raise AccuracyError(f"benchmark.accuracy_reference_run: {exc}") from exc
    if accuracy is None or "scores" in accuracy.absent:
        raise AccuracyError(f"benchmark.accuracy_reference_run: {results} has no accuracy scores "
                            f"(was it an accuracy or submission run?)")
    refs = {k: float(v) for k, v in accuracy.scores.items() if k.startswith("rouge")}
    return refs, f"run {results.parent}"


def judge(scores: dict[str, float], benchmark: BenchmarkConfig, samples: int,
          not_scored: dict[str, str] | None = None) -> dict[str, Any]:
    """Targets, one check per metric and the overall verdict, as stored in results.json.

    ``not_scored``: metric -> why it was not computed; such a target is reported, not failed.
    """
    references, source = reference_scores(benchmark)
    fraction = benchmark.accuracy_target
    not_scored = not_scored or {}

    def why(metric: str) -> str | None:
        return not_scored.get(metric) if scores.get(metric) is None else None

    checks = [Check(m, scores.get(m), ref * fraction, reference=ref, not_judged=why(m))
              for m, ref in references.items()]
    guard = benchmark.accuracy_length
    if guard is not None and references:
        low_ref = guard.reference
        high_ref = guard.max_reference if guard.max_reference is not None else guard.reference
        if guard.metric == "gen_len" and benchmark.official_sample_count and samples != benchmark.official_sample_count:
            low_ref = low_ref * samples / benchmark.official_sample_count
            high_ref = high_ref * samples / benchmark.official_sample_count
        checks.append(Check(guard.metric, scores.get(guard.metric), low_ref * guard.min_ratio,
                            None if guard.max_ratio is None else high_ref * guard.max_ratio, low_ref,
                            not_judged=why(guard.metric)))
    judged = [c for c in checks if c.not_judged is None]
    if not checks:
        verdict = NO_TARGET
    elif not all(c.passed for c in judged):
        verdict = FAIL
    else:
        verdict = INCOMPLETE if len(judged) < len(checks) else PASS
    return {
        "verdict": verdict,
        "target_fraction": fraction,
        "reference_source": source,
        "targets": {c.metric: c.minimum for c in checks},
        "checks": [c.to_json() for c in checks],
        "failed": [c.describe() for c in checks if not c.passed],
    }
