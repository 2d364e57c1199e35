"""System-under-test adapters and the registry that builds one from ``sut.*`` config.

Adapters are imported only when selected, so adapters with heavy dependencies (torch, HTTP
clients) cost nothing to ``import harness``. Each adapter module provides a frozen params
dataclass (checked strictly, so a typo is reported as ``sut.<key>``) and a SUT class with a
``create(params, ctx)`` classmethod.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass

from harness.config import SUTConfig, build_dataclass
from harness.errors import ConfigError
from harness.sut.base import SUT, Completion, Sample, StreamingSUT, Tokenizer, TokenStream, supports_streaming


@dataclass(frozen=True)
class SUTContext:
    """What an adapter may need from the rest of the run to build itself."""

    corpus: Sequence[str]  # every prompt and reference, for tokenizers built offline
    max_new_tokens: int


# sut.name -> (module, params dataclass, SUT class)
REGISTRY: dict[str, tuple[str, str, str]] = {
    "echo": ("harness.sut.fakes", "EchoParams", "EchoSUT"),
    "oracle": ("harness.sut.fakes", "OracleParams", "OracleSUT"),
    "failing": ("harness.sut.fakes", "FailingParams", "FailingSUT"),
    "null": ("harness.sut.fakes", "NullParams", "NullSUT"),
    "queue": ("harness.sut.fakes", "QueueParams", "QueueSUT"),  # known capacity: slots / service time
    "hf": ("harness.sut.hf", "HFParams", "HFSUT"),  # torch/transformers: imported only when chosen
    "openai": ("harness.sut.openai", "OpenAIParams", "OpenAISUT"),  # any OpenAI-compatible server (HTTP/1.1)
}


def _adapter(config: SUTConfig) -> tuple[type, object]:
    """The SUT class named by ``sut.name`` and its params, checked as ``sut.<key>``."""
    if config.name not in REGISTRY:
        known = ", ".join(sorted(REGISTRY))
        raise ConfigError(f"unknown SUT 'sut.name={config.name}' (known: {known})")
    module_name, params_name, class_name = REGISTRY[config.name]
    module = importlib.import_module(module_name)
    params = build_dataclass(getattr(module, params_name), config.params, "sut")
    return getattr(module, class_name), params


def build_sut(config: SUTConfig, ctx: SUTContext) -> SUT:
    """Build the SUT named by ``sut.name``; its params are checked as ``sut.<key>``."""
    cls, params = _adapter(config)
    return cls.create(params, ctx)


def check_sut(config: SUTConfig, ctx: SUTContext) -> None:
    """Check ``sut.*`` before any LoadGen test starts: unknown keys, and whatever the adapter can
    check without loading a model or calling a server (its optional ``check(params, ctx)``)."""
    cls, params = _adapter(config)
    if hasattr(cls, "check"):
        cls.check(params, ctx)


def build_tokenizer(config: SUTConfig, ctx: SUTContext) -> Tokenizer:
    """The tokenizer the SUT named by ``sut.name`` decodes with, e.g. to re-score a finished run.

    Adapters may offer a cheap ``load_tokenizer(params, ctx)`` classmethod (a model SUT need
    not load its weights for this); otherwise the SUT is built and closed again.
    """
    cls, params = _adapter(config)
    if hasattr(cls, "load_tokenizer"):
        return cls.load_tokenizer(params, ctx)
    sut = cls.create(params, ctx)
    try:
        return sut.tokenizer
    finally:
        sut.close()


__all__ = ["SUT", "Completion", "Sample", "StreamingSUT", "SUTContext", "TokenStream", "Tokenizer", "build_sut",
           "build_tokenizer", "check_sut", "supports_streaming"]
