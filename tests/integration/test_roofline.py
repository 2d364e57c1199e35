"""Roofline end to end: a real run of the tiny torch model writes its roofline section and MLflow gets it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.tracking import schema

SMALL_SERVER = ["sut=hf", "dataset.n_samples=8", "benchmark.max_new_tokens=12", "scenario=server",
                "scenario.target_qps=20", "scenario.min_duration_s=1", "scenario.min_query_count=40",
                "mode=performance"]

pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning")


def test_a_tracked_server_run_of_the_torch_model_reports_its_roofline(tmp_path):
    uri = f"sqlite:///{tmp_path}/store/mlflow.db"
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "harness", *SMALL_SERVER, "tracking=mlflow", f"tracking.uri={uri}",
                           f"hydra.run.dir={run_dir}"], cwd=tmp_path, capture_output=True, text=True, timeout=180,
                          env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr
    results = json.loads((run_dir / "results.json").read_text())
    roof, model = results["roofline"], results["extra"]["model"]

    # The loaded model's own numbers, and its config.json's shape (the embedded tiny Llama).
    assert roof["reason"] is None and roof["model"]["weight_bytes"] == model["weight_bytes"]
    assert roof["model"]["parameters"] == model["parameters"] and roof["model"]["dtype"] == "float32"
    assert (roof["model"]["layers"], roof["model"]["kv_heads"], roof["model"]["head_dim"]) == (2, 2, 16)
    # No GPU here: the CPU probe, recorded as measured.
    assert roof["peaks"]["accelerator"] == "cpu" and roof["peaks"]["bandwidth_source"].startswith("measured probe")

    w, d, p = roof["workload"], roof["decode"], roof["prefill"]
    assert w["mean_tpot_ms"] > 0 and w["output_tokens"] > 1 and w["input_tokens"] > 10
    assert w["sources"]["input_tokens"].startswith("mean of 8 of 8 prompts")
    assert d["step_time_ms"] == w["mean_tpot_ms"] and d["concurrency"] >= 1
    assert d["concurrency_source"].startswith("Little's law")
    assert d["bytes_per_step"] == pytest.approx(d["weight_bytes_per_step"] + d["kv_bytes_per_step"])
    assert d["achieved_bandwidth_gbs"] == pytest.approx(d["bytes_per_step"] / (d["step_time_ms"] / 1e3) / 1e9)
    assert 0 < d["bandwidth_utilization"] < 1 and d["null_reasons"] == {}
    assert p["time_ms"] == w["mean_ttft_ms"] and 0 < p["mfu"] and "lower bound" in p["note"]
    assert "  roofline    decode " in proc.stdout and "[cpu, measured probe]" in proc.stdout

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    [run] = client.search_runs([client.get_experiment_by_name("harness").experiment_id])
    logged = run.data.metrics
    expected = schema.metrics(results)
    assert {"roofline_bw_util", "roofline_achieved_bw_gbs", "roofline_bytes_per_step", "roofline_weight_bytes",
            "roofline_mfu", "roofline_prefill_tflops", "roofline_overall_mfu", "roofline_peak_bw_gbs"} <= set(logged)
    for name in (m for m in expected if m.startswith("roofline_")):
        assert logged[name] == pytest.approx(expected[name]), name


def test_a_fake_sut_says_why_it_has_no_roofline(run):
    result = run("sut=echo", "sut.ttft_ms=1", "sut.tpot_ms=0.1", "sut.output_tokens=8", "mode=performance")
    assert result.ok and result.valid
    written = json.loads((Path(result.output_dir) / "results.json").read_text())
    assert written["roofline"]["model"] is None and "fake SUT" in written["roofline"]["reason"]
    assert not {k for k in schema.metrics(written) if k.startswith("roofline_")}
