"""``harness-audit``: re-score and re-judge a finished run's accuracy without re-running it.

From the run directory (or an MLflow run, downloaded first) it reads the resolved config and
LoadGen's accuracy log, checks the log against the ``hash=`` line of ``accuracy.txt`` and the
dataset against the fingerprint recorded in ``results.json``, decodes the token ids again with
the SUT's tokenizer, scores ROUGE, judges it against the targets (optionally others than the
run used), and runs the TEST06-style compliance checks. The audit is written to
``accuracy/audit.json``; the exit code is 0 when everything holds, 4 when a check fails, 2 for
bad input. ``--same-tokens-as OTHER`` instead compares the outputs of two runs' accuracy logs
sample by sample (e.g. with and without a speculative draft model, or in-process and served over
HTTP, which must be lossless) and fails on any difference: token ids where both logs hold the
model's own ids, else the text each run's tokenizer decodes (``sut=openai`` without the server's
ids logs its text re-tokenized), saying which it compared.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import offline
from harness.errors import AccuracyError, HarnessError, TrackingError
from harness.invocation import invoked_as

if TYPE_CHECKING:
    from harness.results import RunResult

log = logging.getLogger("harness.audit")

AUDIT_FILE = "audit.json"
EXIT_FAILED = 4


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=invoked_as("harness-audit"),
        description="Re-score and re-judge a finished run's accuracy log (ROUGE, targets, compliance) "
                    "without re-running the model.",
        epilog="Examples:\n"
               "  harness-audit runs/2026-11-21/10-00-00_offline_hf\n"
               "  harness-audit runs/... --target 0.999                 # judge against 99.9% targets\n"
               "  harness-audit runs/... --reference-run runs/fp32-run   # compare with an fp32 run\n"
               "  harness-audit <mlflow run id> --tracking-uri sqlite:///mlruns.db\n"
               "  harness-audit runs/with-draft --same-tokens-as runs/no-draft   # lossless: same token ids\n"
               "Exit codes: 0 all checks hold (or no target); 4 a check failed; 2 bad input.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run", help="run directory (with config.json and accuracy/), or an MLflow run id")
    p.add_argument("--dataset-path", help="the dataset file, if it has moved since the run")
    p.add_argument("--target", type=float, help="fraction of the reference scores to reach, e.g. 0.999")
    p.add_argument("--reference-run", help="take reference scores from this run (directory or results.json)")
    p.add_argument("--same-tokens-as", metavar="OTHER",
                   help="instead of re-scoring, check that RUN's accuracy log has the same output for every "
                        "sample as OTHER's (run directory, MLflow run id or the log file): token ids when both "
                        "hold the model's own ids, else the decoded text")
    p.add_argument("--tracking-uri", help="MLflow tracking URI, when RUN is an MLflow run id")
    p.add_argument("--json", action="store_true", help="print the audit as JSON")
    return p


def resolve_run_dir(run: str, tracking_uri: str | None) -> Path:
    """A local run directory, downloading an MLflow run's artifacts when ``run`` is a run id (or a
    unique prefix of one, such as the 8 characters harness-compare shows)."""
    from harness.tracking.store import download_run_dir, looks_like_run_id

    path = Path(run).expanduser()
    if path.is_dir():
        return path
    if path.exists() or not looks_like_run_id(run):
        raise AccuracyError(f"run directory not found: {path}")
    try:
        return download_run_dir(run, tracking_uri)  # any unique prefix of the id
    except TrackingError as exc:  # a store that is down or lacks the run: the input cannot be read (exit 2)
        raise AccuracyError(str(exc)) from exc


def audit_run(run_dir: Path, *, dataset_path: str | None = None, target: float | None = None,
              reference_run: str | None = None) -> dict[str, Any]:
    """The audit of one run directory, as written to ``accuracy/audit.json``."""
    from harness.accuracy.compliance import verify_accuracy_log
    from harness.accuracy.log import decode_accuracy_log, file_sha256
    from harness.accuracy.report import ACCURACY_TXT, score_accuracy_log
    from harness.run import ACCURACY_LOG

    config, dataset = _config_and_dataset(run_dir, dataset_path)
    acc_dir = run_dir / "accuracy"
    log_path = acc_dir / ACCURACY_LOG
    if not log_path.is_file():
        raise AccuracyError(f"{log_path} not found: the run had no accuracy test (mode=accuracy or submission)")

    benchmark = config.benchmark
    if target is not None:
        if not 0 < target <= 1:
            raise AccuracyError(f"--target must be a fraction in (0, 1], got {target}")
        benchmark = dataclasses.replace(benchmark, accuracy_target=target)
    if reference_run:
        benchmark = dataclasses.replace(benchmark, accuracy_reference_run=reference_run)

    recorded = _recorded(run_dir)
    problems: list[str] = []
    fingerprint = recorded.dataset.fingerprint if recorded is not None else None
    if fingerprint and fingerprint != dataset.fingerprint:
        raise AccuracyError(f"dataset {dataset.source} differs from the one the run used (fingerprint "
                            f"{dataset.fingerprint[:12]} != {fingerprint[:12]}); pass --dataset-path")
    recorded_hash = _recorded_hash(acc_dir / ACCURACY_TXT)
    actual_hash = file_sha256(log_path)
    if recorded_hash is None:
        problems.append(f"{ACCURACY_TXT} has no hash= line to check the log against")
    elif recorded_hash != actual_hash:
        problems.append(f"accuracy log hash {actual_hash[:12]} != {recorded_hash[:12]} recorded in {ACCURACY_TXT}")

    tokenizer = _tokenizer(config, dataset)
    predictions = decode_accuracy_log(log_path, tokenizer.decode)
    accuracy = score_accuracy_log(log_path, predictions, [r.reference for r in dataset.records], benchmark,
                                  [r.task for r in dataset.records])
    compliance = verify_accuracy_log(log_path, tokenizer.eos_token_id, scenario=config.scenario.loadgen_scenario)
    if not compliance.passed:
        problems.append("compliance: " + "; ".join(compliance.lines()[:3]))
    before = recorded.accuracy.scores if recorded is not None and recorded.accuracy is not None else None
    if before:
        changed = {k: (before.get(k), v) for k, v in accuracy["scores"].items() if before.get(k) != v}
        if changed:
            problems.append("scores differ from the run's results.json: "
                            + ", ".join(f"{k} {a} -> {b}" for k, (a, b) in changed.items()))
    audit = {
        "run_dir": str(run_dir),
        "benchmark": benchmark.name,
        "accuracy": accuracy,
        "compliance": {"passed": compliance.passed, "lines": compliance.lines()},
        "hash_recorded": recorded_hash,
        "problems": problems,
        "passed": accuracy["verdict"] in ("PASS", "NO_TARGET") and not problems,  # INCOMPLETE: a target not judged
    }
    (acc_dir / AUDIT_FILE).write_text(json.dumps(audit, indent=2) + "\n", encoding="utf-8")
    return audit


def _recorded(run_dir: Path) -> RunResult | None:
    """The run's results.json (None when it has none: a run that ended before writing it)."""
    from harness.results import ResultsMissing, RunResult

    try:
        return RunResult.load(run_dir)
    except ResultsMissing:
        return None


def _recorded_hash(path: Path) -> str | None:
    try:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith("hash="):
                return line[len("hash="):].strip()
    except OSError:
        return None
    return None


def report(audit: dict[str, Any]) -> str:
    from harness.results import accuracy_lines

    lines = [f"audit of {audit['run_dir']} ({audit['benchmark']})"]
    lines += accuracy_lines(audit["accuracy"])
    lines += [f"  compliance  {line}" for line in audit["compliance"]["lines"]]
    lines += [f"  problem     {p}" for p in audit["problems"]]
    lines.append(f"  audit       {'PASS' if audit['passed'] else 'FAIL'} (written to accuracy/{AUDIT_FILE})")
    return "\n".join(lines)


def same_tokens(run: str, other: str, tracking_uri: str | None) -> Any:
    """The lossless comparison of two runs' accuracy logs (a LosslessReport): by token ids when
    both hold the model's own ids, else by the text each run's own tokenizer decodes."""
    from harness.accuracy.lossless import compare_text_logs, compare_token_logs

    def locate(name: str) -> Path:
        path = Path(name).expanduser()
        return path if path.is_file() else resolve_run_dir(name, tracking_uri)

    a, b = locate(run), locate(other)
    reasons = [r for r in (_retokenized(a), _retokenized(b)) if r]
    if not reasons:
        return compare_token_logs(a, b)
    return compare_text_logs(a, b, _decoder(a), _decoder(b), "; ".join(reasons))


def _run_dir_of(path: Path) -> Path | None:
    """The run directory holding ``path`` (the directory itself, or a log under its accuracy/)."""
    from harness.run import CONFIG_FILE

    for candidate in (path, path.parent, path.parent.parent):
        if candidate.is_dir() and (candidate / CONFIG_FILE).is_file():
            return candidate
    return None


def _retokenized(path: Path) -> str | None:
    """Why this run's accuracy log does not hold the model's own ids (None: it does, or cannot tell)."""
    run_dir = _run_dir_of(path)
    if run_dir is None:
        return None
    recorded = _recorded(run_dir)
    stats = recorded.extra.sut_stats.get("accuracy") if recorded is not None else None
    ids = stats.output_token_ids if stats is not None else None
    if ids in ("re-tokenized", "mixed"):
        by = stats.retokenizer or "the client's tokenizer"
        return (f"{run_dir} holds {'some of ' if ids == 'mixed' else ''}the server's text re-tokenized by the "
                f"{by}, not the model's own ids")
    return None


def _decoder(path: Path) -> Any:
    """The decode function of the SUT of the run holding ``path``."""
    run_dir = _run_dir_of(path)
    if run_dir is None:
        raise AccuracyError(f"{path}: pass the run directory, not a bare log: its text is compared, which needs "
                            "the run's tokenizer")
    config, dataset = _config_and_dataset(run_dir)
    return _tokenizer(config, dataset).decode


def _config_and_dataset(run_dir: Path, dataset_path: str | None = None) -> tuple[Any, Any]:
    """A run directory's config (config.json) and its dataset (``dataset_path`` if it moved)."""
    from harness.config import load_config
    from harness.datasets import load_dataset
    from harness.run import CONFIG_FILE

    config_file = run_dir / CONFIG_FILE
    try:
        config = load_config(json.loads(config_file.read_text(encoding="utf-8")))
    except FileNotFoundError as exc:
        raise AccuracyError(f"{config_file} not found: is {run_dir} a harness run directory?") from exc
    except ValueError as exc:
        raise AccuracyError(f"{config_file} is not valid JSON: {exc}") from exc
    dataset_config = config.dataset
    if dataset_path:
        dataset_config = dataclasses.replace(dataset_config, path=dataset_path)
    return config, load_dataset(dataset_config)


def _tokenizer(config: Any, dataset: Any) -> Any:
    """The tokenizer the run's SUT decodes with (built without loading a model where it can)."""
    from harness.datasets.prompts import build_samples
    from harness.run import sut_context
    from harness.sut import build_tokenizer

    samples = build_samples(config.benchmark, dataset)
    return build_tokenizer(config.sut, sut_context(config, samples))


def main(argv: list[str] | None = None) -> None:
    offline.enforce()  # before anything imports a Hugging Face library
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="[%(levelname)s] %(message)s")
    if args.same_tokens_as:
        try:
            lossless = same_tokens(args.run, args.same_tokens_as, args.tracking_uri)
        except HarnessError as exc:
            sys.stderr.write(f"error: {exc}\n")
            sys.exit(exc.exit_code)
        text = json.dumps(lossless.as_dict(), indent=2) if args.json else "\n".join(lossless.lines())
        sys.stdout.write(text + "\n")
        sys.exit(0 if lossless.identical else EXIT_FAILED)
    try:
        run_dir = resolve_run_dir(args.run, args.tracking_uri)
        audit = audit_run(run_dir, dataset_path=args.dataset_path, target=args.target,
                          reference_run=args.reference_run)
    except HarnessError as exc:
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(exc.exit_code)
    sys.stdout.write((json.dumps(audit, indent=2) if args.json else report(audit)) + "\n")
    sys.exit(0 if audit["passed"] else EXIT_FAILED)


if __name__ == "__main__":
    main()
