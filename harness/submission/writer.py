"""``harness-submit``: turn finished runs into an MLPerf Inference submission tree.

Every run is checked before anything is written: it must be a submission-mode run (performance
and accuracy; TEST06 for LLMs with token latencies) without errors, VALID, with its accuracy
target met, and for the closed division made with official settings (``rules.py``) for a
benchmark and scenario of the round its LoadGen seeds belong to (``rounds.py``). The system
description must give every field the official checker requires (``system.py``). Then each run
becomes ``results/<system>/<benchmark>/<Scenario>/`` and the system ``systems/<system>.json``,
whose hash goes into the manifest of each of the system's results. Existing result folders are
only replaced with ``--force``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import offline
from harness.errors import HarnessError, SubmissionError
from harness.invocation import invoked_as
from harness.submission import accuracy_log, layout, rounds, rules, system
from harness.submission.sources import RunSource, load_run

log = logging.getLogger(__name__)

DEFAULT_ROOT = "submissions"


@dataclass(frozen=True)
class Planned:
    """One run and where it goes."""

    run: RunSource
    dest: Path
    benchmark: str


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=invoked_as("harness-submit"),
        description="Write finished harness runs (mode=submission) into an MLPerf Inference submission tree.",
        epilog="Examples:\n"
               "  harness-submit --submitter ACME --division open --system local runs/2026-11-21/10-00-00_offline_hf\n"
               "  harness-submit --submitter ACME --division closed --system h200_x1 <run dir> <MLflow run id>\n"
               "Closed division needs official runs (benchmark.official=true, full dataset); quick runs go to open.\n"
               "Then: harness-check submissions/closed/ACME",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="run directories or MLflow run ids")
    p.add_argument("--submitter", required=True, help="submitter (organisation) name")
    p.add_argument("--division", required=True, choices=layout.DIVISIONS)
    p.add_argument("--system", help="system id (systems/<id>.json); default: the runs' system.name")
    p.add_argument("--system-config", help="YAML with system fields (like conf/system/h200_x1.yaml) "
                                           "overriding the runs' recorded system config")
    p.add_argument("--root", default=DEFAULT_ROOT, help=f"submission root (default: {DEFAULT_ROOT}/)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI, for run ids")
    p.add_argument("--force", action="store_true", help="replace result folders and system files that exist")
    return p


def system_config(runs: Sequence[RunSource], path: str | None) -> dict[str, Any]:
    """The system fields: the runs' recorded ``system`` section, or ``--system-config``, validated strictly."""
    from harness.config import SystemConfig, build_dataclass

    raw: Any = runs[0].config.get("system") or {}
    if path:
        from omegaconf import OmegaConf

        try:
            loaded = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
        except Exception as exc:  # missing file or bad YAML: one line naming it
            raise SubmissionError(f"--system-config {path}: {exc}") from exc
        if not isinstance(loaded, dict):
            raise SubmissionError(f"--system-config {path}: expected a mapping of system fields")
        raw = {**raw, **loaded}
    try:
        return dataclasses.asdict(build_dataclass(SystemConfig, system.normalise_config(raw), "system"))
    except HarnessError as exc:
        raise SubmissionError(f"{path or 'system config of ' + runs[0].label}: {exc}") from exc


def run_problems(run: RunSource, division: str) -> list[str]:
    """Why ``run`` cannot be written into ``division`` (empty when it can)."""
    from harness.loadgen.logs import parse_detail_log

    r, problems = run.results, []
    if r.mode != "submission":
        return [f"mode={r.mode} run: a submission needs mode=submission (performance, accuracy, TEST06)"]
    if r.errors or r.loadgen_errors:
        problems.append(f"{r.errors} failed samples, {r.loadgen_errors} LoadGen errors")
    if r.valid is not True:
        problems.append("performance INVALID: " + "; ".join(r.invalid_reasons or ["no verdict"]))
    acc = r.accuracy
    if acc is not None and acc.verdict in ("FAIL", "INCOMPLETE"):
        problems.append(f"accuracy {acc.verdict}: " + "; ".join(acc.failed))
    elif not acc:  # null, or an empty section
        problems.append("no accuracy result")
    needs_test06 = rules.uses_token_latencies(r.model_key)
    test06 = r.extra.compliance.get("TEST06")
    if needs_test06 and test06 is None:
        problems.append("no TEST06 compliance run (rerun with run.compliance=true, or benchmark.official=true)")
    elif test06 is not None and not test06.passed:
        problems.append("TEST06 failed: " + "; ".join(test06.lines))
    for f in ("performance/mlperf_log_detail.txt", "accuracy/mlperf_log_accuracy.json", "user.conf"):
        if not (run.path / f).is_file():
            problems.append(f"{f} missing")
    if division == "closed" and not problems:
        problems += rules.closed_problems(_run_facts(run), parse_detail_log(run.path / "performance" / layout.DETAIL),
                                          (run.path / "user.conf").read_text(encoding="utf-8"))
    return problems


def run_round(run: RunSource) -> rounds.Round | None:
    """The round the run's LoadGen seeds (performance detail log) belong to."""
    from harness.loadgen.logs import parse_detail_log

    detail = run.path / "performance" / layout.DETAIL
    return rounds.round_of_seeds(rounds.seeds_of_detail(parse_detail_log(detail))) if detail.is_file() else None


def round_problems(run: RunSource, benchmark: str, division: str, system_type: str | None) -> tuple[list[str], str]:
    """(why the closed division refuses the run, a warning for the open division) for its round."""
    if not (run.path / "performance" / layout.DETAIL).is_file():
        return [], ""  # reported by run_problems
    rnd = run_round(run)
    if rnd is None:
        why = "its LoadGen seeds belong to no MLPerf round the harness knows"
        return ([why], "") if division == "closed" else ([], f"{run.label}: warning: {why}")
    if division == "open":
        problem = rounds.benchmark_problem(rnd, benchmark, None)
        return [], (f"{run.label}: warning: {problem}: the official {rnd.name} checker rejects it, even in the "
                    "open division" if problem else "")
    problem = (rounds.benchmark_problem(rnd, benchmark, system_type)
               or rounds.scenario_problem(rnd, benchmark, str(system_type), layout.SCENARIO_DIRS.get(run.scenario, "")))
    return ([problem] if problem else []), ""


def _run_facts(run: RunSource) -> dict[str, Any]:
    from harness.results import approximate_token_tests

    bench, r = run.config.get("benchmark") or {}, run.results
    return {"official": r.official, "model_key": r.model_key, "dataset_samples": r.dataset.samples,
            "official_sample_count": bench.get("official_sample_count"),
            "approximate_token_tests": approximate_token_tests(r.extra)}


def _judged_benchmark(run: RunSource) -> dict[str, Any]:
    """The run's benchmark config with its reference scores resolved (a reference run is not in the tree)."""
    bench = dict(run.config.get("benchmark") or {})
    if bench.get("accuracy_reference_run"):
        checks = run.results.accuracy.checks if run.results.accuracy is not None else ()
        bench["accuracy_reference"] = {c.metric: c.reference for c in checks if c.metric.startswith("rouge")}
        bench["accuracy_reference_run"] = None
    return bench


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)


def _measurements(run: RunSource) -> dict[str, Any]:
    sut = run.config.get("sut") or {}
    return {"input_data_types": "int32 token ids", "retraining": "No",
            "starting_weights_filename": sut.get("model_path") or f"sut={sut.get('name')} (no weights file)",
            "weight_data_types": sut.get("dtype") or "as served by the SUT",
            "weight_transformations": "none"}


def _readme(run: RunSource, planned: Planned, division: str) -> str:
    env = run.environment or {}
    harness = env.get("harness") or {}
    rerun = (env.get("command") or {}).get("rerun")
    r = run.results
    settings = "official settings (mlperf.conf unchanged)" if r.official else \
        "quick settings (shortened; open division only)"
    return "\n".join([
        f"# {planned.benchmark} {planned.dest.name} ({division})", "",
        f"Measured with harness {harness.get('version', r.harness_version)}"
        f" (git {harness.get('git_commit') or 'unknown'}{', uncommitted changes' if harness.get('git_dirty') else ''}),"
        f" MLPerf LoadGen {r.loadgen_version}, {settings}.", "",
        "## Reproduce", "", "```bash",
        rerun or "# no environment.json in the run directory: the exact command was not recorded",
        "```", "",
        f"Source run: `{run.label}`; scenario `{run.scenario}`, SUT `{r.sut}`, "
        f"dataset {r.dataset.samples} samples (sha256 {(r.dataset.fingerprint or '')[:16]}).", ""])


def write_result(run: RunSource, planned: Planned, division: str) -> None:
    src, dest = run.path, planned.dest
    dest.mkdir(parents=True)
    for test, target in (("performance", layout.PERF_DIR), ("accuracy", layout.ACC_DIR),
                         ("TEST06", f"{layout.TEST06_DIR}/{layout.PERF_DIR}")):
        for name in (layout.DETAIL, layout.SUMMARY):
            if (src / test / name).is_file():
                _copy(src / test / name, dest / target / name)
    full_log = src / "accuracy" / layout.ACC_LOG
    acc = dest / layout.ACC_DIR
    _copy(src / "accuracy" / layout.ACC_TXT, acc / layout.ACC_TXT)
    accuracy_log.truncate(full_log, acc / layout.ACC_LOG)
    if (src / "TEST06").is_dir():
        _copy(src / "TEST06" / layout.VERIFY, dest / layout.TEST06_DIR / layout.VERIFY)
        _copy(src / "TEST06" / layout.ACC_LOG, dest / layout.TEST06_DIR / layout.ACC_DIR / layout.ACC_LOG)
    _copy(src / layout.USER_CONF, dest / layout.USER_CONF)
    (dest / layout.MEASUREMENTS).write_text(json.dumps(_measurements(run), indent=2) + "\n")
    (dest / layout.README).write_text(_readme(run, planned, division))
    env_harness = (run.environment or {}).get("harness") or {}
    rnd = run_round(run)
    manifest = {
        "source_run": str(run.path.resolve()), "mlflow_run_id": run.mlflow_run_id,
        "harness_version": run.results.harness_version, "git_commit": env_harness.get("git_commit"),
        "scenario": run.scenario, "round": rnd.name if rnd else None, **_run_facts(run),
        "benchmark": _judged_benchmark(run),
        "accuracy_log": {"sha256": accuracy_log.sha256(full_log), "bytes": full_log.stat().st_size,
                         "kept_bytes": accuracy_log.KEEP_BYTES},
        "files": {str(p.relative_to(dest)): accuracy_log.sha256(p) for p in sorted(dest.rglob("*")) if p.is_file()},
    }
    (dest / layout.MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def record_system_hash(tree: layout.Tree, system_id: str) -> None:
    """Put the system file's sha256 into the manifest of every result of that system, so
    harness-check can tell a hand edit of ``systems/<id>.json`` from what harness-submit wrote."""
    digest = accuracy_log.sha256(tree.system_file(system_id))
    for path in sorted((tree.base / "results" / system_id).glob(f"*/*/{layout.MANIFEST}")):
        manifest = json.loads(path.read_text(encoding="utf-8"))
        manifest["system_file"] = {"path": f"systems/{system_id}.json", "sha256": digest}
        path.write_text(json.dumps(manifest, indent=2) + "\n")


def missing_scenario_notes(tree: layout.Tree, system_id: str, plan: Sequence[Planned], system_type: str) -> list[str]:
    """Warnings for the closed division: required scenarios of a submitted benchmark not in the tree."""
    notes = []
    for bench in sorted({p.benchmark for p in plan}):
        rnd = next((r for r in map(run_round, (p.run for p in plan if p.benchmark == bench)) if r), None)
        folder = tree.base / "results" / system_id / bench
        present = {d.name for d in folder.iterdir() if d.is_dir()} if folder.is_dir() else set()
        present |= {p.dest.name for p in plan if p.benchmark == bench}
        missing = rounds.missing_scenarios(rnd, bench, system_type, present) if rnd else []
        if missing:
            notes.append(f"warning: {bench} on {system_id} lacks {', '.join(missing)}, required by {rnd.name} "
                         f"for {system_type} systems in the closed division (add the run, or the official checker "
                         "rejects the benchmark)")
    return notes


def _version(run: RunSource) -> str:
    h = (run.environment or {}).get("harness") or {}
    return f"harness {h.get('version') or run.results.harness_version} at git {h.get('git_commit') or 'unknown'}"


def write_src(tree: layout.Tree, runs: Sequence[RunSource]) -> None:
    versions = sorted({_version(r) for r in runs})
    src = tree.src_dir
    src.mkdir(parents=True, exist_ok=True)
    (src / "README.md").write_text("# Source\n\nThese results were measured with the LLM inference harness "
                                   "(MLPerf LoadGen driven by `harness`):\n\n" + "".join(f"- {v}\n" for v in versions))


def submit(refs: Sequence[str], *, submitter: str, division: str, system_id: str | None = None,
           system_config_path: str | None = None, root: str = DEFAULT_ROOT, tracking_uri: str | None = None,
           force: bool = False) -> tuple[Path, list[str]]:
    """Write the tree; returns its base folder and notes for the user. Raises SubmissionError."""
    tree = layout.Tree(Path(root), division, submitter)
    if system_id is not None:
        layout.safe_name("system", system_id)
    runs = [load_run(ref, tracking_uri) for ref in refs]
    sys_cfg = system_config(runs, system_config_path)
    system_id = system_id or sys_cfg["name"]
    desc = system.describe(sys_cfg, runs[0].environment, division, submitter)
    unset = system.unset_fields(desc)
    if unset:
        raise SubmissionError(f"systems/{system_id}.json: no value for {', '.join(unset)} (the official checker "
                              "requires each; set them in the system config, e.g. conf/system/<id>.yaml, or pass "
                              "--system-config; write \"N/A\" where one does not apply)")
    problems, plan, notes = [], [], []
    for run in runs:
        bench = layout.safe_name("benchmark", (run.config.get("benchmark") or {}).get("submission_name", ""))
        why = run_problems(run, division)
        closed_round, open_warning = round_problems(run, bench, division, sys_cfg.get("system_type"))
        why += closed_round
        if why:
            hint = " Quick runs may only go to the open division (--division open)." \
                if division == "closed" and not run.results.official else ""
            problems.append(f"{run.label} cannot go to the {division} division: {'; '.join(why)}.{hint}")
            continue
        if not run.results.official:
            notes.append(f"{run.label}: quick settings, open division only")
        if open_warning:
            notes.append(open_warning)
        plan.append(Planned(run, tree.result_dir(system_id, bench, run.scenario), bench))
    if problems:
        raise SubmissionError("\n".join(problems))
    dests = [p.dest for p in plan]
    if len(set(dests)) != len(dests):
        raise SubmissionError("two runs go to the same result folder (same benchmark and scenario)")
    existing = [d for d in [*dests, tree.system_file(system_id)] if d.exists()]
    if existing and not force:
        raise SubmissionError(f"{existing[0]} exists; pass --force to replace it")
    for d in existing:
        shutil.rmtree(d) if d.is_dir() else d.unlink()
    sys_file = tree.system_file(system_id)
    sys_file.parent.mkdir(parents=True, exist_ok=True)
    sys_file.write_text(json.dumps(desc, indent=2) + "\n")
    for p in plan:
        write_result(p.run, p, division)
    record_system_hash(tree, system_id)
    write_src(tree, runs)
    if division == "closed":
        notes += missing_scenario_notes(tree, system_id, plan, str(sys_cfg.get("system_type")))
    return tree.base, notes + [f"wrote {p.dest}" for p in plan]


def main(argv: Sequence[str] | None = None) -> None:
    offline.enforce()  # before anything imports a Hugging Face library
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        base, notes = submit(args.runs, submitter=args.submitter, division=args.division, system_id=args.system,
                             system_config_path=args.system_config, root=args.root,
                             tracking_uri=args.tracking_uri, force=args.force)
    except HarnessError as exc:
        sys.stderr.write("".join(f"error: {line}\n" for line in str(exc).splitlines()))
        sys.exit(exc.exit_code)
    sys.stdout.write("".join(f"{n}\n" for n in notes) + f"submission tree: {base}\ncheck it: harness-check {base}\n")
    sys.exit(0)


if __name__ == "__main__":
    main()
