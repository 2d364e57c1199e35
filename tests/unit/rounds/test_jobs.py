"""A round's job identity, which jobs shared a host, and the round table."""

from harness.rounds.jobs import JobReport, from_timestamp, job_key, job_overrides, overlaps, round_table, timestamp


def report(host="a", start=0.0, end=10.0, **kw) -> JobReport:
    return JobReport(kw.pop("overrides", ("x=1",)), kw.pop("status", "FINISHED"), kw.pop("exit_code", 0), host=host,
                     started=start, ended=end, **kw)


def test_a_job_is_its_own_overrides_in_any_order_without_round_keys():
    assert job_overrides(["a=1", "round.parent=abc", "+round.resume=x", "b=2"]) == ("a=1", "b=2")
    assert job_key(["b=2", "a=1", "round.resume=123"]) == job_key(["a=1", "b=2"])
    assert job_key(["a=1"]) != job_key(["a=2"])


def test_timestamps_round_trip_to_the_millisecond():
    assert from_timestamp(timestamp(1764675292.5764)) == 1764675292.576
    assert from_timestamp(None) is None and from_timestamp("yesterday") is None


def test_jobs_overlap_only_on_the_same_host_at_the_same_time():
    reports = [report("a", 0, 10), report("a", 5, 15), report("a", 15, 20), report("b", 0, 20),
               report("a", None, None)]
    assert overlaps(reports) == {0: [1], 1: [0], 2: [], 3: [], 4: []}  # touching ends do not overlap


def test_the_table_names_each_job_its_figures_and_what_went_wrong():
    jobs = [["sut=echo", "sut.ttft_ms=2", "round.parent=p"], ["sut=echo", "sut.ttft_ms=3"],
            ["sut=echo", "sut.ttft_ms=4"]]
    ok = report(scenario="offline", sut="echo", verdict="VALID", accuracy="PASS", mode="submission",
                metrics={"samples_per_second": 1234.56, "tokens_per_second": 19753.0, "errors": 0.0})
    failed = report(status="FAILED", exit_code=3, scenario="offline", sut="echo", verdict="FAILED",
                    metrics={"errors": 32.0}, error="SUTError: 32 samples failed")
    table = round_table(jobs, [ok, failed, None], parent="abc123", shared={0: [1], 1: [0]})
    lines = table.splitlines()
    assert lines[0] == "round of 3 runs: 1 FINISHED, 1 FAILED, 1 NO REPORT · MLflow parent run abc123"
    assert lines[2].split() == ["0", "offline", "echo", "VALID", "PASS", "1,234.6", "19,753", "-", "-", "0", "a",
                                "sut.ttft_ms=2"]
    assert lines[3].split()[:4] == ["1", "offline", "echo", "FAILED"] and lines[3].endswith("sut.ttft_ms=3")
    assert lines[4].split()[:4] == ["2", "-", "-", "NO"] and lines[4].endswith("sut.ttft_ms=4")
    assert "job 1 FAILED (exit 3): SUTError: 32 samples failed" in lines
    assert "job 0 shared a with job 1 at the same time: its performance figures were measured alongside" in lines
    assert any(line.startswith("job 2 (sut=echo sut.ttft_ms=4) never reported") for line in lines)
