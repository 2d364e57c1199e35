"""System-under-test adapters: the contract (:mod:`harness.sut.base`), the registry that finds the
adapter ``sut=<name>`` selects (:mod:`harness.sut.registry`), and building one from ``sut.*`` config.

Adapters are imported only when selected, so adapters with heavy dependencies (torch, HTTP
clients) cost nothing to ``import harness``. Each adapter's ``Params`` dataclass is checked
strictly, so a typo is reported as ``sut.<key>``.
"""

from __future__ import annotations

from harness.config import SUTConfig, build_dataclass
from harness.sut.base import (
    SUT,
    Completion,
    ModelInfo,
    Sample,
    StreamingSUT,
    SUTContext,
    SUTInfo,
    Tokenizer,
    TokenStream,
    supports_streaming,
)
from harness.sut.registry import adapter, names, register


def _adapter(config: SUTConfig) -> tuple[type[SUT], object]:
    """The SUT class named by ``sut.name`` and its params, checked as ``sut.<key>``."""
    cls = adapter(config.name)
    return cls, build_dataclass(cls.Params, config.params, "sut")


def build_sut(config: SUTConfig, ctx: SUTContext) -> SUT:
    """Build the SUT named by ``sut.name``; its params are checked as ``sut.<key>``."""
    cls, params = _adapter(config)
    return cls.create(params, ctx)


def check_sut(config: SUTConfig, ctx: SUTContext) -> None:
    """Check ``sut.*`` before any LoadGen test starts: unknown keys, and whatever the adapter can
    check without loading a model or calling a server (:meth:`SUT.check`)."""
    cls, params = _adapter(config)
    cls.check(params, ctx)


def build_tokenizer(config: SUTConfig, ctx: SUTContext) -> Tokenizer:
    """The tokenizer the SUT named by ``sut.name`` decodes with, e.g. to re-score a finished run
    (:meth:`SUT.load_tokenizer`: a model SUT need not load its weights for this)."""
    cls, params = _adapter(config)
    return cls.load_tokenizer(params, ctx)


__all__ = ["SUT", "Completion", "ModelInfo", "SUTInfo", "Sample", "StreamingSUT", "SUTContext", "TokenStream",
           "Tokenizer", "adapter", "build_sut", "build_tokenizer", "check_sut", "names", "register",
           "supports_streaming"]
