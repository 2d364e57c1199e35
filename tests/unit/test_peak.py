"""harness-peak's pure parts: the search against scripted verdicts, limiting metrics, settings, output."""

import dataclasses
import json
import math

import pytest

from harness.config import LatencyLimits, to_dict
from harness.errors import ConfigError
from harness.loadgen.logs import DetailLog, Percentiles, PerformanceResult
from harness.peak.cli import base_overrides
from harness.peak.report import metrics, plot, progress_line, table, to_json
from harness.peak.search import Probe, Search, plan, probe_from
from harness.peak.settings import PeakConfig, compose, load, probe_config, probe_overrides, start_rate
from harness.results import RunResult
from harness.verdict import Reason, judge

LIMITS = LatencyLimits(ttft_ms=60, tpot_ms=100)


def scripted(capacity: float, confirm_capacity: float | None = None, calls: list | None = None):
    """A prober whose system is VALID up to ``capacity`` (confirmations up to ``confirm_capacity``)."""
    calls = [] if calls is None else calls

    def prober(n: int, step: str, qps: float) -> Probe:
        calls.append((step, qps))
        cap = capacity if step == "probe" or confirm_capacity is None else confirm_capacity
        valid = qps <= cap
        text = "TTFT p99 10.0 ms <= 60 ms" if valid else "TTFT p99 99.0 ms > 60 ms"
        return Probe(n, step, qps, valid, (Reason("ttft_p99_ms", text, 10.0 if valid else 99.0, 60.0),),
                     ttft_p99_ms=10.0 if valid else 99.0, tpot_p99_ms=1.0, completed_qps=min(qps, cap))

    return prober


@pytest.mark.parametrize("capacity", [0.7, 3.3, 137.0, 999.0, 5000.0])
@pytest.mark.parametrize("start", [1.0, 50.0, 4000.0])
def test_the_search_brackets_the_capacity_within_the_precision_in_few_probes(capacity, start):
    settings = PeakConfig(start_qps=start, min_qps=0.5, max_qps=8000, precision=0.05, max_probes=20)
    calls: list = []
    outcome = Search(settings, start).run(scripted(capacity, calls=calls))
    assert outcome.status == "found" and outcome.confirmed is True
    assert outcome.peak_qps <= capacity < outcome.lowest_invalid_qps
    assert outcome.lowest_invalid_qps / outcome.peak_qps - 1 <= 0.05
    # Bracketing costs log2 of the distance, bisection log2(ln 2 / ln 1.05) ~ 4 steps.
    bound = abs(math.log2(capacity / start)) + 2 + 5
    assert sum(step == "probe" for step, _ in calls) <= bound
    assert calls[-1] == ("confirm", outcome.peak_qps)


def test_plan_doubles_halves_and_bisects_geometrically():
    s = PeakConfig(min_qps=1, max_qps=100, precision=0.1)
    assert plan(None, None, s, 10).qps == 10
    assert plan(10, None, s, 10).qps == 20 and plan(80, None, s, 10).qps == 100
    assert plan(None, 10, s, 10).qps == 5 and plan(None, 1.5, s, 10).qps == 1
    assert plan(10, 40, s, 10).qps == 20  # sqrt(10 x 40)
    assert plan(10, 10.9, s, 10).status == "found"
    assert plan(100, None, s, 10).status == "at_least"
    assert plan(None, 1, s, 10).status == "failed"


def test_valid_at_max_qps_reports_at_least():
    settings = PeakConfig(min_qps=1, max_qps=64, max_probes=12)
    outcome = Search(settings, 8).run(scripted(1e9))
    assert outcome.status == "at_least" and outcome.peak_qps == 64 and outcome.lowest_invalid_qps is None
    assert "at least" in outcome.message and "peak.max_qps=64" in outcome.message
    assert [p.qps for p in outcome.probes] == [8, 16, 32, 64, 64]  # 4 probes, then the confirmation


def test_a_system_invalid_at_every_rate_fails_at_min_qps_with_a_clear_message():
    settings = PeakConfig(min_qps=2, max_qps=100, max_probes=12)
    outcome = Search(settings, 50).run(scripted(0.0))
    assert outcome.status == "failed" and outcome.peak_qps is None and not outcome.ok
    assert [p.qps for p in outcome.probes] == [50, 25, 12.5, 6.25, 3.125, 2]
    assert outcome.message.startswith("INVALID at every rate tried, down to peak.min_qps=2 QPS")
    assert "TTFT p99 99.0 ms > 60 ms" in outcome.message


def test_probes_are_bounded_by_max_probes():
    outcome = Search(PeakConfig(min_qps=1, max_qps=1e4, precision=0.001, max_probes=4), 100).run(scripted(137))
    assert outcome.status == "not_converged" and sum(p.step == "probe" for p in outcome.probes) == 4
    assert outcome.peak_qps <= 137 < outcome.lowest_invalid_qps and "peak.max_probes=4 ran out" in outcome.message
    rising = Search(PeakConfig(min_qps=1, max_qps=1e4, max_probes=4), 10).run(scripted(137))
    assert rising.status == "not_converged" and rising.peak_qps == 80 and rising.lowest_invalid_qps is None
    assert "ran out while doubling" in rising.message
    failed = Search(PeakConfig(min_qps=1e-3, max_qps=1e4, max_probes=3), 10).run(scripted(0.01))
    assert failed.status == "failed" and "peak.max_probes=3" in failed.message and len(failed.probes) == 3


def test_an_invalid_confirmation_steps_down_by_the_precision():
    settings = PeakConfig(min_qps=1, max_qps=1000, precision=0.1, confirm_attempts=3)
    outcome = Search(settings, 100).run(scripted(137, confirm_capacity=115))
    confirms = [p for p in outcome.probes if p.step == "confirm"]
    assert [p.valid for p in confirms] == [False] * (len(confirms) - 1) + [True] and len(confirms) >= 2
    for before, after in zip(confirms, confirms[1:], strict=False):
        assert after.qps == pytest.approx(before.qps / 1.1, rel=1e-4)
    assert outcome.status == "found" and outcome.peak_qps == confirms[-1].qps <= 115
    assert outcome.lowest_invalid_qps == confirms[-2].qps  # the lowest rate INVALID at full length


def test_a_step_down_stays_within_the_precision_despite_rounding():
    from harness.peak.settings import qps_round

    assert qps_round(261.0846) == 261.08 and qps_round(261.0846, up=True) == 261.09
    assert qps_round(0.0123456, up=True) == 0.012346 and qps_round(99999.5, up=True) == 100000
    settings = PeakConfig(min_qps=1, max_qps=1000, precision=0.3, confirm_attempts=3)
    outcome = Search(settings, 339.41).run(scripted(339.41, confirm_capacity=300))
    assert outcome.status == "found" and outcome.lowest_invalid_qps / outcome.peak_qps - 1 <= 0.3


def test_a_confirmation_that_never_holds_fails_the_search():
    settings = PeakConfig(min_qps=1, max_qps=1000, precision=0.1, confirm_attempts=2)
    outcome = Search(settings, 100).run(scripted(137, confirm_capacity=10))
    assert outcome.status == "failed" and sum(p.step == "confirm" for p in outcome.probes) == 2
    assert "full-length confirmation was INVALID" in outcome.message and "peak.confirm_attempts" in outcome.message


def test_without_confirmation_the_short_probes_answer():
    outcome = Search(PeakConfig(confirm=False, precision=0.1), 100).run(scripted(137))
    assert outcome.confirmed is None and all(p.step == "probe" for p in outcome.probes)


def result(loadgen_valid: bool, ttft99: float, tpot99: float = 1.0, errors: int = 0, sps: float = 100.0,
           latency_p50: float = 10.0, detail: DetailLog | None = None) -> RunResult:
    """A Server run's result as run_benchmark builds it: LoadGen's figures judged by harness.verdict."""
    values = {"result_validity": "VALID" if loadgen_valid else "INVALID", **(detail.values if detail else {})}
    ttft, tpot, latency = Percentiles(5, 8, ttft99), Percentiles(1, 1, tpot99), Percentiles(latency_p50, 20, 30)
    verdict = judge(detail=DetailLog(values, (), ()), ttft=ttft, tpot=tpot, latency=latency, samples_per_second=sps,
                    streaming_server=True, limits=LIMITS, errors=errors, issued=500, loadgen_errors=0)
    perf = PerformanceResult("Server", loadgen_valid, (), sps, sps * 16, latency, ttft, tpot, 500, 0, (), "6.0.17")
    return RunResult.from_perf(perf, verdict, scenario="server", mode="performance", benchmark="sample",
                               model_key="llama3_1-8b", sut="queue", official=False, errors=errors, error_messages=(),
                               loadgen_errors=0, loadgen_version="6.0.17", dataset={}, output_dir="/x",
                               latency_limits=LIMITS)


def test_a_probe_takes_the_runs_verdict_and_its_reasons():
    over = probe_from(1, "probe", 100.0, result(False, 75.3), None)
    assert not over.accepted and over.verdict == "INVALID" and over.limiting == "TTFT p99 75.3 ms > limit 60 ms"
    assert (over.limits[0].metric, over.limits[0].value, over.limits[0].limit) == ("ttft_p99_ms", 75.3, 60)
    margin = probe_from(1, "probe", 100.0, result(True, 30.0, 90.0), None)  # VALID: the latency closest to its limit
    assert margin.accepted and margin.limiting == "TPOT p99 90.0 ms <= limit 100 ms"
    failed = probe_from(1, "probe", 100.0, result(True, 30.0, errors=3), None)
    assert not failed.accepted and failed.verdict == "FAILED" and failed.limiting == "3 of 500 samples failed"


def test_a_valid_run_whose_completions_fall_behind_counts_as_invalid():
    # Figures of real sut=queue runs (capacity 320/s) under a 2000 ms TTFT limit, 5 s probes.
    overloaded = DetailLog({"result_scheduled_samples_per_sec": 413.73, "result_query_count": 2080}, (), ())
    behind = probe_from(1, "probe", 400.0, result(True, 59.0, sps=318.84, latency_p50=763.0, detail=overloaded),
                        overloaded)
    assert behind.valid and behind.behind and not behind.accepted and behind.verdict == "BEHIND"
    assert behind.limits[0].value == pytest.approx(0.873, abs=0.001)  # 5.03 s / (6.52 s - 0.763 s)
    assert behind.limiting == ("falling behind: completions 87.3% of arrivals (limit 95%; completed 318.84/s, "
                               "scheduled 413.73/s)")
    assert behind.scheduled_qps == 413.73 and behind.queries == 2080


def test_progress_line_and_table():
    probe = Probe(3, "probe", 12.5, False, (Reason("ttft_p99_ms", "TTFT p99 2481.2 ms > 2000 ms"),),
                  ttft_p99_ms=2481.2, tpot_p99_ms=40.0, completed_qps=11.9, seconds=8.1)
    line = progress_line(probe, PeakConfig(max_probes=12), 3)
    assert line.split() == ["probe", "3/12", "qps=12.50", "INVALID", "TTFT", "p99", "2481.2", "ms", ">", "2000",
                            "ms", "(completed", "11.90/s,", "8.1", "s)"]
    config, settings = compose(["sut=queue", "scenario.ttft_ms=60"])
    outcome = Search(settings, 100).run(scripted(137))
    text = table(outcome, config, LIMITS, "/runs/peak/x")
    assert "peak search · server · sample (llama3_1-8b) · sut=queue · limits TTFT p99 60 ms" in text
    assert f"peak        {outcome.peak_qps:.2f} QPS: highest VALID rate" in text
    assert text.count("\n  ") >= len(outcome.probes) and "output      /runs/peak/x" in text
    values = metrics(outcome)
    assert values["peak_qps"] == outcome.peak_qps and values["peak_found"] == 1.0 and values["ttft_p99_ms"] == 10


def test_peak_json_and_png(tmp_path):
    config, settings = compose(["sut=queue"])
    outcome = Search(settings, 100).run(scripted(137))
    data = json.loads(json.dumps(to_json(outcome, config, settings, LIMITS, tmp_path, 12.0)))
    assert data["status"] == "found" and data["peak_qps"] == outcome.peak_qps
    assert data["latency_limits"] == {"ttft_ms": 60, "tpot_ms": 100}
    assert len(data["probes"]) == len(outcome.probes) and data["probes"][0]["limits"][0]["metric"] == "ttft_p99_ms"
    assert data["at_peak"]["step"] == "confirm" and data["settings"]["precision"] == 0.05
    png = plot(tmp_path / "peak.png", outcome, LIMITS, "title")
    assert png is not None and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(("override", "key"), [
    ("scenario=offline", "'scenario'"), ("scenario=single_stream", "'scenario'"),
    ("peak.precision=0", "'peak.precision'"), ("peak.precision=1.5", "'peak.precision'"),
    ("peak.min_qps=0", "'peak.min_qps'"), ("peak.max_qps=0.5", "'peak.max_qps'"),
    ("peak.start_qps=20000", "'peak.start_qps'"), ("peak.max_probes=0", "'peak.max_probes'"),
    ("peak.confirm_attempts=0", "'peak.confirm_attempts'"), ("peak.probe_duration_s=-1", "'peak.probe_duration_s'"),
    ("peak.confirm=maybe", "'peak.confirm'"),
])
def test_bad_search_settings_name_their_key(override, key):
    with pytest.raises(ConfigError, match=key) as exc:
        compose([override])
    assert "\n" not in str(exc.value)


def test_unknown_search_keys_are_errors():
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException, match="precison"):
        compose(["peak.precison=0.1"])  # Hydra names it: Key 'precison' is not in struct
    config, _ = compose([])
    with pytest.raises(ConfigError, match="unknown config key 'peak.nope'"):
        load({**to_dict(config), "peak": {"nope": 1}})
    with pytest.raises(ConfigError, match="missing required config key 'peak'"):
        load(to_dict(config))


def test_probes_are_quick_performance_runs_and_repeatable_with_harness():
    config, settings = compose(["scenario=interactive", "benchmark.official=true", "peak.probe_duration_s=2",
                                "peak.min_qps=0.5"])
    assert config.scenario.name == "interactive" and start_rate(config, settings) == 50  # scenario.target_qps
    probe = probe_config(config, settings, 12.5)
    assert (probe.mode, probe.benchmark.official, probe.scenario.target_qps) == ("performance", False, 12.5)
    assert (probe.scenario.min_duration_s, probe.scenario.min_query_count) == (2, 500)
    overrides = ("scenario=interactive", "peak.probe_duration_s=2", "hydra.run.dir=/x", "mode=submission",
                 "sut=queue", "scenario.min_query_count=800")
    assert base_overrides(overrides, config, "probe") == ["scenario=interactive", "sut=queue"]
    assert base_overrides(overrides, config, "confirm") == ["scenario=interactive", "sut=queue",
                                                            "scenario.min_query_count=800"]
    assert base_overrides(("sut=queue",), config, "probe") == ["scenario=interactive", "sut=queue"]
    assert probe_overrides(config, settings, 12.5, "probe") == [
        "scenario.target_qps=12.5", "mode=performance", "scenario.min_duration_s=2", "scenario.min_query_count=500",
        "benchmark.official=false", "scenario.ttft_ms=null", "scenario.tpot_ms=null"]
    assert probe_overrides(config, settings, 12.5, "confirm") == ["scenario.target_qps=12.5", "mode=performance"]


def test_a_quick_confirmation_is_longer_than_a_probe_so_it_does_not_replay_it():
    # With the quick defaults (5 s, 500 queries) equal to a probe's, the confirmation used to re-run
    # the last probe's LoadGen schedule exactly (same seeds from mlperf.conf, same length).
    from harness.peak.settings import confirm_config

    config, settings = compose(["sut=queue"])
    probe = probe_config(config, settings, 100)
    confirm = confirm_config(config, settings, 100)
    assert (probe.scenario.min_duration_s, probe.scenario.min_query_count) == (5, 500)
    assert (confirm.scenario.min_duration_s, confirm.scenario.min_query_count) == (10, 1000)
    assert probe_overrides(config, settings, 100, "confirm") == [
        "scenario.target_qps=100", "mode=performance", "scenario.min_duration_s=10", "scenario.min_query_count=1000"]
    # the user's own longer run stands, and their length overrides give way to the computed ones
    config, settings = compose(["sut=queue", "scenario.min_duration_s=60"])
    assert confirm_config(config, settings, 100).scenario.min_duration_s == 60
    assert base_overrides(("sut=queue", "scenario.min_duration_s=60"), config, "confirm") == [
        "scenario=server", "sut=queue"]
    assert probe_overrides(config, settings, 100, "confirm")[2] == "scenario.min_duration_s=60"
    # official settings: mlperf.conf's lengths, untouched
    config, settings = compose(["sut=queue", "benchmark.official=true"])
    assert confirm_config(config, settings, 100).scenario == dataclasses.replace(config.scenario, target_qps=100)
