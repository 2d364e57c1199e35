"""The typed sections of results.json and how they are read from and written to JSON.

A section is a frozen dataclass whose fields are the well-known keys of one part of the file
(same names, as readers use them); keys it does not type are kept, as written, in ``rest``, and
the well-known keys the JSON lacked in ``absent``, so a section loaded from JSON writes back the
same JSON. Conversion checks types and names the key that is wrong. :mod:`harness.results`
holds :class:`~harness.results.RunResult`, the loader and the schema version.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Union

from harness.accuracy.judge import Check
from harness.errors import HarnessError
from harness.loadgen.logs import Percentiles


class ResultsError(HarnessError):
    """A results.json that cannot be read: missing, not JSON, a key of the wrong type, or newer
    than this harness; the message names the file and the key."""


class ResultsMissing(ResultsError):
    """No results.json where one was expected."""


def json_form(value: Any) -> Any:
    """A value as ``json`` writes it: dataclasses and sections as objects, tuples as lists."""
    if isinstance(value, Section) or hasattr(value, "to_json"):
        return value.to_json()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: json_form(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {k: json_form(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_form(v) for v in value]
    return value


@functools.cache
def type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def kind(value: Any) -> str:
    return "null" if value is None else {bool: "a boolean", int: "a number", float: "a number", str: "a string",
                                         list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


def convert(value: Any, hint: Any, where: str) -> Any:
    """``value`` (as JSON holds it) as the type ``hint`` names; ResultsError naming ``where``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return json_form(value)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner, *more) = [a for a in args if a is not type(None)]
        return convert(value, inner if not more else Any, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ResultsError(f"{where}: expected a list, got {kind(value)}")
        return tuple(convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
    if origin is Mapping or origin is dict:
        if not isinstance(value, Mapping):
            raise ResultsError(f"{where}: expected an object, got {kind(value)}")
        return {str(k): convert(v, args[1], f"{where}.{k}") for k, v in value.items()}
    if isinstance(hint, type) and issubclass(hint, Section):
        return value if isinstance(value, hint) else hint.from_dict(value, where)
    if dataclasses.is_dataclass(hint):
        return value if isinstance(value, hint) else _plain_dataclass(hint, value, where)
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)  # an int stays an int: 5 is written 5
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, hint)
    if not ok:
        raise ResultsError(f"{where}: expected {kind(hint())}, got {kind(value)}")
    return value


def _plain_dataclass(cls: type, value: Any, where: str) -> Any:
    """A dataclass of another module (Percentiles, LatencyLimits, Reason, Check) from its JSON
    object; keys it derives (a Check's ``pass``) are left out."""
    if not isinstance(value, Mapping):
        raise ResultsError(f"{where}: expected an object, got {kind(value)}")
    hints, given = type_hints(cls), {}
    for f in dataclasses.fields(cls):
        if f.name in value:
            given[f.name] = convert(value[f.name], hints[f.name], f"{where}.{f.name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ResultsError(f"{where}: no key {f.name!r}")
    return cls(**given)


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


@dataclass(frozen=True)
class Section(Mapping[str, Any]):
    """A typed part of results.json: its fields are the well-known keys (same names), ``rest``
    holds the keys it does not type as written, ``absent`` the well-known keys the JSON lacked (left
    out when written while they hold their default, so the same JSON is written back). Read-only
    ``section["key"]`` reads the JSON form, as scripts written against the plain dicts did."""

    rest: Mapping[str, Any] = field(default_factory=dict, kw_only=True, repr=False)
    absent: frozenset[str] = field(default_factory=frozenset, kw_only=True, repr=False)
    order: tuple[str, ...] = field(default=(), kw_only=True, repr=False, compare=False)  # the JSON's key order
    _OWN: ClassVar[tuple[str, ...]] = ("rest", "absent", "order")
    # Written by a SUT adapter, possibly a third party's: a key whose value has another type than the
    # harness's own adapters give it is kept in ``rest`` (and reads as absent), never fails the run.
    _SUT_OWNED: ClassVar[bool] = False

    @classmethod
    def from_dict(cls, data: Any, where: str = "") -> Any:
        if not isinstance(data, Mapping):
            raise ResultsError(f"{where or cls.__name__}: expected an object, got {kind(data)}")
        hints, given, absent = type_hints(cls), {}, set()
        names = [f.name for f in dataclasses.fields(cls) if f.name not in cls._OWN]
        for name in names:
            if name not in data:
                absent.add(name)
                continue
            try:
                given[name] = convert(data[name], hints[name], f"{where}.{name}" if where else name)
            except ResultsError:
                if not cls._SUT_OWNED:
                    raise
                absent.add(name)
        rest = {k: json_form(v) for k, v in data.items() if k not in given}
        return cls(**given, rest=rest, absent=frozenset(absent), order=tuple(data))

    def to_json(self) -> dict[str, Any]:
        out = {f.name: json_form(getattr(self, f.name)) for f in dataclasses.fields(self)
               if f.name not in self._OWN and not (f.name in self.absent and getattr(self, f.name) == _default(f))}
        out |= {k: v for k, v in self.rest.items() if k not in out}
        return {k: out[k] for k in (*[k for k in self.order if k in out], *out)}

    def __getitem__(self, key: str) -> Any:
        return self.to_json()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_json())

    def __len__(self) -> int:
        return len(self.to_json())


@dataclass(frozen=True)
class DatasetInfo(Section):
    """``dataset``: the records the run used."""

    name: str | None = None
    source: str | None = None  # the file read
    samples: int | None = None
    fingerprint: str | None = None  # sha256 of the records


@dataclass(frozen=True)
class Compliance(Section):
    """``accuracy.compliance`` and ``extra.compliance.<test>``: the TEST06-style log checks."""

    passed: bool | None = None
    entries: int | None = None  # responses checked
    lines: tuple[str, ...] = ()


@dataclass(frozen=True)
class Accuracy(Section):
    """``accuracy``: the scores of the accuracy log and their verdict (:mod:`harness.accuracy.judge`)."""

    scores: Mapping[str, float] = field(default_factory=dict)  # rouge1 .. rougeLsum, gsm8k, gen_len, gen_num, ...
    verdict: str | None = None  # PASS, FAIL, INCOMPLETE, NO_TARGET
    target_fraction: float | None = None
    reference_source: str | None = None
    targets: Mapping[str, float | None] = field(default_factory=dict)
    checks: tuple[Check, ...] = ()
    failed: tuple[str, ...] = ()
    splitter: str | None = None
    hash: str | None = None  # sha256 of the accuracy log
    accuracy_log: str | None = None
    compliance: Compliance | None = None


@dataclass(frozen=True)
class SutStats(Section):
    """``extra.sut_stats.<test>``: the SUT's own accounting (sut=openai's token counts, sut=hf's
    speculative decoding); the keys readers use are typed, the rest is in ``rest``."""

    _SUT_OWNED: ClassVar[bool] = True

    token_count_source: str | None = None
    token_counts_approximate: bool | None = None
    output_token_ids: str | None = None  # server, re-tokenized, mixed
    retokenizer: str | None = None
    usage_reported: int | None = None
    usage_mismatches: int | None = None
    acceptance_rate: float | None = None
    mean_accepted_tokens: float | None = None


@dataclass(frozen=True)
class ModelRecord(Section):
    """``extra.model`` as stored: what :class:`harness.sut.base.ModelInfo` (the SUT's own
    description) wrote, read back tolerantly (a third party's SUT may write less or more)."""

    _SUT_OWNED: ClassVar[bool] = True

    path: str | None = None
    architecture: str | None = None
    fingerprint: str | None = None
    parameters: float | None = None
    dtype: str | None = None
    weight_bytes: float | None = None


@dataclass(frozen=True)
class InputsCut(Section):
    """``extra.inputs_cut``: prompts cut to fit the model's context."""

    samples: int | None = None
    of: int | None = None
    max_prompt_tokens: int | None = None
    limit: str | None = None


@dataclass(frozen=True)
class Figures(Section):
    """``extra.failed_run_figures``: LoadGen's figures of a FAILED run, kept for the record only."""

    samples_per_second: float | None = None
    tokens_per_second: float | None = None
    ttft_ms: Percentiles | None = None
    tpot_ms: Percentiles | None = None
    latency_ms: Percentiles | None = None


@dataclass(frozen=True)
class Extra(Section):
    """``extra``: the run's further records; the well-known keys typed, any other in ``rest``."""

    accuracy_log_samples: int | None = None
    samples_issued: Mapping[str, int] = field(default_factory=dict)  # per test
    loadgen_reasons: tuple[str, ...] = ()  # LoadGen's own words when it said INVALID
    compliance: Mapping[str, Compliance] = field(default_factory=dict)  # TEST06
    sut_stats: Mapping[str, SutStats] = field(default_factory=dict)  # per test
    model: ModelRecord | None = None
    inputs_cut: InputsCut | None = None
    failed_run_figures: Figures | None = None


@dataclass(frozen=True)
class RooflineModel(Section):
    """``roofline.model``: the model shape the estimates used."""

    source: str | None = None
    parameters: float | None = None
    dtype: str | None = None
    weight_bytes: float | None = None


@dataclass(frozen=True)
class RooflinePeaks(Section):
    """``roofline.peaks``: the machine's peak bandwidth and FLOP/s, and where they came from."""

    accelerator: str | None = None
    accelerators: int | None = None
    memory_bandwidth_gbs: float | None = None
    bandwidth_source: str | None = None
    tflops: float | None = None
    precision: str | None = None


@dataclass(frozen=True)
class DecodeFigures(Section):
    """``roofline.decode``: bytes per decode step and the bandwidth achieved."""

    bytes_per_step: float | None = None
    achieved_bandwidth_gbs: float | None = None
    bandwidth_utilization: float | None = None
    null_reasons: Mapping[str, str] = field(default_factory=dict)  # why a figure is null


@dataclass(frozen=True)
class ComputeFigures(Section):
    """``roofline.prefill`` and ``roofline.overall``: FLOP/s achieved and MFU."""

    achieved_tflops: float | None = None
    mfu: float | None = None
    null_reasons: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RooflineFigures(Section):
    """``roofline``: the estimates of :mod:`harness.roofline` (docs/ROOFLINE.md)."""

    method: str | None = None
    reason: str | None = None  # why nothing at all was estimated
    model: RooflineModel | None = None
    peaks: RooflinePeaks | None = None
    workload: Mapping[str, Any] | None = None
    decode: DecodeFigures = field(default_factory=DecodeFigures)
    prefill: ComputeFigures = field(default_factory=ComputeFigures)
    overall: ComputeFigures = field(default_factory=ComputeFigures)
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class PaceFigures(Section):
    """``pace`` (Server/Interactive): :class:`harness.verdict.Pace` as written."""

    completed_qps: float | None = None
    scheduled_qps: float | None = None
    ratio: float | None = None
