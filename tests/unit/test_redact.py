"""Secrets: which keys are secret, and masking in data, text, files and command lines."""

import pytest

from harness.redact import REDACTED, Redactor, is_secret_key


@pytest.mark.parametrize("key", ["api_key", "sut.api_key", "OPENAI_API_KEY", "apiKey", "hf_token", "HF_TOKEN",
                                 "token", "MLFLOW_TRACKING_PASSWORD", "password", "client_secret",
                                 "AWS_SECRET_ACCESS_KEY", "accessToken", "Authorization", "db.passwd"])
def test_secret_keys(key):
    assert is_secret_key(key)


@pytest.mark.parametrize("key", ["output_tokens", "max_new_tokens", "tokenizer", "tokenizer_path",
                                 "use_token_latencies", "tokens_per_second", "author", "PWD", "OLDPWD",
                                 "SSH_AUTH_SOCK", "keyword", "secret_file_path", ""])
def test_ordinary_keys(key):
    assert not is_secret_key(key)


def test_collect_takes_config_secrets_and_secret_env_values_only():
    redactor = Redactor.collect({"sut": {"api_key": "sk-config-123", "ttft_ms": 10, "password": "abc"}},
                                environ={"HF_TOKEN": "hf_envsecret_456", "HOME": "/root", "GITHUB_TOKEN": "1"})
    # Short values are not scrubbed from text (they would mask everything), but keys still are.
    assert redactor.values == frozenset({"sk-config-123", "hf_envsecret_456"})


def test_data_masks_secret_keys_and_secret_values_under_any_key():
    redactor = Redactor.collect(environ={"HF_TOKEN": "hf_envsecret_456"})
    data = {"sut": {"api_key": "short", "nested": [{"token": "t0k3n-value"}], "ttft_ms": 10,
                    "description": "uses hf_envsecret_456 to download"},
            "output_tokens": 64, "empty_secret": None}
    cleaned = redactor.data(data)
    assert cleaned["sut"]["api_key"] == REDACTED and cleaned["sut"]["nested"][0]["token"] == REDACTED
    assert cleaned["sut"]["description"] == f"uses {REDACTED} to download"
    assert cleaned["sut"]["ttft_ms"] == 10 and cleaned["output_tokens"] == 64 and cleaned["empty_secret"] is None
    assert data["sut"]["api_key"] == "short"  # a copy: the input is untouched


def test_text_masks_values_assignments_and_url_passwords():
    redactor = Redactor(frozenset({"sk-live-abcdef"}))
    text = ("called with sk-live-abcdef; override sut.api_key=short,sut.ttft_ms=3 hf_token=xyz "
            "use_token_latencies=1 uri http://alice:s3cr3t@mlflow.internal:5000/api")
    cleaned = redactor.text(text)
    for secret in ("sk-live-abcdef", "short", "xyz", "s3cr3t"):
        assert secret not in cleaned
    assert "sut.ttft_ms=3" in cleaned and "use_token_latencies=1" in cleaned
    assert "http://alice:***@mlflow.internal:5000/api" in cleaned


def test_bytes_and_argv():
    redactor = Redactor(frozenset({"sk-live-abcdef"}))
    assert redactor.bytes(b"key sk-live-abcdef\n") == b"key ***\n"
    assert redactor.bytes(b"\xff\xfe sk-live-abcdef") == b"\xff\xfe ***"
    assert redactor.argv(["harness", "sut.api_key=whatever", "sut=echo"]) == ["harness", "sut.api_key=***", "sut=echo"]


def test_url_passwords_are_masked_in_hydras_escaped_form_too():
    # How Hydra writes the override of a round's job (multirun): colons escaped.
    text = r"sut.base_url=http\://USER\:PASSWORD123secret@127.0.0.1\:8000/v1 sut=openai"
    assert Redactor().text(text) == r"sut.base_url=http\://USER\:***@127.0.0.1\:8000/v1 sut=openai"


@pytest.mark.parametrize("echoed", [
    'HTTP 401: {"error": {"message": "Incorrect API key provided: Bearer sk-abcdefghijklmnopqrstuvwx"}}',
    "Authorization: Basic dXNlcjpwYXNzd29yZA==",
    "the key hf_abcdefghijklmnopqrstuvwxyz01234567 is not valid",
])
def test_credentials_a_server_echoes_are_masked_even_when_unknown(echoed):
    cleaned = Redactor().text(echoed)
    assert REDACTED in cleaned
    for secret in ("sk-abcdefghijklmnopqrstuvwx", "dXNlcjpwYXNzd29yZA", "hf_abcdefghijklmnopqrstuvwxyz01234567"):
        assert secret not in cleaned


def test_every_log_record_is_masked_whatever_logger_or_handler(caplog):
    import logging

    from harness.redact import mask_logs

    mask_logs(Redactor(frozenset({"my-known-secret-value"})))
    try:
        logger = logging.getLogger("some.library")
        with caplog.at_level(logging.INFO):
            logger.info("sut=openai: %s with %s", "http://USER:PASS-word@host/v1", "my-known-secret-value")
            try:
                raise RuntimeError("server said: Bearer sk-abcdefghijklmnopqrstuvwx")
            except RuntimeError:
                logger.exception("request failed")
        text = caplog.text
        assert "PASS-word" not in text and "my-known-secret-value" not in text and "sk-abcdefghijklmnop" not in text
        assert "http://USER:***@host/v1" in text and "Bearer ***" in text
    finally:
        mask_logs(Redactor())
