"""The embedded tiny model: created once per recipe into the cache, atomically, as a normal HF directory."""

from __future__ import annotations

import threading

import pytest

from harness.sut.hf.tiny_model import TinyRecipe, cache_root, ensure_tiny_model, recipe_hash

SMALL = TinyRecipe(vocab_size=512, hidden_size=16, intermediate_size=32, num_hidden_layers=1)


def test_cache_root_follows_harness_cache_then_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "h"))
    assert cache_root() == tmp_path / "h"
    monkeypatch.delenv("HARNESS_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache_root() == tmp_path / "x" / "llm-harness"


def test_created_once_as_a_hugging_face_directory(tmp_path):
    path = ensure_tiny_model(SMALL, tmp_path)
    names = {p.name for p in path.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json"} <= names
    assert path.name.endswith(recipe_hash(SMALL))
    before = (path / "model.safetensors").stat().st_mtime_ns
    assert ensure_tiny_model(SMALL, tmp_path) == path
    assert (path / "model.safetensors").stat().st_mtime_ns == before  # reused, not rebuilt
    assert [p.name for p in (tmp_path / "models").iterdir()] == [path.name]  # no temporary left behind


def test_the_recipe_and_its_seed_key_the_cache():
    assert recipe_hash(SMALL) == recipe_hash(TinyRecipe(**vars(SMALL)))
    assert recipe_hash(SMALL) != recipe_hash(TinyRecipe(**{**vars(SMALL), "seed": 1}))


def test_same_recipe_gives_the_same_files(tmp_path):
    a = ensure_tiny_model(SMALL, tmp_path / "a")
    b = ensure_tiny_model(SMALL, tmp_path / "b")
    for name in ("model.safetensors", "tokenizer.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_concurrent_first_uses_agree_on_one_complete_directory(tmp_path):
    results: list = []
    errors: list = []

    def create() -> None:
        try:
            results.append(ensure_tiny_model(SMALL, tmp_path))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and len(set(results)) == 1 and len(results) == 4
    assert [p.name for p in (tmp_path / "models").iterdir()] == [results[0].name]
    assert (results[0] / "model.safetensors").stat().st_size > 0


def test_unwritable_cache_is_a_sut_error_naming_it(tmp_path):
    from harness.errors import SUTError

    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SUTError, match="HARNESS_CACHE") as err:
        ensure_tiny_model(SMALL, blocker)
    assert str(blocker) in str(err.value)


def test_a_model_vocabulary_larger_than_the_tokenizer_keeps_the_default_models_key(tmp_path):
    import json

    from harness.sut.hf.tiny_model import build_tiny_model

    # The benchmark model: a real model's LM head (e.g. 32,000 rows) over the small trained tokenizer.
    wide = TinyRecipe(**{**vars(SMALL), "model_vocab_size": 1000})
    path = build_tiny_model(wide, tmp_path / "wide")
    assert json.loads((path / "config.json").read_text())["vocab_size"] == 1000
    assert recipe_hash(wide) != recipe_hash(SMALL)
    # The field at its default leaves the key as it was before the field existed.
    assert "model_vocab_size" not in TinyRecipe().key()
    with pytest.raises(ValueError, match="model_vocab_size"):
        build_tiny_model(TinyRecipe(**{**vars(SMALL), "model_vocab_size": 10}), tmp_path / "narrow")
