"""The GPU path in one run (issue 21): the CUDA tests, then a Llama-3-8B-shaped model's decode speed.

    python -m harness.bench.gpu_check --out gpu-check/          # on one H100/H200: ~5-8 minutes
    python -m harness.bench.gpu_check --tiny --out /tmp/check   # the same steps on CPU, a tiny model, seconds

Prepared for the few minutes a GPU machine is lent, so that time is spent measuring:

1. The environment: GPU, driver, CUDA, torch and transformers versions.
2. ``pytest tests/gpu`` (sut=hf on CUDA: bfloat16 default, greedy agreement of every path, the
   ``cuda_fast_decode`` path).
3. For each decode path, in a fresh process (``plain``: the in-flight decode loop that serves
   SingleStream and Server; ``fast``: ``sut.cuda_fast_decode=true``, generate() with a static KV
   cache compiled into CUDA graphs): a model of Llama 3 8B's shape (hidden 4096, 32 layers, 32
   heads and 8 KV heads, MLP 14336, vocabulary 128,256: 8.03B parameters, 16.1 GB in bfloat16)
   with random weights initialised on the GPU (nothing to download or read from disk):

   - bare: ``model.generate`` at batch 1 on one prompt, the same cache as the path, timed;
   - harness: the SUT's streaming path (``submit``) on the same prompt, timed per token;
   - LoadGen: a short SingleStream test through the bridge, and the harness's roofline of it
     (bytes per decode step over LoadGen's mean TPOT, against the datasheet bandwidth).

   Single-stream decode tokens/s (tokens after the first, over the time after the first) and its
   fraction of HBM bandwidth: tokens/s x 16.06 GB of weights / peak bandwidth (the weights are
   read once per token at batch 1; H100 SXM 3.35 TB/s: ~209 tokens/s at the limit, H200 4.8 TB/s:
   ~299). Goal: >= 70%.

Writes ``gpu_check.json`` (every figure) and ``gpu_check.txt`` (the summary) into ``--out``;
each step is time-boxed (``--budget-s``), and a step that fails or times out is reported as such
while the others still run.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness import offline

log = logging.getLogger("harness.bench.gpu_check")

GOAL_FRACTION = 0.70
REFERENCE_TOKENS_PER_S = {"H100": 209.0, "H200": 299.0}  # issue 21: 16.1 GB per token at 3.35 / 4.8 TB/s
MODEL_KEY = "llama3_1-8b"
VARIANTS = ("plain", "fast")
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Shape:
    """A Llama configuration's shape."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    max_positions: int = 8192
    rope_theta: float = 500000.0


LLAMA3_8B = Shape(hidden=4096, layers=32, heads=32, kv_heads=8, intermediate=14336, vocab=128256)
TINY = Shape(hidden=64, layers=2, heads=4, kv_heads=2, intermediate=192, vocab=4096, max_positions=2048)


@dataclass(frozen=True)
class Plan:
    """What one check measures: the model, where, and how much."""

    shape: Shape
    device: str
    dtype: str
    prompt_tokens: int
    new_tokens: int
    repeats: int
    loadgen_queries: int
    tiny: bool


def plan_for(args: argparse.Namespace) -> Plan:
    if args.tiny:
        return Plan(TINY, "cpu", "float32", prompt_tokens=32, new_tokens=8, repeats=1, loadgen_queries=3, tiny=True)
    return Plan(LLAMA3_8B, "cuda", "bfloat16", prompt_tokens=args.prompt_tokens, new_tokens=args.new_tokens,
                repeats=args.repeats, loadgen_queries=args.loadgen_queries, tiny=False)


# -- the child: one decode path on one freshly built model -------------------------------------
class _Timed:
    """A TokenStream noting when each chunk of tokens arrived."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.tokens = 0
        self.done = threading.Event()
        self.error: BaseException | None = None

    def emit(self, token_ids) -> None:
        if token_ids:
            self.times.append(time.perf_counter())
            self.tokens += len(token_ids)

    def finish(self, n_tokens: int | None = None) -> None:
        self.done.set()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.done.set()


def decode_rate(first: float, last: float, tokens: int) -> float | None:
    """Single-stream decode tokens/s: the tokens after the first over the time after the first."""
    return (tokens - 1) / (last - first) if tokens > 1 and last > first else None


def bare_generate(model: Any, ids: Any, generation_config: Any, stream: _Timed) -> None:
    """``model.generate`` at batch 1 on this thread, each new token reported to ``stream``."""
    import torch
    from transformers.generation.streamers import BaseStreamer

    class Forward(BaseStreamer):
        seen_prompt = False

        def put(self, value: Any) -> None:
            if self.seen_prompt:  # generate() puts the prompt first
                stream.emit(value.reshape(-1).tolist())
            self.seen_prompt = True

        def end(self) -> None:
            pass

    with torch.inference_mode():
        model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=generation_config,
                       streamer=Forward())
    stream.finish()


def build_model(plan: Plan, model_dir: Path) -> tuple[Any, Any]:
    """A Llama of ``plan.shape`` with random weights made on ``plan.device`` in ``plan.dtype``, the
    embedded model's tokenizer, and ``model_dir`` holding its config and tokenizer (no weights)."""
    import torch
    from transformers import AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

    from harness.sut.hf.tiny_model import ensure_tiny_model

    tiny_dir = ensure_tiny_model()
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir, local_files_only=True)
    s = plan.shape
    config = LlamaConfig(vocab_size=s.vocab, hidden_size=s.hidden, intermediate_size=s.intermediate,
                         num_hidden_layers=s.layers, num_attention_heads=s.heads, num_key_value_heads=s.kv_heads,
                         max_position_embeddings=s.max_positions, rope_theta=s.rope_theta, tie_word_embeddings=False,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    dtype = getattr(torch, plan.dtype)
    default = torch.get_default_dtype()
    torch.manual_seed(0)
    try:
        torch.set_default_dtype(dtype)  # made in the target dtype: no float32 copy of 8B parameters
        with torch.device(plan.device):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(default)
    model.generation_config = GenerationConfig(bos_token_id=tokenizer.bos_token_id,
                                               eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id, do_sample=False)
    model_dir.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(model_dir)  # the run's model info and fingerprint read config.json
    tokenizer.save_pretrained(model_dir)
    return model.eval(), tokenizer


def prompt_text(tokenizer: Any, n_tokens: int) -> str:
    """A bundled article cut to about ``n_tokens`` tokens of ``tokenizer``."""
    from harness.datasets import BUNDLED_SAMPLE

    article = json.loads(BUNDLED_SAMPLE.read_text(encoding="utf-8").splitlines()[0])["article"]
    ids = tokenizer.encode(article, add_special_tokens=False)[:max(1, n_tokens - 1)]
    return tokenizer.decode(ids)


def measure_variant(variant: str, plan: Plan, out: Path) -> dict[str, Any]:
    """Build the model, then time bare generate, the SUT's stream and a LoadGen SingleStream test."""
    import torch

    from harness.config import RunOptions, compose
    from harness.loadgen.bridge import run_test
    from harness.roofline import count_prompt_tokens, for_run
    from harness.sut.base import Sample
    from harness.sut.hf.adapter import HFSUT, HFParams

    started = time.perf_counter()
    model, tokenizer = build_model(plan, out / "model")
    built_s = time.perf_counter() - started
    fast = variant == "fast"
    params = HFParams(model_path=str(out / "model"), device=plan.device, dtype=plan.dtype, max_batch_size=1,
                      cuda_fast_decode=fast)
    sut = HFSUT(model, tokenizer, params=params, max_new_tokens=plan.new_tokens, path=out / "model")
    text = prompt_text(tokenizer, plan.prompt_tokens)
    samples = [Sample(0, text, text)]
    try:
        t0 = time.perf_counter()
        sut.load(samples)  # the fast path compiles its CUDA graphs here, for this prompt's length
        warm_s = time.perf_counter() - t0
        ids = torch.tensor([sut.prompt_ids(samples[0])], device=sut.device)
        # bare: generate() on this (main) thread with the path's cache: dynamic, or static (compiled)
        gen = copy.deepcopy(sut.generation_config)
        if fast:
            gen.cache_implementation = "static"
            bare_generate(model, ids, gen, _Timed())  # compiles for this thread, untimed, as load() did for the SUT
        bare, harness = [], []
        for r in range(plan.repeats):
            for side in ("bare", "harness") if r % 2 == 0 else ("harness", "bare"):
                stream = _Timed()
                if side == "bare":
                    bare_generate(model, ids, gen, stream)
                else:
                    sut.submit(samples[0], stream)
                if not stream.done.wait(600) or stream.error is not None:
                    raise RuntimeError(f"{side} decode failed: {stream.error or 'timed out'}")
                rate = decode_rate(stream.times[0], stream.times[-1], stream.tokens)
                (bare if side == "bare" else harness).append({"tokens": stream.tokens, "decode_tokens_per_s": rate})

        conf = out / "user.conf"
        conf.write_text("".join(f"{MODEL_KEY}.SingleStream.{k} = {v}\n" for k, v in {
            "target_latency": 1, "min_duration": 0, "min_query_count": plan.loadgen_queries,
            "performance_sample_count_override": 1}.items()))
        stats = run_test(sut, samples, scenario="SingleStream", mode="performance", model_key=MODEL_KEY,
                         user_conf=conf, outdir=out / "loadgen", options=RunOptions(sample_timeout_s=600))
        from harness.loadgen.logs import parse_detail_log, performance_result

        detail = parse_detail_log(out / "loadgen" / "mlperf_log_detail.txt")
        result = performance_result(detail)
        config = compose(["sut=hf", "scenario=single_stream", f"sut.model_path={out / 'model'}"])
        roof = for_run(config, detail, sut=sut.describe(), input_tokens=count_prompt_tokens(sut.tokenizer, [text]),
                       output_tokens=stats.output_tokens / stats.completed if stats.completed else None,
                       issued=stats.issued)
    finally:
        sut.close()
    return {"variant": variant, "model_build_s": built_s, "warm_up_s": warm_s,
            "parameters": sut.model_info["parameters"], "weight_bytes": sut.model_info["weight_bytes"],
            "prompt_tokens": int(ids.shape[1]), "bare": bare, "harness": harness,
            "loadgen": {"tokens_per_second": result.tokens_per_second, "errors": stats.errors,
                        "tpot_ms": asdict(result.tpot_ms) if result.tpot_ms else None,
                        "ttft_ms": asdict(result.ttft_ms) if result.ttft_ms else None},
            "roofline": roof.to_json()}


def _child(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.bench.gpu_check child")
    ap.add_argument("variant", choices=VARIANTS)
    ap.add_argument("--plan", required=True, help="the Plan as JSON")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    raw = json.loads(a.plan)
    plan = Plan(**{**raw, "shape": Shape(**raw["shape"])})
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    figures = measure_variant(a.variant, plan, a.out)
    (a.out / "figures.json").write_text(json.dumps(figures, indent=2) + "\n")
    return 0


# -- the parent: steps, time boxes, report -----------------------------------------------------
def environment_info() -> dict[str, Any]:
    import torch
    import transformers

    from harness import environment

    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                            "transformers": transformers.__version__, "cuda": torch.version.cuda,
                            "cuda_available": torch.cuda.is_available(), "gpus": environment.gpus()}
    try:
        from importlib.metadata import version

        import mlperf_loadgen  # noqa: F401

        info["loadgen"] = version("mlcommons-loadgen")
    except Exception as exc:  # reported, not fatal
        info["loadgen"] = f"unknown ({exc})"
    return info


def run_tests(timeout_s: float, out: Path) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(REPO / "tests" / "gpu")]
    started = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, cwd=REPO)
    except subprocess.TimeoutExpired as exc:
        (out / "tests.log").write_text(str(exc.stdout or ""))
        return {"status": "timed out", "seconds": timeout_s, "summary": f"no result within {timeout_s:g} s"}
    (out / "tests.log").write_text(proc.stdout + proc.stderr)
    lines = [ln for ln in proc.stdout.strip().splitlines() if ln.strip()]
    return {"status": "passed" if proc.returncode == 0 else f"exit {proc.returncode}",
            "seconds": time.perf_counter() - started, "summary": lines[-1] if lines else ""}


def run_variant(variant: str, plan: Plan, out: Path, timeout_s: float) -> dict[str, Any]:
    vout = out / variant
    vout.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "harness.bench.gpu_check", "child", variant,
           "--plan", json.dumps(asdict(plan)), "--out", str(vout)]
    started = time.perf_counter()
    with (vout / "child.log").open("w") as sink:
        try:
            rc = subprocess.run(cmd, stdout=sink, stderr=subprocess.STDOUT, timeout=timeout_s, cwd=REPO).returncode
        except subprocess.TimeoutExpired:
            return {"variant": variant, "status": f"timed out after {timeout_s:g} s", "log": str(vout / "child.log")}
    if rc != 0 or not (vout / "figures.json").is_file():
        return {"variant": variant, "status": f"exit {rc}", "log": str(vout / "child.log")}
    figures = json.loads((vout / "figures.json").read_text())
    return {**figures, "status": "ok", "seconds": time.perf_counter() - started}


def reference_rate(gpu_name: str | None) -> float | None:
    name = (gpu_name or "").upper()
    return next((rate for key, rate in REFERENCE_TOKENS_PER_S.items() if key in name), None)


def summarize(figures: dict[str, Any], peak_gbs: float | None) -> dict[str, Any]:
    """Medians of a variant's runs, the harness/bare ratio and the fraction of HBM bandwidth."""
    def med(rows: list[dict]) -> float | None:
        got = [r["decode_tokens_per_s"] for r in rows if r.get("decode_tokens_per_s")]
        return statistics.median(got) if got else None

    bare, harness = med(figures.get("bare", [])), med(figures.get("harness", []))
    weight_gb = figures.get("weight_bytes", 0) / 1e9
    decode = (figures.get("roofline") or {}).get("decode") or {}

    def fraction(rate: float | None) -> float | None:
        return rate * weight_gb / peak_gbs if rate and peak_gbs else None

    return {"bare_tokens_per_s": bare, "harness_tokens_per_s": harness,
            "limit_tokens_per_s": peak_gbs / weight_gb if peak_gbs and weight_gb else None,
            "harness_over_bare": harness / bare if harness and bare else None,
            "weight_gb": weight_gb, "bare_hbm_fraction": fraction(bare), "harness_hbm_fraction": fraction(harness),
            "loadgen_tokens_per_s": (figures.get("loadgen") or {}).get("tokens_per_second"),
            "roofline_bandwidth_utilization": decode.get("bandwidth_utilization"),
            "roofline_step_time_ms": decode.get("step_time_ms")}


def render(report: dict[str, Any]) -> str:
    env = report["environment"]
    devices = env["gpus"].get("devices") or []
    gpu = ", ".join(f"{d['name']} (driver {d.get('driver', '?')})" for d in devices) or "no GPU"
    lines = [f"GPU check ({'tiny CPU dry run' if report['plan']['tiny'] else 'Llama-3-8B shape, bfloat16'}): "
             f"{gpu}; CUDA {env['cuda']}, torch {env['torch']}, transformers {env['transformers']}, "
             f"LoadGen {env.get('loadgen')}",
             f"tests/gpu: {report['tests']['status']}: {report['tests']['summary']}"]
    peak, ref = report.get("peak_bandwidth_gbs"), report.get("reference_tokens_per_s")
    lines.append(f"peak HBM bandwidth: {'-' if peak is None else f'{peak:,.0f} GB/s'} ({report.get('peak_source')})"
                 + (f"; issue 21's bandwidth limit for 16.1 GB of weights: {ref:g} tokens/s" if ref else ""))
    for v in report["variants"]:
        if v.get("status") != "ok":
            lines.append(f"{v['variant']:<6} {v.get('status')}  (log: {v.get('log')})")
            continue
        s = v["summary"]

        def num(x: float | None, fmt: str = ".1f") -> str:
            return "-" if x is None else format(x, fmt)

        goal = s["harness_hbm_fraction"]
        verdict = "" if goal is None else \
            f"  goal >= {GOAL_FRACTION:.0%}: {'met' if goal >= GOAL_FRACTION else 'NOT met'}"
        lines.append(f"{v['variant']:<6} decode tokens/s (single stream, {v['prompt_tokens']}-token prompt; "
                     f"bandwidth limit {num(s['limit_tokens_per_s'])}): bare "
                     f"{num(s['bare_tokens_per_s'])}, harness {num(s['harness_tokens_per_s'])} (ratio "
                     f"{num(s['harness_over_bare'], '.3f')}); fraction of HBM bandwidth: bare "
                     f"{num(s['bare_hbm_fraction'], '.1%')}, harness {num(s['harness_hbm_fraction'], '.1%')}{verdict}")
        lines.append(f"       LoadGen SingleStream {num(s['loadgen_tokens_per_s'])} tokens/s; roofline decode step "
                     f"{num(s['roofline_step_time_ms'], '.2f')} ms, bandwidth utilization "
                     f"{num(s['roofline_bandwidth_utilization'], '.1%')}; model built in {v['model_build_s']:.0f} s, "
                     f"warm-up {v['warm_up_s']:.0f} s")
    lines.append(f"total {report['seconds']:.0f} s; figures: {report['out']}/gpu_check.json")
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m harness.bench.gpu_check",
                                 description="CUDA tests, then single-stream decode of a Llama-3-8B-shaped model "
                                             "(random bfloat16 weights made on the GPU) with and without "
                                             "sut.cuda_fast_decode: tokens/s and fraction of HBM bandwidth.")
    ap.add_argument("--tiny", action="store_true", help="the same steps on CPU with a tiny model (a dry run)")
    ap.add_argument("--out", type=Path, default=None, help="directory for the report and logs (default: a temp dir)")
    ap.add_argument("--prompt-tokens", type=int, default=128, help="prompt length in tokens (128)")
    ap.add_argument("--new-tokens", type=int, default=256, help="tokens decoded per request (256)")
    ap.add_argument("--repeats", type=int, default=3, help="alternated bare/harness runs per path (3)")
    ap.add_argument("--loadgen-queries", type=int, default=4, help="queries of the LoadGen SingleStream test (4)")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="decode paths to measure (plain,fast)")
    ap.add_argument("--budget-s", type=float, default=450, help="total time box; steps share it (450 s)")
    ap.add_argument("--skip-tests", action="store_true", help="leave out pytest tests/gpu")
    a = ap.parse_args(argv)
    variants = [v.strip() for v in a.variants.split(",") if v.strip()]
    if not variants or any(v not in VARIANTS for v in variants):
        ap.error(f"--variants: a comma list of {', '.join(VARIANTS)}")
    if min(a.prompt_tokens, a.new_tokens, a.repeats, a.loadgen_queries) < 1 or a.new_tokens < 2:
        ap.error("--prompt-tokens, --repeats and --loadgen-queries must be >= 1, --new-tokens >= 2")
    a.variants = variants
    return a


def main(argv: list[str] | None = None) -> int:
    offline.enforce()  # before anything imports a Hugging Face library
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["child"]:
        return _child(argv[1:])
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out: Path = args.out or Path(tempfile.mkdtemp(prefix="gpu-check-"))
    out.mkdir(parents=True, exist_ok=True)
    plan = plan_for(args)
    started = time.perf_counter()
    deadline = started + args.budget_s
    env = environment_info()
    if not plan.tiny and not env["cuda_available"]:
        log.error("no CUDA device: run with --tiny for the CPU dry run")
        return 2
    tests = {"status": "skipped", "summary": "--skip-tests", "seconds": 0.0}
    if not args.skip_tests:
        tests = run_tests(min(150.0, deadline - time.perf_counter()), out)
        log.info("tests/gpu: %s (%s)", tests["status"], tests["summary"])
    from harness.hardware import match_accelerator

    devices = env["gpus"].get("devices") or []
    gpu_name = devices[0]["name"] if devices else None
    row = match_accelerator(gpu_name) if gpu_name and not plan.tiny else None
    peak = row.memory_bandwidth_gbs if row else None
    variants = []
    for i, variant in enumerate(args.variants):
        if variant == "fast" and plan.device != "cuda":
            variants.append({"variant": variant, "status": "skipped: sut.cuda_fast_decode needs CUDA"})
            continue
        left = deadline - time.perf_counter()
        # later variants get an equal share of what is left
        box = left / (len(args.variants) - i)
        if box < 30:
            variants.append({"variant": variant, "status": f"skipped: {left:.0f} s of the budget left"})
            continue
        log.info("%s: measuring (time box %.0f s)", variant, box)
        v = run_variant(variant, plan, out, box)
        if v.get("status") == "ok":
            v["summary"] = summarize(v, peak)
        variants.append(v)
    report = {"plan": asdict(plan), "environment": env, "tests": tests, "peak_bandwidth_gbs": peak,
              "peak_source": row.source if row else None, "reference_tokens_per_s": reference_rate(gpu_name),
              "variants": variants, "seconds": time.perf_counter() - started, "out": str(out)}
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    text = render(report)
    (out / "gpu_check.txt").write_text(text)
    sys.stdout.write(text)
    return 0 if all(v.get("status") == "ok" or str(v.get("status")).startswith("skipped: sut.cuda")
                    for v in variants) and tests["status"] in ("passed", "skipped") else 1


if __name__ == "__main__":
    sys.exit(main())
