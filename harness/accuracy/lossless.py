"""Lossless check: did two runs emit the same token ids for every sample?

Speculative decoding with greedy verification must not change a single token; the proof is to
compare the accuracy logs (``mlperf_log_accuracy.json``) of a run with the draft and one without,
sample by sample (first entry per QSL index, as scoring reads them). Every sample that differs is
reported with the first position where the ids part, and both lengths.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.accuracy.log import read_accuracy_log
from harness.errors import AccuracyError

ACCURACY_LOG = "mlperf_log_accuracy.json"


@dataclass(frozen=True)
class TokenDifference:
    """One sample whose token ids differ between the two logs."""

    qsl_idx: int
    first_difference: int  # 0-based token position; the shorter length when one output extends the other
    length: int  # tokens in the run's log
    other_length: int  # tokens in the other log


@dataclass(frozen=True)
class LosslessReport:
    """The comparison of a run's accuracy log with another's."""

    log: str
    other_log: str
    compared: int  # samples present in both logs
    differences: tuple[TokenDifference, ...]
    only_in_log: tuple[int, ...]  # QSL indices missing from the other log
    only_in_other: tuple[int, ...]

    @property
    def identical(self) -> bool:
        return not self.differences and not self.only_in_log and not self.only_in_other and self.compared > 0

    def lines(self) -> list[str]:
        lines = [f"compared {self.compared} samples: {self.log} vs {self.other_log}"]
        lines += [f"sample {d.qsl_idx}: token ids differ from position {d.first_difference} "
                  f"({d.length} vs {d.other_length} tokens)" for d in self.differences]
        if self.only_in_log:
            lines.append(f"only in the first log: samples {_ids(self.only_in_log)}")
        if self.only_in_other:
            lines.append(f"only in the other log: samples {_ids(self.only_in_other)}")
        if self.compared == 0:
            lines.append("no sample is in both logs")
        verdict = "identical" if self.identical else f"{len(self.differences)} samples differ"
        lines.append(f"token ids: {verdict}")
        return lines

    def as_dict(self) -> dict:
        return {"log": self.log, "other_log": self.other_log, "compared": self.compared,
                "identical": self.identical, "differences": [vars(d) for d in self.differences],
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


def first_difference(a: tuple[int, ...] | list[int], b: tuple[int, ...] | list[int]) -> int | None:
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
