"""``harness-compare``: runs from MLflow side by side, deltas against a baseline, a CI gate.

Runs are selected by experiment, by round (a multirun's parent run), by id and by tag/param/
metric filters. The table shows the schema's key metrics and the params that differ; with
``--baseline`` every cell carries its change against it, and ``--fail-on-regression 5%``
exits 1 when a throughput metric drops, or a latency metric rises, by more than 5% (or a run
FAILED). ``--report [DIR]`` writes PNG charts and one self-contained HTML page (default: a new
folder under ``runs/reports/``). Run ids may be unique prefixes (the table shows 8 characters);
a table wider than the terminal shows the runs as rows.

Exit codes: 0 ok; 1 regression beyond the threshold; 2 bad arguments, unknown runs or store.
"""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness import offline
from harness.errors import HarnessError, TrackingError
from harness.invocation import invoked_as
from harness.tracking import schema
from harness.tracking.view import RunView

# Gated unless --metric says otherwise: throughput must not drop, tail latencies must not rise.
DEFAULT_GATE = ("tokens_per_second", "samples_per_second", "ttft_p99_ms", "tpot_p99_ms", "latency_p99_ms")
# Shown even when equal across runs (other metrics and params only when they differ, or --all).
KEY_METRICS = DEFAULT_GATE + ("rouge1", "rouge2", "rougeL", "rougeLsum")
IDENTITY_TAGS = ("scenario", "sut", "mode", "validity", "accuracy_verdict")
HIDDEN_PARAMS = ("dataset.path",)  # long and machine-specific; still in MLflow
PARENT_ROLES = ("round", "peak")  # parent runs (harness -m, harness-peak): their children are compared
REPORT_DEFAULT = Path("runs/reports")  # --report without DIR: a new <date>/<time> folder under it
EXIT_OK, EXIT_REGRESSION, EXIT_USAGE = 0, 1, 2


@dataclass(frozen=True)
class Regression:
    run: RunView
    metric: str
    baseline: float | None
    value: float | None
    change_pct: float | None

    def __str__(self) -> str:
        if self.metric == "status":
            return f"regression: {self.run.label} {self.run.status}"
        if self.metric == "validity":
            return f"regression: {self.run.label} {self.run.tags.get('validity')} (baseline VALID)"
        return (f"regression: {self.run.label} {self.metric} {fmt(self.baseline)} -> {fmt(self.value)} "
                f"({self.change_pct:+.1f}%)")


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.2f}" if abs(value) >= 1 else f"{value:.4f}"


def change_pct(value: float | None, baseline: float | None) -> float | None:
    if value is None or baseline is None or baseline == 0:
        return None
    return (value - baseline) / abs(baseline) * 100


def threshold(text: str) -> float:
    """``5%`` or ``5`` -> 5.0 (percent)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*%?\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"expected a percentage such as 5% or 2.5, got {text!r}")
    return float(match.group(1))


def filter_expr(text: str) -> str:
    """``scenario=server`` (tag), ``sut.max_batch_size=8`` (param), ``tokens_per_second>1000``
    (metric) or any MLflow filter (``tags.sut = 'echo'``) -> an MLflow search filter."""
    if re.match(r"\s*(tags|params|metrics|attributes|attribute|run|tag|param|metric)\.", text):
        return text
    match = re.fullmatch(r"\s*([\w.\-]+)\s*(!=|>=|<=|=|>|<)\s*(.*?)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"cannot read filter {text!r}: use key=value or MLflow's syntax")
    key, op, value = match.groups()
    value = value.strip("'\"")
    if key in schema.METRICS_BY_NAME:
        return f"metrics.{key} {op} {float(value)}"
    kind = "params" if "." in key else "tags"
    return f"{kind}.`{key}` {op} '{value}'"


def select(client, *, run_ids: Sequence[str] = (), experiment: str | None = None, round_id: str | None = None,
           filters: Sequence[str] = (), max_runs: int = 200) -> list[RunView]:
    """Runs by id, then those of the experiment/round matching every filter (oldest first).

    Run ids may be unique prefixes (the table shows 8 characters). A round's or peak search's own
    parent run is left out of searches (it has no benchmark run of its own: its children are the runs),
    and so is a round job's run that a resume superseded (tag ``superseded_by``).
    """
    from harness.tracking.store import resolve_run_id

    views = [RunView.of(client.get_run(resolve_run_id(client, run_id))) for run_id in run_ids]
    if round_id:
        round_id = resolve_run_id(client, round_id)
    experiment_ids: list[str] = []
    clauses = list(filters)
    if round_id:
        experiment_ids.append(client.get_run(round_id).info.experiment_id)
        clauses.append(f"tags.mlflow.parentRunId = '{round_id}'")
    if experiment:
        found = client.get_experiment_by_name(experiment)
        if found is None:
            raise LookupError(f"no experiment named {experiment!r}")
        experiment_ids.append(found.experiment_id)
    if experiment_ids:
        runs = client.search_runs(sorted(set(experiment_ids)), filter_string=" and ".join(clauses),
                                  max_results=max_runs, order_by=["attributes.start_time ASC"])
        seen = {v.run_id for v in views}
        # A round's job that a resume ran again (tag superseded_by): its later run stands for it.
        views += [RunView.of(r) for r in runs if r.data.tags.get("role") not in PARENT_ROLES
                  and "superseded_by" not in r.data.tags and r.info.run_id not in seen]
    return views


def table_rows(runs: Sequence[RunView], baseline: RunView | None = None, show_all: bool = False) -> list[list[str]]:
    """Rows of the side-by-side table: a header, identity tags, params that differ, metrics."""
    rows = [["", *(("* " if baseline is not None and r.run_id == baseline.run_id else "") + r.label for r in runs)],
            ["status", *(r.status for r in runs)]]
    for tag in IDENTITY_TAGS:
        values = [r.tags.get(tag, "-") for r in runs]
        if any(v != "-" for v in values):
            rows.append([tag, *values])
    for key in sorted({k for r in runs for k in r.params} - set(HIDDEN_PARAMS)):
        values = [r.params.get(key, "-") for r in runs]
        if show_all or len(set(values)) > 1:
            rows.append([key, *values])
    for metric in schema.METRICS:
        values = [r.metrics.get(metric.name) for r in runs]
        if all(v is None for v in values):
            continue
        if not (show_all or metric.name in KEY_METRICS or len(set(values)) > 1):
            continue
        cells = []
        for run, value in zip(runs, values, strict=True):
            cell = fmt(value)
            delta = change_pct(value, baseline.metrics.get(metric.name)) if baseline is not None else None
            if delta is not None and run.run_id != baseline.run_id:
                cell += f" ({delta:+.1f}%)"
            cells.append(cell)
        rows.append([f"{metric.name} [{metric.unit}]", *cells])
    return rows


def render(rows: Sequence[Sequence[str]]) -> str:
    """The table with one column per run (``rows`` as :func:`table_rows` makes them)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths,
                                                                                                      strict=True)))
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def render_runs_as_rows(rows: Sequence[Sequence[str]], width: int) -> str:
    """The same table with one row per run, its fields split into blocks no wider than ``width``
    (each block starts with the run's name)."""
    header, body = rows[0], rows[1:]
    runs = [["run", *(row[0] for row in body)]]
    runs += [[header[j], *(row[j] for row in body)] for j in range(1, len(header))]
    widths = [max(len(cell) for cell in column) for column in zip(*runs, strict=True)]
    blocks: list[list[int]] = [[]]
    used = widths[0]
    for j in range(1, len(widths)):
        if blocks[-1] and used + 2 + widths[j] > width:
            blocks.append([])
            used = widths[0]
        blocks[-1].append(j)
        used += 2 + widths[j]
    text = []
    for block in blocks:
        cols = [0, *block]
        lines = ["  ".join(runs[i][0].ljust(widths[0]) if j == 0 else runs[i][j].rjust(widths[j])
                           for j in cols) for i in range(len(runs))]
        lines.insert(1, "  ".join("-" * widths[j] for j in cols))
        text.append("\n".join(line.rstrip() for line in lines))
    return "\n\n".join(text)


def fit(rows: Sequence[Sequence[str]], width: int, columns: bool = False) -> str:
    """Runs as columns when they fit ``width`` (or ``columns``), else runs as rows."""
    table = render(rows)
    if columns or max(len(line) for line in table.splitlines()) <= width:
        return table
    return render_runs_as_rows(rows, width)


def regressions(runs: Sequence[RunView], baseline: RunView, limit_pct: float,
                metrics: Sequence[str] = DEFAULT_GATE) -> list[Regression]:
    """Throughput drops / latency rises beyond ``limit_pct`` against the baseline, FAILED runs, and runs
    whose verdict is no longer VALID when the baseline's was."""
    found = []
    for run in runs:
        if run.run_id == baseline.run_id:
            continue
        if run.status == "FAILED":
            found.append(Regression(run, "status", None, None, None))
        elif baseline.tags.get("validity") == "VALID" and run.tags.get("validity") in ("INVALID", "BEHIND", "FAILED"):
            # harness.verdict: a run that is no longer a result regressed, whatever its figures say.
            found.append(Regression(run, "validity", None, None, None))
        for name in metrics:
            delta = change_pct(run.metrics.get(name), baseline.metrics.get(name))
            if delta is None:
                continue
            worse = -delta if schema.METRICS_BY_NAME[name].better == "higher" else delta
            if worse > limit_pct:
                found.append(Regression(run, name, baseline.metrics[name], run.metrics[name], delta))
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=invoked_as("harness-compare"),
        description="Compare harness runs logged to MLflow: a side-by-side table of key metrics and the "
                    "params that differ, deltas against a baseline, and a regression gate for CI.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="""examples:
  harness-compare --experiment harness                      every run of the experiment
  harness-compare --round 3f2a                              the jobs of one round or harness-peak search
                                                            (its parent run id)
  harness-compare --experiment harness --filter scenario=server --filter sut.max_batch_size=8
  harness-compare RUN_A RUN_B --baseline RUN_A              deltas in % against RUN_A
  harness-compare --round 3f2a... --baseline 9c1d... --fail-on-regression 5%
  harness-compare --round 3f2a --report --log-to 3f2a   PNG charts + report.html in runs/reports/..., logged

run ids: any unique prefix, e.g. the 8 characters the table shows.

filters: key=value on a tag (scenario, sut, mode, validity, ...), a dotted key on a param
(sut.max_batch_size=8), a metric name with =, <, > (tokens_per_second>1000), or MLflow's own
syntax ("tags.sut = 'echo'"). Several filters must all hold.

metrics (fixed schema): """ + ", ".join(m.name for m in schema.METRICS) + """

exit codes: 0 ok; 1 a gated metric regressed beyond the threshold (or a run FAILED);
2 bad arguments, unknown experiment/run, or the store cannot be reached.""")
    parser.add_argument("run_ids", nargs="*", metavar="RUN_ID", help="runs to compare, by MLflow run id")
    parser.add_argument("--tracking-uri", help="MLflow store (default: MLFLOW_TRACKING_URI, else the harness's "
                        "local store sqlite:///runs/mlflow.db)")
    parser.add_argument("--experiment", help="compare the runs of this experiment (name)")
    parser.add_argument("--round", dest="round_id", metavar="PARENT_RUN_ID",
                        help="compare the jobs of this round (a multirun's or harness-peak's parent run)")
    parser.add_argument("--filter", dest="filters", action="append", default=[], type=filter_expr,
                        metavar="EXPR", help="keep runs matching EXPR (repeatable; see below)")
    parser.add_argument("--baseline", metavar="RUN_ID", help="show %% change of every run against this run")
    parser.add_argument("--fail-on-regression", type=threshold, metavar="PCT",
                        help="exit 1 when a gated metric is worse than the baseline by more than PCT (e.g. 5%%)")
    parser.add_argument("--metric", dest="gate", action="append", metavar="NAME",
                        help=f"metric the gate checks (repeatable; default: {', '.join(DEFAULT_GATE)})")
    parser.add_argument("--all", action="store_true", help="show every param and metric, not only those that differ")
    parser.add_argument("--columns", action="store_true",
                        help="one column per run even when the table is wider than the terminal (otherwise "
                             "runs become rows when they do not fit)")
    parser.add_argument("--report", type=Path, metavar="DIR", nargs="?", const=REPORT_DEFAULT,
                        help="write PNG charts and report.html into DIR (default: runs/reports/<date>/<time>)")
    parser.add_argument("--log-to", metavar="RUN_ID", help="log the report as artifacts (report/) of this run, "
                        "e.g. the round's parent")
    parser.add_argument("--max-runs", type=int, default=200, help="at most this many searched runs (default 200)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    offline.enforce()  # before anything imports a Hugging Face library
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if not (args.run_ids or args.experiment or args.round_id):
        parser.error("select runs: RUN_ID ..., --experiment NAME or --round PARENT_RUN_ID")
    if args.fail_on_regression is not None and not args.baseline:
        parser.error("--fail-on-regression needs --baseline RUN_ID")
    gate = tuple(args.gate or DEFAULT_GATE)
    for name in gate:
        if name not in schema.METRICS_BY_NAME or schema.METRICS_BY_NAME[name].better is None:
            parser.error(f"--metric {name}: not a metric with a direction "
                         f"({', '.join(m.name for m in schema.METRICS if m.better)})")
    try:
        return _compare(args, gate)
    except (HarnessError, LookupError) as exc:  # the store (TrackingError), a run id (RunIdError), no runs
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_USAGE


def _compare(args: argparse.Namespace, gate: tuple[str, ...]) -> int:
    from harness.tracking.store import client, default_uri, resolve_run_id, resolve_uri, short, shown

    uri = resolve_uri(args.tracking_uri or default_uri())
    mlflow_client = client(uri)
    try:
        runs = select(mlflow_client, run_ids=args.run_ids, experiment=args.experiment, round_id=args.round_id,
                      filters=args.filters, max_runs=args.max_runs)
        baseline = None
        if args.baseline:
            baseline_id = resolve_run_id(mlflow_client, args.baseline)
            baseline = next((r for r in runs if r.run_id == baseline_id), None)
            if baseline is None:
                baseline = RunView.of(mlflow_client.get_run(baseline_id))
                runs = [baseline, *runs]
            else:  # the baseline is the first column
                runs = [baseline, *(r for r in runs if r.run_id != baseline.run_id)]
        log_to = resolve_run_id(mlflow_client, args.log_to) if args.log_to else None
        parent = mlflow_client.get_run(resolve_run_id(mlflow_client, args.round_id)) if args.round_id else None
    except (LookupError, HarnessError):
        raise
    except Exception as exc:  # unreachable store, bad filter: all MLflow errors
        raise TrackingError(f"{shown(uri)}: {short(exc)}") from exc
    if not runs:
        raise LookupError("no runs match the selection")

    rows = table_rows(runs, baseline, args.all)
    table = render(rows)
    sys.stdout.write(fit(rows, shutil.get_terminal_size((120, 24)).columns, args.columns) + "\n")
    found: list[Regression] = []
    verdict = ""
    if args.fail_on_regression is not None and baseline is not None:
        found = regressions(runs, baseline, args.fail_on_regression, gate)
        verdict = "\n".join(map(str, found)) if found else (
            f"no regression beyond {args.fail_on_regression:g}% in {len(runs) - 1} runs against {baseline.label}")
        sys.stdout.write(verdict + "\n")
    if args.report or log_to:
        from harness.tracking.report import write_report

        out = args.report or Path(tempfile.mkdtemp(prefix="harness-compare-"))
        if args.report == REPORT_DEFAULT:
            out = REPORT_DEFAULT / time.strftime("%Y-%m-%d") / time.strftime("%H-%M-%S")
        context = report_context(args, runs, baseline, parent, shown(uri))
        files = write_report(out, runs, table, verdict, baseline, context)
        sys.stdout.write(f"report: {out / 'report.html'} ({len(files)} files)\n")
        if log_to:
            try:
                for path in files:
                    mlflow_client.log_artifact(log_to, str(path), "report")
            except Exception as exc:
                raise TrackingError(f"cannot log the report to run {log_to}: {short(exc)}") from exc
            sys.stdout.write(f"report logged to run {log_to} (report/)\n")
    return EXIT_REGRESSION if found else EXIT_OK


def _date(ms: int | None) -> str:
    return "?" if ms is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(ms / 1000))


def report_context(args: argparse.Namespace, runs: Sequence[RunView], baseline: RunView | None, parent,
                   store: str):
    """What report.html says was compared: the round (name, date, command), the runs' dates, the
    baseline, the store and the command that made the report."""
    from harness.tracking.report import Context

    facts: list[tuple[str, str]] = []
    if parent is not None:
        what = f"{parent.info.run_name} ({parent.info.run_id})"
        title = f"harness-compare: {parent.info.run_name}"
        facts.append(("round", what))
        if parent.data.tags.get("command"):
            facts.append(("round command", parent.data.tags["command"]))
        facts.append(("round date", _date(parent.info.start_time)))
    elif args.experiment:
        title = f"harness-compare: experiment {args.experiment}"
        facts.append(("experiment", args.experiment))
    else:
        title = f"harness-compare: {len(runs)} runs"
    starts = [r.start_time for r in runs if r.start_time is not None]
    span = f", {_date(min(starts))} to {_date(max(starts))}" if starts else ""
    facts.append(("runs", f"{len(runs)}{span}"))
    if args.filters:
        facts.append(("filters", " and ".join(args.filters)))
    facts.append(("baseline", baseline.label if baseline is not None else "none"))
    facts.append(("store", store))
    facts.append(("command", shlex.join(["harness-compare", *(args.argv or [])])))
    facts.append(("written", time.strftime("%Y-%m-%d %H:%M")))
    return Context(title, tuple(facts))


if __name__ == "__main__":
    sys.exit(main())
