"""sut=hf with a draft model through the real LoadGen: acceptance figures in results.json, and the
lossless audit of its accuracy log against a run without the draft."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.audit import main as audit_main
from harness.sut.hf.tiny_model import TinyRecipe, ensure_tiny_model
from tests.conftest import run_bounded

N_SAMPLES, MAX_NEW = 8, 12
SMALL = ["sut=hf", f"dataset.n_samples={N_SAMPLES}", f"benchmark.max_new_tokens={MAX_NEW}", "mode=accuracy"]


@pytest.fixture(scope="module")
def draft_dir(tmp_path_factory) -> Path:
    """A one-layer random Llama with the embedded model's tokenizer: unrelated to the target."""
    from transformers import LlamaConfig, LlamaForCausalLM

    target = ensure_tiny_model(TinyRecipe())  # the embedded model sut=hf loads with model_path null
    dst = tmp_path_factory.mktemp("draft")
    config = LlamaConfig.from_pretrained(target)
    config.num_hidden_layers, config.hidden_size, config.intermediate_size = 1, 32, 96
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(99)
        LlamaForCausalLM(config).save_pretrained(dst)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(target / name, dst / name)
    return dst


def test_a_draft_run_reports_acceptance_and_emits_the_same_tokens(make_config, draft_dir, tmp_path, capsys):
    plain = run_bounded(make_config(*SMALL, "scenario=offline"), tmp_path / "plain")
    assert plain.ok, plain.error_messages
    assert "sut_stats" not in plain.extra  # no draft: nothing speculative to report
    # SingleStream streams through the speculative loop (FirstTokenComplete after the prefill).
    spec = run_bounded(make_config(*SMALL, "scenario=single_stream", f"sut.draft_model_path={draft_dir}",
                                   "sut.num_draft_tokens=3"), tmp_path / "spec")
    assert spec.ok, spec.error_messages
    stats = spec.extra["sut_stats"]["accuracy"]
    assert stats["sequences"] == N_SAMPLES and stats["num_draft_tokens"] == 3
    assert stats["verification_steps"] > 0 and 0 <= stats["acceptance_rate"] <= 1
    assert 1 <= stats["mean_accepted_tokens"] <= 4
    assert spec.extra["model"]["draft"]["path"] == str(draft_dir)
    assert spec.extra["model"]["fingerprint"] == plain.extra["model"]["fingerprint"]  # the same target

    with pytest.raises(SystemExit) as exit_:
        audit_main([spec.output_dir, "--same-tokens-as", plain.output_dir])
    out = capsys.readouterr().out
    assert exit_.value.code == 0, out
    assert f"compared {N_SAMPLES} samples" in out and "token ids: identical" in out

    # Offline with the target as its own draft: every proposal is accepted, the tokens are the same.
    target = ensure_tiny_model(TinyRecipe())
    same = run_bounded(make_config(*SMALL, "scenario=offline", f"sut.draft_model_path={target}"), tmp_path / "same")
    assert same.ok, same.error_messages
    assert same.extra["sut_stats"]["accuracy"]["acceptance_rate"] == 1.0
    with pytest.raises(SystemExit) as exit_:
        audit_main([same.output_dir, "--same-tokens-as", plain.output_dir])
    assert exit_.value.code == 0, capsys.readouterr().out

    # One token changed in one sample's output: the audit fails and names that sample.
    log = Path(spec.output_dir) / "accuracy" / "mlperf_log_accuracy.json"
    entries = json.loads(log.read_text())
    victim = entries[3]
    ids = np.frombuffer(bytes.fromhex(victim["data"]), dtype="<i4").copy()
    ids[-1] += 1
    victim["data"] = ids.tobytes().hex().upper()
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(entries))
    with pytest.raises(SystemExit) as exit_:
        audit_main([str(tampered), "--same-tokens-as", plain.output_dir])
    out = capsys.readouterr().out
    assert exit_.value.code == 4
    assert f"sample {victim['qsl_idx']}: token ids differ from position {len(ids) - 1}" in out
    assert "1 samples differ" in out
