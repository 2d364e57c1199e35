"""Which runs the compare charts join, which charts are drawn, and what report.html names."""

from harness.tracking.report import Context, find_sweeps, write_report
from harness.tracking.view import RunView

LIMITS = {"scenario.latency_limits": "server", "scenario.ttft_ms": "null", "benchmark.latency.server.ttft_ms": "2000",
          "benchmark.latency.server.tpot_ms": "100"}


def run(name: str, verdict: str = "VALID", metrics=None, **params) -> RunView:
    figures = {"tokens_per_second": 100.0, "samples_per_second": 1.0, "ttft_p99_ms": 50.0, "tpot_p99_ms": 5.0,
               "latency_p99_ms": 700.0} if metrics is None else metrics
    base = {"scenario.name": "server", "scenario.target_qps": "10", "scenario.min_duration_s": "5",
            "sut.max_batch_size": "8", **LIMITS}
    return RunView(name.ljust(32, "0"), name, "FINISHED", {**base, **params}, figures, {"validity": verdict})


def test_a_sweep_joins_runs_that_differ_only_in_the_swept_key_in_its_order():
    runs = [run("q4", **{"scenario.target_qps": "4"}), run("q16", **{"scenario.target_qps": "16"}),
            run("q8", **{"scenario.target_qps": "8"}),
            # a full-length confirmation: same rate as q8, but another duration: not on the line
            run("confirm", **{"scenario.target_qps": "8", "scenario.min_duration_s": "60"})]
    (sweep,) = find_sweeps(runs)
    assert sweep.key == "scenario.target_qps" and [r.name for r in sweep.runs] == ["q4", "q8", "q16"]
    assert sweep.label == ""


def test_a_grid_gives_one_line_per_setting_of_the_other_key():
    runs = [run(f"b{b}q{q}", **{"scenario.target_qps": str(q), "sut.max_batch_size": str(b)})
            for b in (1, 8) for q in (4, 2)]
    sweeps = find_sweeps(runs)
    assert [(s.key, s.label, [r.name for r in s.runs]) for s in sweeps] == [
        ("scenario.target_qps", "sut.max_batch_size=1", ["b1q2", "b1q4"]),
        ("scenario.target_qps", "sut.max_batch_size=8", ["b8q2", "b8q4"])]


def test_offline_and_server_are_never_joined():
    offline = run("offline", metrics={"tokens_per_second": 2800.0, "latency_p99_ms": 1480.0},
                  **{"scenario.name": "offline", "scenario.latency_limits": "null"})
    assert find_sweeps([offline, run("server")]) == []


def test_only_charts_with_something_to_show(tmp_path):
    offline = run("offline", metrics={"tokens_per_second": 2800.0, "samples_per_second": 21.0,
                                      "latency_p50_ms": 1470.0, "latency_p99_ms": 1480.0},
                  **{"scenario.name": "offline", "scenario.latency_limits": "null"})
    failed = run("failed", verdict="FAILED", metrics={"errors": 32.0}, **{"scenario.name": "single_stream"})
    files = {p.name for p in write_report(tmp_path / "round", [offline, run("server", "INVALID"), failed], "table")}
    # An Offline + Server round: no sweep of target QPS, so no latency_vs_target_qps.
    assert files == {"throughput_vs_latency.png", "throughput.png", "latency_percentiles.png", "report.html"}
    page = (tmp_path / "round/report.html").read_text()
    assert "not charted" in page and "failed" in page
    sweep = [run("a", **{"scenario.target_qps": "1"}), run("b", "BEHIND", **{"scenario.target_qps": "2"})]
    assert "latency_vs_target_qps.png" in {p.name for p in write_report(tmp_path / "sweep", sweep, "table")}
    assert not {p.name for p in write_report(tmp_path / "none", [failed], "table")} - {"report.html"}


def test_the_page_names_the_round_its_date_command_and_baseline(tmp_path):
    runs = [run("a"), run("b", **{"sut.max_batch_size": "16"})]
    context = Context("harness-compare: round 2026-12-02/10-00-00",
                      (("round", "round 2026-12-02/10-00-00 (abc)"),
                       ("round command", "harness -m sut.max_batch_size=8,16"), ("round date", "2026-12-02 10:00")))
    write_report(tmp_path, runs, "the table", "", runs[0], context)
    page = (tmp_path / "report.html").read_text()
    for text in ("<title>harness-compare: round 2026-12-02/10-00-00</title>", "harness -m sut.max_batch_size=8,16",
                 "2026-12-02 10:00", "<th>baseline</th><td>a (a0000000)</td>", "the table"):
        assert text in page
