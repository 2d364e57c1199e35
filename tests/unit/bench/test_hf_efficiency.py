"""The torch SUT benchmark's arguments, model shapes, alternation and report (no model is run)."""

from __future__ import annotations

import argparse

import pytest

from harness.bench.hf_efficiency import (
    DEFAULT_SHAPE,
    Measured,
    Shape,
    alternate,
    compare,
    fmt,
    parse_args,
    parse_shape,
    server_lines,
)


def test_the_default_model_is_the_random_llama_where_the_model_dominates():
    shape = parse_args([]).model_shape
    assert shape == parse_shape(DEFAULT_SHAPE) == Shape(hidden=512, layers=8, vocab=32000)
    recipe = shape.recipe()
    assert (recipe.hidden_size, recipe.num_hidden_layers, recipe.model_vocab_size) == (512, 8, 32000)
    assert recipe.num_attention_heads == 8 and recipe.num_key_value_heads == 8  # heads of 64 dimensions
    assert recipe.intermediate_size == 1376  # Llama 2's ratio: 58M parameters with the 32,000-row vocabulary
    assert parse_args(["--model-shape", "embedded"]).model_shape is None
    assert parse_args(["--model-path", "/m"]).model_path == "/m"


@pytest.mark.parametrize("bad", ["hidden", "depth=3", "layers=x", "layers=0"])
def test_a_bad_shape_is_refused(bad):
    with pytest.raises(argparse.ArgumentTypeError):
        parse_shape(bad)


def test_sides_alternate_which_goes_first_every_round():
    order: list[str] = []

    def side(name: str):
        return lambda r: (order.append(name), Measured(100.0, 10))[1]

    got = alternate({"harness": side("harness"), "bare": side("bare")}, 3, "test")
    assert order == ["harness", "bare", "bare", "harness", "harness", "bare"]
    assert len(got["harness"]) == len(got["bare"]) == 3


def test_the_comparison_reports_medians_ranges_and_the_goal():
    harness = [Measured(v, 1000, 0.1) for v in (96.0, 90.0, 100.0)]
    bare = [Measured(v, 1000, 0.2) for v in (100.0, 110.0, 99.0)]
    thread = [Measured(v, 1000, 0.1) for v in (120.0, 120.0, 120.0)]
    text = "\n".join(compare("Offline", harness, bare, "harness", "bare", bare_thread=thread))
    assert "median 96.0 (range 90.0-100.0; 96.0, 90.0, 100.0)" in text
    assert "ratio of medians 0.960 (harness / bare, main thread)   goal >= 0.95: met" in text
    assert "ratio of medians 0.800 (harness / bare on one thread" in text
    assert "harness 0.1, bare 0.2, bare on one thread 0.1" in text
    slow = [Measured(90.0, 1000)] * 3
    assert "goal >= 0.95: NOT met" in "\n".join(compare("x", slow, bare, "h", "b"))
    assert fmt([1.0, 3.0, 2.0], 0) == "median 2 (range 1-3; 1, 3, 2)"


def test_server_capacity_ratio_and_ratio_at_the_stated_load():
    overloaded = {"inflight": [Measured(700.0, 1)], "serial": [Measured(100.0, 1)]}
    loaded = {"inflight": [Measured(350.0, 1)], "serial": [Measured(100.0, 1)]}
    text = "\n".join(server_lines(overloaded, loaded, 5.5, "--server-qps", 64, 32))
    assert "capacity ratio 7.00x   goal >= 2x: met" in text
    assert "(b) at 5.50 QPS (--server-qps)" in text and "ratio 3.50x at this load" in text
