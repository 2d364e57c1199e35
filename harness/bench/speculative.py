"""What does a draft model buy ``sut=hf``? The same target with and without speculative decoding.

Side by side in one invocation: the same bundled prompts, decoded one request at a time by the
same target model (loaded once) through the SUT's streaming path, with the draft
(:class:`~harness.sut.hf.speculative.SpeculativeDecoder`) and without it (the
:class:`~harness.sut.hf.inflight.InflightDecoder` that serves SingleStream when there is no draft).
Rounds alternate which variant goes first; tokens/s are medians over rounds and the speed-up is
their ratio. Printed with them: the acceptance rate and mean accepted tokens per verification step
(over every timed round), and whether every sample's token ids were identical both ways.

With ``--target`` and ``--draft`` it measures a real pair (e.g. Llama-3.1-8B with Llama-3.2-1B, on
a GPU). Without them it builds a pair whose acceptance is **set by construction**: random weights
give an unrelated draft no useful proposals, so the target is a deeper tiny Llama whose layers
after the first have their output projections scaled by ``--damp``, and the draft is the target's
own embedding, first layer(s), final norm and head. A smaller ``--damp`` makes the target closer to
its draft. The figures show the mechanics and overheads on this machine, not what a trained pair
gains.

    python -m harness.bench.speculative --repeats 5
    python -m harness.bench.speculative --target /models/Llama-3.1-8B-Instruct --draft /models/Llama-3.2-1B-Instruct
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import offline
from harness.config import compose
from harness.datasets import load_dataset
from harness.datasets.prompts import build_samples
from harness.sut.base import CollectingStream, Sample

log = logging.getLogger("harness.bench.speculative")

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


@dataclass(frozen=True)
class Round:
    """One variant decoding every sample once."""

    tokens_per_second: float
    tokens: int
    outputs: tuple[tuple[int, ...], ...]


def build_pair(out: Path, *, layers: int, draft_layers: int, hidden: int, damp: float, seed: int) -> tuple[Path, Path]:
    """A target Llama whose layers after ``draft_layers`` are damped, and the draft cut from it."""
    import torch
    from transformers import LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    from harness.sut.hf.tiny_model import TinyRecipe, ensure_tiny_model

    hf_logging.disable_progress_bar()  # "Loading weights" / "Writing model shards" bars

    recipe = TinyRecipe(hidden_size=hidden, intermediate_size=3 * hidden, num_hidden_layers=layers,
                        num_attention_heads=max(1, hidden // 32), num_key_value_heads=max(1, hidden // 64),
                        seed=seed)
    base = ensure_tiny_model(recipe)
    target = LlamaForCausalLM.from_pretrained(base, dtype=torch.float32)
    with torch.no_grad():
        for layer in target.model.layers[draft_layers:]:
            # What a layer adds to the residual stream passes through these two projections.
            layer.self_attn.o_proj.weight.mul_(damp)
            layer.mlp.down_proj.weight.mul_(damp)
    draft_config = target.config.__class__.from_dict(target.config.to_dict())
    draft_config.num_hidden_layers = draft_layers
    draft = LlamaForCausalLM(draft_config)
    missing = draft.load_state_dict(target.state_dict(), strict=False).missing_keys
    if missing:
        raise RuntimeError(f"draft weights not found in the target: {missing}")
    paths = out / "target", out / "draft"
    for model, path in zip((target, draft), paths, strict=True):
        model.generation_config = target.generation_config
        model.save_pretrained(path)
        for name in TOKENIZER_FILES:
            if (base / name).is_file():
                shutil.copy(base / name, path / name)
    log.info("built target (%d layers, %s parameters, layers %d+ damped x%g) and draft (%d layers, %s) in %s",
             layers, f"{target.num_parameters():,}", draft_layers, damp, draft_layers,
             f"{draft.num_parameters():,}", out)
    return paths


def decode_all(decoder: Any, prompts: list[list[int]]) -> Round:
    """Every prompt, one request at a time, as SingleStream issues them."""
    outputs = []
    start = time.perf_counter()
    for ids in prompts:
        stream = CollectingStream()
        decoder.submit(ids, stream)
        if not stream.done.wait(600) or stream.error is not None:
            raise RuntimeError(f"decode failed: {stream.error or 'timed out'}")
        outputs.append(tuple(stream.tokens))
    elapsed = time.perf_counter() - start
    tokens = sum(len(o) for o in outputs)
    return Round(tokens / elapsed, tokens, tuple(outputs))


def measure(args: argparse.Namespace, target: Path, draft: Path) -> dict[str, Any]:
    from harness.sut import SUTContext
    from harness.sut.hf.adapter import HFSUT, HFParams
    from harness.sut.hf.inflight import InflightDecoder

    config = compose(["sut=hf", f"dataset.n_samples={args.samples}"])
    samples: list[Sample] = build_samples(config.benchmark, load_dataset(config.dataset))
    params = HFParams(model_path=str(target), draft_model_path=str(draft), num_draft_tokens=args.num_draft_tokens,
                      dtype=args.dtype, device=args.device, threads=args.threads)
    sut = HFSUT.create(params, SUTContext(corpus=[], max_new_tokens=args.max_new_tokens))
    plain = InflightDecoder(sut.model, eos_ids=sut.eos, max_new_tokens=args.max_new_tokens, max_batch_size=1,
                            pad_id=sut.pad_id)
    try:
        sut.load(samples)
        prompts = [sut.prompt_ids(s) for s in samples]
        decoders = {"draft": sut.decoder, "plain": plain}
        for decoder in decoders.values():
            decode_all(decoder, prompts[:2])  # warm-up: first-call costs, not timed
        sut.decoder.reset_stats()
        rounds: dict[str, list[Round]] = {"draft": [], "plain": []}
        for r in range(args.repeats):
            for name in (("plain", "draft") if r % 2 == 0 else ("draft", "plain")):
                rounds[name].append(decode_all(decoders[name], prompts))
                log.info("round %d %s: %.1f tokens/s", r, name, rounds[name][-1].tokens_per_second)
        return {"rounds": rounds, "stats": sut.stats(), "model": sut.model_info,
                "prompt_tokens": statistics.mean(len(p) for p in prompts), "device": str(sut.device)}
    finally:
        plain.close()
        sut.close()


def differing(rounds: dict[str, list[Round]]) -> list[int]:
    """Sample positions whose tokens differ between the variants or between rounds."""
    every = [r.outputs for rs in rounds.values() for r in rs]
    return [i for i in range(len(every[0])) if len({o[i] for o in every}) > 1]


def render(args: argparse.Namespace, result: dict[str, Any], pair: str) -> str:
    rounds, stats, model = result["rounds"], result["stats"], result["model"]
    med = {name: statistics.median(r.tokens_per_second for r in rs) for name, rs in rounds.items()}
    diff = differing(rounds)
    paired = list(zip(rounds["draft"], rounds["plain"], strict=True))  # each round ran both, back to back

    def fmt(name: str) -> str:
        runs = ", ".join(f"{r.tokens_per_second:,.1f}" for r in rounds[name])
        return f"median {med[name]:,.1f} tokens/s ({runs})"

    lines = [f"pair: {pair}",
             f"  target {model['parameters']:,} parameters, draft {model['draft']['parameters']:,} "
             f"({model['draft']['parameters'] / model['parameters']:.0%}), {model['dtype']} on {result['device']}",
             f"{args.samples} prompts (mean {result['prompt_tokens']:.0f} tokens), one at a time, max_new_tokens "
             f"{args.max_new_tokens}, k={args.num_draft_tokens}, {args.repeats} rounds alternating",
             f"  without draft  {fmt('plain')}",
             f"  with draft     {fmt('draft')}",
             f"  speed-up (ratio of medians)   {med['draft'] / med['plain']:.2f}x; median of the rounds' own "
             f"ratios {statistics.median(d.tokens_per_second / p.tokens_per_second for d, p in paired):.2f}x",
             f"  acceptance rate               {stats['acceptance_rate']:.3f} "
             f"({stats['accepted_tokens']:,} of {stats['drafted_tokens']:,} draft tokens)",
             f"  mean accepted tokens / step   {stats['mean_accepted_tokens']:.2f} (target's own token included; "
             f"{stats['mean_accepted_draft_tokens']:.2f} draft tokens), {stats['verification_steps']:,} steps",
             f"  output tokens per round       {rounds['plain'][0].tokens:,} without, "
             f"{rounds['draft'][0].tokens:,} with",
             "  token ids identical           " + ("yes, every sample in every round" if not diff
                                                   else f"NO: samples at positions {diff}")]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m harness.bench.speculative",
        description="Tokens/s of sut=hf's target with and without a draft model (speculative decoding), side "
                    "by side on the same prompts; acceptance rate, mean accepted tokens, identical outputs.")
    parser.add_argument("--target", type=Path, help="local HF directory of the target (with --draft)")
    parser.add_argument("--draft", type=Path, help="local HF directory of the draft (same tokenizer)")
    parser.add_argument("--num-draft-tokens", type=int, default=4, help="k (default: 4)")
    parser.add_argument("--samples", type=int, default=8, help="prompts from the bundled sample (default: 8)")
    parser.add_argument("--max-new-tokens", type=int, default=128, help="tokens per sample (default: 128)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of each variant (default: 3)")
    parser.add_argument("--dtype", default="auto", help="sut.dtype (default: auto)")
    parser.add_argument("--device", default="auto", help="sut.device (default: auto)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: 1 for the built pair, else torch's)")
    built = parser.add_argument_group("the built pair (without --target/--draft)")
    built.add_argument("--layers", type=int, default=8, help="target layers (default: 8)")
    built.add_argument("--draft-layers", type=int, default=1, help="target layers the draft keeps (default: 1)")
    built.add_argument("--hidden", type=int, default=256, help="hidden size (default: 256)")
    built.add_argument("--damp", type=float, default=0.02,
                       help="scale of the later layers' output projections (default: 0.02)")
    built.add_argument("--seed", type=int, default=0, help="the target's random weights (default: 0)")
    parser.add_argument("--out", type=Path, default=None, help="directory for the built pair (default: temp)")
    args = parser.parse_args(argv)
    if (args.target is None) != (args.draft is None):
        parser.error("--target and --draft go together")
    return args


def main(argv: list[str] | None = None) -> int:
    offline.enforce()  # before anything imports a Hugging Face library
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.target is not None:
        target, draft = args.target, args.draft
        pair = f"{target} with draft {draft}"
    else:
        out: Path = args.out or Path(tempfile.mkdtemp(prefix="speculative-"))
        target, draft = build_pair(out, layers=args.layers, draft_layers=args.draft_layers, hidden=args.hidden,
                                   damp=args.damp, seed=args.seed)
        if args.threads is None:
            args.threads = 1  # small matrices: a second thread only adds synchronisation on a shared CPU
        pair = (f"built: {args.layers}-layer target (hidden {args.hidden}, layers {args.draft_layers}+ damped "
                f"x{args.damp:g}), draft = its first {args.draft_layers} layer(s); acceptance set by construction")
    result = measure(args, target, draft)
    sys.stdout.write(render(args, result, pair))
    return 0 if not differing(result["rounds"]) else 1


if __name__ == "__main__":
    sys.exit(main())
