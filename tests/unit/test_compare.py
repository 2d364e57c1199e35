"""harness-compare's pure parts: filters, thresholds, the table, deltas and the regression gate."""

import argparse

import pytest

from harness.compare import filter_expr, fmt, regressions, render, table_rows, threshold
from harness.tracking.view import RunView


def view(run_id: str, status: str = "FINISHED", params=None, **metrics) -> RunView:
    return RunView(run_id * 4, run_id, status, params or {"sut.max_batch_size": "8"}, metrics,
                   {"scenario": "server", "sut": "echo"})


BASE = view("base", tokens_per_second=1000.0, ttft_p99_ms=100.0, errors=0.0)


def test_filters_map_shorthands_to_mlflow_syntax():
    assert filter_expr("scenario=server") == "tags.`scenario` = 'server'"
    assert filter_expr("sut.max_batch_size=8") == "params.`sut.max_batch_size` = '8'"
    assert filter_expr("tokens_per_second>1000") == "metrics.tokens_per_second > 1000.0"
    assert filter_expr("tags.sut = 'echo'") == "tags.sut = 'echo'"
    with pytest.raises(argparse.ArgumentTypeError):
        filter_expr("what is this")


def test_threshold_reads_percentages():
    assert threshold("5%") == 5.0 and threshold("2.5") == 2.5
    with pytest.raises(argparse.ArgumentTypeError):
        threshold("five")


def test_fmt():
    assert (fmt(26088.9), fmt(32.0), fmt(5.123), fmt(0.12345), fmt(None)) == ("26,088.9", "32", "5.12", "0.1235", "-")


def test_table_shows_key_metrics_differing_params_and_deltas():
    other = view("fast", params={"sut.max_batch_size": "16"}, tokens_per_second=1100.0, ttft_p99_ms=90.0,
                 errors=0.0)
    text = render(table_rows([BASE, other], baseline=BASE))
    lines = {line.split()[0]: line for line in text.splitlines() if line.strip()}
    assert "* base (basebase" in text and "fast (fastfast)" in text
    assert lines["sut.max_batch_size"].split()[1:] == ["8", "16"]
    assert lines["tokens_per_second"].split()[-3:] == ["1,000", "1,100", "(+10.0%)"]
    assert lines["ttft_p99_ms"].split()[-3:] == ["100", "90", "(-10.0%)"]
    assert "errors" not in lines  # equal everywhere and not a key metric
    assert "errors" in {line.split()[0] for line in render(table_rows([BASE, other], show_all=True)).splitlines()}


def test_gate_catches_throughput_drops_latency_rises_and_failed_runs():
    within = view("ok", tokens_per_second=960.0, ttft_p99_ms=104.0)
    slower = view("slow", tokens_per_second=900.0, ttft_p99_ms=100.0)
    laggy = view("lag", tokens_per_second=1000.0, ttft_p99_ms=120.0)
    failed = view("fail", status="FAILED")
    found = regressions([BASE, within, slower, laggy, failed], BASE, 5.0)
    assert {(r.run.name, r.metric) for r in found} == {("slow", "tokens_per_second"), ("lag", "ttft_p99_ms"),
                                                      ("fail", "status")}
    assert "tokens_per_second 1,000 -> 900 (-10.0%)" in str(next(r for r in found if r.run.name == "slow"))
    assert regressions([BASE, within, slower, laggy], BASE, 25.0) == []
    assert regressions([BASE, slower], BASE, 5.0, metrics=["ttft_p99_ms"]) == []


def test_report_charts_latency_against_target_qps_when_the_runs_differ_in_it(tmp_path):
    from harness.tracking.report import write_report

    def run(name: str, qps: str, ttft: float, validity: str) -> RunView:
        params = {"scenario.target_qps": qps, "scenario.ttft_ms": "null", "scenario.latency_limits": "server",
                  "benchmark.latency.server.ttft_ms": "2000", "benchmark.latency.server.tpot_ms": "100"}
        return RunView(name * 4, name, "FINISHED", params, {"ttft_p99_ms": ttft, "tpot_p99_ms": 20.0,
                                                            "tokens_per_second": 100.0}, {"validity": validity})

    sweep = [run("a", "1.0", 300.0, "VALID"), run("b", "2.0", 900.0, "VALID"), run("c", "4.0", 4000.0, "INVALID")]
    files = {p.name for p in write_report(tmp_path / "sweep", sweep, "table")}
    assert "latency_vs_target_qps.png" in files
    assert (tmp_path / "sweep" / "latency_vs_target_qps.png").read_bytes()[:4] == b"\x89PNG"
    same = [run("a", "2.0", 300.0, "VALID"), run("b", "2.0", 310.0, "VALID")]
    assert "latency_vs_target_qps.png" not in {p.name for p in write_report(tmp_path / "same", same, "table")}


def test_a_run_that_is_no_longer_valid_is_a_regression_whatever_its_figures():
    def judged(run_id: str, validity: str) -> RunView:
        return RunView(run_id * 4, run_id, "FINISHED", {}, {"tokens_per_second": 1000.0},
                       {"scenario": "server", "validity": validity})

    base, behind, failed = judged("base", "VALID"), judged("bhnd", "BEHIND"), judged("fail", "FAILED")
    found = regressions([base, behind, failed, judged("same", "VALID")], base, 5.0)
    assert [str(r) for r in found] == ["regression: bhnd (bhndbhnd) BEHIND (baseline VALID)",
                                       "regression: fail (failfail) FAILED (baseline VALID)"]
    assert regressions([judged("inv", "INVALID")], judged("b2", "INVALID"), 5.0) == []


def test_a_table_too_wide_for_the_terminal_shows_runs_as_rows_in_blocks_that_fit():
    from harness.compare import fit

    runs = [view(f"r{i:02d}", params={"sut.max_batch_size": str(i)}, tokens_per_second=1000.0 + i,
                 ttft_p99_ms=100.0 + i) for i in range(25)]
    rows = table_rows(runs, baseline=runs[0])
    wide = render(rows)
    assert max(map(len, wide.splitlines())) > 300
    assert fit(rows, max(map(len, wide.splitlines()))) == wide  # fits: one column per run
    assert fit(rows, 80, columns=True) == wide  # --columns
    text = fit(rows, 80)
    lines = text.splitlines()
    assert max(map(len, lines)) <= 80
    blocks = text.split("\n\n")
    assert len(blocks) >= 2 and all(block.splitlines()[0].startswith("run ") for block in blocks)
    assert lines[2].startswith("* r00 (r00r00r0")
    assert sum(line.startswith("r24 (r24r24r2") for line in lines) == len(blocks)
    # every cell is still there
    assert all(f"{1000 + i:,}" in text for i in range(25)) and "sut.max_batch_size" in text
