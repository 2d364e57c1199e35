"""The bridge benchmark's search and report logic, with a step runner of known capacities (no LoadGen)."""

from __future__ import annotations

import pytest

from harness.bench.bridge_overhead import (
    Step,
    aggregate_profile,
    bracket,
    grid,
    holds,
    parse_args,
    refine,
    summary,
    sweep,
)


def step(qps: float, capacity: float) -> Step:
    """What LoadGen reports for a SUT that completes at most ``capacity`` samples/s: VALID while the
    backlog stays short, but behind the schedule above its capacity."""
    done = min(qps, capacity)
    return Step(valid=qps <= 1.5 * capacity, qps=done, scheduled=qps, p99_ms=1.0, ttft_p99_ms=1.0, reasons=())


class Machine:
    """A runner over fixed capacities, noting every (variant, QPS) it was asked for, in order."""

    def __init__(self, **capacity: float) -> None:
        self.capacity = capacity
        self.calls: list[tuple[str, float]] = []

    def __call__(self, name: str, qps: float) -> Step:
        self.calls.append((name, qps))
        return step(qps, self.capacity[name])


def test_a_step_that_fell_behind_does_not_hold_even_when_loadgen_says_valid():
    s = step(80_000, 60_000)
    assert s.valid and not holds(s)
    assert holds(step(50_000, 60_000))


def test_the_sweep_alternates_the_variants_and_takes_the_one_still_holding_past_the_list():
    m = Machine(bridge=150_000, bare=400_000)
    results = sweep([64_000.0, 128_000.0, 256_000.0], m)
    # alternating order at each rate of the list
    assert m.calls[:6] == [("bridge", 64_000), ("bare", 64_000), ("bare", 128_000), ("bridge", 128_000),
                           ("bridge", 256_000), ("bare", 256_000)]
    # bare held at the top of the list: it goes on doubling until it fails, so it is not capped
    assert m.calls[6:] == [("bare", 512_000)]
    assert bracket(results["bare"]) == (256_000, 512_000)
    assert bracket(results["bridge"]) == (128_000, 256_000)


def test_the_sweep_stops_where_neither_holds_and_doubling_has_a_ceiling():
    m = Machine(bridge=1_000, bare=1_500)
    results = sweep([1_000.0, 2_000.0, 4_000.0], m)
    assert 4_000 not in results["bridge"] and 4_000 not in results["bare"]
    m = Machine(bridge=1e12, bare=1e12)
    results = sweep([1_000.0], m, max_qps=8_000)
    assert max(results["bare"]) == 8_000 and holds(results["bare"][8_000])


def test_bracket_when_nothing_held_or_nothing_failed():
    assert bracket({1_000.0: step(1_000, 10)}) == (None, 1_000)
    assert bracket({1_000.0: step(1_000, 1e9)}) == (1_000, None)


def test_the_grid_divides_a_doubling_geometrically_one_interval_each_side():
    assert grid(100_000, 200_000, 4) == pytest.approx(
        [50_000, 59_460.4, 70_710.7, 84_089.6, 100_000, 118_920.7, 141_421.4, 168_179.3], abs=0.1)


def test_a_round_climbs_from_the_sweeps_rate_until_a_step_fails_variants_taking_turns():
    m = Machine(bridge=130_000, bare=300_000)
    best = refine({"bridge": grid(128_000, 256_000, 4), "bare": grid(256_000, 512_000, 4)}, m)
    assert best == {"bridge": 128_000, "bare": pytest.approx(304_437, abs=1)}
    assert [name for name, _ in m.calls] == ["bridge", "bare", "bare", "bridge", "bare"]
    # each stopped at its first failure: bridge at 152,218 (130,000 done), bare at 362,039
    assert [round(q) for _, q in m.calls] == [128_000, 256_000, 304_437, 152_218, 362_039]


def test_a_round_steps_down_when_the_sweeps_rate_fails_this_time():
    m = Machine(bridge=100_000)  # the sweep saw 128,000 hold; this round the machine is slower
    best = refine({"bridge": grid(128_000, 256_000, 4)}, m)
    assert best == {"bridge": pytest.approx(90_510, abs=1)}
    assert [round(q) for _, q in m.calls] == [128_000, 107_635, 90_510]
    # nothing holds, down to half the sweep's rate: None, not a guess
    assert refine({"bridge": grid(128_000, 256_000, 4)}, Machine(bridge=10_000)) == {"bridge": None}


def test_summary_compares_medians_of_rounds_and_reports_their_range():
    results = {"bridge": {1_000.0: step(1_000, 1e9)}, "bare": {1_000.0: step(1_000, 1e9)}}
    lines, ok = summary({"bridge": [120_000, 150_000, 140_000], "bare": [250_000, 300_000, 280_000]}, results,
                        {"bridge": [0.5, 0.7, 0.6], "bare": [0.5, 0.6, 0.4]})
    text = "\n".join(lines)
    assert "bridge: median 140,000 over 3 rounds (120,000, 150,000, 140,000, range 120,000-150,000)" in text
    assert "Ratio bridge/bare (medians): 0.50  goal >= 0.5: met" in text
    assert "(difference of medians): 0.100 ms" in text and ok
    lines, ok = summary({"bridge": [None], "bare": [250_000]}, results, {"bridge": [], "bare": []})
    assert not ok and "Ratio bridge/bare (medians): -  goal >= 0.5: NOT met" in "\n".join(lines)


def test_the_profile_counts_per_sample_stacks_in_microseconds_per_sample():
    raw = "\n".join([
        "<module> (x.py:1);run_variant (harness/bench/bridge_overhead.py:9) 50",  # start-up: not counted
        "run_test (harness/loadgen/bridge.py:338);_Bridge.issue (harness/loadgen/bridge.py:161);"
        "_Pending._complete (harness/loadgen/bridge.py:128) 30",
        "run_test (harness/loadgen/bridge.py:338);_Bridge.issue (harness/loadgen/bridge.py:161) 10",
        "_Bridge._watchdog (harness/loadgen/bridge.py:263);Condition.wait (threading.py:331) 99",  # asleep
    ])
    table = aggregate_profile(raw, per=1_000, sample_period_s=0.004)
    # 30 samples x 4 ms over 1,000 issued samples = 120 µs per sample
    assert table["self"] == [("_Pending._complete, bridge.py:128", pytest.approx(120)),
                             ("_Bridge.issue, bridge.py:161", pytest.approx(40))]
    assert dict(table["inclusive"]) == {"_Bridge.issue": pytest.approx(160), "_Pending._complete": pytest.approx(120)}


def test_arguments_are_checked():
    assert parse_args([]).rounds == 3
    with pytest.raises(SystemExit):
        parse_args(["--grid", "0"])
    with pytest.raises(SystemExit):
        parse_args(["--qps", "0,100"])
