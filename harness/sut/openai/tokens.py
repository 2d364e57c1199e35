"""Tokenizers that turn a server's text back into output token ids for LoadGen (``sut=openai``).

Used only when the server does not return token ids: the ids are what the accuracy log holds
(decoded again to score the text), while the count LoadGen times with is the server's own usage
when it reports one (``COUNT_SOURCES``: server ids, server usage, the model's tokenizer, the
dataset's word tokenizer, best first; only the last is approximate). Output text is encoded once
per request, whole and without special tokens (encoding chunk by chunk adds a BOS per chunk and
changes counts at chunk boundaries). Both tokenizers round-trip: ``decode(encode(text)) == text``
for the word tokenizer, and the model's tokenizer's own decoding otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from harness.sut.tokenizer import _PIECE, WordTokenizer

# Where the output count LoadGen gets comes from, best first (results.json: token_count_source).
SERVER_IDS = "server token ids"
SERVER_USAGE = "server usage"
MODEL_TOKENIZER = "model tokenizer"
WORD_TOKENIZER = "dataset word tokenizer"
COUNT_SOURCES = (SERVER_IDS, SERVER_USAGE, MODEL_TOKENIZER, WORD_TOKENIZER)
APPROXIMATE_SOURCES = frozenset({WORD_TOKENIZER})

# Pieces missing from the vocabulary are spelled in UTF-8 byte groups of up to 3 bytes, one id
# each: (length << 24 | bytes) above BYTE_BASE, which stays inside int32 (LoadGen's token type).
BYTE_BASE = 1 << 28
_GROUP = 3


class OpenWordTokenizer(WordTokenizer):
    """The fakes' word tokenizer (same ids for in-vocabulary pieces) that never loses text."""

    def __init__(self, corpus: Iterable[str]) -> None:
        super().__init__(corpus)
        self.name = "word tokenizer of the dataset (counts approximate the model's)"
        self.source = WORD_TOKENIZER

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for piece in _PIECE.findall(text):
            known = self._piece_to_id.get(piece)
            if known is not None:
                ids.append(known)
                continue
            raw = piece.encode("utf-8")
            for i in range(0, len(raw), _GROUP):
                group = raw[i:i + _GROUP]
                ids.append(BYTE_BASE + (len(group) << 24) + int.from_bytes(group, "big"))
        return ids

    def decode(self, token_ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        out: list[str] = []
        pending = bytearray()
        for i in (int(t) for t in token_ids):
            if i >= BYTE_BASE:
                n, value = (i - BYTE_BASE) >> 24, (i - BYTE_BASE) & 0xFFFFFF
                pending += value.to_bytes(n, "big") if 0 < n <= _GROUP else b""
                continue
            if pending:
                out.append(pending.decode("utf-8", "replace"))
                pending.clear()
            out.append(super().decode([i], skip_special_tokens))
        if pending:
            out.append(pending.decode("utf-8", "replace"))
        return "".join(out)


class HFOutputTokenizer:
    """A Hugging Face tokenizer that encodes outputs without special tokens (no BOS per request)."""

    def __init__(self, hf: Any, name: str) -> None:
        self.hf = hf
        self.eos_token_id = hf.eos_token_id
        self.name = name
        self.source = MODEL_TOKENIZER

    def encode(self, text: str) -> list[int]:
        return list(self.hf.encode(text, add_special_tokens=False))

    def decode(self, token_ids: Sequence[int]) -> str:
        return self.hf.decode([int(t) for t in token_ids], skip_special_tokens=True)


def load_output_tokenizer(tokenizer_path: str | None, corpus: Iterable[str]) -> OpenWordTokenizer | HFOutputTokenizer:
    """``sut.tokenizer_path``: a local Hugging Face directory, ``embedded`` (the embedded tiny
    model's, for ``harness-serve sut=hf``), or null (the word tokenizer of the dataset)."""
    if tokenizer_path is None:
        return OpenWordTokenizer(corpus)
    from harness.errors import ConfigError
    from harness.sut.hf.adapter import HFParams, load_tokenizer, model_dir

    if tokenizer_path == "embedded":
        path = model_dir(HFParams())
    else:
        path = Path(tokenizer_path).expanduser()
        if not path.is_dir():
            raise ConfigError(f"sut.tokenizer_path: no tokenizer directory at {path}")
    return HFOutputTokenizer(load_tokenizer(path, trust_remote_code=False), f"tokenizer of {path}")
