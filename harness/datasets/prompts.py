"""Turning dataset records into the prompts a SUT sees: the benchmark's template, and truncation.

Templates (MLPERF_FACTS.md): GPT-J's Alpaca-style instruction, Llama 3.1 8B's summarize prompt,
Llama 2's chat format with an optional ``<<SYS>>`` block. Records of MLPerf's preprocessed
files already hold the whole prompt and are used as they are.

Truncation keeps the template whole and cuts the record's input, token-wise with the SUT's own
tokenizer, so that the prompt fits ``benchmark.max_input_tokens`` (GPT-J: 1919). The MLPerf GPT-J
reference cuts the end of the whole prompt instead; cutting the article keeps the instruction
and "### Response:" that the model needs, and differs only for the few articles that long.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from harness.config import BenchmarkConfig, ConfigError
from harness.datasets import Dataset, Record
from harness.sut.base import Sample, Tokenizer

log = logging.getLogger(__name__)


def render_prompt(benchmark: BenchmarkConfig, text: str, system: str | None) -> str:
    """The benchmark's template around ``text``; str.replace, not str.format (articles have braces)."""
    template = benchmark.prompt_template
    if "{input}" not in template:
        raise ConfigError("benchmark.prompt_template must contain '{input}'")
    rendered_system = benchmark.system_template.replace("{system}", system) if system else ""
    return template.replace("{system}", rendered_system).replace("{input}", text)


@dataclass(frozen=True)
class InputLimit:
    """The most tokens a prompt may have, and where that limit comes from (for the error and the record)."""

    tokens: int
    source: str  # "benchmark.max_input_tokens" or "the model's N positions - benchmark.max_new_tokens"


def input_limit(benchmark: BenchmarkConfig, context_length: int | None) -> InputLimit | None:
    """``benchmark.max_input_tokens``, checked against the model's context; without it, the model's
    positions minus ``max_new_tokens`` (None when neither is known: nothing is cut).

    A prompt plus its generated tokens beyond a model's positions fails at run time (an IndexError
    from a GPT-2's learned position table, for every sample of its batch), so it is cut here, before
    LoadGen starts, or refused in one line when no cut can make it fit.
    """
    room = context_length - benchmark.max_new_tokens if context_length else None
    if room is not None and room <= 0:
        raise ConfigError(f"benchmark.max_new_tokens={benchmark.max_new_tokens} leaves no room for a prompt in the "
                          f"model's {context_length} positions")
    if benchmark.max_input_tokens:
        if room is not None and benchmark.max_input_tokens > room:
            raise ConfigError(f"benchmark.max_input_tokens={benchmark.max_input_tokens} plus benchmark.max_new_tokens="
                              f"{benchmark.max_new_tokens} exceed the model's {context_length} positions; set "
                              f"benchmark.max_input_tokens <= {room}")
        return InputLimit(benchmark.max_input_tokens, "benchmark.max_input_tokens")
    if room is None:
        return None
    return InputLimit(room, f"the model's {context_length} positions - benchmark.max_new_tokens "
                            f"{benchmark.max_new_tokens}")


def build_samples(benchmark: BenchmarkConfig, dataset: Dataset, tokenizer: Tokenizer | None = None,
                  limit: InputLimit | None = None) -> list[Sample]:
    """QSL samples in dataset order; inputs cut to fit ``limit`` (default ``benchmark.max_input_tokens``)
    when a tokenizer is given. See :func:`fit_samples` for the count of cut inputs."""
    return fit_samples(benchmark, dataset, tokenizer, limit)[0]


def fit_samples(benchmark: BenchmarkConfig, dataset: Dataset, tokenizer: Tokenizer | None = None,
                limit: InputLimit | None = None) -> tuple[list[Sample], int]:
    """:func:`build_samples` and how many inputs were cut.

    A prompt that cannot fit however much of its input is cut (the template alone is too long, or
    a templated dataset's prompt, which has no separate input to cut) is a ConfigError naming the key.
    """
    if limit is None and benchmark.max_input_tokens:
        limit = InputLimit(benchmark.max_input_tokens, "benchmark.max_input_tokens")
    samples = []
    cut = 0
    for i, record in enumerate(dataset.records):
        text = record.input
        if dataset.templated:
            if limit and tokenizer is not None and len(tokenizer.encode(text)) > limit.tokens:
                raise ConfigError(f"record {i} of {dataset.source} is a whole prompt of {len(tokenizer.encode(text))} "
                                  f"tokens, over the limit of {limit.tokens} ({limit.source}), and a templated "
                                  "prompt is not cut: shorten the dataset's prompts or raise the limit")
            samples.append(Sample(i, text, text, record.reference))
            continue
        if limit and tokenizer is not None:
            text = _fit(benchmark, record, tokenizer, limit.tokens)
            prompt = render_prompt(benchmark, text, record.system)
            if len(tokenizer.encode(prompt)) > limit.tokens:
                raise ConfigError(f"benchmark.prompt_template: the prompt of record {i} is over the limit of "
                                  f"{limit.tokens} tokens ({limit.source}) even with its input cut away")
            cut += text != record.input
        samples.append(Sample(i, render_prompt(benchmark, text, record.system), text, record.reference))
    if cut:
        assert limit is not None
        log.warning("%d of %d inputs cut to fit %d prompt tokens (%s)", cut, len(samples), limit.tokens, limit.source)
    return samples, cut


def _fit(benchmark: BenchmarkConfig, record: Record, tokenizer: Tokenizer, limit: int) -> str:
    excess = len(tokenizer.encode(render_prompt(benchmark, record.input, record.system))) - limit
    if excess <= 0:
        return record.input
    ids: Sequence[int] = tokenizer.encode(record.input)
    # Special tokens the tokenizer adds to any text (a Llama BOS) are in the prompt once, whatever
    # the input: only the input's own tokens are cut, exactly as many as the prompt is over.
    specials = tokenizer.encode("")
    if specials and list(ids[:len(specials)]) == list(specials):
        ids = ids[len(specials):]
    keep = max(len(ids) - excess, 0)
    # Re-encoding decoded text can merge tokens differently; shave until the prompt fits.
    for _ in range(8):
        text = tokenizer.decode(ids[:keep]).strip()
        if len(tokenizer.encode(render_prompt(benchmark, text, record.system))) <= limit or keep == 0:
            return text
        keep = max(keep - 1 - keep // 100, 0)
    return text
