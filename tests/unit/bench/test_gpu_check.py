"""The GPU check script, run here as its CPU dry run (--tiny): the same steps on a tiny model."""

from __future__ import annotations

import json

import pytest

from harness.bench.gpu_check import LLAMA3_8B, decode_rate, main, parse_args, plan_for, reference_rate, summarize


def test_the_default_plan_is_llama_3_8b_in_bfloat16_on_cuda():
    plan = plan_for(parse_args([]))
    assert (plan.device, plan.dtype, plan.tiny) == ("cuda", "bfloat16", False)
    s = plan.shape
    assert s == LLAMA3_8B
    # 8.03B parameters, 16.06 GB in bfloat16: the figure issue 21's bandwidth limits are for
    params = (2 * s.vocab * s.hidden
              + s.layers * (s.hidden * s.hidden * 2 + 2 * s.hidden * (s.hidden // s.heads) * s.kv_heads
                            + 3 * s.hidden * s.intermediate + 2 * s.hidden) + s.hidden)
    assert params * 2 / 1e9 == pytest.approx(16.06, abs=0.01)
    assert reference_rate("NVIDIA H100 80GB HBM3") == 209 and reference_rate("NVIDIA H200") == 299
    assert reference_rate("NVIDIA A100-SXM4-80GB") is None


@pytest.mark.parametrize("bad", [["--variants", "warp"], ["--new-tokens", "1"], ["--repeats", "0"]])
def test_bad_arguments_are_refused(bad):
    with pytest.raises(SystemExit):
        parse_args(bad)


def test_decode_rate_and_the_fraction_of_hbm_bandwidth():
    assert decode_rate(1.0, 2.0, 201) == 200  # tokens after the first over the time after the first
    assert decode_rate(1.0, 1.0, 1) is None
    figures = {"weight_bytes": 16.06e9, "bare": [{"decode_tokens_per_s": 180.0}, {"decode_tokens_per_s": 200.0},
                                                 {"decode_tokens_per_s": 190.0}],
               "harness": [{"decode_tokens_per_s": 185.0}], "loadgen": {"tokens_per_second": 170.0},
               "roofline": {"decode": {"bandwidth_utilization": 0.8, "step_time_ms": 5.5}}}
    s = summarize(figures, peak_gbs=3350)
    assert s["bare_tokens_per_s"] == 190 and s["harness_over_bare"] == pytest.approx(185 / 190)
    assert s["harness_hbm_fraction"] == pytest.approx(185 * 16.06 / 3350)
    assert s["limit_tokens_per_s"] == pytest.approx(208.6, abs=0.1)


def test_the_cpu_dry_run_goes_through_every_step_and_writes_its_report(tmp_path, capsys):
    assert main(["--tiny", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["plan"]["tiny"] and report["tests"]["status"] == "passed"  # tests/gpu skip without CUDA
    plain, fast = report["variants"]
    assert plain["status"] == "ok" and fast["status"].startswith("skipped")
    assert plain["summary"]["bare_tokens_per_s"] > 0 and plain["summary"]["harness_tokens_per_s"] > 0
    assert plain["loadgen"]["errors"] == 0 and plain["loadgen"]["tokens_per_second"] > 0
    assert plain["roofline"]["decode"]["step_time_ms"] > 0
    assert (tmp_path / "gpu_check.txt").read_text() == capsys.readouterr().out
