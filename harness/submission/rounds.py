"""MLPerf Inference rounds: the LoadGen seeds of each, and which LLM benchmarks and scenarios it has.

A round is named by its submission checker version (``v6.1``). Its seeds are in the official
``mlperf.conf`` that LoadGen compiles in, so the seeds in a run's detail log say which round the
run can be submitted to: ``installed_round()`` reads them from the installed LoadGen (6.0.17
carries v6.1's). The benchmark lists are the official checker's (``MODEL_CONFIG`` in
``tools/submission/submission_checker/constants.py`` of mlcommons/inference, 2026-08-20), limited
to the LLM benchmarks the harness emulates; a benchmark a round dropped is kept for the open
division and historical runs, and ``last_round()`` says where it was last.

Scenario rules per system type (``systems/<id>.json`` ``system_type``): the closed division must
submit every required scenario, may add optional ones, nothing else; where Server and
Interactive are both optional, one of them is required (checker, 2026-08-20).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.loadgen.logs import DetailLog

SYSTEM_TYPES = ("datacenter", "edge", "datacenter,edge")


@dataclass(frozen=True)
class Scenarios:
    """Scenario folders of one benchmark for one system type."""

    required: tuple[str, ...]
    optional: tuple[str, ...] = ()

    @property
    def allowed(self) -> tuple[str, ...]:
        return self.required + self.optional

    @property
    def one_of(self) -> tuple[str, ...]:
        """Scenarios of which at least one is required (Server or Interactive since v6.1)."""
        pair = ("Server", "Interactive")
        return pair if set(pair) <= set(self.optional) else ()

    def describe(self) -> str:
        parts = [f"{', '.join(self.required)} required"]
        if self.one_of:
            parts.append(f"one of {' or '.join(self.one_of)}")
        elif self.optional:
            parts.append(f"{', '.join(self.optional)} optional")
        return "; ".join(parts)


@dataclass(frozen=True)
class Benchmark:
    """One benchmark of a round: its scenarios per system type (absent: not for that type)."""

    name: str  # submission folder name, e.g. llama3.1-8b
    scenarios: Mapping[str, Scenarios]
    test06: bool = True  # compliance TEST06 required in the closed division


@dataclass(frozen=True)
class Round:
    name: str
    seeds: tuple[int, int, int]  # qsl_rng_seed, sample_index_rng_seed, schedule_rng_seed
    benchmarks: Mapping[str, Benchmark] = field(default_factory=dict)

    def benchmark(self, name: str) -> Benchmark | None:
        return self.benchmarks.get(name)


def _dc(required: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, Scenarios]:
    """A datacenter-only benchmark: the same rules for datacenter and datacenter,edge systems."""
    return {"datacenter": Scenarios(required, optional), "datacenter,edge": Scenarios(required, optional)}


def _edge(required: tuple[str, ...]) -> dict[str, Scenarios]:
    return {"edge": Scenarios(required), "datacenter,edge": Scenarios(required)}


_SERVER_OR_INTERACTIVE = ("Interactive", "Server")
_LLAMA3_8B = Benchmark("llama3.1-8b", _dc(("Offline",), _SERVER_OR_INTERACTIVE))
_LLAMA3_8B_EDGE = Benchmark("llama3.1-8b-edge", _edge(("SingleStream", "Offline")), test06=False)
_LLAMA2_99 = Benchmark("llama2-70b-99", _dc(("Offline",), _SERVER_OR_INTERACTIVE))
_LLAMA2_999 = Benchmark("llama2-70b-99.9", _dc(("Offline",), _SERVER_OR_INTERACTIVE))
_MIXTRAL = Benchmark("mixtral-8x7b", _dc(("Server", "Offline")))


def _gptj(name: str) -> Benchmark:
    return Benchmark(name, {"datacenter": Scenarios(("Server", "Offline")),
                            "edge": Scenarios(("SingleStream", "Offline")),
                            "datacenter,edge": Scenarios(("SingleStream", "Offline", "Server"))})


def _round(name: str, seeds: tuple[int, int, int], benchmarks: Iterable[Benchmark]) -> Round:
    return Round(name, seeds, {b.name: b for b in benchmarks})


ROUNDS: dict[str, Round] = {r.name: r for r in (
    _round("v5.0", (6023615788873153749, 15036839855038426416, 9933818062894767841),
           (_gptj("gptj-99"), _gptj("gptj-99.9"), Benchmark("llama2-70b-99", _dc(("Server", "Offline"))),
            Benchmark("llama2-70b-99.9", _dc(("Server", "Offline"))), _MIXTRAL)),
    _round("v5.1", (1780908523862526354, 14771362308971278857, 18209322760996052031),
           (_LLAMA3_8B, _LLAMA3_8B_EDGE, _LLAMA2_99, _LLAMA2_999, _MIXTRAL)),
    _round("v6.0", (2465351861681999779, 14276810075590677512, 3936089224930324775),
           (_LLAMA3_8B, _LLAMA3_8B_EDGE, _LLAMA2_99, _LLAMA2_999, _MIXTRAL)),
    _round("v6.1", (2085463073848966840, 2747215439041700203, 16159082839903944936),
           (_LLAMA3_8B, _LLAMA3_8B_EDGE, _LLAMA2_999)),
)}
# v6.1 LLM benchmarks the harness does not emulate (not ROUGE-scored), named when one is asked for.
OTHER_V61_LLMS = ("deepseek-r1", "gpt-oss-120b", "qwen3.6-27b", "qwen3-vl-235b-a22b")


def round_of_seeds(seeds: tuple[int | None, int | None, int | None]) -> Round | None:
    """The round whose mlperf.conf has these (qsl, sample index, schedule) seeds."""
    return next((r for r in ROUNDS.values() if r.seeds == tuple(seeds)), None)


def seeds_of_detail(detail: DetailLog) -> tuple[int | None, int | None, int | None]:
    """The effective seeds a LoadGen detail log records."""
    return (detail.get("effective_qsl_rng_seed"), detail.get("effective_sample_index_rng_seed"),
            detail.get("effective_schedule_rng_seed"))


@functools.cache
def installed_seeds() -> tuple[int, int, int] | None:
    """The seeds of the installed LoadGen's built-in mlperf.conf; None without LoadGen."""
    try:
        from harness.loadgen.bridge import builtin_seeds
    except ImportError:
        return None
    return builtin_seeds()


def installed_round() -> Round | None:
    seeds = installed_seeds()
    return None if seeds is None else round_of_seeds(seeds)


def last_round(benchmark: str) -> str | None:
    """The newest round that had ``benchmark`` (None: no round the harness knows)."""
    return next((r.name for r in reversed(ROUNDS.values()) if benchmark in r.benchmarks), None)


def benchmark_problem(rnd: Round, benchmark: str, system_type: str | None) -> str | None:
    """Why ``benchmark`` cannot be submitted to ``rnd`` for a ``system_type`` system (None: it can)."""
    bench = rnd.benchmark(benchmark)
    if bench is None:
        last = last_round(benchmark)
        where = f"last in {last}" if last else "in no round the harness knows"
        return (f"{benchmark} is not a benchmark of {rnd.name} ({where}; the harness's benchmarks of {rnd.name}: "
                f"{', '.join(rnd.benchmarks)})")
    if system_type is not None and system_type not in bench.scenarios:
        fits = [b.name for b in rnd.benchmarks.values() if system_type in b.scenarios]
        return (f"{benchmark} is not a benchmark for {system_type} systems in {rnd.name} (it is for "
                f"{' and '.join(bench.scenarios)} systems; for {system_type}: {', '.join(fits) or 'none'})")
    return None


def scenario_problem(rnd: Round, benchmark: str, system_type: str, scenario: str) -> str | None:
    """Why ``scenario`` (a folder name) is not a scenario of ``benchmark`` in ``rnd`` (None: it is)."""
    bench = rnd.benchmark(benchmark)
    rules = bench.scenarios.get(system_type) if bench else None
    if rules is None or scenario in rules.allowed:
        return None
    return f"{scenario} is not a scenario of {benchmark} in {rnd.name} for {system_type} systems ({rules.describe()})"


def missing_scenarios(rnd: Round, benchmark: str, system_type: str, present: Iterable[str]) -> list[str]:
    """Required scenarios of ``benchmark`` absent from ``present`` (``one of X or Y`` for a pair)."""
    bench = rnd.benchmark(benchmark)
    rules = bench.scenarios.get(system_type) if bench else None
    if rules is None:
        return []
    have = set(present)
    missing = [s for s in rules.required if s not in have]
    if rules.one_of and not have & set(rules.one_of):
        missing.append(f"one of {' or '.join(rules.one_of)}")
    return missing
