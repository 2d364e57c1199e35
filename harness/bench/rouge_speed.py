"""Benchmark: the project's ROUGE scorer vs a plain rouge-score loop, side by side in one run.

    python -m harness.bench.rouge_speed [--pairs 13368] [--repeats 3]

Builds ``--pairs`` prediction/reference pairs shaped like CNN/DailyMail's: each pair comes from
its own generated article, the reference (3-4 highlight sentences) and the prediction (3-5
sentences, as an extractive summarizer writes them: lead sentences, cut short, a few words
changed) both drawn from that article, so they overlap as a model's summary and its reference
do. The words come from a generated vocabulary of English-like pseudo-words with inflections
(Zipf-distributed, after the commonest English function words), so the texts use a
CNN/DailyMail-sized vocabulary (``--vocabulary``; the distinct words scored are printed) and the
Porter stemmer meets as many different words as on the real data. Everything is generated
offline from ``--seed``: nothing is downloaded. The texts are split into lines as the MLPerf
recipe does, then, on the same pairs:

- baseline: ``RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer=True)`` and a
  Python loop over ``scorer.score(reference, prediction)``;
- project: :func:`harness.accuracy.rouge_engine.score_pairs` (what the ``evaluate`` metric module
  calls), in one process, with a fresh stem cache for every run.

The two sides alternate over ``--repeats`` runs; it prints the median time of each with its range,
the speed-up (ratio of the medians) and the largest per-sample difference of the four F-measures
over every run (goal: identical to 1e-9, and at least 3x faster on a 2-core machine). Exit 1 if
the scores differ.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from harness import offline
from harness.accuracy.rouge import postprocess
from harness.accuracy.rouge_engine import ROUGE_TYPES, score_pairs
from harness.bench import load_average

TOLERANCE = 1e-9

# The commonest English words head the distribution, as they head any news text's.
FUNCTION_WORDS = ("the of to and a in that is was he for it with as his on be at by had are but from or have an "
                  "they which one you were her all she there would their we him been has when who will more no if "
                  "out so said what up its about into than them can only other new some could time these two may "
                  "then do first any my now such like our over man me even most made after also did many before "
                  "must through back years where much your way well down should because each just those people "
                  "how too little state good very make world still own see men work long get here between both "
                  "life being under never day same another know while last might us great old year off come "
                  "since against go came right used take three").split()
_ONSETS = ("b bl br c ch cl cr d dr f fl fr g gl gr h j k l m n p pl pr qu r s sh sk sl sm sn sp st str t th tr v w "
           "wh y z").split()
_VOWELS = "a e i o u a e i o ai ea ee ie oa ou".split()
_CODAS = ["", "", "b", "ck", "d", "g", "l", "m", "n", "nd", "ng", "nt", "p", "r", "rd", "rk", "rn", "s", "st", "t"]
# Inflections the Porter stemmer strips (so it has work to do, as on real text)
_SUFFIXES = ["", "", "", "", "s", "s", "ed", "ing", "er", "ers", "ly", "tion", "ment", "ness", "es", "ful", "able"]


@dataclass(frozen=True)
class Corpus:
    """Pairs of (prediction, reference), already split into lines, and what they are made of."""

    predictions: list[str]
    references: list[str]
    vocabulary: int  # word types the generator could draw
    distinct_words: int  # distinct lower-cased words in the scored texts


def make_vocabulary(n: int, rng: random.Random) -> list[str]:
    """``n`` distinct words: the function words, then pseudo-words of 1-3 syllables with inflections."""
    words = list(dict.fromkeys(FUNCTION_WORDS))
    seen = set(words)
    while len(words) < n:
        stem = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(rng.choice((1, 1, 2, 2, 2, 3))))
        word = stem + rng.choice(_CODAS) + rng.choice(_SUFFIXES)
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


def make_pairs(n: int, *, vocabulary: int = 20_000, seed: int = 0) -> Corpus:
    """``n`` CNN/DailyMail-shaped pairs, each from its own article (see the module docstring)."""
    rng = random.Random(seed)
    vocab = make_vocabulary(vocabulary, rng)
    # Zipf's law (exponent 1): word of rank r drawn with weight 1/r.
    cum = list(itertools.accumulate(1.0 / r for r in range(1, len(vocab) + 1)))

    def sentence() -> list[str]:
        return rng.choices(vocab, cum_weights=cum, k=rng.randint(10, 32))

    def rewrite(words: list[str], keep: float, change: float) -> str:
        cut = words[:max(4, round(len(words) * rng.uniform(keep, 1.0)))]
        cut = [rng.choices(vocab, cum_weights=cum)[0] if rng.random() < change else w for w in cut]
        return " ".join(cut).capitalize() + "."

    preds, refs = [], []
    for _ in range(n):
        length = rng.randint(12, 24)  # article sentences; only those the pair uses are written out
        # Highlights paraphrase a few article sentences; the summary copies lead sentences, some
        # of which the highlights also used.
        ref_src = rng.sample(range(length), rng.randint(3, 4))
        lead = sorted(set(rng.sample(range(min(length, 8)), rng.randint(2, 4))) | set(ref_src[:1]))
        article = {i: sentence() for i in sorted(set(ref_src) | set(lead[:5]))}
        refs.append(" ".join(rewrite(article[i], 0.5, 0.25) for i in sorted(ref_src)))
        preds.append(" ".join(rewrite(article[i], 0.6, 0.1) for i in lead[:5]))
    predictions, references = postprocess(preds), postprocess(refs)
    distinct = {w.strip(".").lower() for text in predictions + references for w in text.split()}
    return Corpus(predictions, references, len(vocab), len(distinct))


def baseline(preds: list[str], refs: list[str]) -> list[tuple[float, ...]]:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    out = []
    for p, r in zip(preds, refs, strict=True):
        s = scorer.score(r, p)
        out.append(tuple(s[t].fmeasure for t in ROUGE_TYPES))
    return out


SIDES: dict[str, Callable[[list[str], list[str]], list[tuple[float, ...]]]] = {
    "rouge-score loop": baseline, "harness scorer": score_pairs}


def largest_difference(a: list[tuple[float, ...]], b: list[tuple[float, ...]]) -> float:
    return max(abs(x - y) for p, q in zip(a, b, strict=True) for x, y in zip(p, q, strict=True))


def time_sides(corpus: Corpus, repeats: int) -> tuple[dict[str, list[float]], float, list[tuple[float, ...]]]:
    """Alternated runs: seconds per side, the largest score difference over all runs, the scores."""
    times: dict[str, list[float]] = {name: [] for name in SIDES}
    results: dict[str, list[list[tuple[float, ...]]]] = {name: [] for name in SIDES}
    names = list(SIDES)
    for r in range(repeats):
        # Alternate which side goes first, so drifting background load hits both alike.
        for name in names if r % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            results[name].append(SIDES[name](corpus.predictions, corpus.references))
            times[name].append(time.perf_counter() - start)
    reference = results[names[0]][0]
    diff = max(largest_difference(reference, run) for name in names for run in results[name])
    return times, diff, reference


def report(corpus: Corpus, times: dict[str, list[float]], diff: float, scores: list[tuple[float, ...]],
           load: str) -> str:
    n = len(corpus.predictions)
    chars = (sum(map(len, corpus.predictions)) / n, sum(map(len, corpus.references)) / n)
    mean = [statistics.fmean(s[i] for s in scores) for i in range(len(ROUGE_TYPES))]
    lines = [f"{n:,} pairs, each from its own generated article; mean prediction {chars[0]:.0f} chars, reference "
             f"{chars[1]:.0f} chars; {corpus.distinct_words:,} distinct words (vocabulary {corpus.vocabulary:,})",
             "mean F-measures of the pairs: " + ", ".join(f"{t} {m:.3f}" for t, m in zip(ROUGE_TYPES, mean,
                                                                                          strict=True))]
    med = {name: statistics.median(ts) for name, ts in times.items()}
    for name, ts in times.items():
        runs = ", ".join(f"{t:.2f}" for t in ts)
        lines.append(f"{name:<18} median {med[name]:7.2f} s (range {min(ts):.2f}-{max(ts):.2f}; {runs}), "
                     f"{n / med[name]:,.0f} pairs/s")
    base, ours = med["rouge-score loop"], med["harness scorer"]
    worst, best = max(times["rouge-score loop"]) / min(times["harness scorer"]), \
        min(times["rouge-score loop"]) / max(times["harness scorer"])
    lines.append(f"speed-up           {base / ours:7.2f}x  ratio of medians (runs' extremes {best:.2f}x-{worst:.2f}x)"
                 f"   goal >= 3x: {'met' if base / ours >= 3 else 'NOT met'}")
    lines.append(f"max |difference|   {diff:.3g}        (goal <= {TOLERANCE:g}, all four F-measures, every pair, "
                 "every run)")
    lines.append(f"machine: {os.cpu_count()} cores; {load}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    offline.enforce()  # before anything imports a Hugging Face library
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=13368, help="pairs to score (CNN/DailyMail: 13,368)")
    parser.add_argument("--repeats", type=int, default=3, help="alternated runs of each side (medians, ranges)")
    parser.add_argument("--vocabulary", type=int, default=20_000,
                        help="word types of the generated vocabulary (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated texts")
    args = parser.parse_args(argv)
    if args.pairs < 1 or args.repeats < 1 or args.vocabulary < len(FUNCTION_WORDS):
        parser.error(f"--pairs and --repeats must be >= 1, --vocabulary >= {len(FUNCTION_WORDS)}")

    corpus = make_pairs(args.pairs, vocabulary=args.vocabulary, seed=args.seed)
    before = load_average()
    times, diff, scores = time_sides(corpus, args.repeats)
    print(report(corpus, times, diff, scores, f"{before} at the start, {load_average()} at the end"))
    return 0 if diff <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
