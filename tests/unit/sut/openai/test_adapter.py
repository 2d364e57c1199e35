"""sut=openai against real servers on 127.0.0.1 (the scripted stub), without LoadGen."""

from __future__ import annotations

import logging
import re
import time

import pytest

from harness.errors import ConfigError, SUTError
from harness.sut import SUTContext
from harness.sut.base import CollectingStream, Sample
from harness.sut.openai.adapter import OpenAIParams, OpenAISUT
from harness.sut.openai.client import Endpoint, request_body
from harness.sut.openai.tokens import OpenWordTokenizer
from tests.openai_servers import fake, free_port, stub

CTX = SUTContext(corpus=["Some words here.", "t0 t1"], max_new_tokens=8)
SAMPLE = Sample(index=0, prompt="Hello there.", text="Hello there.")


class Recorder(CollectingStream):
    """A TokenStream that records what arrives, and when."""

    def __init__(self) -> None:
        super().__init__()
        self.start = time.perf_counter()
        self.chunks: list[tuple[float, list[int]]] = []

    def emit(self, ids) -> None:
        super().emit(ids)
        if ids:
            self.chunks.append((time.perf_counter() - self.start, list(ids)))


def make(url: str, **kw) -> OpenAISUT:
    return OpenAISUT.create(OpenAIParams(base_url=url, **kw), CTX)


def streamed(sut: OpenAISUT, timeout: float = 10) -> Recorder:
    rec = Recorder()
    sut.submit(SAMPLE, rec)
    assert rec.done.wait(timeout), "stream did not end"
    return rec


def test_request_body_is_greedy_and_asks_for_usage():
    body = request_body(Endpoint("http://x/v1", "m", "chat"), "hi", max_tokens=7, stream=True, ignore_eos=True,
                        min_tokens=7, extra={"top_k": 1})
    assert body["messages"] == [{"role": "user", "content": "hi"}] and body["temperature"] == 0.0
    assert body["max_tokens"] == 7 and body["stream_options"] == {"include_usage": True}
    assert body["ignore_eos"] is True and body["min_tokens"] == 7 and body["top_k"] == 1
    assert Endpoint("http://x/v1/", "m").url == "http://x/v1/completions"


def test_word_tokenizer_round_trips_text_outside_its_vocabulary():
    tok = OpenWordTokenizer(["Some words here."])
    text = "Some naïve words: ünïcödé 😀 here!\n"
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert all(0 <= i < 2**31 for i in ids)  # LoadGen's int32
    assert tok.encode("Some words") == [tok._piece_to_id["Some"], tok._piece_to_id[" "], tok._piece_to_id["words"]]


def test_preflight_fails_fast_when_the_server_is_down():
    start = time.monotonic()
    with pytest.raises(SUTError, match=r"sut.base_url=.*cannot connect") as err:
        make(f"http://127.0.0.1:{free_port()}/v1", connect_timeout_s=2)
    assert time.monotonic() - start < 5 and "\n" not in str(err.value)


def test_preflight_names_a_wrong_model_and_the_served_ones():
    with stub() as url, pytest.raises(SUTError, match=r"sut.model=nope is not served .*stub"):
        make(url, model="nope")


def test_an_unset_api_key_variable_is_a_config_error(monkeypatch):
    monkeypatch.delenv("HARNESS_TEST_NO_SUCH_KEY", raising=False)
    with pytest.raises(ConfigError, match="sut.api_key_env=HARNESS_TEST_NO_SUCH_KEY"):
        make("http://127.0.0.1:9/v1", api_key_env="HARNESS_TEST_NO_SUCH_KEY")


def test_first_token_is_the_first_content_chunk_not_the_role_chunk():
    # The stub sends an empty role chunk at once and the first content after 150 ms.
    with stub("--ttft-ms", "150", "--tpot-ms", "5", "--tokens", "6") as url:
        sut = make(url, api="chat", return_token_ids=True, tokenizer_path="embedded")
        try:
            rec = streamed(sut)
        finally:
            sut.close()
    assert rec.error is None
    assert rec.chunks[0][0] >= 0.15
    assert rec.tokens == list(range(100, 106))  # the server's ids, one chunk each
    stats = sut.stats()
    assert stats["usage_reported"] == 1 and stats["usage_mismatches"] == 0 and stats["token_ids_from_server"] == 1
    assert stats["token_count_source"] == "server token ids" and stats["output_token_ids"] == "server"


def test_without_ids_the_count_is_the_servers_usage_and_the_ids_are_the_text_re_tokenized(caplog):
    with stub("--tokens", "4") as url:
        sut = make(url)  # no ids: the dataset word tokenizer counts " t0" as 2 tokens, the server as 1
        try:
            rec = streamed(sut)
            completions = sut.generate([SAMPLE, Sample(1, "x", "x")])
        finally:
            with caplog.at_level(logging.INFO, logger="harness.sut.openai.adapter"):
                sut.close()
    tok = sut.tokenizer
    assert rec.error is None and tok.decode(rec.tokens) == " t0 t1 t2 t3"  # the accuracy log keeps the text
    assert rec.n_tokens == 4 and len(rec.tokens) == 8  # LoadGen times with the server's count
    assert [tok.decode(c.token_ids) for c in completions] == [" t0 t1 t2 t3"] * 2
    assert [c.n_tokens for c in completions] == [4, 4]
    stats = sut.stats()
    assert stats["requests"] == 3 and stats["usage_mismatch_rate"] == 1.0
    assert stats["server_completion_tokens"] == 12 and stats["client_completion_tokens"] == 24
    assert stats["counted_tokens"] == 12 and stats["token_count_source"] == "server usage"
    assert stats["token_count_sources"] == {"server usage": 3} and stats["token_counts_approximate"] is False
    assert stats["output_token_ids"] == "re-tokenized" and "word tokenizer" in stats["retokenizer"]
    assert "LoadGen timed with the server's count" in caplog.text and "approximate" not in caplog.text


def test_without_ids_or_usage_the_word_tokenizer_counts_and_says_it_is_approximate(caplog):
    with fake("--no-usage", "--tokens", "4", "--ttft-ms", "0", "--tpot-ms", "0") as url:
        sut = make(url)
        try:
            rec = streamed(sut)
            (completion,) = sut.generate([SAMPLE])
        finally:
            with caplog.at_level(logging.WARNING, logger="harness.sut.openai.adapter"):
                sut.close()
    # " alpha0" is one token to the server, 2+ pieces to the word tokenizer: the count is not the truth (4)
    assert rec.error is None and rec.n_tokens == len(rec.tokens) > 4
    assert completion.n_tokens is None and len(completion.token_ids) == len(rec.tokens)
    assert sut.tokenizer.decode(rec.tokens) == " alpha0 bravo1 charlie2 delta3"
    stats = sut.stats()
    assert stats["token_count_source"] == "dataset word tokenizer" and stats["token_counts_approximate"] is True
    assert "TPOT and tokens/s are approximate" in caplog.text


def test_without_usage_the_models_tokenizer_counts_and_is_not_approximate():
    from transformers import AutoTokenizer

    from harness.sut.hf.tiny_model import ensure_tiny_model

    with fake("--no-usage", "--tokens", "4", "--ttft-ms", "0", "--tpot-ms", "0") as url:
        sut = make(url, tokenizer_path="embedded")
        try:
            rec = streamed(sut)
        finally:
            sut.close()
    hf = AutoTokenizer.from_pretrained(ensure_tiny_model())
    truth = hf.encode(" alpha0 bravo1 charlie2 delta3", add_special_tokens=False)
    assert rec.tokens == truth and rec.n_tokens == len(truth)
    stats = sut.stats()
    assert stats["token_count_source"] == "model tokenizer" and stats["token_counts_approximate"] is False


def test_return_token_ids_without_the_models_tokenizer_is_refused_in_one_line():
    params = OpenAIParams(base_url="http://127.0.0.1:9/v1", return_token_ids=True)
    for call in (lambda: OpenAISUT.check(params, CTX), lambda: OpenAISUT.create(params, CTX)):
        with pytest.raises(ConfigError, match=r"^sut.return_token_ids=true needs sut.tokenizer_path") as err:
            call()
        assert "\n" not in str(err.value)


@pytest.mark.parametrize(("fault", "message"), [("500", "HTTP 500"), ("cut", "connection lost|cut mid-way"),
                                                 ("hang", "read timeout")])
def test_each_fault_fails_the_request_in_bounded_time(fault, message):
    with stub("--fault", fault, "--fault-every", "1", "--tokens", "8", "--tpot-ms", "1") as url:
        sut = make(url, read_timeout_s=0.5, preflight=False, model="stub")
        try:
            start = time.monotonic()
            rec = streamed(sut)
            (completion,) = sut.generate([SAMPLE])
        finally:
            sut.close()
    assert time.monotonic() - start < 5
    assert rec.error is not None and re.search(message, str(rec.error))
    if fault != "cut":  # a non-streamed request has no stream to cut
        assert completion.error and re.search(message, completion.error)
    assert sut.stats()["errors"] >= 1


@pytest.mark.parametrize(("url", "remote"), [("http://127.0.0.1:8000/v1", False), ("http://localhost:8000/v1", False),
                                           ("http://[::1]:8000/v1", False), ("https://api.example.com/v1", True),
                                           ("http://gpu-box.internal:8000/v1", True)])
def test_describe_says_a_server_elsewhere_is_remote_and_its_decode_batch(url, remote):
    sut = make(url, preflight=False, model="m", max_concurrency=16)
    try:
        info = sut.describe()
    finally:
        sut.close()
    assert (info.remote, info.runs_model, info.device, info.model) == (remote, True, None, None)
    assert (info.decode_batch, info.decode_batch_key) == (16, "max_concurrency")  # the fewer of the two
    assert info.stats["requests"] == 0


def test_a_base_url_that_is_not_http_is_a_config_error_naming_the_key():
    with pytest.raises(ConfigError, match=r"^sut.base_url=ftp://x/v1: not an http:// or https:// URL$"):
        OpenAISUT.check(OpenAIParams(base_url="ftp://x/v1"), CTX)
