"""Lossless check: did two runs emit the same output for every sample?

Speculative decoding with greedy verification must not change a single token, nor may serving a
model over HTTP; the proof is to compare the accuracy logs (``mlperf_log_accuracy.json``) of the
two runs sample by sample (first entry per QSL index, as scoring reads them). Token ids are
compared where both logs hold the model's own ids. A log of ``sut=openai`` without the server's
ids holds the server's text re-tokenized by the client, whose ids need not be the model's (the
same text has many tokenizations), so then the decoded texts are compared instead, and the report
says which. Every sample that differs is reported with the first position where the outputs part
(tokens or characters), and both lengths.

One difference between texts is explained rather than failed: an output cut by ``max_tokens`` in
the middle of a multi-byte UTF-8 character ends, decoded from ids, in U+FFFD, while a server that
sends only whole characters may leave that incomplete character out. Texts equal but for
trailing U+FFFD are reported as such (``trailing_partial``) and do not count as differences.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.accuracy.log import read_accuracy_log
from harness.errors import AccuracyError

ACCURACY_LOG = "mlperf_log_accuracy.json"


TOKEN_IDS = "token ids"
TEXT = "text"
REPLACEMENT = "\ufffd"  # what decoding makes of an incomplete UTF-8 sequence


@dataclass(frozen=True)
class TokenDifference:
    """One sample whose outputs differ between the two logs (in tokens, or characters of text)."""

    qsl_idx: int
    first_difference: int  # 0-based position; the shorter length when one output extends the other
    length: int  # tokens (characters) in the run's log
    other_length: int  # in the other log


@dataclass(frozen=True)
class LosslessReport:
    """The comparison of a run's accuracy log with another's, by token ids or by decoded text."""

    log: str
    other_log: str
    compared: int  # samples present in both logs
    differences: tuple[TokenDifference, ...]
    only_in_log: tuple[int, ...]  # QSL indices missing from the other log
    only_in_other: tuple[int, ...]
    basis: str = TOKEN_IDS  # what was compared: TOKEN_IDS or TEXT
    why_text: str | None = None  # why ids could not be compared
    trailing_partial: tuple[int, ...] = ()  # text equal but for a trailing incomplete character

    @property
    def identical(self) -> bool:
        return not self.differences and not self.only_in_log and not self.only_in_other and self.compared > 0

    def lines(self) -> list[str]:
        lines = [f"compared {self.compared} samples by {self.basis}: {self.log} vs {self.other_log}"]
        if self.why_text:
            lines.append(f"(text, not token ids: {self.why_text})")
        unit = "tokens" if self.basis == TOKEN_IDS else "characters"
        what = "token ids differ" if self.basis == TOKEN_IDS else "text differs"
        lines += [f"sample {d.qsl_idx}: {what} from position {d.first_difference} "
                  f"({d.length} vs {d.other_length} {unit})" for d in self.differences]
        if self.trailing_partial:
            lines.append(f"samples {_ids(self.trailing_partial)}: same text but for a trailing incomplete UTF-8 "
                         "character (U+FFFD in one decoding, left out in the other; see harness.accuracy.lossless)")
        if self.only_in_log:
            lines.append(f"only in the first log: samples {_ids(self.only_in_log)}")
        if self.only_in_other:
            lines.append(f"only in the other log: samples {_ids(self.only_in_other)}")
        if self.compared == 0:
            lines.append("no sample is in both logs")
        verdict = "identical" if self.identical else f"{len(self.differences)} samples differ"
        lines.append(f"{self.basis}: {verdict}")
        return lines

    def as_dict(self) -> dict:
        return {"log": self.log, "other_log": self.other_log, "compared": self.compared, "basis": self.basis,
                "why_text": self.why_text, "identical": self.identical,
                "differences": [vars(d) for d in self.differences], "trailing_partial": list(self.trailing_partial),
                "only_in_log": list(self.only_in_log), "only_in_other": list(self.only_in_other)}


def _ids(indices: tuple[int, ...], most: int = 20) -> str:
    shown = ", ".join(map(str, indices[:most]))
    return shown + (f", ... ({len(indices)} in all)" if len(indices) > most else "")


def accuracy_log_path(path: Path) -> Path:
    """The accuracy log of a run directory (``accuracy/``), of a test directory, or the log itself."""
    path = Path(path)
    for candidate in (path / "accuracy" / ACCURACY_LOG, path / ACCURACY_LOG, path):
        if candidate.is_file():
            return candidate
    raise AccuracyError(f"no {ACCURACY_LOG} at {path} (nor in its accuracy/): the run needs an accuracy test "
                        "(mode=accuracy or submission)")


def first_difference(a: Sequence, b: Sequence) -> int | None:
    """The first position where the sequences differ (a length when one extends the other), else None."""
    for i, (x, y) in enumerate(zip(a, b)):  # noqa: B905 (lengths may differ on purpose)
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def compare_token_logs(log: Path, other: Path) -> LosslessReport:
    """Compare two accuracy logs (or the run directories that hold them) sample by sample."""
    log, other = accuracy_log_path(log), accuracy_log_path(other)
    a, b = read_accuracy_log(log), read_accuracy_log(other)
    differences = []
    for idx in sorted(a.keys() & b.keys()):
        pos = first_difference(a[idx], b[idx])
        if pos is not None:
            differences.append(TokenDifference(idx, pos, len(a[idx]), len(b[idx])))
    return LosslessReport(str(log), str(other), len(a.keys() & b.keys()), tuple(differences),
                          tuple(sorted(a.keys() - b.keys())), tuple(sorted(b.keys() - a.keys())))


def compare_text_logs(log: Path, other: Path, decode: Callable[[Sequence[int]], str],
                      other_decode: Callable[[Sequence[int]], str], why: str) -> LosslessReport:
    """Compare two accuracy logs by their decoded text (each log with its own run's tokenizer)."""
    log, other = accuracy_log_path(log), accuracy_log_path(other)
    a, b = read_accuracy_log(log), read_accuracy_log(other)
    return compare_texts({i: decode(t) for i, t in a.items()}, {i: other_decode(t) for i, t in b.items()},
                         str(log), str(other), why)


def compare_texts(a: Mapping[int, str], b: Mapping[int, str], log: str, other: str, why: str) -> LosslessReport:
    differences, partial = [], []
    for idx in sorted(a.keys() & b.keys()):
        pos = first_difference(a[idx], b[idx])
        if pos is None:
            continue
        if a[idx].rstrip(REPLACEMENT) == b[idx].rstrip(REPLACEMENT):
            partial.append(idx)
        else:
            differences.append(TokenDifference(idx, pos, len(a[idx]), len(b[idx])))
    return LosslessReport(log, other, len(a.keys() & b.keys()), tuple(differences), tuple(sorted(a.keys() - b.keys())),
                          tuple(sorted(b.keys() - a.keys())), TEXT, why, tuple(partial))
