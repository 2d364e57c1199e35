"""Typed, frozen run configuration, and its strict conversion from plain mappings.

Hydra stops at the CLI edge: ``cli.py`` composes a DictConfig, turns it into a plain dict and
calls :func:`load_config`. Everything below takes these dataclasses, so the harness can be driven
from Python and from tests without Hydra. Unknown keys and bad values raise a ConfigError that
names the full key (``sut.ttft_ms``), which is how a typo fails at startup.
"""

from __future__ import annotations

import dataclasses
import math
import re
import secrets
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from harness.errors import ConfigError
from harness.resources import conf_dir, scenarios_dir

# The repository's conf/ and scenarios/, found through the package (harness/resources.py): a
# checkout and an installed wheel alike.
CONF_DIR = conf_dir()
SCENARIOS_DIR = scenarios_dir()

RANGE = "range"  # dataclass field metadata key: the Range a numeric value must lie in


@dataclass(frozen=True)
class Range:
    """The interval a numeric config value must lie in; ``None`` leaves that end open.

    Attached to a dataclass field with :func:`bounded` and checked by the strict conversion
    (:func:`build_dataclass`), so every dataclass built from config (SUT params included) gets it.
    """

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    note: str = ""  # why, when the bound is not obvious

    def __contains__(self, value: float) -> bool:
        return ((self.gt is None or value > self.gt) and (self.ge is None or value >= self.ge)
                and (self.lt is None or value < self.lt) and (self.le is None or value <= self.le))

    def __str__(self) -> str:
        low = ("(", self.gt) if self.gt is not None else ("[", self.ge) if self.ge is not None else None
        high = (")", self.lt) if self.lt is not None else ("]", self.le) if self.le is not None else None
        if low and high:
            return f"lie in {low[0]}{low[1]:g}, {high[1]:g}{high[0]}"
        if low:
            return f"be {'>' if low[0] == '(' else '>='} {low[1]:g}"
        if high:
            return f"be {'<' if high[0] == ')' else '<='} {high[1]:g}"
        return "be a number"


def bounded(default: Any = dataclasses.MISSING, **bounds: Any) -> Any:
    """A dataclass field whose value (each element, for a tuple) must lie in ``Range(**bounds)``;
    ``None`` (where the type allows it) is not checked."""
    return field(default=default, metadata={RANGE: Range(**bounds)})


Mode = Literal["performance", "accuracy", "submission"]
LoadGenScenario = Literal["Offline", "Server", "SingleStream"]


@dataclass(frozen=True)
class ScenarioConfig:
    """What is measured: the LoadGen contract of one scenario (``scenarios/*.yaml``).

    ``min_duration_s``, ``min_query_count`` and the latency limits are applied only in quick
    mode; with ``benchmark.official=true`` mlperf.conf's values stand.
    """

    name: str
    loadgen_scenario: LoadGenScenario
    # Server: Poisson arrival rate; Offline: expected QPS, which sizes the single query
    # (max(min_query_count, 1.1 x min_duration x target_qps) samples).
    target_qps: float = bounded(10.0, gt=0)
    min_duration_s: float = bounded(2.0, ge=0)
    min_query_count: int = bounded(1, ge=1)
    # Which of the benchmark's token-latency limits apply: "server", "interactive" or none.
    latency_limits: str | None = None
    # SingleStream only: LoadGen's initial latency guess, used to size its query schedule.
    expected_latency_ms: float | None = bounded(None, ge=1, note="user.conf's target_latency is whole ms")
    # Quick-mode overrides of the benchmark's TTFT/TPOT p99 limits (ms); null keeps them.
    ttft_ms: float | None = bounded(None, ge=1, note="user.conf's latency limits are whole ms")
    tpot_ms: float | None = bounded(None, ge=1, note="user.conf's latency limits are whole ms")

    @property
    def streaming(self) -> bool:
        """Server and SingleStream report first tokens, so the SUT must stream."""
        return self.loadgen_scenario != "Offline"


@dataclass(frozen=True)
class LatencyLimits:
    """p99 token-latency limits in milliseconds (MLPerf Server / Interactive)."""

    ttft_ms: float = bounded(gt=0)
    tpot_ms: float = bounded(gt=0)


@dataclass(frozen=True)
class LengthGuard:
    """MLPerf's output-length check: ``metric`` within [min_ratio x reference, max_ratio x
    max_reference] (``max_reference`` null: ``reference``; Mixtral's band has two references).

    ``gen_len`` (total characters) is a dataset total, so it is scaled to the samples scored;
    ``tokens_per_sample`` is a mean and is not.
    """

    metric: Literal["gen_len", "tokens_per_sample"]
    reference: float = bounded(gt=0)
    min_ratio: float = bounded(0.9, ge=0)
    max_ratio: float | None = bounded(1.1, gt=0)
    max_reference: float | None = bounded(None, gt=0)


@dataclass(frozen=True)
class ModelConfig:
    """The benchmark model's shape, for roofline estimates when the SUT reports none (sut=openai).

    A SUT that loads the model itself (sut=hf) reports its real shape, which wins. MoE models
    give ``experts``, ``experts_per_token`` and ``expert_parameters`` (one expert's parameters
    summed over all layers); see docs/ROOFLINE.md.
    """

    parameters: float = bounded(gt=0)  # all weights, e.g. 8.03e9
    layers: int = bounded(ge=1)
    kv_heads: int = bounded(ge=1)
    head_dim: int = bounded(ge=1)
    attention_heads: int | None = bounded(None, ge=1)  # null: kv_heads (multi-head attention)
    hidden_size: int | None = bounded(None, ge=1)
    vocab_size: int | None = bounded(None, ge=1)
    tie_word_embeddings: bool = False
    # How the served weights are stored: float32 | bfloat16 | float16 | fp8 | int8 | int4; bytes_per_param
    # overrides it (mixed quantisation). kv_dtype: the KV cache's, null = dtype.
    dtype: str = "bfloat16"
    bytes_per_param: float | None = bounded(None, gt=0)
    kv_dtype: str | None = None
    experts: int | None = bounded(None, ge=1)
    experts_per_token: int | None = bounded(None, ge=1)
    expert_parameters: float | None = bounded(None, gt=0)


@dataclass(frozen=True)
class BenchmarkConfig:
    """Which MLPerf benchmark is emulated: model key, prompt, generation limits and targets."""

    name: str
    model_key: str  # mlperf.conf key, e.g. llama3_1-8b
    submission_name: str  # folder name in a submission tree, e.g. llama3.1-8b
    max_new_tokens: int = bounded(128, ge=1)
    official: bool = False
    # ``{input}`` is the record's input; ``{system}`` (optional) its system prompt rendered
    # through ``system_template``, or "" when the record has none (Llama 2 chat).
    prompt_template: str = "{input}"
    system_template: str = "{system}"
    # Inputs are cut (token-wise, with the SUT's tokenizer) so the whole prompt fits; null = no limit.
    max_input_tokens: int | None = bounded(None, ge=1)
    # Sample count mlperf.conf expects; official runs must use the full dataset.
    official_sample_count: int | None = bounded(None, ge=1)
    latency: dict[str, LatencyLimits] = field(default_factory=dict)
    # Reference scores (e.g. rouge1: 38.7792) and the fraction of them a run must reach.
    accuracy_reference: dict[str, float | None] = field(default_factory=dict)  # null: no target
    accuracy_target: float = bounded(0.99, gt=0, le=1)
    # Or take the reference scores from an earlier run (its directory or results.json), e.g.
    # the fp32 run of the same model; accuracy_target then applies to those.
    accuracy_reference_run: str | None = None
    accuracy_length: LengthGuard | None = None
    model: ModelConfig | None = None  # shape for roofline estimates; null: only the SUT's own report


DatasetFormat = Literal["auto", "cnn_dailymail", "open_orca", "sharegpt", "table"]


@dataclass(frozen=True)
class DatasetConfig:
    """Where the samples come from; ``path: null`` means the sample bundled with the package.

    ``format`` picks the reader's field layout (``auto`` recognises the MLPerf and Hugging Face
    layouts by their columns); ``prompt_field`` / ``reference_field`` name the fields directly.
    """

    name: str = "bundled"
    path: str | None = None
    format: DatasetFormat = "auto"
    prompt_field: str | None = None
    reference_field: str | None = None
    system_field: str | None = None
    # The prompt field already holds the full prompt (MLPerf's preprocessed files); null = the
    # layout decides.
    templated: bool | None = None
    # Keep only records whose fields equal these values, e.g. {dataset: OpenOrca} for Mixtral.
    where: dict[str, Any] = field(default_factory=dict)
    n_samples: int | None = bounded(None, ge=1)
    seed: int = bounded(0, ge=0)


@dataclass(frozen=True)
class SUTConfig:
    """The system under test: ``name`` selects the adapter, ``params`` are its own settings.

    ``params`` is checked against the adapter's own dataclass when the SUT is built, so a
    typo there is reported as ``sut.<key>`` too.
    """

    name: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SystemConfig:
    """The machine the run describes; the rest fills ``systems/<id>.json`` of a submission.

    Every field of MLPerf's system description can be set here (harness/submission/system.py
    lists them; ``accelerator_on_chip_memories`` is the JSON's ``accelerator_on-chip_memories``).
    null: what ``environment.json`` captured when the machine can tell (set them when that is not
    the machine that served the model, e.g. a remote server); ``harness-submit`` names the
    required ones still missing. A count of zero is written as the string "0" (MLPerf's checker
    reads the number 0 as empty).
    """

    name: str = "local"
    description: str = ""
    system_name: str | None = None
    status: Literal["available", "preview", "rdi"] | None = None
    system_type: Literal["datacenter", "edge", "datacenter,edge"] | None = None
    system_type_detail: str | None = None
    framework: str | None = None
    number_of_nodes: int = bounded(1, ge=1)
    host_processor_model_name: str | None = None
    host_processors_per_node: int | None = bounded(None, ge=1)
    host_processor_core_count: int | None = bounded(None, ge=1)  # cores per processor
    host_processor_frequency: str | None = None
    host_processor_caches: str | None = None
    host_processor_interconnect: str | None = None
    host_memory_capacity: str | None = None
    host_memory_configuration: str | None = None
    host_storage_capacity: str | None = None
    host_storage_type: str | None = None
    host_networking: str | None = None
    host_networking_topology: str | None = None
    host_network_card_count: int | str | None = None
    accelerator_model_name: str | None = None
    accelerators_per_node: int | None = bounded(None, ge=0)
    accelerator_frequency: str | None = None
    accelerator_host_interconnect: str | None = None
    accelerator_interconnect: str | None = None
    accelerator_interconnect_topology: str | None = None
    accelerator_memory_capacity: str | None = None
    accelerator_memory_configuration: str | None = None
    accelerator_on_chip_memories: str | None = None
    cooling: str | None = None
    operating_system: str | None = None
    other_software_stack: str | None = None
    hw_notes: str | None = None
    sw_notes: str | None = None
    # Roofline peaks per accelerator (decimal GB/s; dense TFLOP/s at the model's precision); null:
    # the table of known accelerators in harness/hardware.py, or on CPU a measured probe.
    peak_memory_bandwidth_gbs: float | None = bounded(None, gt=0)
    peak_tflops: float | None = bounded(None, gt=0)


@dataclass(frozen=True)
class TrackingConfig:
    """Where runs are recorded; ``none`` keeps results in the run directory only.

    ``mlflow`` logs every run to ``uri`` (a local SQLite store by default, or a tracking
    server); see ``harness/tracking/``.
    """

    backend: Literal["none", "mlflow"] = "none"
    uri: str | None = None
    experiment: str = "harness"
    # true: an unreachable store ends the run with exit code 5 instead of a warning.
    required: bool = False
    # Artifact root of a new experiment in a local store; null: beside the SQLite file.
    artifact_location: str | None = None
    # Per HTTP request to a tracking server (s) and retries, so a dead server cannot hang a run.
    timeout_s: int = bounded(5, ge=1)
    retries: int = bounded(1, ge=0)


@dataclass(frozen=True)
class RoundConfig:
    """A job's place in a round (``harness -m``); see ``harness/rounds/``.

    ``parent`` is set by the harness's round sweeper on every job it launches (the round's MLflow
    parent run), never by hand. ``resume`` names the parent run of an earlier round to finish: only
    the jobs with no FINISHED child run there are launched again.
    """

    parent: str | None = None
    resume: str | None = None


@dataclass(frozen=True)
class RunOptions:
    """How the bridge guards the run against a misbehaving SUT."""

    # A sample not completed within this many seconds is completed as an error.
    sample_timeout_s: float = bounded(60.0, gt=0)
    # After this many failed samples the bridge stops calling the SUT and fails the rest fast.
    max_errors: int = bounded(10, ge=1)
    # Chrome trace of every query: large, so off unless asked for.
    enable_trace: bool = False
    # Worker threads calling SUT.generate in Offline; null = the SUT's own concurrency.
    workers: int | None = bounded(None, ge=1)
    # Compliance TEST06 after a submission run's accuracy test (LLMs with token latencies):
    # null = only with benchmark.official=true, true = every submission run, false = never.
    compliance: bool | None = None
    # Server/Interactive: a LoadGen-VALID run whose completions kept pace with less than this
    # fraction of its arrivals is BEHIND, not VALID (harness.verdict.falling_behind); null: LoadGen alone.
    min_completed_ratio: float | None = bounded(0.95, gt=0, le=1)
    # Live progress on stdout (harness.progress): a live line on a terminal, plain lines otherwise.
    progress: bool = True
    # A run directory an earlier run wrote into is refused; true clears it first (harness.run.claim_output_dir).
    overwrite: bool = False


@dataclass(frozen=True)
class HarnessConfig:
    """The complete, resolved configuration of one run."""

    scenario: ScenarioConfig
    benchmark: BenchmarkConfig
    dataset: DatasetConfig
    sut: SUTConfig
    system: SystemConfig = SystemConfig()
    tracking: TrackingConfig = TrackingConfig()
    run: RunOptions = RunOptions()
    round: RoundConfig = RoundConfig()
    mode: Mode = "submission"
    fail_on_invalid: bool = False


# Random per process, so runs (and rounds) started in the same second never share a directory:
# the default hydra.run.dir / hydra.sweep.dir end with ``${run_suffix:}`` (6 hex digits).
RUN_SUFFIX = secrets.token_hex(3)


def register_resolvers() -> None:
    """OmegaConf resolvers the Hydra configs use: ``${run_suffix:}``."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("run_suffix"):
        OmegaConf.register_new_resolver("run_suffix", lambda: RUN_SUFFIX)


def register_scenarios() -> None:
    """Make ``scenarios/*.yaml`` the ``scenario`` config group of Hydra's ConfigStore, and give
    SUTs other packages add (entry points, :mod:`harness.sut.registry`) their ``sut`` option."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    from harness.sut.registry import store_default_configs

    store = ConfigStore.instance()
    for path in sorted(SCENARIOS_DIR.glob("*.yaml")):
        store.store(group="scenario", name=path.stem, node=OmegaConf.load(path))
    store_default_configs(store, CONF_DIR)


def quote_null_sut(overrides: list[str]) -> list[str]:
    """``sut=null`` selects the null SUT; Hydra would read ``null`` as "no sut group"."""
    return ["sut='null'" if o == "sut=null" else o for o in overrides]


def compose(overrides: list[str] | tuple[str, ...] = ()) -> HarnessConfig:
    """Compose ``conf/`` with Hydra overrides, as the CLI would, without running anything.

    Hydra's own errors (an unknown group option or key, a malformed override) become a one-line
    ConfigError, like every other bad input.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    register_scenarios()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = hydra_compose(config_name="config", overrides=quote_null_sut(list(overrides)))
        raw = OmegaConf.to_container(cfg, resolve=True)
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(hydra_error_message(exc)) from exc
    return load_config(raw)


_HYDRA_WHERE = re.compile(r"^In '[^']*': ")


def hydra_error_message(exc: BaseException) -> str:
    """One line for a Hydra or OmegaConf error: what is wrong, the choices or the hint Hydra gives.

    ``Could not find 'scenario/nope' (available: interactive, offline, server, single_stream)``;
    ``Could not override 'sut.ttft_msx': Key 'ttft_msx' is not in struct; to append to your config
    use +sut.ttft_msx=3``.
    """
    text = str(exc)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    head = _HYDRA_WHERE.sub("", lines[0]) if lines else type(exc).__name__
    override = getattr(exc, "override", None)
    if override:
        head = f"cannot read override '{override}': {head}"
    cause = exc.__cause__
    if cause is not None and str(cause).strip():
        head = f"{head.rstrip('.')}: {str(cause).strip().splitlines()[0]}"
    if any(line.startswith("Available options in") for line in lines):
        start = next(i for i, line in enumerate(lines) if line.startswith("Available options in")) + 1
        options = []
        for line in lines[start:]:
            if line.startswith("Config search path"):
                break
            options.append(line)
        head += f" (available: {', '.join(options)})"
    hint = next((line for line in lines[1:] if line.startswith("To append")), None)
    if hint:
        head += f"; {hint[0].lower()}{hint[1:]}"
    return head


def load_config(raw: Mapping[str, Any]) -> HarnessConfig:
    """Build a HarnessConfig from a plain mapping, naming the key of any bad value."""
    data = dict(raw)
    sut = data.get("sut")
    if isinstance(sut, Mapping):
        # Adapter-specific keys live beside ``name`` in YAML; gather them into params.
        sut = dict(sut)
        data["sut"] = {"name": sut.pop("name", None), "params": sut}
    return _build(HarnessConfig, data, "")


def build_dataclass(cls: type, raw: Any, prefix: str) -> Any:
    """Strictly convert ``raw`` into dataclass ``cls``; errors name ``prefix.key``."""
    return _build(cls, raw, prefix)


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _build(cls: type, raw: Any, prefix: str) -> Any:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        known = ", ".join(sorted(fields))
        raise ConfigError(f"unknown config key '{_join(prefix, str(unknown[0]))}' (known: {known})")
    values = {}
    for name, f in fields.items():
        key = _join(prefix, name)
        if name not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"missing required config key '{key}'")
            continue
        values[name] = _convert(hints[name], raw[name], key)
        if RANGE in f.metadata:
            _check_range(f.metadata[RANGE], values[name], key)
    return cls(**values)


def _check_range(bounds: Range, value: Any, key: str) -> None:
    if isinstance(value, (tuple, list)):
        for i, v in enumerate(value):
            _check_range(bounds, v, f"{key}[{i}]")
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and value not in bounds:
        why = f" ({bounds.note})" if bounds.note else ""
        raise ConfigError(f"config key '{key}' must {bounds}{why}, got {value:g}")


def _convert(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if value == "???":
        raise ConfigError(f"missing required config key '{key}'")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        last: ConfigError | None = None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, key)
            except ConfigError as exc:
                last = exc
        raise last or ConfigError(f"config key '{key}': bad value {value!r}")
    if origin is Literal:
        if value not in args:
            choices = ", ".join(map(str, args))
            raise ConfigError(f"config key '{key}' must be one of {choices}, got {value!r}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}': expected a list, got {value!r}")
        return origin(_convert(args[0], v, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"config key '{key}': expected a mapping, got {value!r}")
        return {str(k): _convert(args[1], v, _join(key, str(k))) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key '{key}': expected true/false, got {value!r}")
    if tp in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key '{key}': expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"config key '{key}': expected a finite number, got {value!r}")
        if tp is int and not float(value).is_integer():
            raise ConfigError(f"config key '{key}': expected an integer, got {value!r}")
        return tp(value)
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"config key '{key}': expected a string, got {value!r}")
        return str(value)
    return value


def to_dict(config: Any) -> dict[str, Any]:
    """A plain, JSON-ready dict of a config dataclass (SUT params flattened back)."""
    data = dataclasses.asdict(config)
    if isinstance(config, HarnessConfig):
        sut = data.pop("sut")
        data["sut"] = {"name": sut["name"], **sut["params"]}
    return data
