"""Which adapter ``sut=<name>`` selects (harness/sut/registry.py), and what it costs to find out."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

import pytest

from harness.config import SUTConfig
from harness.errors import ConfigError
from harness.sut import SUTContext, SUTInfo, build_sut, check_sut, names, register, registry
from harness.sut.base import SUT, Completion
from harness.sut.fakes import EchoSUT
from harness.sut.tokenizer import WordTokenizer

CTX = SUTContext(corpus=["a b"], max_new_tokens=4)


def test_built_in_names_are_listed_and_selected_lazily():
    assert {"echo", "oracle", "failing", "null", "queue", "hf", "openai"} <= set(names())
    assert registry.adapter("echo") is EchoSUT


def test_an_unknown_name_is_a_one_line_config_error_naming_sut_and_the_known_ones():
    with pytest.raises(ConfigError) as err:
        build_sut(SUTConfig("nope"), CTX)
    text = str(err.value)
    assert "sut.name=nope" in text and "echo" in text and "openai" in text and "\n" not in text


def test_listing_names_and_building_fakes_or_openai_never_import_torch():
    code = ("import sys\nfrom harness.sut import SUTContext, build_sut, names\nfrom harness.config import SUTConfig\n"
            "names()\nbuild_sut(SUTConfig('echo'), SUTContext(['a'], 4)).close()\n"
            "build_sut(SUTConfig('openai', {'preflight': False, 'model': 'm'}), SUTContext(['a'], 4)).close()\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


@dataclass(frozen=True)
class ConstParams:
    token: int = 5
    max_batch_size: int = 2


@register("const-test")
class ConstSUT(SUT):
    """Answers every sample with one token; takes the contract's defaults for everything else."""

    Params = ConstParams

    def __init__(self, params: ConstParams) -> None:
        self.params, self.tokenizer, self.max_batch_size = params, WordTokenizer(["x"]), params.max_batch_size

    @classmethod
    def create(cls, params, ctx):
        return cls(params)

    def generate(self, batch):
        return [Completion(s.index, (self.params.token,)) for s in batch]


def test_a_registered_adapter_is_built_checked_and_described_with_the_contracts_defaults():
    assert "const-test" in names()
    sut = build_sut(SUTConfig("const-test", {"token": 7}), CTX)
    assert isinstance(sut, ConstSUT) and sut.params.token == 7 and sut.name == "const-test"
    check_sut(SUTConfig("const-test"), CTX)  # the default check: nothing to say
    assert not sut.streaming and not sut.submit_inline
    assert sut.describe() == SUTInfo(name="const-test", decode_batch=2, decode_batch_key="max_batch_size")
    with pytest.raises(ConfigError, match="sut.tokn"):
        build_sut(SUTConfig("const-test", {"tokn": 7}), CTX)
    assert registry.default_config(ConstSUT) == {"token": 5, "max_batch_size": 2}


def test_an_entry_point_that_cannot_be_loaded_names_the_sut_and_the_reason():
    with pytest.raises(ConfigError, match=r"sut.name=broken: cannot load its adapter no_such_module:X"):
        registry._load("broken", "no_such_module:X")
    with pytest.raises(ConfigError, match="not a harness.sut.base.SUT subclass"):
        registry._load("notasut", "harness.sut.base:SUTInfo")


def test_a_sut_without_generate_cannot_be_made():
    class Half(SUT):
        Params = ConstParams

        @classmethod
        def create(cls, params, ctx):
            return cls()

    with pytest.raises(TypeError, match="generate"):
        Half.create(ConstParams(), CTX)
