"""Speculative decoding in sut=hf: tiny random Llamas made in the test, on CPU in float32."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest
import torch

from harness.errors import ConfigError, SUTError
from harness.sut import SUTContext
from harness.sut.base import Sample
from harness.sut.hf.adapter import HFSUT, HFParams
from harness.sut.hf.tiny_model import TinyRecipe, build_tiny_model
from tests.unit.sut.hf.test_adapter import with_eos

PROMPTS = [
    "The council met on Tuesday.",
    "A storm closed the harbour for two days, and the ferries stayed in port while crews checked the piers.",
    "Prices rose.",
    "The museum opened a new wing with paintings lent by families from the valley.",
]
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


@pytest.fixture(scope="module")
def target(tmp_path_factory) -> Path:
    recipe = TinyRecipe(vocab_size=1024, hidden_size=32, intermediate_size=64, seed=7)
    return build_tiny_model(recipe, tmp_path_factory.mktemp("target"))


def make_draft(target: Path, dst: Path, *, seed: int, **config_changes) -> Path:
    """Another randomly initialised Llama with the target's tokenizer files (a smaller one by default)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig.from_pretrained(target)
    for key, value in {"num_hidden_layers": 1, **config_changes}.items():
        setattr(config, key, value)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.save_pretrained(dst)
    for name in TOKENIZER_FILES:
        shutil.copy(target / name, dst / name)
    return dst


@pytest.fixture(scope="module")
def unrelated(target, tmp_path_factory) -> Path:
    return make_draft(target, tmp_path_factory.mktemp("draft"), seed=123, hidden_size=16, intermediate_size=48)


def make_sut(path: Path, max_new_tokens: int = 16, **params) -> HFSUT:
    return HFSUT.create(HFParams(model_path=str(path), dtype="float32", **params),
                        SUTContext(corpus=[], max_new_tokens=max_new_tokens))


def samples() -> list[Sample]:
    return [Sample(i, p, p) for i, p in enumerate(PROMPTS)]


def plain_greedy(path: Path, max_new_tokens: int) -> list[tuple[int, ...]]:
    """The target without a draft, one prompt at a time through generate()."""
    sut = make_sut(path, max_new_tokens)
    try:
        assert sut.stats() is None  # no draft, no speculative counters in results.json
        return [sut.generate([s])[0].token_ids for s in samples()]
    finally:
        sut.close()


class Recorder:
    """A TokenStream that keeps each emitted chunk."""

    def __init__(self) -> None:
        self.chunks: list[tuple[int, ...]] = []
        self.finished = threading.Event()
        self.error: BaseException | None = None

    def emit(self, token_ids) -> None:
        self.chunks.append(tuple(token_ids))

    def finish(self) -> None:
        self.finished.set()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.finished.set()

    def tokens(self) -> tuple[int, ...]:
        assert self.finished.wait(30), "stream never finished"
        assert self.error is None, self.error
        return tuple(t for chunk in self.chunks for t in chunk)


def stream_all(sut: HFSUT) -> tuple[list[tuple[int, ...]], list[Recorder]]:
    recorders = [Recorder() for _ in PROMPTS]
    for s, r in zip(samples(), recorders, strict=True):
        sut.submit(s, r)
    return [r.tokens() for r in recorders], recorders


def test_a_draft_equal_to_the_target_is_always_accepted(target):
    expected = plain_greedy(target, 16)
    sut = make_sut(target, 16, draft_model_path=str(target), num_draft_tokens=4)
    try:
        assert [c.token_ids for c in sut.generate(samples())] == expected
        streamed, recorders = stream_all(sut)
        assert streamed == expected
        stats = sut.stats()
    finally:
        sut.close()
    assert stats["sequences"] == 2 * len(PROMPTS)  # the warm-up is not counted
    assert stats["acceptance_rate"] == 1.0 and stats["accepted_tokens"] == stats["drafted_tokens"] > 0
    # Every step keeps its k proposals plus the target's own token, except where EOS or
    # max_new_tokens cut the last step short.
    assert 3.0 < stats["mean_accepted_tokens"] <= 5.0
    assert stats["mean_accepted_tokens"] == pytest.approx(stats["mean_accepted_draft_tokens"] + 1)
    for r in recorders:  # the prefill's token alone first (TTFT), then accepted runs in chunks
        assert len(r.chunks[0]) == 1
    assert max(len(c) for r in recorders for c in r.chunks) == 5


@pytest.mark.parametrize("k", [1, 3])
def test_an_unrelated_draft_changes_no_token(target, unrelated, k):
    expected = plain_greedy(target, 16)
    sut = make_sut(target, 16, draft_model_path=str(unrelated), num_draft_tokens=k)
    try:
        assert [c.token_ids for c in sut.generate(samples())] == expected
        assert stream_all(sut)[0] == expected
        stats = sut.stats()
    finally:
        sut.close()
    assert stats["num_draft_tokens"] == k
    assert stats["verification_steps"] > 0 and stats["drafted_tokens"] <= k * stats["verification_steps"]
    assert 0.0 <= stats["acceptance_rate"] < 0.5  # random weights agree on a token only by chance
    assert 1.0 <= stats["mean_accepted_tokens"] < 2.0


@pytest.mark.parametrize("max_new_tokens", [1, 2, 3, 7])
def test_never_more_than_max_new_tokens_even_when_all_is_accepted(target, max_new_tokens):
    expected = plain_greedy(target, max_new_tokens)
    sut = make_sut(target, max_new_tokens, draft_model_path=str(target), num_draft_tokens=4)
    try:
        out = [c.token_ids for c in sut.generate(samples())]
        stats = sut.stats()
    finally:
        sut.close()
    assert out == expected
    assert all(len(o) <= max_new_tokens for o in out)
    if max_new_tokens <= 2:  # the prefill's token and at most one target step: nothing to draft
        assert stats["drafted_tokens"] == 0 and stats["acceptance_rate"] is None
    else:
        assert stats["acceptance_rate"] == 1.0


@pytest.mark.parametrize("draft", ["same", "unrelated"])
def test_decoding_stops_at_the_first_eos_and_reports_it_once(target, unrelated, tmp_path, draft):
    free = plain_greedy(target, 16)[1]
    # A token greedy decoding produces mid-way becomes the stop token: a draft equal to the target
    # proposes it inside an accepted run, which must end there.
    k = next(i for i, t in enumerate(free) if i >= 3 and t not in free[:i])
    eos = free[k]
    stopping = with_eos(target, tmp_path / "eos", eos)
    sut = make_sut(stopping, 16, draft_model_path=str(stopping if draft == "same" else unrelated),
                   num_draft_tokens=4)
    try:
        offline = sut.generate([samples()[1]])[0].token_ids
        streamed = stream_all(sut)[0][1]
    finally:
        sut.close()
    assert offline == streamed == free[:k + 1]
    assert offline.count(eos) == 1 and offline[-1] == eos


def test_results_record_the_draft_model(target, unrelated):
    sut = make_sut(target, 4, draft_model_path=str(unrelated), num_draft_tokens=2)
    try:
        draft = sut.model_info["draft"]
        assert draft["path"] == str(unrelated) and draft["num_draft_tokens"] == 2
        assert len(draft["fingerprint"]) == 64 and draft["fingerprint"] != sut.model_info["fingerprint"]
        assert draft["parameters"] < sut.model_info["parameters"]
    finally:
        sut.close()


def test_missing_draft_directory_is_a_config_error_naming_the_key(target, tmp_path):
    with pytest.raises(ConfigError, match="sut.draft_model_path") as err:
        make_sut(target, draft_model_path=str(tmp_path / "no-such-draft"))
    assert str(tmp_path / "no-such-draft") in str(err.value) and "\n" not in str(err.value)


def test_broken_draft_directory_is_a_sut_error_naming_the_key(target, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SUTError, match="sut.draft_model_path.*no config.json"):
        make_sut(target, draft_model_path=str(tmp_path / "empty"))
    broken = shutil.copytree(target, tmp_path / "broken")
    (broken / "model.safetensors").unlink()
    with pytest.raises(SUTError, match="sut.draft_model_path: cannot load the model") as err:
        make_sut(target, draft_model_path=str(broken))
    assert "\n" not in str(err.value)


def test_a_draft_with_a_larger_padded_embedding_is_accepted_and_stays_lossless(target, tmp_path):
    """Checkpoints pad embedding tables (Qwen2.5-0.5B vs -7B); only the tokenizer must match."""
    draft = make_draft(target, tmp_path / "bigger", seed=1, vocab_size=1100)
    expected = plain_greedy(target, 16)
    sut = make_sut(target, draft_model_path=str(draft))
    try:
        assert [sut.generate([s])[0].token_ids for s in samples()] == expected
    finally:
        sut.close()


def test_a_draft_with_fewer_embedding_rows_than_tokens_is_refused(target, tmp_path):
    draft = make_draft(target, tmp_path / "smaller", seed=1, vocab_size=100)
    with pytest.raises(SUTError, match=r"sut.draft_model_path: the draft .* has 100 embedding rows") as err:
        make_sut(target, draft_model_path=str(draft))
    assert "\n" not in str(err.value)


def test_a_draft_with_another_tokenizer_of_the_same_size_is_refused(target, tmp_path):
    draft = make_draft(target, tmp_path / "shuffled", seed=1)
    spec = json.loads((draft / "tokenizer.json").read_text())
    vocab = spec["model"]["vocab"]
    a, b = list(vocab)[10:12]
    vocab[a], vocab[b] = vocab[b], vocab[a]  # two tokens swap ids: same size, other token ids
    (draft / "tokenizer.json").write_text(json.dumps(spec))
    with pytest.raises(SUTError, match="sut.draft_model_path: .*another tokenizer"):
        make_sut(target, draft_model_path=str(draft))


def test_bad_num_draft_tokens_and_combinations_are_config_errors(target):
    with pytest.raises(ConfigError, match="sut.num_draft_tokens must be at least 1"):
        make_sut(target, draft_model_path=str(target), num_draft_tokens=0)
    with pytest.raises(ConfigError, match="cuda_fast_decode"):
        make_sut(target, draft_model_path=str(target), cuda_fast_decode=True)
