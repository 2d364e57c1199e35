"""Secret redaction: the one place that decides what is secret and how it is masked.

A value is secret when its key names a credential (``api_key``, ``hf_token``, ``password``,
``client_secret``, ...) or when it equals the value of an environment variable with such a name
(so ``${oc.env:HF_TOKEN}`` under any key is caught too). HTTP headers to send (a ``headers``
mapping, e.g. ``sut.headers``) are all treated as secret: their literal values are masked, and
the values of environment variables they name (``env:NAME``) are scrubbed from text. Everything
the harness records outside the process (MLflow params, tags and artifacts, ``config.json``,
``environment.json``, ``results.json``, ``peak.json``, the summary and ``error:`` lines) passes
through a :class:`Redactor`, and so does every log record (:func:`mask_logs`). Text is also
scrubbed of URL passwords, ``secret_key=value`` assignments, Authorization values and the shapes
of known API keys, which catches a key a server echoes back in an error body.
"""

from __future__ import annotations

import logging
import os
import re
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

REDACTED = "***"

# Judged on the last word(s) of a key, so hf_token / MLFLOW_TRACKING_PASSWORD are secret while
# output_tokens, max_new_tokens, tokenizer and use_token_latencies are not. ("pwd" is left out:
# the PWD variable is the current directory.)
_SECRET_WORDS = frozenset({"token", "password", "passwd", "passphrase", "secret", "apikey", "auth",
                           "authorization", "credential", "credentials", "cookie"})
_SECRET_PAIRS = frozenset({("api", "key"), ("access", "key"), ("secret", "key"), ("private", "key"),
                           ("auth", "key"), ("session", "key")})
# Shorter values are not scrubbed from free text: "1" or "true" would mask half of every log.
MIN_SCRUB_LEN = 6

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_ASSIGNMENT = re.compile(r"(?P<key>[A-Za-z_][\w.\-]*)(?P<sep>=)(?P<value>[^\s,'\"\]}]+)")
# scheme://user:password@host, also as Hydra writes overrides of a round (http\://user\:password@host).
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][\w+.\-]*\\?://[^/\s:@\\]+\\?:)(?P<password>[^@\s/]+)@")
# Credentials a server may echo that the harness never saw (a key from another source, a
# server's own config): an Authorization value, and the shapes of OpenAI / Hugging Face keys.
_AUTH_VALUE = re.compile(r"(?i)\b(?P<scheme>bearer|basic)(?P<sep>\s+)[\w.~+/=\-]{8,}")
_KEY_SHAPES = re.compile(r"\b(?:sk-[\w\-]{16,}|hf_[A-Za-z0-9]{30,})")
_HEADERS_KEY = "headers"  # a mapping of HTTP headers to send: every value may be a credential
_ENV_REFERENCE = re.compile(r"^env:([A-Za-z_][A-Za-z0-9_]*)$")  # a header value read from $NAME at run time


def is_secret_key(key: str) -> bool:
    """Whether a config key or environment variable name names a credential."""
    last = str(key).rsplit(".", 1)[-1]
    words = [w.lower() for w in re.split(r"[^A-Za-z0-9]+", _CAMEL.sub("_", last)) if w]
    if not words:
        return False
    return words[-1] in _SECRET_WORDS or tuple(words[-2:]) in _SECRET_PAIRS


def secret_values(data: Any) -> set[str]:
    """Every scalar value found under a secret key anywhere in nested mappings/lists, and every
    literal value of a ``headers`` mapping."""
    found: set[str] = set()
    if isinstance(data, Mapping):
        for key, value in data.items():
            if is_secret_key(str(key)) and value is not None and not isinstance(value, (Mapping, list, tuple)):
                found.add(str(value))
            elif str(key) == _HEADERS_KEY and isinstance(value, Mapping):
                found |= {str(v) for v in value.values() if v is not None and not _ENV_REFERENCE.match(str(v))}
            else:
                found |= secret_values(value)
    elif isinstance(data, (list, tuple)):
        for item in data:
            found |= secret_values(item)
    return found


def secret_env_names(data: Any) -> set[str]:
    """Names of environment variables that hold secrets: values of keys like ``api_key_env``, and
    those ``headers`` values name (``env:NAME``)."""
    found: set[str] = set()
    if isinstance(data, Mapping):
        for key, value in data.items():
            stem = str(key)[:-4] if str(key).lower().endswith("_env") else ""
            if stem and is_secret_key(stem) and isinstance(value, str):
                found.add(value)
            elif str(key) == _HEADERS_KEY and isinstance(value, Mapping):
                found |= {m[1] for v in value.values() if isinstance(v, str) and (m := _ENV_REFERENCE.match(v))}
            else:
                found |= secret_env_names(value)
    elif isinstance(data, (list, tuple)):
        for item in data:
            found |= secret_env_names(item)
    return found


@dataclass(frozen=True)
class Redactor:
    """Masks secret-keyed values in data and known secret values in any text."""

    values: frozenset[str] = frozenset()

    @classmethod
    def collect(cls, *sources: Any, environ: Mapping[str, str] | None = None) -> Redactor:
        """Secrets of the given config mappings plus those of secret-named environment variables."""
        environ = os.environ if environ is None else environ
        values: set[str] = {v for k, v in environ.items() if is_secret_key(k)}
        for source in sources:
            values |= secret_values(source)
            # sut.api_key_env names the variable holding the key (any name, e.g. LLM_CRED).
            values |= {environ[name] for name in secret_env_names(source) if name in environ}
        return cls(frozenset(v for v in values if len(v) >= MIN_SCRUB_LEN))

    def text(self, text: str) -> str:
        """Known secret values, ``secret_key=value`` assignments and URL passwords masked."""
        for value in sorted(self.values, key=len, reverse=True):  # longest first: no partial leftovers
            text = text.replace(value, REDACTED)
        text = _ASSIGNMENT.sub(lambda m: f"{m['key']}{m['sep']}{REDACTED}" if is_secret_key(m["key"]) else m[0], text)
        text = _URL_PASSWORD.sub(lambda m: f"{m['head']}{REDACTED}@", text)
        text = _AUTH_VALUE.sub(lambda m: f"{m['scheme']}{m['sep']}{REDACTED}", text)
        return _KEY_SHAPES.sub(REDACTED, text)

    def data(self, data: Any) -> Any:
        """A copy of nested mappings/lists with secret-keyed values masked and strings scrubbed."""
        if isinstance(data, Mapping):
            return {k: REDACTED if is_secret_key(str(k)) and data[k] is not None else
                    self._headers(data[k]) if str(k) == _HEADERS_KEY and isinstance(data[k], Mapping) else
                    self.data(data[k]) for k in data}
        if isinstance(data, (list, tuple)):
            return [self.data(v) for v in data]
        if isinstance(data, str):
            return self.text(data)
        return data

    def _headers(self, headers: Mapping) -> dict:
        """Header values masked, but for ``env:NAME`` references, which name a variable, not a value."""
        return {k: v if isinstance(v, str) and _ENV_REFERENCE.match(v) else REDACTED if v is not None else None
                for k, v in headers.items()}

    def bytes(self, raw: bytes) -> bytes:
        """:meth:`text` for file contents; undecodable files get the value scrub only."""
        try:
            return self.text(raw.decode("utf-8")).encode("utf-8")
        except UnicodeDecodeError:
            for value in self.values:
                raw = raw.replace(value.encode("utf-8"), REDACTED.encode())
            return raw

    def argv(self, argv: Iterable[str]) -> list[str]:
        return [self.text(a) for a in argv]


_log_redactor: Redactor | None = None


def mask_logs(redactor: Redactor) -> None:
    """Mask secrets in every log record this process makes from now on, whatever logger and handler
    (Hydra's console and job log, ``harness_test.log``): the records are masked when created.

    Called again, it switches to the new redactor (each job of a round has its own config)."""
    global _log_redactor
    _log_redactor = redactor
    factory = logging.getLogRecordFactory()
    if getattr(factory, "harness_masking", False):
        return

    def masked(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        if _log_redactor is not None:
            _mask_record(record, _log_redactor)
        return record

    masked.harness_masking = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(masked)


def _mask_record(record: logging.LogRecord, redactor: Redactor) -> None:
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: logging reports that itself
        return
    cleaned = redactor.text(message)
    if cleaned != message:
        record.msg, record.args = cleaned, None
    if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
        trace = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        record.exc_text = redactor.text(trace)  # what Formatter.formatException would write
