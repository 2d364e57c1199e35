"""Prompts longer than a model's context, on a real architecture other than the embedded Llama: a tiny
GPT-2 (learned absolute positions, so an over-long prompt is an IndexError, not a silent drift)."""

import json
import shutil
from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.sut import Sample, SUTContext
from harness.sut.hf.adapter import HFSUT, HFParams
from harness.sut.hf.tiny_model import TinyRecipe, build_tiny_model

POSITIONS = 256  # the bundled articles' prompts run to ~300-500 tokens with the tiny BPE


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory) -> Path:
    """A random GPT-2 of 256 positions with the tiny model's byte-level BPE tokenizer."""
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    llama = build_tiny_model(TinyRecipe(vocab_size=1024, hidden_size=32, intermediate_size=64, seed=7),
                             tmp_path_factory.mktemp("llama"))
    out = tmp_path_factory.mktemp("gpt2")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (llama / name).is_file():
            shutil.copy(llama / name, out / name)
    tok = AutoTokenizer.from_pretrained(out)
    config = GPT2Config(vocab_size=len(tok), n_positions=POSITIONS, n_embd=32, n_layer=1, n_head=2,
                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(3)
    GPT2LMHeadModel(config).save_pretrained(out)
    return out


def test_prompts_are_cut_to_the_models_context_before_loadgen_starts(run, gpt2_dir):
    # Before: "30 prompts plus max_new_tokens=128 exceed the model's 1024 positions", then every sample
    # failed with IndexError (those that fit too, in the same batch), and the summary printed VALID.
    result = run("sut=hf", f"sut.model_path={gpt2_dir}", "mode=submission", "benchmark.max_new_tokens=32",
                 timeout_s=180)
    assert result.errors == 0 and result.verdict == "VALID", result.error_messages
    cut = result.extra["inputs_cut"]
    assert cut["max_prompt_tokens"] == POSITIONS - 32 and 0 < cut["samples"] <= 32 and cut["of"] == 32
    assert cut["limit"] == f"the model's {POSITIONS} positions - benchmark.max_new_tokens 32"
    assert result.extra["model"]["architecture"] == "GPT2LMHeadModel"
    assert result.accuracy["scores"]["gen_num"] == 32
    saved = json.loads((Path(result.output_dir) / "results.json").read_text())
    assert saved["extra"]["inputs_cut"] == cut


def test_a_limit_the_model_cannot_hold_is_one_line_naming_the_key(run, gpt2_dir):
    with pytest.raises(ConfigError, match=r"benchmark.max_input_tokens=1000 plus benchmark.max_new_tokens=32 exceed "
                                          r"the model's 256 positions; set benchmark.max_input_tokens <= 224"):
        run("sut=hf", f"sut.model_path={gpt2_dir}", "mode=performance", "benchmark.max_new_tokens=32",
            "benchmark.max_input_tokens=1000")


def test_one_prompt_the_model_cannot_hold_fails_alone_not_its_batch(gpt2_dir):
    sut = HFSUT.create(HFParams(model_path=str(gpt2_dir), max_batch_size=4), SUTContext(corpus=[], max_new_tokens=8))
    try:
        long = " ".join(["news"] * 400)
        batch = [Sample(0, "A short prompt.", ""), Sample(1, long, ""), Sample(2, "Another short one.", "")]
        done = {c.index: c for c in sut.generate(batch)}
        assert done[0].error is None and done[2].error is None and len(done[0].token_ids) > 0
        assert done[1].error is not None and "IndexError" in done[1].error
    finally:
        sut.close()
