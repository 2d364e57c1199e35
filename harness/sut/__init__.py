"""System-under-test adapters and the registry that builds one from ``sut.*`` config.

Adapters with heavy dependencies (torch, HTTP clients) register lazily: their modules are
imported only when selected, so ``import harness`` stays fast.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from harness.config import SUTConfig, build_dataclass
from harness.errors import ConfigError
from harness.sut.base import SUT, Completion, Sample, StreamingSUT, TokenStream, supports_streaming


@dataclass(frozen=True)
class SUTContext:
    """What an adapter may need from the rest of the run to build itself."""

    corpus: Sequence[str]  # every prompt and reference, for tokenizers built offline
    max_new_tokens: int


def _fake(kind: str) -> Callable[[Any, SUTContext], SUT]:
    def build(params: Any, ctx: SUTContext) -> SUT:
        from harness.sut import fakes
        from harness.sut.tokenizer import WordTokenizer

        cls = {"echo": fakes.EchoSUT, "oracle": fakes.OracleSUT, "failing": fakes.FailingSUT,
               "null": fakes.NullSUT}[kind]
        return cls(params, WordTokenizer(ctx.corpus))

    return build


def _params(kind: str) -> type:
    from harness.sut import fakes

    return {"echo": fakes.EchoParams, "oracle": fakes.OracleParams,
            "failing": fakes.FailingParams, "null": fakes.NullParams}[kind]


# name -> (params dataclass loader, factory); both resolved lazily.
REGISTRY: dict[str, tuple[Callable[[], type], Callable[[Any, SUTContext], SUT]]] = {
    kind: ((lambda k=kind: _params(k)), _fake(kind)) for kind in ("echo", "oracle", "failing", "null")
}


def build_sut(config: SUTConfig, ctx: SUTContext) -> SUT:
    """Build the SUT named by ``sut.name``; its params are checked as ``sut.<key>``."""
    if config.name not in REGISTRY:
        known = ", ".join(sorted(REGISTRY))
        raise ConfigError(f"unknown SUT 'sut.name={config.name}' (known: {known})")
    params_cls, factory = REGISTRY[config.name]
    params = build_dataclass(params_cls(), config.params, "sut")
    return factory(params, ctx)


__all__ = ["SUT", "Completion", "Sample", "StreamingSUT", "SUTContext", "TokenStream", "build_sut",
           "supports_streaming"]
