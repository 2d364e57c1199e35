"""One benchmark run, end to end: preflight, LoadGen test(s), results. No Hydra here.

``run_benchmark(config, output_dir)`` is the whole product minus the CLI: it checks everything
it can before LoadGen starts (dataset, SUT, scenario support, output directory), runs the
performance and/or accuracy test through the bridge, parses LoadGen's logs and writes
``results.json``. Errors that the user can fix are raised as HarnessError subclasses.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness import __version__, disk, offline, roofline
from harness.accuracy import decode_accuracy_log, read_accuracy_log
from harness.accuracy.compliance import ComplianceResult, verify_accuracy_log
from harness.config import HarnessConfig, to_dict
from harness.datasets import Dataset, load_dataset
from harness.datasets.prompts import build_samples, fit_samples, input_limit
from harness.errors import AccuracyError, ConfigError, OutputError, ResultError, SUTError
from harness.loadgen import schedule
from harness.loadgen import settings as lg_settings
from harness.loadgen.logs import DetailLog, PerformanceResult, parse_detail_log, performance_result
from harness.loadgen.process import end_test_early, report_progress, run_in_process
from harness.progress import Display, Snapshot, plan
from harness.redact import Redactor
from harness.results import RunResult
from harness.sut import SUT, Sample, SUTContext, SUTInfo, build_sut, check_sut
from harness.verdict import judge

if TYPE_CHECKING:
    from harness.loadgen.bridge import BridgeStats

log = logging.getLogger(__name__)

USER_CONF = "user.conf"
CONFIG_FILE = "config.json"
DETAIL_LOG = "mlperf_log_detail.txt"
ACCURACY_LOG = "mlperf_log_accuracy.json"
PREDICTIONS = "predictions.json"
TEST_LOG = "harness_test.log"


COMPLIANCE_TEST = "TEST06"
AUDIT_CONF = "audit.config"


@dataclass(frozen=True)
class Plan:
    """The LoadGen tests of a run, in order: submission = performance then accuracy, then
    TEST06 when compliance is on (each test in its own process)."""

    tests: tuple[str, ...]

    @classmethod
    def for_mode(cls, mode: str, compliance: bool = False) -> Plan:
        if mode != "submission":
            return cls((mode,))
        return cls(("performance", "accuracy") + ((COMPLIANCE_TEST,) if compliance else ()))

    @classmethod
    def for_config(cls, config: HarnessConfig) -> Plan:
        """TEST06 applies to LLMs with token latencies; by default only official runs pay for it,
        so quick runs stay quick (``run.compliance=true`` adds it to any submission run)."""
        wanted = config.run.compliance if config.run.compliance is not None else config.benchmark.official
        compliance = wanted and lg_settings.uses_token_latencies(config.benchmark.model_key)
        return cls.for_mode(config.mode, compliance)


def prepare_output_dir(output_dir: Path) -> Path:
    """Create the run directory and prove it is writable, before anything expensive."""
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        probe = output_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        if disk.is_full(exc):
            raise disk.no_space(output_dir, f"writing a file failed ({exc.strerror})") from exc
        raise OutputError(f"output directory {output_dir} is not writable: {exc.strerror or exc}") from exc
    disk.check_space(output_dir)
    return output_dir


# Written by every harness run (harness-peak's search too) before anything else: a directory
# holding it is a run directory, which run.overwrite=true may clear. Anything else is never deleted.
RUN_MARKERS = ("environment.json", "results.json", "config.json")


def claim_output_dir(output_dir: Path, overwrite: bool, hydra_files: Collection[str] = ()) -> None:
    """Refuse a run directory an earlier run left files in, or with ``overwrite`` clear it first.

    A run must never share or inherit a directory: a reused one would mix the earlier run's
    ``accuracy/`` or ``TEST06/`` with this run's results (and harness-audit would judge them).
    ``hydra_files`` are the names Hydra wrote for this very job before it started (``.hydra/``,
    the job log): they do not count, but the job log, which Hydra appends to, is emptied when the
    directory is cleared. Only a directory a harness run wrote (:data:`RUN_MARKERS`) is cleared,
    so a mistyped ``hydra.run.dir=~`` cannot delete a home directory.
    """
    try:
        leftovers = sorted(p for p in output_dir.iterdir() if p.name not in hydra_files)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise OutputError(f"run directory {output_dir} cannot be read: {exc.strerror or exc}") from exc
    if not leftovers:
        return
    names = ", ".join(p.name for p in leftovers[:4]) + (", ..." if len(leftovers) > 4 else "")
    if not overwrite:
        raise OutputError(f"run directory {output_dir} already holds an earlier run's files ({names}): choose "
                          "another hydra.run.dir, or set run.overwrite=true to clear it first")
    if not any((output_dir / marker).exists() for marker in RUN_MARKERS):
        raise OutputError(f"run directory {output_dir} holds files no harness run wrote ({names}); "
                          "run.overwrite=true clears only earlier runs' directories: choose another hydra.run.dir")
    try:
        for path in leftovers:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        for name in hydra_files:
            if (output_dir / name).is_file():
                os.truncate(output_dir / name, 0)  # the earlier run's log lines
    except OSError as exc:
        raise OutputError(f"run directory {output_dir} cannot be cleared: {exc.strerror or exc}") from exc
    log.warning("run.overwrite=true: cleared %s (%s)", output_dir, names)


def check_official(config: HarnessConfig, dataset: Dataset) -> None:
    """Official settings only make sense on the full dataset mlperf.conf expects."""
    expected = config.benchmark.official_sample_count
    if config.benchmark.official and expected is not None and len(dataset) != expected:
        raise ConfigError(f"benchmark.official=true needs the full dataset ({expected} samples for "
                          f"{config.benchmark.model_key}); {dataset.source} has {len(dataset)}")


def sut_context(config: HarnessConfig, samples: list[Sample]) -> SUTContext:
    corpus = [s.prompt for s in samples] + [s.reference or "" for s in samples]
    return SUTContext(corpus=corpus, max_new_tokens=config.benchmark.max_new_tokens)


def open_sut(config: HarnessConfig, samples: list[Sample]) -> SUT:
    return build_sut(config.sut, sut_context(config, samples))


@dataclass(frozen=True)
class TestOutcome:
    """What a test process reports back: the bridge's counts and, after an accuracy test, the
    TEST06-style compliance checks of its log."""

    stats: BridgeStats
    compliance: ComplianceResult | None = None
    sut_stats: dict | None = None  # the SUT's own counters after this test (SUTInfo.stats; sut=openai: tokens)
    sut: SUTInfo | None = None  # what the SUT said of itself after this test (SUT.describe)
    # Roofline input (performance test): prompt lengths by the SUT's tokenizer.
    prompt_tokens: roofline.TokenCounts | None = None
    # Inputs cut to fit the prompt limit (benchmark.max_input_tokens, or the model's context): how many, and why.
    inputs_cut: dict | None = None


def run_one_test(config: HarnessConfig, dataset: Dataset, test: str, test_dir: Path, user_conf: Path,
                 model_key: str) -> TestOutcome:
    """One LoadGen test with a freshly built SUT; runs inside the test process.

    Prompts are cut here to fit ``benchmark.max_input_tokens`` or the model's context (the SUT's
    ``SUTInfo.context_length``: positions minus ``max_new_tokens``), since that needs the SUT's tokenizer.
    After an accuracy test the outputs are decoded with that tokenizer into ``predictions.json``
    (QSL index -> text) and the log's compliance is checked, while the tokenizer is at hand.
    """
    from harness.loadgen.bridge import run_test  # imports LoadGen: only in the test process

    started = time.monotonic()

    def phase(name: str, what: str) -> None:
        report_progress(Snapshot(test, name, elapsed_s=time.monotonic() - started, what=what))

    samples = build_samples(config.benchmark, dataset)
    phase("loading", f"sut={config.sut.name}")
    sut = open_sut(config, samples)
    try:
        inputs_cut = None
        limit = input_limit(config.benchmark, sut.describe().context_length)
        if limit is not None:
            samples, cut = fit_samples(config.benchmark, dataset, sut.tokenizer, limit)
            inputs_cut = {"samples": cut, "of": len(samples), "max_prompt_tokens": limit.tokens, "limit": limit.source}
        audit = test_dir / AUDIT_CONF if test == COMPLIANCE_TEST else None
        stats = run_test(sut, samples, scenario=config.scenario.loadgen_scenario,
                         mode="performance" if audit else test, model_key=model_key,
                         user_conf=user_conf, outdir=test_dir, options=config.run, audit_config=audit,
                         end_early=lambda stats: end_test_early(TestOutcome(stats)),
                         progress=report_progress if config.run.progress else None, test=test)
        started = time.monotonic()
        compliance = None
        if audit is not None and not stats.errors:
            # TEST06: the ~100 responses logged during the performance run.
            phase("after", "checking the logged responses")
            compliance = verify_accuracy_log(test_dir / ACCURACY_LOG, sut.tokenizer.eos_token_id, test_dir,
                                             scenario=config.scenario.loadgen_scenario)
        elif test == "accuracy" and not stats.errors:
            phase("after", "decoding the outputs")
            texts = decode_accuracy_log(test_dir / ACCURACY_LOG, sut.tokenizer.decode)
            (test_dir / PREDICTIONS).write_text(json.dumps(texts, indent=1, ensure_ascii=False) + "\n")
            compliance = verify_accuracy_log(test_dir / ACCURACY_LOG, sut.tokenizer.eos_token_id, test_dir,
                                             scenario=config.scenario.loadgen_scenario)
        prompt_tokens = None
        if test == "performance" and not stats.errors:  # after LoadGen's clock has stopped
            phase("after", "counting prompt tokens")
            prompt_tokens = roofline.count_prompt_tokens(sut.tokenizer, [s.prompt for s in samples])
        info = sut.describe()
        return TestOutcome(stats, compliance, dict(info.stats) if info.stats is not None else None, info,
                           prompt_tokens, inputs_cut)
    finally:
        sut.close()


def score_accuracy(config: HarnessConfig, dataset: Dataset, test_dir: Path,
                   compliance: ComplianceResult | None) -> dict:
    """The ``accuracy`` section of results.json; writes ``accuracy.txt`` beside the log."""
    from harness.accuracy.report import score_accuracy_log, write_accuracy_txt

    try:
        raw = json.loads((test_dir / PREDICTIONS).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AccuracyError(f"cannot read decoded predictions {test_dir / PREDICTIONS}: {exc}") from exc
    predictions = {int(k): v for k, v in raw.items()}
    accuracy = score_accuracy_log(test_dir / ACCURACY_LOG, predictions, [r.reference for r in dataset.records],
                                  config.benchmark, [r.task for r in dataset.records])
    write_accuracy_txt(test_dir, accuracy)
    if compliance is not None:
        accuracy["compliance"] = {"passed": compliance.passed, "lines": compliance.lines()}
    return accuracy


def run_benchmark(config: HarnessConfig, output_dir: Path, display: Display | None = None) -> RunResult:
    """Run the configured benchmark and write its results into ``output_dir``.

    ``display`` shows its progress (:mod:`harness.progress`); by default on stdout unless
    ``run.progress=false``. A full disk, wherever it shows (an OSError here or in the test process,
    or LoadGen's logs cut short), ends the run with one OutputError naming the directory (harness/disk.py).
    Puts the Hugging Face libraries offline first (:mod:`harness.offline`), for runs driven from Python.
    """
    offline.enforce()
    if display is None:
        display = Display(enabled=config.run.progress)
    with disk.full_disk_as_error(Path(output_dir)):
        return _run_benchmark(config, Path(output_dir), display)


def _run_benchmark(config: HarnessConfig, output_dir: Path, display: Display) -> RunResult:
    output_dir = prepare_output_dir(output_dir)
    dataset = load_dataset(config.dataset)
    check_official(config, dataset)
    samples = build_samples(config.benchmark, dataset)  # template errors surface before LoadGen starts
    check_sut(config.sut, sut_context(config, samples))  # e.g. a wrong sut.model_path, in one line, now
    limits = lg_settings.latency_limits(config)
    plain = to_dict(config)
    redactor = Redactor.collect(plain)  # sut.api_key, the variable sut.api_key_env names, HF_TOKEN-like ones
    (output_dir / CONFIG_FILE).write_text(json.dumps(redactor.data(plain), indent=2) + "\n")
    user_conf = output_dir / USER_CONF
    user_conf.write_text(lg_settings.render_user_conf(config, len(dataset)))
    model_key = lg_settings.model_key(config)
    test_plan = Plan.for_config(config)
    if "performance" in test_plan.tests:  # LoadGen builds the whole schedule up front: bound it first
        schedule.check(config, user_conf, model_key, len(dataset))

    perf: PerformanceResult | None = None
    perf_detail: DetailLog | None = None
    perf_outcome: TestOutcome | None = None
    errors, messages, accuracy_samples, issued = 0, [], None, {}
    accuracy: dict | None = None
    accuracy_error: AccuracyError | None = None
    compliance_tests: dict[str, dict] = {}
    sut_stats: dict[str, dict] = {}
    model: dict | None = None
    inputs_cut: dict | None = None
    display.line(plan(config, len(dataset), test_plan.tests))
    for test in test_plan.tests:
        test_dir = output_dir / test
        test_dir.mkdir(exist_ok=True)
        if test == COMPLIANCE_TEST:
            (test_dir / AUDIT_CONF).write_text(lg_settings.TEST06_AUDIT_CONF)
        watch = display.test(test)
        try:
            with display.logging_above():
                outcome = run_in_process(run_one_test, config, dataset, test, test_dir, user_conf, model_key,
                                         log_file=test_dir / TEST_LOG, redactor=redactor,
                                         on_progress=watch.update if display.enabled else None)
        except AccuracyError:  # the test process reads the accuracy log: cut short by a full disk, or corrupt
            disk.check_written(test_dir, "LoadGen's logs")
            raise
        disk.check_written(test_dir, "LoadGen's logs")  # its log streams fail silently on a full disk
        stats = outcome.stats
        watch.done(stats.issued, stats.completed, stats.errors)
        errors += stats.errors
        issued[test] = stats.issued
        if outcome.sut_stats is not None:
            sut_stats[test] = outcome.sut_stats
        if model is None and outcome.sut is not None and outcome.sut.model is not None:
            model = outcome.sut.model.to_json()
        inputs_cut = inputs_cut or outcome.inputs_cut
        messages += [redactor.text(f"{test}: {m}") for m in stats.error_messages]  # servers echo keys in errors
        if stats.gave_up:
            messages.append(redactor.text(f"{test}: the harness gave up on the SUT: {stats.gave_up}"))
        if test == "performance":
            perf_detail, perf_outcome = parse_detail_log(test_dir / DETAIL_LOG), outcome
            perf = performance_result(perf_detail)
            messages += [f"LoadGen: {m}" for m in perf.loadgen_error_messages]
        elif test == COMPLIANCE_TEST:
            if outcome.compliance is not None:
                c = outcome.compliance
                compliance_tests[test] = {"passed": c.passed, "entries": c.entries, "lines": c.lines()}
        elif not stats.errors:
            accuracy_samples = len(read_accuracy_log(test_dir / ACCURACY_LOG))
            try:
                with display.task("accuracy", f"scoring {accuracy_samples:,} samples (ROUGE)",
                                  f"scored {accuracy_samples:,} samples (ROUGE)"):
                    accuracy = score_accuracy(config, dataset, test_dir, outcome.compliance)
            except AccuracyError as exc:
                accuracy_error = exc
        if stats.errors:
            log.error("%s test: %d samples failed; later tests skipped", test, stats.errors)
            break

    loadgen_errors = perf.loadgen_errors if perf else 0
    if perf is not None:
        # LoadGen's own words ("... * Run unsuccessful. ... * Run successful.") are for the record
        # (results.json extra.loadgen_reasons, the detail log); the summary prints the verdict's reasons.
        log.debug("LoadGen's verdict: %s%s", "VALID" if perf.valid else "INVALID",
                  "; ".join([""] + list(perf.invalid_reasons)))
    verdict = judge(detail=perf_detail, ttft=perf.ttft_ms if perf else None, tpot=perf.tpot_ms if perf else None,
                    latency=perf.latency_ms if perf else None,
                    samples_per_second=perf.samples_per_second if perf else None,
                    streaming_server=config.scenario.loadgen_scenario == "Server", limits=limits, errors=errors,
                    issued=sum(issued.values()), loadgen_errors=loadgen_errors,
                    loadgen_error_messages=perf.loadgen_error_messages if perf else (),
                    first_error=messages[0] if messages else None,
                    min_completed_ratio=config.run.min_completed_ratio)
    if verdict is not None and verdict.status != "VALID":
        log.warning("harness verdict: %s: %s", verdict.status, "; ".join(verdict.lines()))
    if errors:
        roof = roofline.not_estimated("samples failed, so the timings are not a result")
    else:
        with display.task("roofline", "estimating bandwidth and MFU", "estimated bandwidth and MFU", min_s=1.0):
            roof = run_roofline(config, perf_detail, perf_outcome)
    result = RunResult.from_perf(
        perf,
        verdict,
        scenario=config.scenario.name,
        mode=config.mode,
        benchmark=config.benchmark.name,
        model_key=model_key,
        sut=config.sut.name,
        official=config.benchmark.official,
        errors=errors,
        error_messages=tuple(messages),
        loadgen_errors=loadgen_errors,
        loadgen_version=perf.loadgen_version if perf else _loadgen_version(output_dir),
        dataset={"name": dataset.name, "source": dataset.source, "samples": len(dataset),
                 "fingerprint": dataset.fingerprint},
        output_dir=str(output_dir),
        latency_limits=limits,
        accuracy=accuracy,
        harness_version=__version__,
        extra={"accuracy_log_samples": accuracy_samples, "samples_issued": issued,
               **({"loadgen_reasons": list(perf.invalid_reasons)} if perf and perf.invalid_reasons else {}),
               **({"compliance": compliance_tests} if compliance_tests else {}),
               **({"sut_stats": sut_stats} if sut_stats else {}), **({"model": model} if model else {}),
               **({"inputs_cut": inputs_cut} if inputs_cut else {})},
        roofline=roof.to_json(),
    )
    result.write(output_dir)
    if accuracy_error is not None:
        raise accuracy_error
    if errors:
        log.error("%d samples failed; first: %s", errors, messages[0] if messages else "?")
    return result


def run_roofline(config: HarnessConfig, detail: DetailLog | None, outcome: TestOutcome | None) -> roofline.Roofline:
    """The run's roofline estimates, in this (parent) process after every test has ended, so the
    CPU probe, when one is needed, never competes with a timed test. Never fails the run."""
    if detail is None or outcome is None:
        return roofline.not_estimated("no performance test ran (mode=accuracy), so there are no timings")
    stats = outcome.stats
    try:
        roof = roofline.for_run(config, detail, sut=outcome.sut, input_tokens=outcome.prompt_tokens,
                                output_tokens=stats.output_tokens / stats.completed if stats.completed else None,
                                issued=stats.issued)
        accepted = (outcome.sut_stats or {}).get("mean_accepted_tokens")
        if roof.model is not None and accepted:  # a draft model (sut=hf speculative decoding)
            roof = dataclasses.replace(roof, warnings=(*roof.warnings, (
                f"speculative decoding: {accepted:.2f} tokens per target step, so a step takes about {accepted:.2f} "
                "TPOTs and reads the draft's weights too; decode figures assume one step per token")))
        return roof
    except Exception as exc:  # an estimate must never cost the measured results
        log.warning("roofline: not estimated (%s: %s)", type(exc).__name__, exc)
        return roofline.not_estimated(f"estimate failed: {type(exc).__name__}: {exc}")


def _loadgen_version(output_dir: Path) -> str | None:
    from harness.loadgen.logs import loadgen_version

    for detail in sorted(output_dir.glob(f"*/{DETAIL_LOG}")):
        return loadgen_version(parse_detail_log(detail))
    return None


def check_result(result: RunResult, fail_on_invalid: bool) -> None:
    """Raise when the run must end with a non-zero exit."""
    if result.errors:
        raise SUTError(f"{result.errors} samples failed (first: {result.error_messages[0]}); "
                       f"see {result.output_dir}")
    if fail_on_invalid and result.verdict in ("INVALID", "BEHIND"):
        raise ResultError(f"result {result.verdict} ({'; '.join(result.invalid_reasons)}) and fail_on_invalid=true")
    if fail_on_invalid and result.accuracy is not None and result.accuracy.verdict == "FAIL":
        raise ResultError(f"accuracy FAIL ({'; '.join(result.accuracy.failed)}) and fail_on_invalid=true")
