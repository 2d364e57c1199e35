"""TEST06-style compliance checks on any run's accuracy log (MLPERF_FACTS.md, "Compliance TEST06").

- First token: the token reported separately (``token_data``, streaming scenarios) equals the
  start of the output; Offline reports no first token, so the check is skipped.
- EOS: at most one trailing EOS per output.
- Sample length: ``len(data) == token_count``.

The result is written as ``verify_accuracy.txt`` lines in the reference script's wording.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from harness.accuracy.log import LogEntry, read_accuracy_entries

VERIFY_FILE = "verify_accuracy.txt"


@dataclass(frozen=True)
class ComplianceResult:
    """Per check: True, False, or None when skipped; failing QSL indices for the report."""

    first_token: bool | None
    eos: bool
    sample_length: bool
    entries: int
    failures: dict[str, list[int]] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.first_token is not False and self.eos and self.sample_length

    def lines(self) -> list[str]:
        first = "Skipped" if self.first_token is None else str(self.first_token)
        out = [f"First token check pass: {first}", f"EOS check pass: {self.eos}",
               f"Sample length check pass: {self.sample_length}"]
        for check, indices in self.failures.items():
            out.append(f"{check} failed for qsl_idx {', '.join(map(str, indices[:10]))}"
                       + (" ..." if len(indices) > 10 else ""))
        out.append("TEST06 verification complete" + ("" if self.passed else " (FAILED)"))
        return out


def check_entries(entries: list[LogEntry], eos_token_id: int | None) -> ComplianceResult:
    first_bad, eos_bad, len_bad = [], [], []
    has_first = any(e.first_token_ids is not None for e in entries)
    for e in entries:
        if has_first:
            first = e.first_token_ids or ()
            if not first or tuple(e.token_ids[:len(first)]) != tuple(first):
                first_bad.append(e.qsl_idx)
        if eos_token_id is not None and len(e.token_ids) >= 2 and e.token_ids[-1] == e.token_ids[-2] == eos_token_id:
            eos_bad.append(e.qsl_idx)
        if e.token_count is None or e.token_count != len(e.token_ids):
            len_bad.append(e.qsl_idx)
    failures = {k: v for k, v in (("First token check", first_bad), ("EOS check", eos_bad),
                                  ("Sample length check", len_bad)) if v}
    return ComplianceResult(None if not has_first else not first_bad, not eos_bad, not len_bad, len(entries), failures)


def verify_accuracy_log(log_path: Path, eos_token_id: int | None, out_dir: Path | None = None) -> ComplianceResult:
    """Run the checks on ``log_path``; write ``verify_accuracy.txt`` into ``out_dir`` if given."""
    result = check_entries(read_accuracy_entries(log_path), eos_token_id)
    if out_dir is not None:
        (Path(out_dir) / VERIFY_FILE).write_text("\n".join(result.lines()) + "\n", encoding="utf-8")
    return result
