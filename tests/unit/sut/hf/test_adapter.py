"""The torch/transformers SUT on a tiny random Llama made in the test (CPU)."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest
import torch

from harness.errors import ConfigError, SUTError
from harness.sut import SUTContext
from harness.sut.base import Sample, Tokenizer
from harness.sut.hf.adapter import HFSUT, HFParams
from harness.sut.hf.tiny_model import TinyRecipe, build_tiny_model

PROMPTS = [
    "The council met on Tuesday.",
    "A storm closed the harbour for two days, and the ferries stayed in port while crews checked the piers.",
    "Prices rose.",
    "The museum opened a new wing with paintings lent by families from the valley.",
]


class Recorder:
    """A TokenStream that keeps what it was told, and can pause the decode loop at a chosen token."""

    def __init__(self, pause_at: int | None = None) -> None:
        self.chunks: list[tuple[int, ...]] = []
        self.finished = threading.Event()
        self.error: BaseException | None = None
        self.ends = 0
        self.pause_at = pause_at
        self.paused = threading.Event()
        self.resume = threading.Event()

    @property
    def tokens(self) -> tuple[int, ...]:
        return tuple(t for chunk in self.chunks for t in chunk)

    def emit(self, token_ids) -> None:
        self.chunks.append(tuple(token_ids))
        if self.pause_at is not None and len(self.tokens) == self.pause_at:
            self.paused.set()
            assert self.resume.wait(10), "test never resumed the decode loop"

    def finish(self) -> None:
        self.ends += 1
        self.finished.set()

    def fail(self, error: BaseException) -> None:
        self.ends += 1
        self.error = error
        self.finished.set()

    def wait(self) -> tuple[int, ...]:
        assert self.finished.wait(30), "stream never finished"
        assert self.error is None, self.error
        assert self.ends == 1
        return self.tokens


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    recipe = TinyRecipe(vocab_size=1024, hidden_size=32, intermediate_size=64, seed=7)
    return build_tiny_model(recipe, tmp_path_factory.mktemp("tiny"))


def make_sut(path: Path, max_new_tokens: int = 12, **params) -> HFSUT:
    return HFSUT.create(HFParams(model_path=str(path), **params), SUTContext(corpus=[], max_new_tokens=max_new_tokens))


def samples(prompts=PROMPTS) -> list[Sample]:
    return [Sample(i, p, p) for i, p in enumerate(prompts)]


def naive_greedy(sut: HFSUT, prompt: str, n: int) -> tuple[int, ...]:
    """Greedy decoding the slow, obvious way: full forward pass per token, no cache, no padding."""
    ids = sut.tokenizer.encode(prompt)
    out: list[int] = []
    with torch.inference_mode():
        for _ in range(n):
            logits = sut.model(torch.tensor([ids + out])).logits[0, -1]
            out.append(int(logits.argmax()))
            if out[-1] in sut.eos:
                break
    return tuple(out)


def with_eos(src: Path, dst: Path, eos: int) -> Path:
    """A copy of the model directory whose stop token is ``eos``."""
    shutil.copytree(src, dst)
    for name in ("config.json", "generation_config.json"):
        data = json.loads((dst / name).read_text())
        data["eos_token_id"] = eos
        (dst / name).write_text(json.dumps(data))
    return dst


def stream_all(sut: HFSUT, batch: list[Sample]) -> list[tuple[int, ...]]:
    recorders = [Recorder() for _ in batch]
    for s, r in zip(batch, recorders, strict=True):
        sut.submit(s, r)
    return [r.wait() for r in recorders]


def test_greedy_output_excludes_the_prompt_and_is_deterministic(model_dir):
    sut = make_sut(model_dir)
    try:
        sut.load(samples())
        first = sut.generate(samples())
        for s, c in zip(samples(), first, strict=True):
            assert c.index == s.index
            assert c.token_ids == naive_greedy(sut, s.prompt, 12)  # generated tokens only, greedy
            assert 1 <= len(c.token_ids) <= 12
    finally:
        sut.close()
    again = make_sut(model_dir)  # a fresh load of the same directory gives the same tokens
    try:
        assert again.generate(samples()) == first
    finally:
        again.close()


def test_left_padding_gives_the_same_tokens_as_each_prompt_alone(model_dir):
    sut = make_sut(model_dir)
    try:
        batch = samples()
        lengths = {len(sut.prompt_ids(s)) for s in batch}
        assert len(lengths) == len(batch)  # really padded
        together = sut.generate(batch)
        alone = [sut.generate([s])[0] for s in batch]
        assert together == alone
    finally:
        sut.close()


def test_streaming_gives_the_offline_tokens_one_token_per_emit(model_dir):
    sut = make_sut(model_dir)
    try:
        batch = samples()
        sut.load(batch)
        offline = [c.token_ids for c in sut.generate(batch)]
        assert stream_all(sut, batch) == offline
    finally:
        sut.close()


@pytest.mark.parametrize("path", ["offline", "streaming"])
def test_generation_stops_at_the_first_eos_and_reports_it_once(model_dir, tmp_path, path):
    prompt = samples()[1]
    free = make_sut(model_dir, max_new_tokens=12)
    try:
        unconstrained = free.generate([prompt])[0].token_ids
    finally:
        free.close()
    # Make a token that greedy decoding produces mid-way the stop token.
    k = next(i for i, t in enumerate(unconstrained) if i >= 2 and t not in unconstrained[:i])
    eos = unconstrained[k]
    sut = make_sut(with_eos(model_dir, tmp_path / "eos", eos), max_new_tokens=12)
    try:
        assert sut.eos == {eos}  # stop tokens come from the model config
        out = sut.generate([prompt])[0].token_ids if path == "offline" else stream_all(sut, [prompt])[0]
        assert out == unconstrained[:k + 1]
        assert out.count(eos) == 1 and out[-1] == eos
    finally:
        sut.close()


def test_requests_submitted_while_others_run_join_the_batch_and_leave_when_done(model_dir):
    sut = make_sut(model_dir, max_new_tokens=16, max_batch_size=4)
    batch = samples()
    try:
        solo = [sut.generate([s])[0].token_ids for s in batch]
        first = Recorder(pause_at=4)
        sut.submit(batch[0], first)
        assert first.paused.wait(30)
        # The loop is held inside a step; these arrive while the first request is running.
        later = [Recorder() for _ in batch[1:]]
        for s, r in zip(batch[1:], later, strict=True):
            sut.submit(s, r)
        first.resume.set()
        outputs = [first.wait()] + [r.wait() for r in later]
        stats = sut.decoder.stats
        assert outputs == solo  # joining a running batch changes no token
        assert stats.joined_running == 3 and stats.max_running == 4
        # Shared steps: far fewer than serving the four one after another.
        assert stats.steps < sum(len(o) - 1 for o in outputs)
        # The first request finished first and left; the others went on without it.
        assert stats.running_widths[0] == 1 and stats.running_widths[-1] < 4
        assert sut.decoder.running == 0
    finally:
        sut.close()


def test_more_requests_than_the_batch_wait_their_turn(model_dir):
    sut = make_sut(model_dir, max_new_tokens=6, max_batch_size=2)
    try:
        batch = samples()
        expected = [c.token_ids for c in sut.generate(batch)]
        assert stream_all(sut, batch) == expected
        assert sut.decoder.stats.max_running <= 2
    finally:
        sut.close()


def test_close_fails_requests_still_waiting(model_dir):
    sut = make_sut(model_dir, max_new_tokens=8, max_batch_size=1)
    first, second = Recorder(pause_at=1), Recorder()
    sut.submit(samples()[0], first)
    assert first.paused.wait(30)
    sut.submit(samples()[1], second)
    closer = threading.Thread(target=sut.close)
    closer.start()
    first.resume.set()
    closer.join(30)
    assert not closer.is_alive()
    assert second.finished.is_set() and isinstance(second.error, RuntimeError)
    assert first.ends == 1


def test_the_tokenizer_satisfies_the_protocol_and_skips_special_tokens(model_dir):
    sut = make_sut(model_dir)
    try:
        tok: Tokenizer = sut.tokenizer
        text = "The harbour reopened on Friday."
        ids = tok.encode(text)
        assert ids[0] == sut.tokenizer.hf.bos_token_id  # prompts start with BOS, like Llama's
        assert tok.decode(ids + [tok.eos_token_id]) == text  # BOS and EOS are not text
        assert tok.eos_token_id in sut.eos
    finally:
        sut.close()


def test_describe_reports_the_device_the_model_and_its_context(model_dir):
    sut = make_sut(model_dir, max_batch_size=3)
    try:
        info = sut.describe()
    finally:
        sut.close()
    assert (info.name, info.runs_model, info.remote, info.device, info.device_name) == ("hf", True, False, "cpu", None)
    assert (info.decode_batch, info.decode_batch_key) == (3, "max_batch_size")
    assert info.context_length == sut.max_positions and info.stats is None  # no draft: no counters
    assert info.model.to_json() == sut.model_info and info.model.path == str(model_dir)
    assert list(sut.model_info) == ["path", "architecture", "fingerprint", "parameters", "dtype", "weight_bytes"]
    assert info.model.parameters == sum(p.numel() for p in sut.model.parameters()) and info.model.dtype == "float32"


def test_bfloat16_on_cpu(model_dir):
    sut = make_sut(model_dir, max_new_tokens=4, dtype="bfloat16", device="cpu")
    try:
        assert next(sut.model.parameters()).dtype == torch.bfloat16
        assert 1 <= len(sut.generate(samples()[:2])[1].token_ids) <= 4
    finally:
        sut.close()


def test_the_checkpoint_sampling_defaults_do_not_change_greedy_decoding(model_dir, tmp_path):
    sut = make_sut(model_dir)
    try:
        expected = sut.generate(samples())
    finally:
        sut.close()
    noisy = tmp_path / "sampling"
    shutil.copytree(model_dir, noisy)
    gen = json.loads((noisy / "generation_config.json").read_text())
    gen.update(do_sample=True, temperature=5.0, top_k=3, repetition_penalty=3.0)
    (noisy / "generation_config.json").write_text(json.dumps(gen))
    sut = make_sut(noisy)
    try:
        assert sut.generate(samples()) == expected
    finally:
        sut.close()


def test_missing_model_directory_is_a_config_error_naming_the_path(tmp_path):
    with pytest.raises(ConfigError, match="sut.model_path") as err:
        make_sut(tmp_path / "no-such-model")
    assert str(tmp_path / "no-such-model") in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("damage", ["no-config", "bad-weights", "no-weights", "no-tokenizer"])
def test_broken_model_directory_is_a_sut_error_naming_the_path(model_dir, tmp_path, damage):
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    if damage == "no-config":
        (broken / "config.json").unlink()
    elif damage == "bad-weights":
        (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    elif damage == "no-weights":
        (broken / "model.safetensors").unlink()
    else:
        (broken / "tokenizer.json").unlink()
        (broken / "tokenizer_config.json").unlink()
    with pytest.raises(SUTError) as err:
        make_sut(broken)
    assert str(broken) in str(err.value) and "\n" not in str(err.value)


def test_cuda_fast_decode_without_cuda_is_a_config_error(model_dir):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ConfigError, match="cuda_fast_decode"):
        make_sut(model_dir, cuda_fast_decode=True)


def test_serial_static_cache_decoder_streams_the_same_tokens(model_dir):
    """The fast path's logic (static cache, streamer, one at a time) on CPU, where nothing is compiled."""
    from harness.sut.hf.fast import SerialDecoder

    sut = make_sut(model_dir)
    try:
        batch = samples()
        expected = [c.token_ids for c in sut.generate(batch)]
        sut.decoder.close()
        sut.decoder = SerialDecoder(sut.model, sut.generation_config, static_cache=True)
        sut.decoder.warm_up(max((sut.prompt_ids(s) for s in batch), key=len))
        assert stream_all(sut, batch) == expected
    finally:
        sut.close()


def test_the_tokenizer_alone_decodes_like_the_sut(model_dir):
    sut = make_sut(model_dir)
    try:
        outputs = [c.token_ids for c in sut.generate(samples())]
        texts = [sut.tokenizer.decode(o) for o in outputs]
    finally:
        sut.close()
    tok = HFSUT.load_tokenizer(HFParams(model_path=str(model_dir)), SUTContext(corpus=[], max_new_tokens=1))
    assert [tok.decode(o) for o in outputs] == texts
    assert tok.eos_token_id == sut.tokenizer.eos_token_id


def test_cpu_threads_one_for_the_embedded_model_else_as_asked(model_dir):
    from harness.sut.hf.adapter import cpu_threads

    assert cpu_threads(HFParams()) == 1  # the tiny model's matrices are too small to split
    assert cpu_threads(HFParams(model_path="/models/x")) is None  # torch's default: one per core
    assert cpu_threads(HFParams(model_path="/models/x", threads=3)) == 3
    from harness.sut.hf.torch_thread import torch_thread

    # torch's OpenMP thread count is per calling thread: what counts is the torch thread's
    before = torch_thread().call(torch.get_num_threads)
    try:
        make_sut(model_dir, threads=1).close()
        assert torch_thread().call(torch.get_num_threads) == 1
        with pytest.raises(ConfigError, match="sut.threads"):
            make_sut(model_dir, threads=0)
    finally:
        torch_thread().call(torch.set_num_threads, before)


def test_all_torch_work_runs_on_one_thread_whichever_thread_calls(model_dir):
    # libgomp keeps one OpenMP team per thread that starts parallel work, and throttles them all
    # once it manages more threads than CPUs: load, warm-up, batches and decoding on one thread
    # keep the process at one team, as a bare generate() loop is (issue 21, ~14% on 2 cores).
    threads: set[str] = set()
    sut = make_sut(model_dir, max_new_tokens=4)
    try:
        sut.model.register_forward_pre_hook(lambda *_: threads.add(threading.current_thread().name))
        batch = samples()
        offline = threading.Thread(target=sut.generate, args=(batch[:2],), name="bridge-worker")
        offline.start()
        offline.join(30)
        sut.generate(batch[2:])  # from the main thread
        stream_all(sut, batch)  # the in-flight decode loop
    finally:
        sut.close()
    assert threads == {"harness-torch"}
