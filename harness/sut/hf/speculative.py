"""Greedy speculative decoding for ``sut=hf`` with ``sut.draft_model_path`` (batch 1, lossless).

Per verification step a small draft model proposes up to ``k`` tokens greedily from its own KV
cache; the target runs one forward over its last token plus the ``k`` proposals and keeps the
longest prefix of proposals equal to its own argmax, followed by its own next token (the
correction after a rejected proposal, or a bonus token when all ``k`` were accepted). Both KV
caches are then cropped back to the committed sequence. Every emitted token is the target's argmax
given the tokens before it, so the output is the target's greedy output: lossless by construction,
up to floating-point rounding, since the target scores ``k + 1`` positions in one forward instead
of one at a time (in float32 argmax agrees except at near-ties; ``harness-audit --same-tokens-as``
checks a run against one without the draft).

Outputs follow the rules of :mod:`harness.sut.hf.adapter`: the prompt excluded, at most one trailing EOS,
never more than ``max_new_tokens`` (the draft proposes at most as many tokens as are left to emit
less one, so an accepted run never overshoots). One request at a time on one decode thread
(:class:`SpeculativeDecoder`, the same queue as the CUDA serial path): there is no in-flight
batching with a draft. Accepted tokens are streamed in chunks; the first token is streamed right
after the target's prefill, before the draft sees the prompt, so the draft does not delay TTFT.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from harness.errors import SUTError
from harness.sut.base import TokenStream
from harness.sut.hf.fast import SerialDecoder
from harness.sut.hf.kv_cache import cache_keyword, output_cache
from harness.sut.hf.torch_thread import torch_thread

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpeculativeStats:
    """Counters of speculative decoding since the SUT was built (``HFSUT.stats()``).

    ``mean_accepted_tokens`` counts the target's own token of each verification step (the
    correction or bonus token), as the speculative decoding papers' "mean accepted tokens"
    (EAGLE's acceptance length tau) do: 1.0 means no draft token was ever kept, ``k + 1`` is the
    most. ``mean_accepted_draft_tokens`` leaves that token out.
    """

    num_draft_tokens: int  # k: the most draft tokens proposed per verification step
    sequences: int  # requests decoded
    verification_steps: int  # target forwards that checked at least one draft token
    plain_steps: int  # target decode forwards without a draft (one token left before max_new_tokens)
    drafted_tokens: int  # draft tokens proposed
    accepted_tokens: int  # draft tokens equal to the target's argmax, hence emitted
    verified_tokens: int  # tokens emitted by verification steps: accepted plus the target's own
    draft_forwards: int  # draft model forwards, its prompt prefill included

    def as_dict(self) -> dict[str, Any]:
        """Flat figures for results.json ``extra.sut_stats.<test>`` (ratios are None before any step)."""
        steps = self.verification_steps
        return {
            "speculative": True,
            "num_draft_tokens": self.num_draft_tokens,
            "sequences": self.sequences,
            "verification_steps": steps,
            "plain_steps": self.plain_steps,
            "drafted_tokens": self.drafted_tokens,
            "accepted_tokens": self.accepted_tokens,
            "verified_tokens": self.verified_tokens,
            "draft_forwards": self.draft_forwards,
            "acceptance_rate": self.accepted_tokens / self.drafted_tokens if self.drafted_tokens else None,
            "mean_accepted_tokens": self.verified_tokens / steps if steps else None,
            "mean_accepted_draft_tokens": self.accepted_tokens / steps if steps else None,
        }


def vocabulary_size(model: Any) -> int:
    """Rows of the model's input embedding: the token ids it accepts."""
    return int(model.get_input_embeddings().num_embeddings)


def check_draft_pair(target: Any, target_tokenizer: Any, draft: Any, draft_tokenizer: Any, path: Path) -> None:
    """The draft must speak the target's vocabulary: the same tokenizer, and an embedding for every
    token id it can produce. Embedding tables may differ in size beyond that: checkpoints pad them
    to a multiple of 64 or 128 (Qwen2.5-0.5B has 151,936 rows, Qwen2.5-7B 152,064)."""
    if target_tokenizer.get_vocab() != draft_tokenizer.get_vocab():
        raise SUTError(f"sut.draft_model_path: the draft {path} has another tokenizer than the target (other "
                       "tokens or token ids); the draft must share the target's tokenizer")
    tokens = len(target_tokenizer)
    for who, model in (("target", target), (f"draft {path}", draft)):
        rows = vocabulary_size(model)
        if rows < tokens:
            raise SUTError(f"sut.draft_model_path: the {who} has {rows:,} embedding rows for a tokenizer of "
                           f"{tokens:,} tokens")


def _crop(cache: Any, length: int) -> None:
    """Drop cached positions beyond ``length``. A negative argument to crop() removes that many
    positions in transformers 4.x and 5.x alike (5.x refuses the 4.x absolute length)."""
    extra = cache.get_seq_length() - length
    if extra > 0:
        cache.crop(-extra)


class SpeculativeDecoder(SerialDecoder):
    """Streams requests one at a time through the speculative loop (``submit``), or decodes one
    synchronously (``decode``, Offline)."""

    def __init__(self, target: Any, draft: Any, *, eos_ids: frozenset[int], max_new_tokens: int,
                 num_draft_tokens: int, generation_config: Any) -> None:
        super().__init__(target, generation_config, static_cache=False)
        if num_draft_tokens < 1:
            raise ValueError(f"num_draft_tokens must be at least 1, got {num_draft_tokens}")
        self.target = target
        self.draft = draft
        self._target_rows = vocabulary_size(target)
        self.eos_ids = eos_ids
        self.max_new_tokens = max_new_tokens
        self.k = num_draft_tokens
        self._target_keep = _logits_to_keep(target)
        self._draft_keep = _logits_to_keep(draft)
        self._cache_keywords = {id(target): cache_keyword(target), id(draft): cache_keyword(draft)}
        # Offline decode() and the streaming thread never interleave (shared models and counters).
        self._decode_lock = threading.Lock()
        self.reset_stats()

    def reset_stats(self) -> None:
        self._counts = dict.fromkeys(("sequences", "verification_steps", "plain_steps", "drafted_tokens",
                                      "accepted_tokens", "verified_tokens", "draft_forwards"), 0)

    @property
    def stats(self) -> SpeculativeStats:
        return SpeculativeStats(num_draft_tokens=self.k, **self._counts)

    def warm_up(self, prompt_ids: Sequence[int]) -> None:
        """One short decode through both models, not counted in the statistics."""
        self.decode(prompt_ids, max_new_tokens=min(2, self.max_new_tokens))
        self.reset_stats()

    def decode(self, prompt_ids: Sequence[int], max_new_tokens: int | None = None) -> tuple[int, ...]:
        """The greedy output for one prompt, synchronously (on the torch thread)."""
        out: list[int] = []
        torch_thread().call(self._run, prompt_ids, out.extend,
                            self.max_new_tokens if max_new_tokens is None else max_new_tokens)
        return tuple(out)

    def _generate(self, prompt_ids: Sequence[int], stream: TokenStream | None) -> None:
        # SerialDecoder's loop calls this for each submitted request, then finishes the stream.
        self._run(prompt_ids, stream.emit if stream is not None else (lambda _: None), self.max_new_tokens)

    def _run(self, prompt_ids: Sequence[int], emit: Any, max_new: int) -> None:
        if not prompt_ids:
            raise ValueError("empty prompt")
        with self._decode_lock, torch.inference_mode():
            self._speculate(list(prompt_ids), emit, max_new)

    def _forward(self, model: Any, ids: Sequence[int], cache: Any, keep: dict[str, int]) -> Any:
        x = torch.tensor([list(ids)], dtype=torch.long, device=self.device)
        # Batch 1, no padding: no attention mask; positions follow the cache length.
        return model(input_ids=x, use_cache=True, **{self._cache_keywords[id(model)]: cache}, **keep)

    def _speculate(self, prompt: list[int], emit: Any, max_new: int) -> None:
        c = self._counts
        c["sequences"] += 1
        out = self._forward(self.target, prompt, None, self._target_keep)
        t_cache = output_cache(out)
        seq = prompt + [int(out.logits[0, -1].argmax())]
        emit(seq[-1:])  # the first token: FirstTokenComplete, before the draft sees the prompt
        generated = 1
        if seq[-1] in self.eos_ids or generated >= max_new:
            return
        _check_croppable(t_cache, "target")
        d_cache: Any = None
        d_len = 0  # positions in the draft's cache: a prefix of seq
        while True:
            # Invariant: t_cache holds seq[:-1]; seq[-1] is committed but not fed to the target yet.
            left = max_new - generated
            # Leave room for the target's own token, so an accepted run never exceeds max_new_tokens.
            k = min(self.k, left - 1)
            drafts: list[int] = []
            feed = seq[d_len:]
            while len(drafts) < k:
                d_out = self._forward(self.draft, feed, d_cache, self._draft_keep)
                c["draft_forwards"] += 1
                if d_cache is None:
                    d_cache = output_cache(d_out)
                    _check_croppable(d_cache, "draft")
                d_len += len(feed)
                # Only ids the target can embed: a larger padded draft table must not propose past it.
                drafts.append(int(d_out.logits[0, -1, :self._target_rows].argmax()))
                feed = drafts[-1:]
                if drafts[-1] in self.eos_ids:
                    break  # nothing follows an EOS
            # The draft's cache now holds seq and drafts[:-1].
            v_out = self._forward(self.target, seq[-1:] + drafts, t_cache, {})
            t_cache = output_cache(v_out)
            best = v_out.logits[0, -(len(drafts) + 1):].argmax(-1).tolist()  # target's argmax after each input
            n = 0
            while n < len(drafts) and drafts[n] == best[n]:
                n += 1
            new = drafts[:n] + [best[n]]
            for i, tok in enumerate(new):  # at most one trailing EOS
                if tok in self.eos_ids:
                    new = new[:i + 1]
                    break
            if drafts:
                c["verification_steps"] += 1
                c["drafted_tokens"] += len(drafts)
                c["accepted_tokens"] += min(n, len(new))
                c["verified_tokens"] += len(new)
            else:
                c["plain_steps"] += 1
            old = len(seq)
            seq += new
            generated += len(new)
            emit(new)
            if new[-1] in self.eos_ids or generated >= max_new:
                return
            # Roll both caches back to the committed sequence (seq[:-1] is what the target fed).
            _crop(t_cache, len(seq) - 1)
            if d_cache is not None:
                d_len = min(d_len, old + n)  # its proposals up to the first rejected one stand
                _crop(d_cache, d_len)


def _logits_to_keep(model: Any) -> dict[str, int]:
    # Only the last position's logits are needed for prefill and drafting: saves vocab x prompt memory.
    return {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}


def _check_croppable(cache: Any, which: str) -> None:
    if not hasattr(cache, "crop") or not getattr(cache, "is_croppable", True):
        raise SUTError(f"the {which} model's KV cache ({type(cache).__name__}) cannot be rolled back, which "
                       "speculative decoding needs (sliding-window or recurrent layers?)")
