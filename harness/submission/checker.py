"""``harness-check``: verify a submission tree written by ``harness-submit`` (or by hand).

Per result folder: required files present and unchanged since they were written (manifest);
performance VALID without LoadGen errors; accuracy re-judged from accuracy.txt against the
benchmark's targets (closed: the official targets in conf/benchmark/); accuracy.txt's hash equal to
the full log's hash recorded at write time, the truncated log consistent with it, and equal to the
source run's log when that run directory still exists; token latencies on for LLMs that need them;
effective settings consistent with the division; measurements.json complete; TEST06 passed
(re-checked on its log). Per system: the required description fields. One line per result, exit 1
on any failure, 2 on bad input.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError, SubmissionError
from harness.submission import accuracy_log, layout, rules, system

MEASUREMENT_FIELDS = ("input_data_types", "retraining", "starting_weights_filename", "weight_data_types",
                      "weight_transformations")
EXIT_FAILED = 1


@dataclass(frozen=True)
class Line:
    """One checked result: where, what, its value, and why it fails (empty when it holds)."""

    system: str
    benchmark: str
    scenario: str
    metric: str
    value: str
    problem: str = ""

    @property
    def ok(self) -> bool:
        return not self.problem

    def __str__(self) -> str:
        status = "OK" if self.ok else f"FAIL: {self.problem}"
        return f"{self.system:<14} {self.benchmark:<15} {self.scenario:<12} {self.metric:<16} {self.value:<26} {status}"


def _load_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def check_systems(base: Path, division: str) -> list[Line]:
    lines = []
    for path in sorted((base / "systems").glob("*.json")):
        desc = _load_json(path)
        if desc is None:
            lines.append(Line(path.stem, "-", "-", "system", path.name, "not a readable JSON object"))
            continue
        missing = system.missing_fields(desc)
        problem = f"missing fields: {', '.join(missing)}" if missing else ""
        if not problem and desc.get("division") != division:
            problem = f"division {desc.get('division')!r} in a {division} tree"
        lines.append(Line(path.stem, "-", "-", "system", f"{len(system.REQUIRED_FIELDS) - len(missing)} of "
                          f"{len(system.REQUIRED_FIELDS)} fields", problem))
    return lines


def _official_benchmark(name: str) -> Any:
    """The benchmark config as shipped (official targets), for closed-division judging."""
    from omegaconf import OmegaConf

    from harness.config import CONF_DIR, BenchmarkConfig, build_dataclass

    path = CONF_DIR / "benchmark" / f"{layout.safe_name('benchmark', name)}.yaml"
    if not path.is_file():
        raise SubmissionError(f"no benchmark config {path}")
    return build_dataclass(BenchmarkConfig, OmegaConf.to_container(OmegaConf.load(path), resolve=True), "benchmark")


def _scores(path: Path) -> tuple[dict[str, Any], str | None]:
    """accuracy.txt: the printed score dict on the first line, then ``hash=``."""
    text = path.read_text(encoding="utf-8").splitlines()
    scores = ast.literal_eval(text[0]) if text else {}
    hashes = [t.split("=", 1)[1].strip() for t in text if t.startswith("hash=")]
    if not isinstance(scores, dict):
        raise ValueError("first line is not a score dict")
    return scores, hashes[0] if hashes else None


class ResultChecker:
    """All checks of one ``results/<system>/<benchmark>/<Scenario>`` folder."""

    def __init__(self, folder: Path, division: str) -> None:
        self.folder, self.division = folder, division
        self.where = (folder.parent.parent.name, folder.parent.name, folder.name)
        self.manifest = _load_json(folder / layout.MANIFEST) or {}
        self.lines: list[Line] = []

    def add(self, metric: str, value: Any, problem: str = "") -> None:
        self.lines.append(Line(*self.where, metric, str(value), problem))

    def run(self) -> list[Line]:
        from harness.loadgen.logs import parse_detail_log

        model_key = str(self.manifest.get("model_key", ""))
        needs_test06 = rules.uses_token_latencies(model_key) or not self.manifest
        required = layout.REQUIRED_FILES + (layout.TEST06_FILES if needs_test06 else ())
        missing = [f for f in required if not (self.folder / f).is_file()]
        self.add("files", f"{len(required) - len(missing)} of {len(required)}",
                 f"missing {', '.join(missing)}" if missing else "")
        recorded = self.manifest.get("files") or {}
        changed = sorted(f for f, digest in recorded.items()
                         if (self.folder / f).is_file() and accuracy_log.sha256(self.folder / f) != digest)
        why = f"changed since written: {', '.join(changed)}" if changed else ""
        self.add("integrity", f"{len(recorded)} files", why)
        perf_detail = self.folder / layout.PERF_DIR / layout.DETAIL
        if perf_detail.is_file():
            detail = parse_detail_log(perf_detail)
            self.performance(detail)
            self.add("token_latencies", detail.get("requested_use_token_latencies"),
                     rules.token_latency_problem(model_key, detail) or "")
            self.settings(detail)
        if (self.folder / layout.ACC_DIR / layout.ACC_TXT).is_file():
            self.accuracy()
        if (self.folder / layout.MEASUREMENTS).is_file():
            m = _load_json(self.folder / layout.MEASUREMENTS) or {}
            absent = [f for f in MEASUREMENT_FIELDS if m.get(f) in (None, "")]
            self.add("measurements", f"{len(MEASUREMENT_FIELDS) - len(absent)} fields",
                     f"missing {', '.join(absent)}" if absent else "")
        if needs_test06 and (self.folder / layout.TEST06_DIR / layout.VERIFY).is_file():
            self.test06()
        return self.lines

    def performance(self, detail: Any) -> None:
        from harness.loadgen.logs import performance_result

        perf = performance_result(detail)
        value = (f"{perf.tokens_per_second:,.2f} tokens/s" if perf.tokens_per_second is not None
                 else f"{perf.samples_per_second or 0:,.2f} samples/s")
        problem = ""
        if not perf.valid:
            problem = "INVALID: " + "; ".join(perf.invalid_reasons or ("result_validity is not VALID",))
        elif perf.loadgen_errors:
            problem = f"{perf.loadgen_errors} LoadGen errors: " + "; ".join(perf.loadgen_error_messages[:3])
        self.add("performance", value, problem)

    def settings(self, detail: Any) -> None:
        if self.division == "open":
            self.add("division", "open", "")
            return
        conf = self.folder / layout.USER_CONF
        text = conf.read_text(encoding="utf-8") if conf.is_file() else ""
        problems = rules.closed_problems(self.manifest, detail, text)
        self.add("division", "closed", "; ".join(problems))

    def accuracy(self) -> None:
        from harness.accuracy.judge import judge
        from harness.config import BenchmarkConfig, build_dataclass

        txt = self.folder / layout.ACC_DIR / layout.ACC_TXT
        try:
            scores, recorded_hash = _scores(txt)
        except (ValueError, SyntaxError) as exc:
            self.add("accuracy", "-", f"{layout.ACC_DIR}/{layout.ACC_TXT} unreadable: {exc}")
            return
        try:
            bench_name = (self.manifest.get("benchmark") or {}).get("name", "")
            bench = (_official_benchmark(bench_name) if self.division == "closed"
                     else build_dataclass(BenchmarkConfig, self.manifest.get("benchmark") or {}, "benchmark"))
            verdict = judge(scores, bench, int(scores.get("gen_num") or 0))
        except HarnessError as exc:
            self.add("accuracy", "-", f"cannot judge: {exc}")
            return
        shown = f"rouge1 {scores.get('rouge1')}"
        if verdict["verdict"] == "FAIL":
            self.add("accuracy", shown, "below target: " + "; ".join(verdict["failed"]))
        elif verdict["verdict"] == "NO_TARGET" and self.division == "closed":
            self.add("accuracy", shown, "no accuracy target for this benchmark")
        else:
            self.add("accuracy", shown + (" (no target)" if verdict["verdict"] == "NO_TARGET" else ""))
        self.hash(recorded_hash)

    def hash(self, recorded: str | None) -> None:
        full = self.manifest.get("accuracy_log") or {}
        copy = self.folder / layout.ACC_DIR / layout.ACC_LOG
        shown = (recorded or "-")[:16]
        if recorded is None:
            return self.add("accuracy_hash", shown, f"{layout.ACC_TXT} has no hash= line")
        if full.get("sha256") != recorded:
            return self.add("accuracy_hash", shown, f"hash= in {layout.ACC_TXT} differs from the full log's hash "
                                                    f"recorded at write time ({str(full.get('sha256'))[:16]})")
        if not copy.is_file():
            return None  # reported as a missing file
        size = int(full.get("bytes") or 0)
        expected = accuracy_log.truncated_size(size)
        if copy.stat().st_size != expected:
            return self.add("accuracy_hash", shown, f"{layout.ACC_LOG} has {copy.stat().st_size} bytes; the "
                                                    f"truncation of a {size}-byte log has {expected}: "
                                                    "the log was edited")
        if size == copy.stat().st_size and accuracy_log.sha256(copy) != recorded:
            return self.add("accuracy_hash", shown, f"{layout.ACC_LOG} (the whole log) does not match hash= in "
                                                    f"{layout.ACC_TXT}: the log was edited")
        source = Path(str(self.manifest.get("source_run") or "")) / "accuracy" / layout.ACC_LOG
        if self.manifest.get("source_run") and source.is_file() and accuracy_log.sha256(source) != recorded:
            return self.add("accuracy_hash", shown, f"source run's log {source} does not match hash= "
                                                    f"in {layout.ACC_TXT}")
        return self.add("accuracy_hash", shown)

    def test06(self) -> None:
        from harness.accuracy.compliance import check_entries
        from harness.accuracy.log import read_accuracy_entries
        from harness.errors import AccuracyError
        from harness.loadgen.logs import parse_detail_log

        t6 = self.folder / layout.TEST06_DIR
        lines = (t6 / layout.VERIFY).read_text(encoding="utf-8").splitlines()
        offline = self.folder.name == "Offline"
        problems = [ln for ln in lines if "check pass:" in ln
                    and not ln.endswith("True") and not (offline and ln.endswith("Skipped"))]
        log_path = t6 / layout.ACC_DIR / layout.ACC_LOG
        entries = 0
        try:
            recheck = check_entries(read_accuracy_entries(log_path), None)  # EOS id: only the run's tokenizer knows
            entries = recheck.entries
            if recheck.first_token is False or not recheck.sample_length:
                problems.append("re-check of the TEST06 log: " + "; ".join(recheck.lines()[:3]))
        except AccuracyError as exc:
            problems.append(str(exc))
        detail = t6 / layout.PERF_DIR / layout.DETAIL
        if detail.is_file() and not parse_detail_log(detail).get("effective_accuracy_log_sampling_target"):
            problems.append("TEST06 performance run had no audit settings (accuracy_log_sampling_target)")
        self.add("TEST06", f"{entries} responses", "; ".join(problems))


def check_tree(base: Path) -> list[Line]:
    """Every check of ``<root>/<division>/<submitter>``."""
    base = Path(base)
    division = base.parent.name
    if division not in layout.DIVISIONS or not base.is_dir():
        raise SubmissionError(f"{base} is not a submission tree (<root>/closed|open/<submitter>)")
    lines = check_systems(base, division)
    known = {ln.system for ln in lines}
    folders = sorted(p for p in (base / "results").glob("*/*/*") if p.is_dir())
    if not folders:
        lines.append(Line("-", "-", "-", "results", "0 results",
                          f"no results/<system>/<benchmark>/<Scenario> in {base}"))
    for folder in folders:
        checker = ResultChecker(folder, division)
        if checker.where[0] not in known:
            checker.add("system", checker.where[0], f"systems/{checker.where[0]}.json missing")
        lines += checker.run()
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="harness-check", description="Verify an MLPerf Inference submission tree.",
                                epilog="Exit codes: 0 every check holds; 1 a check failed; 2 bad input.")
    p.add_argument("tree", help="the submitter's folder, e.g. submissions/closed/ACME")
    args = p.parse_args(argv)
    try:
        lines = check_tree(Path(args.tree))
    except HarnessError as exc:
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(exc.exit_code)
    failed = [ln for ln in lines if not ln.ok]
    sys.stdout.write("".join(f"{ln}\n" for ln in lines))
    sys.stdout.write(f"{len(lines) - len(failed)} of {len(lines)} checks passed" +
                     (f"; {len(failed)} failed\n" if failed else "\n"))
    sys.exit(EXIT_FAILED if failed else 0)


if __name__ == "__main__":
    main()
