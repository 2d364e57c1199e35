"""The configs and scenarios are found through the package: in a checkout, the top-level folders."""

import pytest

from harness.config import CONF_DIR, SCENARIOS_DIR
from harness.resources import conf_dir, scenarios_dir, source_checkout


def test_configs_and_scenarios_are_found_through_the_package():
    assert (conf_dir() / "config.yaml").is_file() and (conf_dir() / "sut" / "hf.yaml").is_file()
    assert {p.stem for p in scenarios_dir().glob("*.yaml")} >= {"offline", "server", "single_stream", "interactive"}
    assert (CONF_DIR, SCENARIOS_DIR) == (conf_dir(), scenarios_dir())


def test_in_a_checkout_they_are_its_top_level_folders():
    root = source_checkout()
    if root is None:
        pytest.skip("an installed wheel: tests/integration/test_wheel.py covers it")
    assert conf_dir().resolve() == root / "conf" and scenarios_dir().resolve() == root / "scenarios"
