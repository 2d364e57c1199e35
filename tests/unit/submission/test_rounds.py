"""MLPerf rounds: the installed LoadGen's round, and the benchmarks and scenarios each round has."""

import subprocess
import sys

from harness.submission import rounds

V61 = rounds.ROUNDS["v6.1"]


def test_loadgen_6_0_17_carries_the_v6_1_seeds():
    assert rounds.installed_seeds() == (2085463073848966840, 2747215439041700203, 16159082839903944936)
    assert rounds.installed_round() is V61
    assert rounds.round_of_seeds((2465351861681999779, 14276810075590677512, 3936089224930324775)).name == "v6.0"
    assert rounds.round_of_seeds((1, 2, 3)) is None


def test_reading_the_seeds_does_not_count_as_a_conf_file(tmp_path):
    # LoadGen logs "Multiple conf files are used" (an error: not submittable) when a process loads
    # a second conf file; reading the built-in mlperf.conf must not be one.
    script = f"""
from pathlib import Path
from harness.loadgen import bridge
bridge.builtin_seeds()
conf = Path({str(tmp_path)!r}) / "user.conf"
conf.write_text("llama3_1-8b.Server.target_qps = 100\\nllama3_1-8b.Server.min_duration = 100\\n"
                "llama3_1-8b.Server.min_query_count = 20\\n")
bridge.run_bare_test(4, model_key="llama3_1-8b", user_conf=conf, outdir=Path({str(tmp_path)!r}))
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120, capture_output=True)
    detail = (tmp_path / "mlperf_log_detail.txt").read_text()
    assert "error_invalid_config" not in detail and '"effective_qsl_rng_seed", "value": 2085463073848966840' in detail


def test_benchmarks_of_v6_1_and_where_the_older_ones_were_last():
    assert list(V61.benchmarks) == ["llama3.1-8b", "llama3.1-8b-edge", "llama2-70b-99.9"]
    assert rounds.last_round("gptj-99") == "v5.0" and rounds.last_round("mixtral-8x7b") == "v6.0"
    assert rounds.last_round("llama2-70b-99") == "v6.0" and rounds.last_round("nope") is None
    assert rounds.benchmark_problem(V61, "gptj-99", None).startswith("gptj-99 is not a benchmark of v6.1 (last in v5.0")
    assert rounds.benchmark_problem(V61, "llama3.1-8b", "datacenter") is None
    assert rounds.benchmark_problem(V61, "llama3.1-8b", "edge") == (
        "llama3.1-8b is not a benchmark for edge systems in v6.1 (it is for datacenter and datacenter,edge "
        "systems; for edge: llama3.1-8b-edge)")
    assert "llama3.1-8b-edge is not a benchmark for datacenter systems" in \
        rounds.benchmark_problem(V61, "llama3.1-8b-edge", "datacenter")


def test_scenarios_required_optional_and_one_of_server_or_interactive():
    assert rounds.scenario_problem(V61, "llama3.1-8b", "datacenter", "Interactive") is None
    assert rounds.scenario_problem(V61, "llama3.1-8b", "datacenter", "SingleStream") == (
        "SingleStream is not a scenario of llama3.1-8b in v6.1 for datacenter systems (Offline required; "
        "one of Server or Interactive)")
    assert rounds.scenario_problem(V61, "llama3.1-8b-edge", "edge", "Server").startswith("Server is not a scenario")
    assert rounds.missing_scenarios(V61, "llama3.1-8b", "datacenter", ["Offline"]) == ["one of Server or Interactive"]
    assert rounds.missing_scenarios(V61, "llama3.1-8b", "datacenter", ["Offline", "Interactive"]) == []
    assert rounds.missing_scenarios(V61, "llama3.1-8b-edge", "edge", ["Offline"]) == ["SingleStream"]
    v60 = rounds.ROUNDS["v6.0"]
    assert rounds.missing_scenarios(v60, "mixtral-8x7b", "datacenter", ["Offline"]) == ["Server"]
