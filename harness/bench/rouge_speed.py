"""Benchmark: the project's ROUGE scorer vs a plain rouge-score loop, side by side in one run.

    python -m harness.bench.rouge_speed [--pairs 13368] [--repeats 1]

Builds ``--pairs`` prediction/reference pairs shaped like CNN/DailyMail summaries (predictions
of ~5 sentences, references of ~3, drawn from the bundled articles with a fixed seed), splits
them into lines as the MLPerf recipe does, then times on the same pairs:

- baseline: ``RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer=True)`` and a
  Python loop over ``scorer.score(reference, prediction)``;
- project: :func:`harness.accuracy.rouge_engine.score_pairs` (what the ``evaluate`` metric module
  calls), in one process.

It prints both times, the speed-up and the largest per-sample difference of the four F-measures
(goal: identical to 1e-9, and at least 3x faster on a 2-core machine). Exit 1 if the scores differ.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time

from harness.accuracy.rouge import postprocess
from harness.accuracy.rouge_engine import ROUGE_TYPES, score_pairs
from harness.datasets import BUNDLED_SAMPLE

TOLERANCE = 1e-9


def make_pairs(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    rows = [json.loads(line) for line in BUNDLED_SAMPLE.read_text(encoding="utf-8").splitlines() if line.strip()]
    sentences = [s.strip() + "." for r in rows for s in r["article"].split(". ") if s.strip()]
    rng = random.Random(seed)
    preds = [" ".join(rng.sample(sentences, rng.randint(3, 7))) for _ in range(n)]
    refs = [" ".join(rng.sample(sentences, rng.randint(2, 4))) for _ in range(n)]
    return postprocess(preds), postprocess(refs)


def baseline(preds: list[str], refs: list[str]) -> list[tuple[float, ...]]:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    out = []
    for p, r in zip(preds, refs, strict=True):
        s = scorer.score(r, p)
        out.append(tuple(s[t].fmeasure for t in ROUGE_TYPES))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=13368, help="pairs to score (CNN/DailyMail: 13,368)")
    parser.add_argument("--repeats", type=int, default=1, help="time each side this many times; best is kept")
    args = parser.parse_args(argv)

    preds, refs = make_pairs(args.pairs)
    chars = sum(map(len, preds)) / len(preds), sum(map(len, refs)) / len(refs)
    print(f"{args.pairs} pairs; mean prediction {chars[0]:.0f} chars, reference {chars[1]:.0f} chars")
    times = {"rouge-score loop": [], "harness scorer": []}
    results = {}
    for _ in range(args.repeats):
        # Alternate the sides so background load hits both alike.
        for name, fn in (("rouge-score loop", baseline), ("harness scorer", score_pairs)):
            start = time.perf_counter()
            results[name] = fn(preds, refs)
            times[name].append(time.perf_counter() - start)
    base, ours = min(times["rouge-score loop"]), min(times["harness scorer"])
    diff = max(abs(a - b) for x, y in zip(results["rouge-score loop"], results["harness scorer"], strict=True)
               for a, b in zip(x, y, strict=True))
    print(f"rouge-score loop   {base:8.2f} s  ({args.pairs / base:,.0f} pairs/s)")
    print(f"harness scorer     {ours:8.2f} s  ({args.pairs / ours:,.0f} pairs/s)")
    print(f"speed-up           {base / ours:8.2f}x   (goal >= 3x)")
    print(f"max |difference|   {diff:.3g}        (goal <= {TOLERANCE:g}, all four F-measures, every pair)")
    return 0 if diff <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
