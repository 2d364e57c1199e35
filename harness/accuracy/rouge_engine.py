"""Exact, fast per-sample ROUGE: the same numbers as rouge-score's ``RougeScorer``, sooner.

MLPerf scores ROUGE with rouge-score's ``RougeScorer(use_stemmer=True)`` (through ``evaluate``).
That scorer spends most of its time in two places: the Porter stemmer, called for every word of
every text, and a pure-Python LCS table per text pair (rougeL) and per sentence pair
(rougeLsum). This engine keeps rouge-score's tokenizer and stemmer and its formulas, and changes
only how the same quantities are computed:

- stems are cached per word (a stem depends on the word alone);
- each text is tokenized once, per sentence; the whole-text tokens are the concatenation
  (sentences are split on newlines, which the tokenizer treats as separators anyway);
- rougeL's LCS length comes from a bit-parallel LCS (Hyyrö 2004), exact integer arithmetic;
- rougeLsum's union-LCS uses rouge-score's table and backtracking rule, skipping sentence pairs
  that share no token and reference tokens absent from the candidate sentence (such rows of
  the table repeat the row above, and backtracking passes them without a match, so the LCS
  indices it reads out are the same).

Per-sample scores are identical to ``RougeScorer.score`` (checked by the tests and by
``python -m harness.bench.rouge_speed`` on every pair it scores).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from nltk.stem import porter
from rouge_score import tokenize as rs_tokenize
from rouge_score.scoring import fmeasure

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")


class CachingStemmer:
    """rouge-score's Porter stemmer with a per-word cache (same stems, computed once)."""

    def __init__(self) -> None:
        self._stemmer = porter.PorterStemmer()
        self._cache: dict[str, str] = {}

    def stem(self, word: str) -> str:
        stem = self._cache.get(word)
        if stem is None:
            stem = self._cache[word] = self._stemmer.stem(word)
        return stem


class Tokenizer:
    """rouge-score's default tokenizer (lowercase, alphanumerics, Porter stems for words > 3)."""

    def __init__(self, use_stemmer: bool = True) -> None:
        self._stemmer = CachingStemmer() if use_stemmer else None

    def tokenize(self, text: str) -> list[str]:
        return rs_tokenize.tokenize(text, self._stemmer)

    def sentences(self, text: str) -> list[list[str]]:
        """Tokens per line, as RougeScorer(split_summaries=False) splits for rougeLsum."""
        return [self.tokenize(s) for s in text.split("\n") if s]


def _ngram_f(target: Sequence[str], prediction: Sequence[str], n: int) -> float:
    t = Counter(tuple(target[i:i + n]) for i in range(len(target) - n + 1))
    p = Counter(tuple(prediction[i:i + n]) for i in range(len(prediction) - n + 1))
    overlap = sum(min(c, p[g]) for g, c in t.items())
    precision = overlap / max(sum(p.values()), 1)
    recall = overlap / max(sum(t.values()), 1)
    return fmeasure(precision, recall)


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence, bit-parallel over ``a`` (exact)."""
    if not a or not b:
        return 0
    masks: dict[str, int] = {}
    for i, token in enumerate(a):
        masks[token] = masks.get(token, 0) | (1 << i)
    full = (1 << len(a)) - 1
    v = full
    for token in b:
        m = masks.get(token)
        if m:
            u = v & m
            v = ((v + u) | (v - u)) & full
    return len(a) - v.bit_count()


def _lcs_f(target: Sequence[str], prediction: Sequence[str]) -> float:
    if not target or not prediction:
        return 0.0
    n = lcs_length(target, prediction)
    return fmeasure(n / len(prediction), n / len(target))


def lcs_indices(ref: Sequence[str], can: Sequence[str]) -> list[int]:
    """Indices into ``ref`` of the LCS rouge-score's ``lcs_ind`` reads out (same tie-breaking)."""
    present = set(can)
    keep = [i for i, token in enumerate(ref) if token in present]
    if not keep:
        return []
    rows = [ref[i] for i in keep]
    cols = len(can)
    table = [[0] * (cols + 1)]
    for token in rows:
        above = table[-1]
        row = [0] * (cols + 1)
        left = 0
        for j in range(1, cols + 1):
            if token == can[j - 1]:
                left = above[j - 1] + 1
            else:
                up = above[j]
                if up > left:
                    left = up
            row[j] = left
        table.append(row)
    # rouge-score's _backtrack_norec on the reduced table.
    i, j, out = len(rows), cols, []
    while i > 0 and j > 0:
        if rows[i - 1] == can[j - 1]:
            out.append(keep[i - 1])
            i -= 1
            j -= 1
        elif table[i][j - 1] > table[i - 1][j]:
            j -= 1
        else:
            i -= 1
    out.reverse()
    return out


def _summary_lcs_f(ref_sents: list[list[str]], can_sents: list[list[str]]) -> float:
    if not ref_sents or not can_sents:
        return 0.0
    m = sum(map(len, ref_sents))
    n = sum(map(len, can_sents))
    if not n or not m:
        return 0.0
    counts_r: Counter[str] = Counter()
    counts_c: Counter[str] = Counter()
    for s in ref_sents:
        counts_r.update(s)
    for s in can_sents:
        counts_c.update(s)
    can_sets = [set(c) for c in can_sents]
    hits = 0
    for r in ref_sents:
        r_set = set(r)
        union: set[int] = set()
        for c, c_set in zip(can_sents, can_sets, strict=True):
            if not r_set.isdisjoint(c_set):
                union.update(lcs_indices(r, c))
        for i in sorted(union):
            t = r[i]
            if counts_c[t] > 0 and counts_r[t] > 0:
                hits += 1
                counts_c[t] -= 1
                counts_r[t] -= 1
    return fmeasure(hits / n, hits / m)


def score_pair(tokenizer: Tokenizer, target: str, prediction: str) -> tuple[float, float, float, float]:
    """(rouge1, rouge2, rougeL, rougeLsum) F-measures of one pair, as RougeScorer.score gives."""
    t_sents = tokenizer.sentences(target)
    p_sents = tokenizer.sentences(prediction)
    t = [tok for s in t_sents for tok in s]
    p = [tok for s in p_sents for tok in s]
    return _ngram_f(t, p, 1), _ngram_f(t, p, 2), _lcs_f(t, p), _summary_lcs_f(t_sents, p_sents)


def score_pairs(predictions: Sequence[str], references: Sequence[str], *,
                use_stemmer: bool = True) -> list[tuple[float, float, float, float]]:
    """Per-sample (rouge1, rouge2, rougeL, rougeLsum) F-measures, in input order.

    One process is enough: with cached stems and the LCS shortcuts, 13,368 CNN/DailyMail-sized
    pairs take seconds (``python -m harness.bench.rouge_speed``).
    """
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    tokenizer = Tokenizer(use_stemmer)
    return [score_pair(tokenizer, r, p) for p, r in zip(predictions, references, strict=True)]
