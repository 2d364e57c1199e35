"""How much does the harness cost a real model, and what does in-flight batching buy?

Side by side in one invocation, on the same model (``sut=hf``; the embedded tiny model unless
``--model-path``), the same bundled prompts and the same token counts:

1. Offline efficiency: tokens/s of the SUT through LoadGen's Offline scenario (bridge, batching,
   LoadGen's own clock) vs a bare loop calling ``model.generate`` on the same length-sorted,
   left-padded batches of the same size, timed with ``time.perf_counter``. Goal: ratio >= 0.9.
2. In-flight batching: LoadGen's Server scenario at a target QPS that keeps about
   ``--in-flight`` requests in flight (8 by default), completed tokens/s with in-flight batching
   (``sut.max_batch_size=32``) vs serving one request at a time (``sut.max_batch_size=1``: the
   others queue). Goal: at least 2x. The QPS starts from Little's law with the latency of that
   many concurrent requests, then short Server runs correct it until the mean in flight
   (completed samples/s x mean latency, both from LoadGen) is within 15% of the goal.

Every LoadGen test and the bare loop run in their own process (LoadGen reads mlperf.conf only
once per process), alternating variants over ``--repeats`` rounds and comparing medians, since a
small shared machine is noisy. The script prints the figures and whether each goal is met.

    python -m harness.bench.hf_efficiency --repeats 3
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from harness.config import HarnessConfig, compose
from harness.datasets import load_dataset
from harness.datasets.prompts import build_samples
from harness.loadgen.logs import parse_detail_log
from harness.loadgen.process import run_in_process
from harness.run import open_sut, run_benchmark
from harness.sut.base import Sample

log = logging.getLogger("harness.bench.hf_efficiency")

GOAL_OFFLINE = 0.9
GOAL_INFLIGHT = 2.0


@dataclass(frozen=True)
class Offline:
    """One Offline measurement: tokens/s and the tokens it counted."""

    tokens_per_second: float
    tokens: int


@dataclass(frozen=True)
class Server:
    """One Server test as LoadGen reported it."""

    tokens_per_second: float
    samples_per_second: float
    mean_latency_s: float
    valid: bool
    reasons: tuple[str, ...]  # LoadGen's, when INVALID

    @property
    def in_flight(self) -> float:
        """Mean requests in flight (Little's law: completed rate x mean latency)."""
        return self.samples_per_second * self.mean_latency_s


def base_overrides(args: argparse.Namespace) -> list[str]:
    overrides = ["sut=hf", "mode=performance", f"benchmark.max_new_tokens={args.max_new_tokens}",
                 f"dataset.n_samples={args.samples}", "run.sample_timeout_s=600"]
    if args.model_path:
        overrides.append(f"sut.model_path={args.model_path}")
    return overrides


def samples_of(config: HarnessConfig) -> list[Sample]:
    return build_samples(config.benchmark, load_dataset(config.dataset))


# -- Offline ---------------------------------------------------------------------------------
def harness_offline(config: HarnessConfig, outdir: Path) -> Offline:
    result = run_benchmark(config, outdir)
    if result.errors or not result.tokens_per_second or not result.samples_per_second:
        raise RuntimeError(f"Offline run failed: {result.error_messages}")
    issued = result.extra["samples_issued"]["performance"]
    tokens = round(result.tokens_per_second * issued / result.samples_per_second)
    return Offline(result.tokens_per_second, tokens)


def bare_offline(config: HarnessConfig, samples: list[Sample]) -> Offline:
    """model.generate over the bridge's batches, nothing else; runs in its own process."""
    import torch
    from transformers import GenerationConfig

    from harness.sut.hf import cpu_threads, eos_ids, load_model, model_dir, resolve_device, resolve_dtype, until_eos
    from harness.sut.hf_inflight import left_pad

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
    size = params.max_batch_size
    batches = [ordered[i:i + size] for i in range(0, len(ordered), size)]

    def run(batch: list[Sample]) -> int:
        ids, mask, _ = left_pad([prompts[s.index] for s in batch], pad, device)
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=mask, generation_config=gen)
        return sum(len(until_eos(row, eos)) for row in out[:, ids.shape[1]:].tolist())

    run(batches[0][:1])  # warm-up, as HFSUT does when it is created
    start = time.perf_counter()
    tokens = sum(run(b) for b in batches)
    return Offline(tokens / (time.perf_counter() - start), tokens)


def _hf_params(config: HarnessConfig):
    from harness.config import build_dataclass
    from harness.sut.hf import HFParams

    return build_dataclass(HFParams, config.sut.params, "sut")


# -- Server ----------------------------------------------------------------------------------
class _Done:
    """A TokenStream that only signals the end."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def emit(self, token_ids) -> None:
        pass

    def finish(self, n_tokens: int | None = None) -> None:
        self.event.set()

    def fail(self, error: BaseException) -> None:
        self.event.set()


def concurrent_latency(config: HarnessConfig, samples: list[Sample], width: int) -> float:
    """Seconds for ``width`` requests submitted together to finish (in-flight SUT); own process."""
    sut = open_sut(config, samples)
    try:
        sut.load(samples)
        times = []
        for _ in range(2):  # the second is the steady-state figure
            streams = [_Done() for _ in range(width)]
            start = time.perf_counter()
            for i, stream in enumerate(streams):
                sut.submit(samples[i % len(samples)], stream)
            for stream in streams:
                stream.event.wait()
            times.append(time.perf_counter() - start)
        return times[-1]
    finally:
        sut.close()


def server_test(config: HarnessConfig, outdir: Path) -> Server:
    result = run_benchmark(config, outdir)
    if result.errors or not result.tokens_per_second:
        raise RuntimeError(f"Server run failed: {result.error_messages}")
    detail = parse_detail_log(outdir / "performance" / "mlperf_log_detail.txt")
    return Server(result.tokens_per_second, result.samples_per_second or 0.0,
                  (detail.get("result_mean_latency_ns") or 0) / 1e9, bool(result.valid), result.invalid_reasons)


def calibrate(args: argparse.Namespace, server_base: list[str], outdir: Path, tries: int = 5) -> float:
    """The target QPS whose Server run kept closest to ``args.in_flight`` requests in flight.

    In flight grows steeply near the SUT's capacity, so after a first guess from Little's law
    this brackets the goal and bisects (geometrically) between the tried QPS on either side.
    """
    goal = args.in_flight
    probe = compose([*server_base, "sut.max_batch_size=32"])
    latency_s = run_in_process(concurrent_latency, probe, samples_of(probe), goal, log_file=outdir / "calibrate.log")
    qps = goal / latency_s
    log.info("%d concurrent requests take %.0f ms: first guess %.1f QPS", goal, latency_s * 1000, qps)
    tried: dict[float, float] = {}
    for i in range(tries):
        cfg = compose([*server_base, "sut.max_batch_size=32", f"scenario.target_qps={qps:.3f}"])
        tried[qps] = server_test(cfg, outdir / f"calibrate-{i}").in_flight
        log.info("calibration: %.1f QPS keeps %.1f in flight", qps, tried[qps])
        if abs(tried[qps] - goal) <= 0.15 * goal:
            break
        below = [q for q, seen in tried.items() if seen < goal]
        above = [q for q, seen in tried.items() if seen > goal]
        if below and above:
            qps = (max(below) * min(above)) ** 0.5
        else:
            qps *= (goal / tried[qps]) ** 0.5  # latency grows with load: move part of the way
    return min(tried, key=lambda q: abs(tried[q] - goal))


# -- report ----------------------------------------------------------------------------------
def _median(values: list[float]) -> float:
    return statistics.median(values)


def render(args: argparse.Namespace, offline: dict[str, list[Offline]], qps: float,
           server: dict[str, list[Server]], outdir: Path) -> str:
    h, b = offline["harness"], offline["bare"]
    ratio_offline = _median([x.tokens_per_second for x in h]) / _median([x.tokens_per_second for x in b])
    lines = [f"Offline: {args.samples} samples, batch {args.batch_size}, max_new_tokens {args.max_new_tokens}, "
             f"{len(h)} rounds",
             f"  harness through LoadGen  {_fmt([x.tokens_per_second for x in h])} tokens/s "
             f"({h[0].tokens:,} tokens)",
             f"  bare model.generate      {_fmt([x.tokens_per_second for x in b])} tokens/s "
             f"({b[0].tokens:,} tokens)",
             f"  ratio of medians {ratio_offline:.3f}   goal >= {GOAL_OFFLINE}: "
             f"{'met' if ratio_offline >= GOAL_OFFLINE else 'NOT met'}"]
    if {x.tokens for x in h} | {x.tokens for x in b} != {h[0].tokens}:
        lines.append("  note: token counts differ between variants")
    i, s = server["inflight"], server["serial"]
    ratio_server = _median([x.tokens_per_second for x in i]) / _median([x.tokens_per_second for x in s])
    lines += ["", "(medians over rounds; mean in flight = LoadGen's completed samples/s x mean latency)",
              f"Server: target {qps:.1f} QPS (calibrated to keep about {args.in_flight} in flight), {args.queries} "
              f"queries, max_new_tokens {args.server_tokens}",
              f"  in-flight batching  {_fmt([x.tokens_per_second for x in i])} completed tokens/s, "
              f"mean in flight {_median([x.in_flight for x in i]):.1f}, "
              f"VALID {sum(x.valid for x in i)}/{len(i)}",
              f"  one at a time       {_fmt([x.tokens_per_second for x in s])} completed tokens/s, "
              f"mean in flight {_median([x.in_flight for x in s]):.1f} (queued), "
              f"VALID {sum(x.valid for x in s)}/{len(s)}",
              f"  ratio of medians {ratio_server:.2f}x   goal >= {GOAL_INFLIGHT:g}x: "
              f"{'met' if ratio_server >= GOAL_INFLIGHT else 'NOT met'}",
              *(f"  INVALID ({name}, LoadGen): {'; '.join(runs[0].reasons)}"
                for name, runs in (("in-flight", [x for x in i if not x.valid]),
                                   ("one at a time", [x for x in s if not x.valid])) if runs),
              "", f"LoadGen logs: {outdir}"]
    return "\n".join(lines) + "\n"


def _fmt(values: list[float]) -> str:
    runs = ", ".join(f"{v:,.0f}" for v in values)
    return f"median {_median(values):,.0f} ({runs})"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m harness.bench.hf_efficiency",
        description="Offline tokens/s of sut=hf through LoadGen vs a bare model.generate loop (goal >= "
                    f"{GOAL_OFFLINE}), and Server completed tokens/s with in-flight batching vs one request at a "
                    f"time (goal >= {GOAL_INFLIGHT:g}x).")
    parser.add_argument("--model-path", default=None, help="local HF model directory (default: the embedded model)")
    parser.add_argument("--samples", type=int, default=32, help="prompts from the bundled sample (default: 32)")
    parser.add_argument("--batch-size", type=int, default=8, help="Offline batch size (default: 8)")
    parser.add_argument("--max-new-tokens", type=int, default=128, help="Offline tokens per sample (default: 128)")
    parser.add_argument("--server-tokens", type=int, default=128, help="Server tokens per sample (default: 128)")
    parser.add_argument("--in-flight", type=int, default=8, help="requests to keep in flight (default: 8)")
    parser.add_argument("--queries", type=int, default=200, help="Server queries per test (default: 200)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of each comparison (default: 3)")
    parser.add_argument("--out", type=Path, default=None, help="directory for the logs (default: a new temp dir)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    outdir: Path = args.out or Path(tempfile.mkdtemp(prefix="hf-efficiency-"))
    log.info("logs in %s", outdir)
    base = base_overrides(args)

    offline_cfg = compose([*base, "scenario=offline", f"sut.max_batch_size={args.batch_size}"])
    samples = samples_of(offline_cfg)
    offline: dict[str, list[Offline]] = {"harness": [], "bare": []}
    for r in range(args.repeats):
        offline["harness"].append(harness_offline(offline_cfg, outdir / f"offline-harness-{r}"))
        offline["bare"].append(run_in_process(bare_offline, offline_cfg, samples, log_file=outdir / f"bare-{r}.log"))
        log.info("offline round %d: harness %.0f, bare %.0f tokens/s", r, offline["harness"][-1].tokens_per_second,
                 offline["bare"][-1].tokens_per_second)

    server_base = [*base, "scenario=server", f"benchmark.max_new_tokens={args.server_tokens}",
                   "scenario.min_duration_s=1", f"scenario.min_query_count={args.queries}"]
    qps = calibrate(args, server_base, outdir)
    server: dict[str, list[Server]] = {"inflight": [], "serial": []}
    for r in range(args.repeats):
        for name, width in (("inflight", 32), ("serial", 1)):
            cfg = compose([*server_base, f"sut.max_batch_size={width}", f"scenario.target_qps={qps:.3f}"])
            server[name].append(server_test(cfg, outdir / f"server-{name}-{r}"))
            log.info("server %s round %d: %.0f tokens/s, %.1f in flight", name, r,
                     server[name][-1].tokens_per_second, server[name][-1].in_flight)
    sys.stdout.write(render(args, offline, qps, server, outdir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
