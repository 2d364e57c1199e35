"""The typed result of one run, its ``results.json`` form, the loader, and its human summary.

``results.json`` is :class:`RunResult` written by :meth:`RunResult.write`; scripts and every
reader in the harness (the judge's reference run, ``harness-audit``, ``harness-submit``, MLflow
logging, ``harness-peak``, the round table) read it back with :meth:`RunResult.load`, which
returns the same typed object: frozen dataclasses for the sections readers use (``dataset``,
``accuracy``, ``roofline``, ``pace``, ``verdict_reasons`` and the well-known parts of ``extra``).
A section keeps the keys it does not type in ``rest``, so a file loads and writes back unchanged.

Schema version (``schema_version``, an integer at the top of the file):

- ``0``: files written before the key existed (no ``schema_version``); they load as they are.
- ``1``: ``schema_version`` added; every other key as in version 0.

Bump rule: adding a key (or a section's key) does not bump the version, since loaders keep keys
they do not know and readers treat a missing key as empty. Removing or renaming a key, or
changing its type, unit or meaning, bumps it, and :meth:`RunResult.from_dict` learns to read
the older versions. A file with a newer version than this harness knows is refused in one line
naming the file (upgrade the harness to read it); a malformed file is named with its key.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.config import LatencyLimits
from harness.loadgen.logs import Percentiles, PerformanceResult
from harness.result_sections import (
    Accuracy,
    Compliance,
    ComputeFigures,
    DatasetInfo,
    DecodeFigures,
    Extra,
    Figures,
    InputsCut,
    ModelRecord,
    PaceFigures,
    ResultsError,
    ResultsMissing,
    RooflineFigures,
    RooflineModel,
    RooflinePeaks,
    Section,
    SutStats,
    convert,
    json_form,
    kind,
    type_hints,
)
from harness.verdict import Reason, Verdict

__all__ = ["RESULTS_FILE", "SCHEMA_VERSION", "Accuracy", "Compliance", "ComputeFigures", "DatasetInfo",
           "DecodeFigures", "Extra", "Figures", "InputsCut", "ModelRecord", "PaceFigures", "ResultsError",
           "ResultsMissing", "RooflineFigures", "RooflineModel", "RooflinePeaks", "RunResult", "Section", "SutStats",
           "accuracy_lines", "approximate_token_tests", "roofline_line", "summary", "verdict_lines"]

RESULTS_FILE = "results.json"
SCHEMA_VERSION = 1

# Sections a caller may give as their JSON form (run.py builds them as dicts): converted on construction.
_SECTIONS = ("dataset", "accuracy", "extra", "roofline", "pace")


@dataclass(frozen=True)
class RunResult:
    """What one run measured, and the harness's verdict on it (:mod:`harness.verdict`).

    ``verdict`` is VALID, INVALID, BEHIND or FAILED (None: no performance test ran and nothing
    failed, i.e. a good accuracy-only run); ``valid`` is ``verdict == "VALID"`` (None with it);
    ``loadgen_valid`` is LoadGen's own ``result_validity``. A FAILED run's figures are null: they
    would be computed from failed samples (LoadGen's are kept in ``extra.failed_run_figures``).
    ``dataset``, ``accuracy``, ``extra``, ``roofline``, ``pace`` and ``verdict_reasons`` may be given
    as their JSON form (mappings); they are kept typed.
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
    dataset: DatasetInfo
    output_dir: str
    latency_limits: LatencyLimits | None = None
    accuracy: Accuracy | None = None
    harness_version: str = ""
    extra: Extra = field(default_factory=Extra)
    # Bytes per decode step, achieved bandwidth and MFU against the machine's peaks (harness/roofline.py,
    # docs/ROOFLINE.md); null in results.json written before it existed.
    roofline: RooflineFigures | None = None
    verdict: str | None = None
    # One per reason of a verdict other than VALID (invalid_reasons: their texts)
    verdict_reasons: tuple[Reason, ...] = ()
    loadgen_valid: bool | None = None
    # Server/Interactive: completed vs scheduled samples/s and their pace ratio (harness.verdict.Pace)
    pace: PaceFigures | None = None

    def __post_init__(self) -> None:
        hints = type_hints(RunResult)
        for name in _SECTIONS:
            value = getattr(self, name)
            if isinstance(value, Mapping) and not isinstance(value, Section):
                object.__setattr__(self, name, convert(value, hints[name], name))
        if any(isinstance(r, Mapping) for r in self.verdict_reasons):
            object.__setattr__(self, "verdict_reasons", convert(self.verdict_reasons, hints["verdict_reasons"],
                                                                 "verdict_reasons"))

    @property
    def ok(self) -> bool:
        """No SUT errors and nothing LoadGen counted as an error."""
        return self.errors == 0 and self.loadgen_errors == 0

    def __getitem__(self, key: str) -> Any:
        """``result["key"]``: the value results.json holds (scripts written against the plain JSON)."""
        return self.to_json()[key]

    def to_json(self) -> dict[str, Any]:
        """The results.json object: ``schema_version``, then every field."""
        return {"schema_version": SCHEMA_VERSION,
                **{f.name: json_form(getattr(self, f.name)) for f in dataclasses.fields(self)}}

    def write(self, directory: Path) -> Path:
        path = Path(directory) / RESULTS_FILE
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def from_dict(cls, data: Any, where: str = RESULTS_FILE) -> RunResult:
        """A results.json object (any schema version up to :data:`SCHEMA_VERSION`) as a RunResult.

        A key the object lacks reads as its field's default, else as empty (None, "", 0, False, (),
        an empty section): files written before a key existed load. A top-level key this harness
        does not know is left out (a section keeps its own in ``rest``). ResultsError, naming
        ``where`` and the key, for a newer schema version or a key of the wrong type."""
        if not isinstance(data, Mapping):
            raise ResultsError(f"{where}: expected a JSON object, got {kind(data)}")
        version = data.get("schema_version", 0)
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise ResultsError(f"{where}: schema_version: expected a whole number, got {version!r}")
        if version > SCHEMA_VERSION:
            raise ResultsError(f"{where}: written with results schema_version {version}, newer than this harness "
                               f"reads ({SCHEMA_VERSION}); upgrade the harness to read it")
        hints, given = type_hints(cls), {}
        for f in dataclasses.fields(cls):
            if f.name in data:
                given[f.name] = convert(data[f.name], hints[f.name], f"{where}: {f.name}")
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                given[f.name] = _empty(hints[f.name])
        return cls(**given)

    @classmethod
    def load(cls, path: str | Path) -> RunResult:
        """The RunResult of a run directory or of a results.json file. ResultsMissing when there
        is none, ResultsError naming the file (and key) when it cannot be read."""
        path = Path(path).expanduser()
        file = path / RESULTS_FILE if path.is_dir() else path
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ResultsMissing(f"{file} not found") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise ResultsError(f"{file}: cannot be read ({exc})") from exc
        except ValueError as exc:
            raise ResultsError(f"{file}: not valid JSON ({exc})") from exc
        return cls.from_dict(data, str(file))

    @classmethod
    def from_perf(cls, perf: PerformanceResult | None, verdict: Verdict | None, **kwargs: Any) -> RunResult:
        """Combine LoadGen's performance result (if any) and the verdict with the run's own facts."""
        judged: dict[str, Any] = {"valid": None, "invalid_reasons": (), "verdict": None, "loadgen_valid": None}
        if verdict is not None:
            judged = {"valid": verdict.valid, "invalid_reasons": tuple(verdict.lines()), "verdict": verdict.status,
                      "verdict_reasons": verdict.reasons, "loadgen_valid": verdict.loadgen_valid,
                      "pace": dataclasses.asdict(verdict.pace) if verdict.pace else None}
        figures: dict[str, Any] = {"samples_per_second": None, "tokens_per_second": None, "ttft_ms": None,
                                   "tpot_ms": None, "latency_ms": None}
        if perf is not None:
            measured = {"samples_per_second": perf.samples_per_second, "tokens_per_second": perf.tokens_per_second,
                        "ttft_ms": perf.ttft_ms, "tpot_ms": perf.tpot_ms, "latency_ms": perf.latency_ms}
            if verdict is not None and verdict.status == "FAILED":
                extra = dict(kwargs.pop("extra", {}))
                extra["failed_run_figures"] = json_form(measured)
                kwargs["extra"] = extra
            else:
                figures = measured
        return cls(**judged, **figures, **kwargs)


def _empty(hint: Any) -> Any:
    """The value a key missing from an old results.json reads as."""
    if type(None) in typing.get_args(hint):
        return None
    if isinstance(hint, type) and issubclass(hint, Section):
        return hint.from_dict({})
    return {str: "", bool: False, int: 0, float: 0.0}.get(hint, ())


def _ms(p: Percentiles | None, attr: str = "p99") -> str:
    value = getattr(p, attr, None) if p is not None else None
    return "-" if value is None else f"{value:.2f} ms"


def _num(value: float | None, unit: str) -> str:
    return "-" if value is None else f"{value:,.2f} {unit}"


def approximate_token_tests(extra: Extra | Mapping[str, Any]) -> list[str]:
    """The tests whose output token counts were approximate (``sut=openai`` counting a server's text
    with the dataset's word tokenizer, having neither its token ids nor its usage)."""
    extra = extra if isinstance(extra, Extra) else Extra.from_dict(extra, "extra")
    return [test for test, s in extra.sut_stats.items() if s.token_counts_approximate]


def _token_count_lines(result: RunResult) -> list[str]:
    lines = []
    tests = approximate_token_tests(result.extra)
    if tests:
        lines.append(f"  tokens      APPROXIMATE in the {', '.join(tests)} test(s): the server sent neither token ids "
                     "nor usage, so outputs were counted with the dataset's word tokenizer; tokens/s and TPOT are "
                     "not the model's (set sut.tokenizer_path)")
    for test, s in result.extra.sut_stats.items():
        # A logged output whose ids are the server's text re-tokenized can differ in length from the
        # server's count, which LoadGen logged beside it: the sample length check names those samples.
        if test != "performance" and s.output_token_ids not in (None, "server") and s.usage_mismatches:
            lines.append(f"  tokens      {test} log: the server's text re-tokenized (no ids from the server); "
                         f"{s.usage_mismatches} of {s.usage_reported} outputs differ in length from the "
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
        if pace is not None and pace.completed_qps is not None and pace.scheduled_qps is not None:
            ratio = f", pace {pace.ratio:.1%}" if pace.ratio is not None else ""
            lines.append(f"  pace        completed {pace.completed_qps:,.2f}/s of {pace.scheduled_qps:,.2f}/s "
                         f"scheduled{ratio}")
    cut = result.extra.inputs_cut
    if cut is not None and cut.samples:
        lines.append(f"  inputs      {cut.samples} of {cut.of} prompts cut to {cut.max_prompt_tokens} tokens "
                     f"({cut.limit})")
    if result.accuracy is not None:
        lines += accuracy_lines(result.accuracy)
    lines += _token_count_lines(result)
    line = roofline_line(result.roofline)
    if line:
        lines.append(line)
    for test, check in result.extra.compliance.items():
        verdict = "PASS" if check.passed else "FAIL: " + "; ".join(check.lines[:3])
        lines.append(f"  {test:<11} {verdict} ({check.entries} responses checked)")
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


def roofline_line(roofline: RooflineFigures | Mapping[str, Any] | None) -> str | None:
    """Decode bandwidth and MFU against the peaks, when the run has a model to judge (not fakes)."""
    if roofline is not None and not isinstance(roofline, RooflineFigures):
        roofline = RooflineFigures.from_dict(roofline, "roofline")
    if roofline is None or roofline.model is None:
        return None
    decode, peaks = roofline.decode, roofline.peaks if roofline.peaks is not None else RooflinePeaks()
    achieved, util = decode.achieved_bandwidth_gbs, decode.bandwidth_utilization
    if achieved is None:
        why = next(iter(decode.null_reasons.values()), "?")
        parts = [f"decode bandwidth not estimated ({why})"]
    elif util is None or peaks.memory_bandwidth_gbs is None:
        parts = [f"decode {_gbs(achieved)} GB/s (no peak bandwidth)"]
    else:
        parts = [f"decode {_gbs(achieved)} GB/s = {util:.1%} of {_gbs(peaks.memory_bandwidth_gbs)} GB/s"]
    for name, figures in (("prefill", roofline.prefill), ("overall", roofline.overall)):
        if figures.mfu is not None:  # prefill's own MFU when it is timed, else the run's
            parts.append(f"MFU {figures.mfu:.2%} ({name})")
            break
    source = peaks.bandwidth_source or ""
    kind = next((k for p, k in (("measured", "measured probe"), ("datasheet", "datasheet"), ("system", "system config"))
                 if source.startswith(p)), None)
    device = peaks.accelerator
    where = "cpu" if device in (None, "cpu") else f"{peaks.accelerators}x {device}"
    if roofline.warnings:
        parts.append("a fraction > 1, see roofline.warnings")
    return "  roofline    " + "; ".join(parts) + (f"  [{where}, {kind}]" if kind else "")


def accuracy_lines(accuracy: Accuracy | Mapping[str, Any]) -> list[str]:
    """The accuracy verdict and scores, each ROUGE score with its target when there is one."""
    if not isinstance(accuracy, Accuracy):
        accuracy = Accuracy.from_dict(accuracy, "accuracy")
    scores, targets = accuracy.scores, accuracy.targets
    shown = []
    for key in ("rouge1", "rouge2", "rougeL", "rougeLsum", "gsm8k"):
        if key in scores:
            target = targets.get(key)  # exact (e.g. 38.391408): 4 decimals would misstate it
            shown.append(f"{key} {scores[key]:.4f}" + (f" (>= {target:.10g})" if target is not None else ""))
    verdict = accuracy.verdict or "?"
    head = "no target" if verdict == "NO_TARGET" else verdict
    lines = [f"  accuracy    {head}: " + ", ".join(shown)]
    lines.append(f"              {scores.get('gen_num', '?')} samples, gen_len {scores.get('gen_len', '?')}, "
                 f"{scores.get('tokens_per_sample', '?')} tokens/sample; sentences: {accuracy.splitter or '?'}")
    lines += [f"              failed: {f}" for f in accuracy.failed]
    compliance = accuracy.compliance
    if compliance is not None and compliance.passed is False:
        lines.append("              compliance: " + "; ".join(compliance.lines[:3]))
    return lines
