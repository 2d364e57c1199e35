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


def test_the_loadgen_path_compares_loadgens_percentiles_with_the_servers():
    from harness.bench.http_client import loadgen_errors

    # 100 requests: server TTFT 20..20.99 ms, 5 ms per token over 32 tokens
    records = [{"arrival": 0.0, "first": 0.020 + i * 1e-5, "last": 0.020 + i * 1e-5 + 31 * 0.005, "tokens": 32}
               for i in range(100)]
    result = {"errors": 0, "valid": True, "ttft_ms": {"p50": 21.0, "p90": 21.5, "p99": 22.0},
              "tpot_ms": {"p50": 5.01, "p90": 5.02, "p99": 5.05}}
    got = loadgen_errors(result, records, qps=5, placement="split")
    assert got["ttft_server_ms"]["p50"] == pytest.approx(20.495)
    assert got["ttft_err_ms"]["p50"] == pytest.approx(21.0 - 20.495)
    assert got["ttft_err_ms"]["p99"] == pytest.approx(22.0 - 20.9801)
    assert got["tpot_err_ms"]["p50"] == pytest.approx(0.01)
    assert got["requests"] == 100 and got["valid"] is True


def test_repeated_loadgen_runs_report_medians_and_the_p99_range():
    from harness.bench.http_client import summarize_loadgen

    def one(p50, p99):
        return {"qps": 180, "placement": "split", "requests": 1800, "errors": 0,
                "ttft_err_ms": {"p50": p50, "p99": p99}, "tpot_err_ms": {"p50": 0.0, "p99": 0.1}}

    s = summarize_loadgen([one(0.5, 1.0), one(0.7, 3.0), one(0.6, 1.5)])
    assert s["ttft_err_ms"] == {"p50": 0.6, "p99": 1.5, "p99_min": 1.0, "p99_max": 3.0}
    assert s["runs"] == 3 and s["requests"] == 5400


def test_kept_awake_runs_a_lowest_priority_loop_on_the_clients_cores_for_the_duration():
    import os
    import time

    import psutil

    from harness.bench.http_client import kept_awake

    cores = frozenset(sorted(os.sched_getaffinity(0))[:1])
    me = psutil.Process()
    with kept_awake(cores):
        [spinner] = [c for c in me.children() if "os.nice(19)" in " ".join(c.cmdline())]
        assert set(spinner.cpu_affinity()) == set(cores)
        deadline = time.monotonic() + 5
        while spinner.nice() != 19 and time.monotonic() < deadline:
            pass  # the loop lowers its own priority as it starts
        assert spinner.nice() == 19
    assert not spinner.is_running() or spinner.status() == psutil.STATUS_ZOMBIE
