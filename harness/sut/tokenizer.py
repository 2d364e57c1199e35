"""A lossless word-level tokenizer for the fake SUTs, built from the dataset's own text.

Fakes need token ids that decode back to text (so the oracle's accuracy log decodes to the
references) and counts that look like a real model's (about one token per word or
punctuation mark), without downloading a vocabulary.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

# Words, single punctuation marks and runs of whitespace: concatenating the pieces gives the
# text back exactly, which makes decode(encode(text)) == text for in-vocabulary text.
_PIECE = re.compile(r"\w+|\s+|[^\w\s]")

PAD, BOS, EOS, UNK = 0, 1, 2, 3
_SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")


class WordTokenizer:
    """Deterministic vocabulary: specials first, then every piece of the corpus, sorted."""

    eos_token_id: int | None = EOS

    def __init__(self, corpus: Iterable[str]) -> None:
        pieces = sorted({p for text in corpus for p in _PIECE.findall(text)})
        self._id_to_piece = list(_SPECIALS) + pieces
        self._piece_to_id = {p: i for i, p in enumerate(self._id_to_piece)}

    @property
    def vocab_size(self) -> int:
        return len(self._id_to_piece)

    def encode(self, text: str) -> list[int]:
        return [self._piece_to_id.get(p, UNK) for p in _PIECE.findall(text)]

    def decode(self, token_ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        out = []
        for i in token_ids:
            i = int(i)
            if skip_special_tokens and i < len(_SPECIALS):
                continue
            out.append(self._id_to_piece[i] if 0 <= i < len(self._id_to_piece) else "<unk>")
        return "".join(out)
