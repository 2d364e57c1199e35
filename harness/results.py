"""The typed result of one run, its ``results.json`` form and its human summary."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.config import LatencyLimits
from harness.loadgen.logs import Percentiles, PerformanceResult
from harness.verdict import Verdict

RESULTS_FILE = "results.json"


@dataclass(frozen=True)
class RunResult:
    """What one run measured, and the harness's verdict on it (:mod:`harness.verdict`).

    ``verdict`` is VALID, INVALID, BEHIND or FAILED (None: no performance test ran and nothing
    failed, i.e. a good accuracy-only run); ``valid`` is ``verdict == "VALID"`` (None with it);
    ``loadgen_valid`` is LoadGen's own ``result_validity``. A FAILED run's figures are null: they
    would be computed from failed samples (LoadGen's are kept in ``extra.failed_run_figures``).
    """

    scenario: str
    mode: str
    benchmark: str
    model_key: str
    sut: str
    official: bool
    valid: bool | None
    invalid_reasons: tuple[str, ...]
    samples_per_second: float | None
    tokens_per_second: float | None
    ttft_ms: Percentiles | None
    tpot_ms: Percentiles | None
    latency_ms: Percentiles | None
    errors: int
    error_messages: tuple[str, ...]
    loadgen_errors: int
    loadgen_version: str | None
    dataset: dict[str, Any]
    output_dir: str
    latency_limits: LatencyLimits | None = None
    accuracy: dict[str, Any] | None = None
    harness_version: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    # Bytes per decode step, achieved bandwidth and MFU against the machine's peaks (harness/roofline.py,
    # docs/ROOFLINE.md); null in results.json written before it existed.
    roofline: dict[str, Any] | None = None
    verdict: str | None = None
    # {metric, text, value, limit} per reason of a verdict other than VALID (invalid_reasons: their texts)
    verdict_reasons: tuple[dict[str, Any], ...] = ()
    loadgen_valid: bool | None = None
    # Server/Interactive: completed vs scheduled samples/s and their pace ratio (harness.verdict.Pace)
    pace: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        """No SUT errors and nothing LoadGen counted as an error."""
        return self.errors == 0 and self.loadgen_errors == 0

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def write(self, directory: Path) -> Path:
        path = Path(directory) / RESULTS_FILE
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def from_perf(cls, perf: PerformanceResult | None, verdict: Verdict | None, **kwargs: Any) -> RunResult:
        """Combine LoadGen's performance result (if any) and the verdict with the run's own facts."""
        judged: dict[str, Any] = {"valid": None, "invalid_reasons": (), "verdict": None, "loadgen_valid": None}
        if verdict is not None:
            judged = {"valid": verdict.valid, "invalid_reasons": tuple(verdict.lines()), "verdict": verdict.status,
                      "verdict_reasons": tuple(dataclasses.asdict(r) for r in verdict.reasons),
                      "loadgen_valid": verdict.loadgen_valid,
                      "pace": dataclasses.asdict(verdict.pace) if verdict.pace else None}
        figures: dict[str, Any] = {"samples_per_second": None, "tokens_per_second": None, "ttft_ms": None,
                                   "tpot_ms": None, "latency_ms": None}
        if perf is not None:
            measured = {"samples_per_second": perf.samples_per_second, "tokens_per_second": perf.tokens_per_second,
                        "ttft_ms": perf.ttft_ms, "tpot_ms": perf.tpot_ms, "latency_ms": perf.latency_ms}
            if verdict is not None and verdict.status == "FAILED":
                extra = dict(kwargs.pop("extra", {}))
                extra["failed_run_figures"] = {k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v
                                               for k, v in measured.items()}
                kwargs["extra"] = extra
            else:
                figures = measured
        return cls(**judged, **figures, **kwargs)


def _ms(p: Percentiles | None, attr: str = "p99") -> str:
    value = getattr(p, attr, None) if p is not None else None
    return "-" if value is None else f"{value:.2f} ms"


def _num(value: float | None, unit: str) -> str:
    return "-" if value is None else f"{value:,.2f} {unit}"


def approximate_token_tests(extra: dict[str, Any]) -> list[str]:
    """The tests whose output token counts were approximate (``sut=openai`` counting a server's text
    with the dataset's word tokenizer, having neither its token ids nor its usage)."""
    stats = extra.get("sut_stats") or {}
    return [test for test, s in stats.items() if isinstance(s, dict) and s.get("token_counts_approximate")]


def _token_count_lines(result: RunResult) -> list[str]:
    lines = []
    tests = approximate_token_tests(result.extra)
    if tests:
        lines.append(f"  tokens      APPROXIMATE in the {', '.join(tests)} test(s): the server sent neither token ids "
                     "nor usage, so outputs were counted with the dataset's word tokenizer; tokens/s and TPOT are "
                     "not the model's (set sut.tokenizer_path)")
    for test, s in (result.extra.get("sut_stats") or {}).items():
        # A logged output whose ids are the server's text re-tokenized can differ in length from the
        # server's count, which LoadGen logged beside it: the sample length check names those samples.
        if test != "performance" and isinstance(s, dict) and s.get("output_token_ids") not in (None, "server") \
                and s.get("usage_mismatches"):
            lines.append(f"  tokens      {test} log: the server's text re-tokenized (no ids from the server); "
                         f"{s['usage_mismatches']} of {s.get('usage_reported')} outputs differ in length from the "
                         "server's count LoadGen logged (sut.return_token_ids=true logs the server's own ids)")
    return lines


def summary(result: RunResult) -> str:
    """A few lines for the terminal: verdict, throughput, token latencies, errors."""
    head = f"{result.scenario} · {result.mode} · {result.benchmark} ({result.model_key}) · sut={result.sut}"
    settings = "official settings" if result.official else "quick settings (not submittable)"
    lines = [head, f"  settings    {settings}"]
    lines += verdict_lines(result)
    if result.verdict not in (None, "FAILED") and result.samples_per_second is not None:
        lines += [
            f"  throughput  {_num(result.samples_per_second, 'samples/s')}, "
            f"{_num(result.tokens_per_second, 'tokens/s')}",
            f"  latency     p50 {_ms(result.latency_ms, 'p50')}, p99 {_ms(result.latency_ms)}",
        ]
        limits = result.latency_limits
        if result.ttft_ms is not None:
            lines.append(f"  TTFT / TPOT p99 {_ms(result.ttft_ms)} / {_ms(result.tpot_ms)}"
                         + (f"  (limits {limits.ttft_ms:g} / {limits.tpot_ms:g} ms)" if limits else ""))
        pace = result.pace
        if pace:
            ratio = f", pace {pace['ratio']:.1%}" if pace.get("ratio") is not None else ""
            lines.append(f"  pace        completed {pace['completed_qps']:,.2f}/s of {pace['scheduled_qps']:,.2f}/s "
                         f"scheduled{ratio}")
    cut = result.extra.get("inputs_cut")
    if cut and cut.get("samples"):
        lines.append(f"  inputs      {cut['samples']} of {cut['of']} prompts cut to {cut['max_prompt_tokens']} tokens "
                     f"({cut['limit']})")
    if result.accuracy is not None:
        lines += accuracy_lines(result.accuracy)
    lines += _token_count_lines(result)
    line = roofline_line(result.roofline)
    if line:
        lines.append(line)
    for test, check in result.extra.get("compliance", {}).items():
        verdict = "PASS" if check.get("passed") else "FAIL: " + "; ".join(check.get("lines", [])[:3])
        lines.append(f"  {test:<11} {verdict} ({check.get('entries')} responses checked)")
    if result.errors or result.loadgen_errors:
        lines.append(f"  errors      {result.errors} failed samples, {result.loadgen_errors} LoadGen errors")
        lines += [f"    {m}" for m in result.error_messages[:5]]
    lines.append(f"  output      {result.output_dir}")
    return "\n".join(lines)


def verdict_lines(result: RunResult) -> list[str]:
    """The verdict, then one line per reason with its figure and its limit; LoadGen's own verdict
    is named where it differs (its raw text is in harness.log)."""
    if result.verdict is None:
        return []
    head = result.verdict
    if result.verdict == "FAILED":
        head += ": not a result, samples failed"
    elif result.verdict == "BEHIND":
        head += ": not a result at this rate, the queue grew"
    if result.loadgen_valid is not None and result.loadgen_valid != (result.verdict == "VALID"):
        head += f"  (LoadGen: {'VALID' if result.loadgen_valid else 'INVALID'})"
    return [f"  result      {head}"] + [f"              {line}" for line in result.invalid_reasons]


def _gbs(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def roofline_line(roofline: dict[str, Any] | None) -> str | None:
    """Decode bandwidth and MFU against the peaks, when the run has a model to judge (not fakes)."""
    if not roofline or not roofline.get("model"):
        return None
    decode, peaks = roofline.get("decode") or {}, roofline.get("peaks") or {}
    achieved, util = decode.get("achieved_bandwidth_gbs"), decode.get("bandwidth_utilization")
    if achieved is None:
        why = next(iter((decode.get("null_reasons") or {}).values()), "?")
        parts = [f"decode bandwidth not estimated ({why})"]
    elif util is None:
        parts = [f"decode {_gbs(achieved)} GB/s (no peak bandwidth)"]
    else:
        parts = [f"decode {_gbs(achieved)} GB/s = {util:.1%} of {_gbs(peaks['memory_bandwidth_gbs'])} GB/s"]
    for name in ("prefill", "overall"):  # prefill's own MFU when it is timed, else the run's
        mfu = (roofline.get(name) or {}).get("mfu")
        if mfu is not None:
            parts.append(f"MFU {mfu:.2%} ({name})")
            break
    source = peaks.get("bandwidth_source") or ""
    kind = next((k for p, k in (("measured", "measured probe"), ("datasheet", "datasheet"), ("system", "system config"))
                 if source.startswith(p)), None)
    device = peaks.get("accelerator")
    where = "cpu" if device in (None, "cpu") else f"{peaks.get('accelerators')}x {device}"
    if roofline.get("warnings"):
        parts.append("a fraction > 1, see roofline.warnings")
    return "  roofline    " + "; ".join(parts) + (f"  [{where}, {kind}]" if kind else "")


def accuracy_lines(accuracy: dict[str, Any]) -> list[str]:
    """The accuracy verdict and scores, each ROUGE score with its target when there is one."""
    scores, targets = accuracy.get("scores", {}), accuracy.get("targets", {})
    shown = []
    for key in ("rouge1", "rouge2", "rougeL", "rougeLsum", "gsm8k"):
        if key in scores:
            target = targets.get(key)  # exact (e.g. 38.391408): 4 decimals would misstate it
            shown.append(f"{key} {scores[key]:.4f}" + (f" (>= {target:.10g})" if target is not None else ""))
    verdict = accuracy.get("verdict", "?")
    head = "no target" if verdict == "NO_TARGET" else verdict
    lines = [f"  accuracy    {head}: " + ", ".join(shown)]
    lines.append(f"              {scores.get('gen_num', '?')} samples, gen_len {scores.get('gen_len', '?')}, "
                 f"{scores.get('tokens_per_sample', '?')} tokens/sample; sentences: {accuracy.get('splitter', '?')}")
    lines += [f"              failed: {f}" for f in accuracy.get("failed", [])]
    compliance = accuracy.get("compliance")
    if compliance and not compliance.get("passed", True):
        lines.append("              compliance: " + "; ".join(compliance.get("lines", [])[:3]))
    return lines
