"""``harness-check``: verify a submission tree written by ``harness-submit`` (or by hand).

Checked against one MLPerf round (``--round``; default: the installed LoadGen's, see rounds.py).
Per result folder: required files present and unchanged since they were written (manifest);
LoadGen seeds of that round, and a benchmark of it (closed: a scenario of it for the system's
type); performance VALID without LoadGen errors; accuracy re-judged from accuracy.txt against the
benchmark's targets, exactly as the official checker compares (closed: the official targets in
conf/benchmark/); accuracy.txt's hash equal to the full log's hash recorded at write time, the
truncated log consistent with it, and equal to the source run's log when that run directory still
exists; token latencies on for LLMs that need them; effective settings consistent with the
division; measurements.json complete; TEST06 passed (re-checked on its log, the first token
decided by the scenario). Per system: every field the official checker requires, with its
"meaningful value" rule, status, type, division and submitter, and the file unchanged since
written. Closed: every required scenario of each benchmark present. One line per check, exit 1 on
any failure, 2 on bad input.
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

from harness import offline
from harness.errors import HarnessError, SubmissionError
from harness.invocation import invoked_as
from harness.submission import accuracy_log, layout, rounds, rules, system

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


def check_systems(base: Path, division: str) -> tuple[list[Line], dict[str, dict[str, Any]]]:
    """One line per ``systems/<id>.json``, and the descriptions that could be read."""
    lines, descs = [], {}
    for path in sorted((base / "systems").glob("*.json")):
        desc = _load_json(path)
        if desc is None:
            lines.append(Line(path.stem, "-", "-", "system", path.name, "not a readable JSON object"))
            continue
        descs[path.stem] = desc
        missing, empty, other = system.problems(desc)
        problems = [f"missing fields: {', '.join(missing)}"] if missing else []
        if empty:
            problems.append(f"empty fields: {', '.join(empty)} (the official checker needs a value; "
                            'a count of zero is written "0")')
        problems += other
        if desc.get("division") and str(desc["division"]).lower() != division:
            problems.append(f"division {desc.get('division')!r} in a {division} tree")
        if desc.get("submitter") and str(desc["submitter"]).lower() != base.name.lower():
            problems.append(f"submitter {desc.get('submitter')!r} in the tree of {base.name}")
        good = len(system.FIELDS) - len(missing) - len(empty)
        lines.append(Line(path.stem, "-", "-", "system", f"{good} of {len(system.FIELDS)} fields", "; ".join(problems)))
        lines += _system_integrity(base, path)
    return lines, descs


def _system_integrity(base: Path, path: Path) -> list[Line]:
    """The system file against the hash harness-submit recorded in its results' manifests."""
    recorded = set()
    for manifest in sorted((base / "results" / path.stem).glob(f"*/*/{layout.MANIFEST}")):
        digest = ((_load_json(manifest) or {}).get("system_file") or {}).get("sha256")
        if digest:
            recorded.add(digest)
    if not recorded:
        return []  # not written by harness-submit (or by an older one): nothing to compare with
    changed = accuracy_log.sha256(path) not in recorded or len(recorded) > 1
    return [Line(path.stem, "-", "-", "integrity", f"systems/{path.name}",
                 f"changed since written: systems/{path.name}" if changed else "")]


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
    """All checks of one ``results/<system>/<benchmark>/<Scenario>`` folder, for round ``target``
    and a system of type ``system_type`` (None: unknown)."""

    def __init__(self, folder: Path, division: str, target: rounds.Round, system_type: str | None = None) -> None:
        self.folder, self.division, self.target, self.system_type = folder, division, target, system_type
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
            self.round(detail)
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

    def round(self, detail: Any) -> None:
        """Seeds of the target round, and a benchmark (closed: a scenario) the round has."""
        rnd = rounds.round_of_seeds(rounds.seeds_of_detail(detail))
        target, closed = self.target, self.division == "closed"
        problems = []
        if rnd is None:
            problems.append("LoadGen seeds of no MLPerf round the harness knows")
        elif rnd.name != target.name:
            problems.append(f"LoadGen seeds of {rnd.name}: the {target.name} checker rejects them")
        bench, scenario = self.where[1], self.where[2]
        problem = rounds.benchmark_problem(target, bench, self.system_type if closed else None)
        if problem:
            problems.append(problem if closed else f"{problem}: the official checker rejects it even in the open "
                                                   "division")
        elif closed and self.system_type:
            problems.append(rounds.scenario_problem(target, bench, self.system_type, scenario) or "")
        self.add("round", target.name, "; ".join(p for p in problems if p))

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
        from harness.accuracy.report import NOT_SCORED
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
            verdict = judge(scores, bench, int(scores.get("gen_num") or 0), not_scored=NOT_SCORED)
        except HarnessError as exc:
            self.add("accuracy", "-", f"cannot judge: {exc}")
            return
        shown = f"rouge1 {scores.get('rouge1')}"
        if verdict["verdict"] == "FAIL":
            self.add("accuracy", shown, "below target: " + "; ".join(verdict["failed"]))
        elif verdict["verdict"] == "INCOMPLETE":
            self.add("accuracy", shown, "target not judged: " + "; ".join(verdict["failed"]))
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
        offline = self.folder.name == "Offline"  # the scenario decides the first-token check
        problems = [ln for ln in lines if "check pass:" in ln
                    and not ln.endswith("True") and not (offline and ln.endswith("Skipped"))]
        log_path = t6 / layout.ACC_DIR / layout.ACC_LOG
        entries = 0
        try:
            # EOS id: only the run's tokenizer knows; Interactive and Server both check the first token.
            recheck = check_entries(read_accuracy_entries(log_path), None, scenario=self.folder.name)
            entries = recheck.entries
            if recheck.first_token is False or not recheck.sample_length:
                problems.append("re-check of the TEST06 log: " + "; ".join(recheck.lines()[:3]))
        except AccuracyError as exc:
            problems.append(str(exc))
        detail = t6 / layout.PERF_DIR / layout.DETAIL
        if detail.is_file() and not parse_detail_log(detail).get("effective_accuracy_log_sampling_target"):
            problems.append("TEST06 performance run had no audit settings (accuracy_log_sampling_target)")
        self.add("TEST06", f"{entries} responses", "; ".join(problems))


def target_round(name: str | None, base: Path) -> rounds.Round:
    """``--round``, else the installed LoadGen's, else the round of the tree's first result's seeds."""
    from harness.loadgen.logs import parse_detail_log

    if name is not None:
        if name not in rounds.ROUNDS:
            raise SubmissionError(f"--round {name}: unknown round (known: {', '.join(rounds.ROUNDS)})")
        return rounds.ROUNDS[name]
    found = rounds.installed_round()
    details = sorted((base / "results").glob(f"*/*/*/{layout.PERF_DIR}/{layout.DETAIL}"))
    if found is None and details:
        found = rounds.round_of_seeds(rounds.seeds_of_detail(parse_detail_log(details[0])))
    if found is None:
        raise SubmissionError("cannot tell the MLPerf round: the installed LoadGen's seeds and the tree's are of "
                              f"no round the harness knows; pass --round ({', '.join(rounds.ROUNDS)})")
    return found


def _scenario_lines(base: Path, descs: dict[str, dict[str, Any]], target: rounds.Round) -> list[Line]:
    """Closed division: each benchmark has the round's required scenarios for the system's type."""
    lines = []
    for bench_dir in sorted(p for p in (base / "results").glob("*/*") if p.is_dir()):
        system_type = (descs.get(bench_dir.parent.name) or {}).get("system_type")
        if system_type not in rounds.SYSTEM_TYPES or target.benchmark(bench_dir.name) is None:
            continue  # reported on the system and round lines
        present = sorted(d.name for d in bench_dir.iterdir() if d.is_dir())
        missing = rounds.missing_scenarios(target, bench_dir.name, system_type, present)
        lines.append(Line(bench_dir.parent.name, bench_dir.name, "-", "scenarios", ", ".join(present),
                          f"missing {', '.join(missing)}, required by {target.name} for {system_type} systems"
                          if missing else ""))
    return lines


def check_tree(base: Path, round_name: str | None = None) -> list[Line]:
    """Every check of ``<root>/<division>/<submitter>``, against round ``round_name`` (default: see
    ``target_round``)."""
    base = Path(base)
    division = base.parent.name
    if division not in layout.DIVISIONS or not base.is_dir():
        raise SubmissionError(f"{base} is not a submission tree (<root>/closed|open/<submitter>)")
    target = target_round(round_name, base)
    lines = [Line("-", "-", "-", "round", target.name + ("" if round_name else " (installed LoadGen)"))]
    system_lines, descs = check_systems(base, division)
    lines += system_lines
    known = {ln.system for ln in system_lines}
    folders = sorted(p for p in (base / "results").glob("*/*/*") if p.is_dir())
    if not folders:
        lines.append(Line("-", "-", "-", "results", "0 results",
                          f"no results/<system>/<benchmark>/<Scenario> in {base}"))
    for folder in folders:
        system_type = (descs.get(folder.parent.parent.name) or {}).get("system_type")
        checker = ResultChecker(folder, division, target, system_type if system_type in rounds.SYSTEM_TYPES else None)
        if checker.where[0] not in known:
            checker.add("system", checker.where[0], f"systems/{checker.where[0]}.json missing")
        lines += checker.run()
    if division == "closed":
        lines += _scenario_lines(base, descs, target)
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    offline.enforce()  # before anything imports a Hugging Face library
    p = argparse.ArgumentParser(prog=invoked_as("harness-check"),
                                description="Verify an MLPerf Inference submission tree.",
                                epilog="Exit codes: 0 every check holds; 1 a check failed; 2 bad input.")
    p.add_argument("tree", help="the submitter's folder, e.g. submissions/closed/ACME")
    p.add_argument("--round", choices=list(rounds.ROUNDS),
                   help="MLPerf round to check against (default: the round of the installed LoadGen's seeds)")
    args = p.parse_args(argv)
    try:
        lines = check_tree(Path(args.tree), args.round)
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
