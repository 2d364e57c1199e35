"""How much does the harness cost a real model, and what does in-flight batching buy?

Side by side in one invocation, on one model, the same bundled prompts and the same token counts:

1. Offline: tokens/s of ``sut=hf`` through LoadGen's Offline scenario (bridge, batching, LoadGen's
   own clock) vs a bare loop calling ``model.generate`` on the same length-sorted, left-padded
   batches, timed with ``time.perf_counter``. Goal: ratio >= 0.95.
2. SingleStream: tokens/s of ``sut=hf`` through LoadGen's SingleStream scenario (one query at a
   time through the streaming decode loop) vs a bare loop calling ``model.generate`` on one
   prompt at a time. Goal: ratio >= 0.95.
3. In-flight batching, LoadGen's Server scenario, completed tokens/s with in-flight batching
   (``sut.max_batch_size=32``) vs one request at a time (``sut.max_batch_size=1``, the others
   queue), (a) with both sides overloaded (all queries arrive within a fraction of a second: each
   side's capacity) and (b) at a stated load (``--server-qps``; default half the in-flight
   capacity measured in (a)), where in-flight batching keeps up and one at a time saturates.

The model is one where the model, not Python, dominates: by default a random Llama of hidden size
512 x 8 layers with a 32,000-row vocabulary (58M parameters), built offline with transformers
into the cache (``--model-shape``), or any local directory (``--model-path``); ``--model-shape
embedded`` is the embedded tiny model. Every LoadGen test and every bare loop runs in its own
process; the two sides alternate over ``--repeats`` rounds, and medians with their ranges are
compared, since a small shared machine is noisy (the load average is printed with the figures).

Thread placement is part of the comparison: torch's CPU kernels run on OpenMP thread teams, one
per thread that starts parallel work (:mod:`harness.sut.hf.torch_thread`), and glibc gives the main
thread and other threads different malloc arenas. The harness runs all torch work of ``sut=hf``
on its one torch thread; the bare loop runs on its process's main thread, and (unless
``--no-bare-thread``) a third side runs the same bare loop, load included, on one new thread:
the harness's placement without the harness, so harness / that side is the harness's own cost.
Each side's voluntary context switches per generated token are printed: OpenMP threads that
spin between parallel regions switch almost never, throttled ones sleep and wake for each region.

    python -m harness.bench.hf_efficiency --repeats 3
    python -m harness.bench.hf_efficiency --model-shape hidden=1024,layers=12 --skip server
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import offline
from harness.bench import load_average
from harness.config import HarnessConfig, compose
from harness.datasets import load_dataset
from harness.datasets.prompts import build_samples
from harness.loadgen.process import run_in_process
from harness.run import run_benchmark
from harness.sut.base import Sample

log = logging.getLogger("harness.bench.hf_efficiency")

GOAL_RATIO = 0.95  # issue 21: the torch SUT within 5% of bare generate
GOAL_INFLIGHT = 2.0
DEFAULT_SHAPE = "hidden=512,layers=8,vocab=32000"
SECTIONS = ("offline", "single_stream", "server")


# -- the model -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Shape:
    """A Llama shape for a random benchmark model (heads of 64 dimensions by default)."""

    hidden: int = 512
    layers: int = 8
    vocab: int = 32000
    intermediate: int | None = None  # None: 2.6875 x hidden (Llama 2's ratio), a multiple of 16
    heads: int | None = None  # None: hidden / 64
    kv_heads: int | None = None  # None: as many as heads

    def __str__(self) -> str:
        return f"hidden {self.hidden} x {self.layers} layers, vocabulary {self.vocab:,}"

    def recipe(self) -> Any:
        from harness.sut.hf.tiny_model import TinyRecipe

        heads = self.heads or max(1, self.hidden // 64)
        intermediate = self.intermediate or round(self.hidden * 2.6875 / 16) * 16
        return TinyRecipe(hidden_size=self.hidden, intermediate_size=intermediate, num_hidden_layers=self.layers,
                          num_attention_heads=heads, num_key_value_heads=self.kv_heads or heads,
                          model_vocab_size=self.vocab)


def parse_shape(text: str) -> Shape | None:
    """``hidden=512,layers=8,vocab=32000`` (any subset of Shape's fields); ``embedded``: None."""
    if text == "embedded":
        return None
    fields = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or key not in Shape.__dataclass_fields__:
            raise argparse.ArgumentTypeError(f"expected key=value with keys {', '.join(Shape.__dataclass_fields__)}, "
                                             f"got {part!r}")
        try:
            fields[key] = int(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{key} must be an integer, got {value!r}") from exc
        if fields[key] < 1:
            raise argparse.ArgumentTypeError(f"{key} must be at least 1")
    return Shape(**fields)


def model_path(args: argparse.Namespace) -> str | None:
    """The directory to load: ``--model-path``, the built shape (created once, cached), or None (embedded)."""
    if args.model_path:
        return args.model_path
    if args.model_shape is None:
        return None
    from harness.sut.hf.tiny_model import ensure_tiny_model

    return str(ensure_tiny_model(args.model_shape.recipe()))


# -- measurements ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Measured:
    """One measurement of one side: tokens/s, tokens counted, and the process's voluntary context
    switches per generated token (the thread placement's signature)."""

    tokens_per_second: float
    tokens: int
    switches_per_token: float | None = None
    samples_per_second: float | None = None
    valid: bool | None = None


def children_switches() -> int:
    """Voluntary context switches of this process's finished (waited-for) child processes."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_nvcsw


def base_overrides(args: argparse.Namespace, path: str | None) -> list[str]:
    overrides = ["sut=hf", "mode=performance", f"dataset.n_samples={args.samples}", "run.sample_timeout_s=600"]
    if path:
        overrides.append(f"sut.model_path={path}")
    return overrides


def samples_of(config: HarnessConfig) -> list[Sample]:
    return build_samples(config.benchmark, load_dataset(config.dataset))


def harness_run(config: HarnessConfig, outdir: Path) -> Measured:
    """One LoadGen test of sut=hf (in its own process, as every harness test runs)."""
    before = children_switches()
    result = run_benchmark(config, outdir)
    switches = children_switches() - before
    if result.errors or not result.tokens_per_second or not result.samples_per_second:
        raise RuntimeError(f"{config.scenario.name} run failed: {result.error_messages}")
    issued = result.extra.samples_issued["performance"]
    tokens = round(result.tokens_per_second * issued / result.samples_per_second)
    return Measured(result.tokens_per_second, tokens, switches / tokens, result.samples_per_second,
                    bool(result.valid))


def bare_generate(config: HarnessConfig, samples: list[Sample], batch_size: int) -> tuple[float, int]:
    """model.generate over the bridge's batches (``batch_size`` 1: one prompt at a time), on this
    process's main thread, nothing else: (seconds, tokens). Runs in its own process."""
    import torch
    from transformers import GenerationConfig

    from harness.sut.hf.adapter import (
        cpu_threads,
        eos_ids,
        load_model,
        model_dir,
        resolve_device,
        resolve_dtype,
        until_eos,
    )
    from harness.sut.hf.inflight import left_pad

    params = _hf_params(config)
    if cpu_threads(params) is not None:
        torch.set_num_threads(cpu_threads(params))  # as HFSUT.create does
    device = resolve_device(params.device)
    model, tokenizer = load_model(model_dir(params), dtype=resolve_dtype(params.dtype, device), device=device,
                                  trust_remote_code=params.trust_remote_code)
    eos = eos_ids(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(eos)
    gen = GenerationConfig(max_new_tokens=config.benchmark.max_new_tokens, do_sample=False, num_beams=1,
                           eos_token_id=sorted(eos), pad_token_id=pad)
    model.generation_config = GenerationConfig(eos_token_id=sorted(eos), pad_token_id=pad, do_sample=False)
    prompts = {s.index: tokenizer.encode(s.prompt) for s in samples}  # outside the timed loop, as load() does
    ordered = sorted(samples, key=lambda s: len(s.prompt))  # the bridge's Offline order
    batches = [ordered[i:i + batch_size] for i in range(0, len(ordered), batch_size)]

    def run(batch: list[Sample]) -> int:
        ids, mask, _ = left_pad([prompts[s.index] for s in batch], pad, device)
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=mask, generation_config=gen)
        return sum(len(until_eos(row, eos)) for row in out[:, ids.shape[1]:].tolist())

    run(batches[0][:1])  # warm-up, as HFSUT does when it is created
    start = time.perf_counter()
    tokens = sum(run(b) for b in batches)
    return time.perf_counter() - start, tokens


def bare_on_a_thread(config: HarnessConfig, samples: list[Sample], batch_size: int) -> tuple[float, int]:
    """:func:`bare_generate`, all of it (load, warm-up, timed loop) on one new thread of the
    process: the harness's placement (its torch thread), without the harness."""
    box: dict[str, Any] = {}

    def body() -> None:
        try:
            box["result"] = bare_generate(config, samples, batch_size)
        except BaseException as exc:  # re-raised on the calling thread
            box["error"] = exc

    thread = threading.Thread(target=body, name="bare-torch")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["result"]


def bare_run(config: HarnessConfig, samples: list[Sample], batch_size: int, log_file: Path,
             on_thread: bool = False) -> Measured:
    before = children_switches()
    fn = bare_on_a_thread if on_thread else bare_generate
    seconds, tokens = run_in_process(fn, config, samples, batch_size, log_file=log_file)
    return Measured(tokens / seconds, tokens, (children_switches() - before) / tokens)


def _hf_params(config: HarnessConfig):
    from harness.config import build_dataclass
    from harness.sut.hf.adapter import HFParams

    return build_dataclass(HFParams, config.sut.params, "sut")


def alternate(sides: dict[str, Callable[[int], Measured]], repeats: int, what: str) -> dict[str, list[Measured]]:
    """Each side once per round, the order swapped every round so drifting load hits both alike."""
    names = list(sides)
    out: dict[str, list[Measured]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            out[name].append(sides[name](r))
        log.info("%s round %d: %s", what, r + 1,
                 ", ".join(f"{n} {out[n][-1].tokens_per_second:,.1f} tokens/s" for n in names))
    return out


# -- report ----------------------------------------------------------------------------------
def fmt(values: list[float], digits: int = 1) -> str:
    """``median M (range lo-hi; a, b, c)``."""
    runs = ", ".join(f"{v:,.{digits}f}" for v in values)
    return (f"median {statistics.median(values):,.{digits}f} (range {min(values):,.{digits}f}-"
            f"{max(values):,.{digits}f}; {runs})")


def ratio_of_medians(a: list[Measured], b: list[Measured]) -> float:
    return statistics.median(x.tokens_per_second for x in a) / statistics.median(x.tokens_per_second for x in b)


def compare(title: str, harness: list[Measured], bare: list[Measured], harness_label: str, bare_label: str,
            goal: float = GOAL_RATIO, bare_thread: list[Measured] | None = None) -> list[str]:
    ratio = ratio_of_medians(harness, bare)
    lines = [title,
             f"  {harness_label:<40} {fmt([x.tokens_per_second for x in harness])} tokens/s",
             f"  {bare_label + ', main thread':<40} {fmt([x.tokens_per_second for x in bare])} tokens/s"]
    if bare_thread:
        lines.append(f"  {bare_label + ', one thread':<40} {fmt([x.tokens_per_second for x in bare_thread])} tokens/s")
    lines.append(f"  ratio of medians {ratio:.3f} (harness / bare, main thread)   goal >= {goal}: "
                 f"{'met' if ratio >= goal else 'NOT met'}")
    if bare_thread:
        lines.append(f"  ratio of medians {ratio_of_medians(harness, bare_thread):.3f} (harness / bare on one thread, "
                     "the harness's placement: the harness's own cost alone)")
    sides = {"harness": harness, "bare": bare, "bare on one thread": bare_thread or []}
    switches = {name: statistics.median(x.switches_per_token for x in side if x.switches_per_token is not None)
                for name, side in sides.items() if any(x.switches_per_token is not None for x in side)}
    if len(switches) >= 2:
        lines.append("  voluntary context switches per token (whole process): "
                     + ", ".join(f"{name} {v:.1f}" for name, v in switches.items()))
    if len({x.tokens for side in sides.values() for x in side}) > 1:
        lines.append("  note: token counts differ between runs (LoadGen's sample choice, or EOS)")
    return lines


def server_lines(overloaded: dict[str, list[Measured]], loaded: dict[str, list[Measured]], load_qps: float,
                 how: str, queries: int, tokens: int) -> list[str]:
    i, s = overloaded["inflight"], overloaded["serial"]
    cap = ratio_of_medians(i, s)
    li, ls = loaded["inflight"], loaded["serial"]
    at_load = ratio_of_medians(li, ls)
    return [f"Server, {queries} queries of {tokens} tokens, completed tokens/s (LoadGen):",
            "  (a) both sides overloaded (every query arrives within a fraction of a second): capacities",
            f"      in-flight batching (batch <= 32)  {fmt([x.tokens_per_second for x in i])}",
            f"      one at a time                     {fmt([x.tokens_per_second for x in s])}",
            f"      capacity ratio {cap:.2f}x   goal >= {GOAL_INFLIGHT:g}x: "
            f"{'met' if cap >= GOAL_INFLIGHT else 'NOT met'}",
            f"  (b) at {load_qps:.2f} QPS ({how})",
            f"      in-flight batching (batch <= 32)  {fmt([x.tokens_per_second for x in li])}",
            f"      one at a time                     {fmt([x.tokens_per_second for x in ls])}",
            f"      ratio {at_load:.2f}x at this load (in-flight keeps up with the offered load; one at a time "
            "saturates at its capacity, so the ratio grows with the load up to the capacity ratio)"]


def threads_line(path: str | None) -> str:
    import torch

    from harness.sut.hf.adapter import HFParams, cpu_threads

    threads = cpu_threads(HFParams(model_path=path)) or torch.get_num_threads()
    return f"{os.cpu_count()} cores, torch {torch.__version__}, {threads} torch threads on both sides"


# -- command line ----------------------------------------------------------------------------
def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m harness.bench.hf_efficiency",
        description="sut=hf through LoadGen vs bare model.generate loops, Offline and SingleStream (goal: within "
                    f"{1 - GOAL_RATIO:.0%}), and Server in-flight batching vs one request at a time.")
    model = parser.add_mutually_exclusive_group()
    model.add_argument("--model-path", default=None, help="a local Hugging Face model directory")
    model.add_argument("--model-shape", type=parse_shape, default=parse_shape(DEFAULT_SHAPE),
                       help="a random Llama built offline into the cache: key=value of hidden, layers, vocab, "
                            "intermediate, heads, kv_heads; 'embedded' for the embedded tiny model "
                            f"(default: {DEFAULT_SHAPE})")
    parser.add_argument("--samples", type=_positive_int, default=32, help="prompts from the bundled sample (32)")
    parser.add_argument("--batch-size", type=_positive_int, default=8, help="Offline batch size (8)")
    parser.add_argument("--max-new-tokens", type=_positive_int, default=128, help="Offline tokens per sample (128)")
    parser.add_argument("--single-stream-samples", type=_positive_int, default=8,
                        help="SingleStream queries per run (8)")
    parser.add_argument("--single-stream-tokens", type=_positive_int, default=64,
                        help="SingleStream tokens per sample (64)")
    parser.add_argument("--server-tokens", type=_positive_int, default=32, help="Server tokens per sample (32)")
    parser.add_argument("--queries", type=_positive_int, default=64, help="Server queries per test (64)")
    parser.add_argument("--server-qps", type=float, default=None,
                        help="the stated load of the Server comparison (default: half the in-flight capacity)")
    parser.add_argument("--repeats", type=_positive_int, default=3, help="rounds of each comparison (3)")
    parser.add_argument("--no-bare-thread", action="store_true",
                        help="leave out the bare loop on one worker thread (the harness's placement)")
    parser.add_argument("--skip", choices=SECTIONS, action="append", default=[], help="leave a section out")
    parser.add_argument("--out", type=Path, default=None, help="directory for the logs (default: a new temp dir)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    offline.enforce()  # before anything imports a Hugging Face library
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    outdir: Path = args.out or Path(tempfile.mkdtemp(prefix="hf-efficiency-"))
    path = model_path(args)
    log.info("model %s; logs in %s", path or "embedded", outdir)
    base = base_overrides(args, path)
    before = load_average()
    lines = [f"Model: {path or 'the embedded tiny model'}"
             + (f" (random Llama {args.model_shape})" if path and not args.model_path else ""),
             "Thread placement: bare loops call generate() on their process's main thread; the harness runs every "
             "torch call of sut=hf on its torch thread (harness.sut.hf.torch_thread), one OpenMP team per process "
             "in both"]

    if "offline" not in args.skip:
        cfg = compose([*base, "scenario=offline", f"sut.max_batch_size={args.batch_size}",
                       f"benchmark.max_new_tokens={args.max_new_tokens}"])
        samples = samples_of(cfg)
        sides = {"harness": lambda r: harness_run(cfg, outdir / f"offline-harness-{r}"),
                 "bare": lambda r: bare_run(cfg, samples, args.batch_size, outdir / f"offline-bare-{r}.log")}
        if not args.no_bare_thread:
            sides["thread"] = lambda r: bare_run(cfg, samples, args.batch_size, outdir / f"offline-thread-{r}.log",
                                                 on_thread=True)
        got = alternate(sides, args.repeats, "offline")
        lines += ["", *compare(f"Offline: {args.samples} samples, batch {args.batch_size}, max_new_tokens "
                               f"{args.max_new_tokens}, {args.repeats} rounds", got["harness"], got["bare"],
                               "harness through LoadGen (Offline)", "bare model.generate, batches",
                               bare_thread=got.get("thread"))]

    if "single_stream" not in args.skip:
        n = args.single_stream_samples
        cfg = compose([*base, "scenario=single_stream", f"dataset.n_samples={n}",
                       f"benchmark.max_new_tokens={args.single_stream_tokens}", f"scenario.min_query_count={n}",
                       "scenario.min_duration_s=0", "scenario.expected_latency_ms=1"])
        samples = samples_of(cfg)
        sides = {"harness": lambda r: harness_run(cfg, outdir / f"single-harness-{r}"),
                 "bare": lambda r: bare_run(cfg, samples, 1, outdir / f"single-bare-{r}.log")}
        if not args.no_bare_thread:
            sides["thread"] = lambda r: bare_run(cfg, samples, 1, outdir / f"single-thread-{r}.log", on_thread=True)
        got = alternate(sides, args.repeats, "single stream")
        lines += ["", *compare(f"SingleStream: {n} samples, one at a time, max_new_tokens {args.single_stream_tokens}, "
                               f"{args.repeats} rounds (LoadGen picks its queries from the {n} samples)",
                               got["harness"], got["bare"], "harness through LoadGen (SingleStream)",
                               "bare model.generate, batch 1", bare_thread=got.get("thread"))]

    if "server" not in args.skip:
        server_base = [*base, "scenario=server", f"benchmark.max_new_tokens={args.server_tokens}",
                       f"scenario.min_query_count={args.queries}", "scenario.min_duration_s=0"]

        def server(width: int, qps: float, tag: str) -> Callable[[int], Measured]:
            cfg = compose([*server_base, f"sut.max_batch_size={width}", f"scenario.target_qps={qps:.3f}"])
            return lambda r: harness_run(cfg, outdir / f"server-{tag}-{r}")

        flood = 1000.0  # far above either side's capacity: the queries arrive within 0.1 s
        overloaded = alternate({"inflight": server(32, flood, "inflight-overloaded"),
                                "serial": server(1, flood, "serial-overloaded")}, args.repeats, "server overloaded")
        if args.server_qps:
            load_qps, how = args.server_qps, "--server-qps"
        else:
            load_qps = 0.5 * statistics.median(x.samples_per_second or 0 for x in overloaded["inflight"])
            how = "half the in-flight capacity measured in (a)"
        loaded = alternate({"inflight": server(32, load_qps, "inflight-load"),
                            "serial": server(1, load_qps, "serial-load")}, args.repeats, "server at load")
        lines += ["", *server_lines(overloaded, loaded, load_qps, how, args.queries, args.server_tokens),
                  "  (Server runs this short are INVALID for LoadGen by design, too few queries for early stopping; "
                  "the comparison is throughput)"]

    lines += ["", f"Machine: {threads_line(path)}; {before} at the start, {load_average()} at the end",
              f"Logs: {outdir}"]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
