import itertools

import pytest

from harness.config import CONF_DIR, SCENARIOS_DIR, HarnessConfig, compose, load_config, to_dict
from harness.errors import ConfigError
from harness.sut import SUTContext, build_sut


def _options(group: str) -> list[str]:
    folder = SCENARIOS_DIR if group == "scenario" else CONF_DIR / group
    return sorted(p.stem for p in folder.glob("*.yaml"))


def test_every_config_composes_and_builds():
    groups = {g: _options(g) for g in ("scenario", "benchmark", "dataset", "sut", "system", "tracking")}
    assert {"offline", "server", "single_stream", "interactive"} <= set(groups["scenario"])
    assert {"echo", "oracle", "failing", "null", "hf"} <= set(groups["sut"])
    ctx = SUTContext(corpus=["a b c"], max_new_tokens=8)
    # sut=openai checks its server (GET /v1/models) when built; there is none here.
    offline = {"openai": ["sut.preflight=false", "sut.model=m"]}
    for sut in groups["sut"]:
        config = compose([f"sut={sut}", *offline.get(sut, [])])
        build_sut(config.sut, ctx).close()
    for scenario, benchmark in itertools.product(groups["scenario"], groups["benchmark"]):
        config = compose([f"scenario={scenario}", f"benchmark={benchmark}"])
        assert isinstance(config, HarnessConfig)
        assert config.scenario.name == scenario and config.benchmark.name == benchmark
    for group in ("dataset", "system", "tracking"):
        for option in groups[group]:
            compose([f"{group}={option}"])


def test_defaults_are_the_documented_default_run():
    config = compose([])
    assert (config.scenario.name, config.mode, config.sut.name) == ("offline", "submission", "hf")
    assert config.sut.params["model_path"] is None  # the embedded tiny model
    assert config.benchmark.official is False
    assert config.dataset.path is None


def test_round_trip_through_plain_dict():
    config = compose(["scenario=server", "sut=echo", "sut.ttft_ms=30"])
    assert load_config(to_dict(config)) == config


@pytest.mark.parametrize(
    ("mutate", "key"),
    [
        (lambda d: d["scenario"].update(target_qpz=1), "scenario.target_qpz"),
        (lambda d: d.update(modee="accuracy"), "modee"),
        (lambda d: d["benchmark"].update(max_new_tokens="many"), "benchmark.max_new_tokens"),
        (lambda d: d.update(mode="fast"), "mode"),
        (lambda d: d["run"].update(sample_timeout_s=None), "run.sample_timeout_s"),
        (lambda d: d["benchmark"].pop("model_key"), "benchmark.model_key"),
    ],
)
def test_bad_values_name_their_key(mutate, key):
    data = to_dict(compose([]))
    mutate(data)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(data)


def test_typo_in_sut_params_names_the_key():
    config = load_config({**to_dict(compose([])), "sut": {"name": "echo", "ttft_msx": 5}})
    with pytest.raises(ConfigError, match=r"sut\.ttft_msx"):
        build_sut(config.sut, SUTContext(corpus=[], max_new_tokens=8))


def test_unknown_sut_name():
    config = load_config({**to_dict(compose([])), "sut": {"name": "nope"}})
    with pytest.raises(ConfigError, match="sut.name=nope"):
        build_sut(config.sut, SUTContext(corpus=[], max_new_tokens=8))


def test_interactive_is_a_server_run_with_tighter_limits():
    server, interactive = compose(["scenario=server"]), compose(["scenario=interactive"])
    assert interactive.scenario.loadgen_scenario == server.scenario.loadgen_scenario == "Server"
    limits = interactive.benchmark.latency
    assert limits["interactive"].ttft_ms < limits["server"].ttft_ms


def test_scenarios_share_one_set_of_keys_so_a_round_can_override_them_all():
    from omegaconf import OmegaConf

    keys = {p.stem: set(OmegaConf.load(p)) for p in SCENARIOS_DIR.glob("*.yaml")}
    assert len({frozenset(k) for k in keys.values()}) == 1, keys


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("scenario.target_qps=0", "config key 'scenario.target_qps' must be > 0, got 0"),
        ("scenario.target_qps=-5", "config key 'scenario.target_qps' must be > 0, got -5"),
        ("run.max_errors=-1", "config key 'run.max_errors' must be >= 1, got -1"),
        ("run.max_errors=0", "config key 'run.max_errors' must be >= 1, got 0"),
        ("run.sample_timeout_s=0", "config key 'run.sample_timeout_s' must be > 0, got 0"),
        ("scenario.min_duration_s=-1", "config key 'scenario.min_duration_s' must be >= 0, got -1"),
        ("scenario.min_query_count=0", "config key 'scenario.min_query_count' must be >= 1, got 0"),
        ("benchmark.max_new_tokens=0", "config key 'benchmark.max_new_tokens' must be >= 1, got 0"),
        ("benchmark.accuracy_target=1.5", "config key 'benchmark.accuracy_target' must lie in (0, 1], got 1.5"),
        ("dataset.n_samples=0", "config key 'dataset.n_samples' must be >= 1, got 0"),
        ("run.workers=0", "config key 'run.workers' must be >= 1, got 0"),
        ("system.number_of_nodes=0", "config key 'system.number_of_nodes' must be >= 1, got 0"),
        # user.conf writes whole milliseconds: 0.4 would become 0, which LoadGen divides by
        ("scenario.expected_latency_ms=0.4", "config key 'scenario.expected_latency_ms' must be >= 1"),
        ("scenario.target_qps=nan", "config key 'scenario.target_qps': expected a finite number, got nan"),
        ("scenario.target_qps=inf", "config key 'scenario.target_qps': expected a finite number, got inf"),
    ],
)
def test_every_number_is_range_checked_naming_key_and_range(override, message):
    with pytest.raises(ConfigError) as caught:
        compose([override])
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_range_checks_reach_nested_and_sut_params():
    data = to_dict(compose(["benchmark=llama3_1-8b"]))
    data["benchmark"]["model"]["layers"] = 0
    with pytest.raises(ConfigError, match=r"'benchmark\.model\.layers' must be >= 1, got 0"):
        load_config(data)
    ctx = SUTContext(corpus=["a b c"], max_new_tokens=8)
    for override, key in (("sut.max_batch_size=0", "sut.max_batch_size"), ("sut.tpot_ms=-1", "sut.tpot_ms")):
        config = compose(["sut=echo", override])
        with pytest.raises(ConfigError, match=rf"'{key}' must be >= "):
            build_sut(config.sut, ctx)
    config = compose(["sut=failing", "sut.fail_indices=[1,-2]"])
    with pytest.raises(ConfigError, match=r"'sut\.fail_indices\[1\]' must be >= 0, got -2"):
        build_sut(config.sut, ctx)
    config = compose(["sut=hf", "sut.max_batch_size=0"])
    with pytest.raises(ConfigError, match=r"'sut\.max_batch_size' must be >= 1, got 0"):
        build_sut(config.sut, ctx)


def test_every_shipped_config_value_is_within_its_range():
    for path in SCENARIOS_DIR.glob("*.yaml"):
        compose([f"scenario={path.stem}"])
    for path in (CONF_DIR / "benchmark").glob("*.yaml"):
        compose([f"benchmark={path.stem}"])
