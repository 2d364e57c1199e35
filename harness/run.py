"""One benchmark run, end to end: preflight, LoadGen test(s), results. No Hydra here.

``run_benchmark(config, output_dir)`` is the whole product minus the CLI: it checks everything
it can before LoadGen starts (dataset, SUT, scenario support, output directory), runs the
performance and/or accuracy test through the bridge, parses LoadGen's logs and writes
``results.json``. Errors that the user can fix are raised as HarnessError subclasses.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness import __version__
from harness.accuracy import decode_accuracy_log, read_accuracy_log
from harness.config import HarnessConfig, to_dict
from harness.datasets import Dataset, load_dataset
from harness.errors import ConfigError, OutputError, ResultError, SUTError
from harness.loadgen import settings as lg_settings
from harness.loadgen.logs import PerformanceResult, parse_detail_log, performance_result
from harness.loadgen.process import run_in_process
from harness.results import RunResult
from harness.sut import SUT, Sample, SUTContext, build_sut

if TYPE_CHECKING:
    from harness.loadgen.bridge import BridgeStats

log = logging.getLogger(__name__)

USER_CONF = "user.conf"
CONFIG_FILE = "config.json"
DETAIL_LOG = "mlperf_log_detail.txt"
ACCURACY_LOG = "mlperf_log_accuracy.json"
PREDICTIONS = "predictions.json"
TEST_LOG = "harness_test.log"


@dataclass(frozen=True)
class Plan:
    """The LoadGen tests of a run, in order: submission = performance then accuracy."""

    tests: tuple[str, ...]

    @classmethod
    def for_mode(cls, mode: str) -> Plan:
        return cls(("performance", "accuracy") if mode == "submission" else (mode,))


def build_samples(config: HarnessConfig, dataset: Dataset) -> list[Sample]:
    """QSL samples: the benchmark's prompt template applied to each record's input."""
    template = config.benchmark.prompt_template
    if "{input}" not in template:
        raise ConfigError("benchmark.prompt_template must contain '{input}'")
    # str.replace, not str.format: articles contain braces.
    return [Sample(i, template.replace("{input}", r.input), r.input, r.reference)
            for i, r in enumerate(dataset.records)]


def prepare_output_dir(output_dir: Path) -> Path:
    """Create the run directory and prove it is writable, before anything expensive."""
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        probe = output_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"output directory {output_dir} is not writable: {exc.strerror or exc}") from exc
    return output_dir


def check_official(config: HarnessConfig, dataset: Dataset) -> None:
    """Official settings only make sense on the full dataset mlperf.conf expects."""
    expected = config.benchmark.official_sample_count
    if config.benchmark.official and expected is not None and len(dataset) != expected:
        raise ConfigError(f"benchmark.official=true needs the full dataset ({expected} samples for "
                          f"{config.benchmark.model_key}); {dataset.source} has {len(dataset)}")


def open_sut(config: HarnessConfig, samples: list[Sample]) -> SUT:
    corpus = [s.prompt for s in samples] + [s.reference or "" for s in samples]
    return build_sut(config.sut, SUTContext(corpus=corpus, max_new_tokens=config.benchmark.max_new_tokens))


def run_one_test(config: HarnessConfig, samples: list[Sample], test: str, test_dir: Path, user_conf: Path,
                 model_key: str) -> BridgeStats:
    """One LoadGen test with a freshly built SUT; runs inside the test process.

    After an accuracy test the outputs are decoded with the SUT's own tokenizer into
    ``predictions.json`` (QSL index -> text), while the tokenizer is at hand.
    """
    from harness.loadgen.bridge import run_test  # imports LoadGen: only in the test process

    sut = open_sut(config, samples)
    try:
        stats = run_test(sut, samples, scenario=config.scenario.loadgen_scenario, mode=test, model_key=model_key,
                         user_conf=user_conf, outdir=test_dir, options=config.run)
        if test == "accuracy" and not stats.errors:
            texts = decode_accuracy_log(test_dir / ACCURACY_LOG, sut.tokenizer.decode)
            (test_dir / PREDICTIONS).write_text(json.dumps(texts, indent=1, ensure_ascii=False) + "\n")
        return stats
    finally:
        sut.close()


def run_benchmark(config: HarnessConfig, output_dir: Path) -> RunResult:
    """Run the configured benchmark and write its results into ``output_dir``."""
    output_dir = prepare_output_dir(Path(output_dir))
    dataset = load_dataset(config.dataset)
    check_official(config, dataset)
    samples = build_samples(config, dataset)
    limits = lg_settings.latency_limits(config)
    (output_dir / CONFIG_FILE).write_text(json.dumps(to_dict(config), indent=2) + "\n")
    user_conf = output_dir / USER_CONF
    user_conf.write_text(lg_settings.render_user_conf(config, len(samples)))
    model_key = lg_settings.model_key(config)

    perf: PerformanceResult | None = None
    errors, messages, accuracy_samples, issued = 0, [], None, {}
    for test in Plan.for_mode(config.mode).tests:
        test_dir = output_dir / test
        test_dir.mkdir(exist_ok=True)
        stats = run_in_process(run_one_test, config, samples, test, test_dir, user_conf, model_key,
                               log_file=test_dir / TEST_LOG)
        errors += stats.errors
        issued[test] = stats.issued
        messages += [f"{test}: {m}" for m in stats.error_messages]
        if test == "performance":
            perf = performance_result(parse_detail_log(test_dir / DETAIL_LOG))
            messages += [f"LoadGen: {m}" for m in perf.loadgen_error_messages]
        elif not stats.errors:
            accuracy_samples = len(read_accuracy_log(test_dir / ACCURACY_LOG))
        if stats.errors:
            log.error("%s test: %d samples failed; later tests skipped", test, stats.errors)
            break

    loadgen_errors = perf.loadgen_errors if perf else 0
    result = RunResult.from_perf(
        perf,
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
        harness_version=__version__,
        extra={"accuracy_log_samples": accuracy_samples, "samples_issued": issued},
    )
    result.write(output_dir)
    if errors:
        log.error("%d samples failed; first: %s", errors, messages[0] if messages else "?")
    return result


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
    if fail_on_invalid and result.valid is False:
        raise ResultError(f"result INVALID ({'; '.join(result.invalid_reasons)}) and fail_on_invalid=true")
