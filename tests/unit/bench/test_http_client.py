"""The client benchmark's bookkeeping: repeated runs summarized, the machine's stalls counted."""

from __future__ import annotations

import pytest

from harness.bench.http_client import Placement, stalls, summarize, wakeup


def one(p50: float, p99: float, rc: int = 0) -> dict:
    return {"client": "harness", "streams": 32, "placement": "split", "sent": 600, "scheme": "http", "measured": 568,
            "rc": rc,
            "log": "x.log", "ttft_err_ms": {"p50": p50, "p99": p99}, "tpot_err_ms": {"p50": p50 / 10, "p99": p99 / 10}}


def test_repeated_runs_report_medians_and_the_p99_range():
    s = summarize([one(0.4, 1.5), one(0.3, 9.0), one(0.5, 1.8, rc=1)])
    assert s["runs"] == 3 and s["measured"] == 3 * 568 and s["rc"] == 1
    assert s["ttft_err_ms"] == {"p50": 0.4, "p99": 1.8, "p99_min": 1.5, "p99_max": 9.0}
    assert s["tpot_err_ms"]["p99"] == pytest.approx(0.18)
    assert len(s["each"]) == 3


def test_a_stall_probe_runs_on_every_core_and_counts_per_core_second():
    st = stalls(0.3)
    assert st["cores"] >= 1 and st["seconds"] == 0.3
    assert 0 <= st["stalls_2ms_per_core_s"] <= st["stalls_1ms_per_core_s"]
    assert st["longest_ms"] == 0 or st["longest_ms"] >= 1.0  # only gaps of 1 ms or more are kept


def test_the_wakeup_floor_is_measured_between_two_processes():
    floor = wakeup(Placement(), n=20, quiet_s=0.001)
    assert 0 < floor["p50_us"] <= floor["p99_us"] < 1e6  # a delay was seen, under a second
