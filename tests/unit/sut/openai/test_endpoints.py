"""sut=openai against real endpoints' ways, on 127.0.0.1: https with a CA made here, a proxy
(CONNECT and forwarding), extra headers, a base URL's query string, error statuses and retries, an
HTTP/2-only server, answers far past max_tokens. Real servers in their own processes (the
independent fake of tests/openai_servers.py), no LoadGen."""

from __future__ import annotations

import asyncio
import threading

import pytest

from harness.bench.tls import make_certificates
from harness.errors import ConfigError, SUTError
from harness.redact import REDACTED, Redactor
from harness.sut.openai.adapter import OpenAIParams, OpenAISUT
from tests.openai_servers import fake, proxy
from tests.unit.sut.openai.test_adapter import CTX, SAMPLE, make, streamed

QUICK = ("--tokens", "4", "--ttft-ms", "0", "--tpot-ms", "0")
PROXY_VARS = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY", "https_proxy", "http_proxy", "all_proxy",
              "no_proxy")


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def no_proxy_env(monkeypatch):
    """This machine's own proxy settings must not steer these loopback tests."""
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def answered(sut: OpenAISUT) -> tuple:
    """One streamed and one non-streamed request; both must succeed."""
    rec = streamed(sut)
    (completion,) = sut.generate([SAMPLE])
    assert rec.error is None and completion.error is None, (rec.error, completion.error)
    return rec, completion


# -- TLS --------------------------------------------------------------------------------------------

def test_https_with_the_ca_in_sut_ca_bundle(certs, no_proxy_env):
    with fake("--tls", str(certs.ca.parent), "--host", "localhost", *QUICK) as url:
        assert url.startswith("https://localhost:")
        sut = make(url, ca_bundle=str(certs.ca))
        try:
            rec, completion = answered(sut)
            # https keeps the direct write from the caller's thread (TLS is done on memory buffers)
            assert sut._client.writes_from_any_thread and all(c.tls is not None for c in sut._client.conns)
        finally:
            sut.close()
    assert rec.n_tokens == 4 and completion.n_tokens == 4  # the server's usage


def test_an_untrusted_certificate_fails_the_preflight_in_one_line_naming_the_keys(certs, no_proxy_env):
    with fake("--tls", str(certs.ca.parent), "--host", "localhost", *QUICK) as url:
        with pytest.raises(SUTError, match=r"TLS certificate not trusted.*sut.ca_bundle.*sut.verify_tls=false") as err:
            make(url)
        assert "\n" not in str(err.value)
        sut = make(url, verify_tls=False)  # a test server's own certificate, knowingly accepted
        try:
            answered(sut)
        finally:
            sut.close()


def test_a_missing_or_unusable_ca_bundle_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"^sut.ca_bundle: no CA file at /nonexistent/ca.pem$"):
        OpenAISUT.check(OpenAIParams(base_url="https://x/v1", ca_bundle="/nonexistent/ca.pem"), CTX)
    (tmp_path / "ca.pem").write_text("not a certificate")
    with pytest.raises(ConfigError, match=r"^sut.ca_bundle: .*ca.pem holds no usable PEM certificate"):
        OpenAISUT.check(OpenAIParams(base_url="https://x/v1", ca_bundle=str(tmp_path / "ca.pem")), CTX)


# -- proxies ----------------------------------------------------------------------------------------

def test_https_goes_through_the_environments_proxy_by_connect_unless_no_proxy_or_the_key_says_so(
        certs, no_proxy_env):
    with proxy() as px, fake("--tls", str(certs.ca.parent), "--host", "localhost", *QUICK) as url:
        port = url.split(":")[2].split("/")[0]
        no_proxy_env.setenv("HTTPS_PROXY", px.url)
        sut = make(url, ca_bundle=str(certs.ca))
        try:
            answered(sut)
        finally:
            sut.close()
        assert f"CONNECT localhost:{port}" in px.output()
        for bypass in ({"NO_PROXY": "localhost"}, {"proxy_from_env": False}):
            for name, value in bypass.items():
                if name.isupper():
                    no_proxy_env.setenv(name, value)
            params = {k: v for k, v in bypass.items() if not k.isupper()}
            sut = make(url, ca_bundle=str(certs.ca), **params)
            try:
                answered(sut)
            finally:
                sut.close()
            assert px.output() == [], bypass  # straight to the server
            no_proxy_env.delenv("NO_PROXY", raising=False)


def test_plain_http_goes_through_the_proxy_in_absolute_form(no_proxy_env):
    with proxy() as px, fake(*QUICK) as url:
        no_proxy_env.setenv("http_proxy", px.url)
        sut = make(url)
        try:
            answered(sut)
        finally:
            sut.close()
    lines = px.output()
    assert f"GET {url}/models" in lines and f"POST {url}/completions" in lines


def test_a_proxy_that_is_not_http_is_a_config_error(no_proxy_env):
    no_proxy_env.setenv("HTTPS_PROXY", "socks5://127.0.0.1:1080")
    with pytest.raises(ConfigError, match=r"not an http:// proxy; sut.proxy_from_env=false connects directly"):
        OpenAISUT.check(OpenAIParams(base_url="https://api.example.com/v1"), CTX)


# -- headers and query strings ----------------------------------------------------------------------

def test_headers_from_the_environment_are_sent_and_never_written(monkeypatch, no_proxy_env):
    secret = "fake-key-6c1f0e93"
    monkeypatch.setenv("FAKE_GATEWAY_KEY", secret)
    with fake("--require-header", f"X-Gateway-Key:{secret}", *QUICK) as url:
        sut = make(url, headers={"X-Gateway-Key": "env:FAKE_GATEWAY_KEY"})
        try:
            answered(sut)
        finally:
            sut.close()
        assert secret not in repr(sut.endpoint)
        with pytest.raises(SUTError, match="HTTP 401"):  # without it the server refuses (preflight)
            make(url)
    config = {"sut": {"headers": {"X-Gateway-Key": "env:FAKE_GATEWAY_KEY", "OpenAI-Organization": "org-77aa1"}}}
    redactor = Redactor.collect(config)
    assert redactor.data(config)["sut"]["headers"] == {"X-Gateway-Key": "env:FAKE_GATEWAY_KEY",
                                                        "OpenAI-Organization": REDACTED}
    assert redactor.text(f"server said: bad key {secret} for org-77aa1") == f"server said: bad key {REDACTED} " \
                                                                             f"for {REDACTED}"
    monkeypatch.delenv("FAKE_GATEWAY_KEY")
    with pytest.raises(ConfigError, match=r"^sut.headers.X-Gateway-Key=env:FAKE_GATEWAY_KEY: that environment"):
        OpenAISUT.check(OpenAIParams(headers={"X-Gateway-Key": "env:FAKE_GATEWAY_KEY"}), CTX)
    with pytest.raises(ConfigError, match=r"^sut.headers.X-Bad: a header value may not hold a line break$"):
        OpenAISUT.check(OpenAIParams(headers={"X-Bad": "a\r\nInjected: 1"}), CTX)


def test_the_base_urls_query_string_is_kept_azure_style(no_proxy_env):
    query = "api-version=2024-06-01"
    with fake("--require-query", query, *QUICK) as url:
        sut = make(f"{url}?{query}")  # the preflight's GET /models carries it too
        try:
            answered(sut)
            assert sut.endpoint.path == f"/v1/completions?{query}"
        finally:
            sut.close()


# -- error statuses and retries ---------------------------------------------------------------------

def test_error_statuses_are_counted_and_no_retry_by_default(no_proxy_env):
    with fake("--status", "429", "--status-times", "2", "--retry-after", "0", *QUICK) as url:
        sut = make(url)
        try:
            rec = streamed(sut)
            (completion,) = sut.generate([SAMPLE])
            third = streamed(sut)
        finally:
            sut.close()
    assert "HTTP 429" in str(rec.error) and "HTTP 429" in completion.error and third.error is None
    stats = sut.stats()
    assert stats["http_errors"] == {"429": 2} and stats["retries"] == 0 and stats["errors"] == 2


def test_bounded_retries_honour_retry_after(no_proxy_env):
    with fake("--status", "503", "--status-times", "2", "--retry-after", "0", *QUICK) as url:
        sut = make(url, max_retries=1)
        try:
            rec = streamed(sut)  # 503, retried once: 503 again, which fails it
            (completion,) = sut.generate([SAMPLE])  # the third answer: fine at once
        finally:
            sut.close()
    assert "HTTP 503" in str(rec.error) and completion.error is None
    stats = sut.stats()
    assert stats["http_errors"] == {"503": 2} and stats["retries"] == 1 and stats["errors"] == 1
    with fake("--status", "429", "--status-times", "1", "--retry-after", "0", *QUICK) as url:
        sut = make(url, max_retries=2)
        try:
            rec = streamed(sut)
        finally:
            sut.close()
    assert rec.error is None and rec.n_tokens == 4 and sut.stats()["retries"] == 1
    with fake("--status", "429", "--status-times", "1", "--retry-after", "3600", *QUICK) as url:
        sut = make(url, max_retries=3, retry_max_wait_s=5)  # asked to wait an hour: fails now, no retry
        try:
            rec = streamed(sut)
        finally:
            sut.close()
    assert "HTTP 429" in str(rec.error) and sut.stats()["retries"] == 0


def test_retry_after_is_seconds_or_an_http_date():
    from harness.sut.openai.client import retry_after

    assert retry_after("7") == 7.0 and retry_after("-3") == 0.0 and retry_after(None) is None
    assert retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now=1445412500.0) == pytest.approx(10.0)
    assert retry_after("soon") is None


# -- HTTP/2 only ------------------------------------------------------------------------------------

class H2Only:
    """A loopback server speaking HTTP/2 only: any request gets a SETTINGS frame and a GOAWAY."""

    SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
    GOAWAY = b"\x00\x00\x08\x07\x00\x00\x00\x00\x00" + b"\x00\x00\x00\x00\x00\x00\x00\x01"

    def __enter__(self) -> str:
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def handle(reader, writer):
            await reader.read(1024)
            writer.write(self.SETTINGS + self.GOAWAY)
            await writer.drain()
            writer.close()

        async def main():
            self.server = await asyncio.start_server(handle, "127.0.0.1", 0)
            self.port = self.server.sockets[0].getsockname()[1]
            ready.set()

        self.thread = threading.Thread(target=lambda: (self.loop.run_until_complete(main()), self.loop.run_forever()),
                                       daemon=True)
        self.thread.start()
        ready.wait(5)
        return f"http://127.0.0.1:{self.port}/v1"

    def __exit__(self, *exc) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def test_an_http2_only_server_gets_one_clear_line(no_proxy_env):
    with H2Only() as url, pytest.raises(SUTError, match=r"answered in HTTP/2; this client speaks HTTP/1.1 only") as err:
        make(url)
    assert "\n" not in str(err.value)


# -- answers past max_tokens (issue 17) -------------------------------------------------------------

@pytest.mark.parametrize(("how", "args", "params", "message", "past"), [
    ("ids", ["--ids"], {"return_token_ids": True, "tokenizer_path": "embedded"},
     "more than max_tokens=8 token ids", 1),
    ("usage", [], {}, r"generated 40 tokens \(its usage\), more than max_tokens=8", 32),
    ("text", ["--token-chars", "100000", "--no-usage"], {}, r"more than 2,048 characters for max_tokens=8", 0),
])
def test_an_answer_past_max_tokens_fails_counted_and_is_not_kept(no_proxy_env, how, args, params, message, past):
    """A server ignoring the request's limit: the sample fails, is counted, and the answer is cut
    where it passes the limit (ids or usage past it, or text past max_tokens x 256 characters)."""
    with fake("--ignore-max-tokens", "--tokens", "40", "--ttft-ms", "0", "--tpot-ms", "0", *args) as url:
        sut = make(url, **params)  # CTX: max_new_tokens=8
        try:
            rec = streamed(sut)
            (completion,) = sut.generate([SAMPLE])
        finally:
            sut.close()
    assert rec.error is not None and completion.error is not None
    import re

    assert re.search(message, str(rec.error)), rec.error
    assert "limit" in completion.error or "max_tokens" in completion.error, completion.error
    assert len(rec.tokens) <= 8  # nothing past the limit reached the stream
    over = sut.stats()["over_max_tokens"]
    assert over["samples"] == 2 and over["tokens_past_limit"] >= past
