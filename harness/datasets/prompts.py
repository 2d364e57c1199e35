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


def build_samples(benchmark: BenchmarkConfig, dataset: Dataset, tokenizer: Tokenizer | None = None) -> list[Sample]:
    """QSL samples in dataset order; inputs truncated when a tokenizer and a limit are given."""
    limit = benchmark.max_input_tokens
    samples = []
    cut = 0
    for i, record in enumerate(dataset.records):
        if dataset.templated:
            samples.append(Sample(i, record.input, record.input, record.reference))
            continue
        text = record.input
        if limit and tokenizer is not None:
            text = _fit(benchmark, record, tokenizer, limit)
            cut += text != record.input
        samples.append(Sample(i, render_prompt(benchmark, text, record.system), text, record.reference))
    if cut:
        log.info("%d of %d inputs truncated to fit benchmark.max_input_tokens=%d", cut, len(samples), limit)
    return samples


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
