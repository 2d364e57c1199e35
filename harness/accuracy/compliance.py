"""TEST06-style compliance checks on any run's accuracy log (MLPERF_FACTS.md, "Compliance TEST06").

- First token: in every scenario but Offline, each response's ``token_data`` (the first token
  reported separately) equals the start of its output; a response without one fails. The
  scenario decides, as in the reference ``compliance/TEST06/run_verification.py``, not the data:
  a Server log whose first tokens were never reported must fail.
- EOS: at most one trailing EOS per output (the reference's count, which ignores token 0).
- Sample length: ``len(data) == token_count``.

The result is written as ``verify_accuracy.txt`` in the reference script's words (identical
when the checks pass); the failing QSL indices follow its four lines.
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
               f"Sample length check pass: {self.sample_length}",
               "TEST06 verification complete" if self.passed else "TEST06 verification failed"]
        for check, indices in self.failures.items():
            out.append(f"{check} failed for qsl_idx {', '.join(map(str, indices[:10]))}"
                       + (" ..." if len(indices) > 10 else ""))
        return out


def _trailing_eos(ids: tuple[int, ...], eos_token_id: int) -> int:
    """EOS tokens at the end of ``ids``, counted from the last down to index 1 (as the reference)."""
    n = 0
    for i in range(len(ids) - 1, 0, -1):
        if ids[i] != eos_token_id:
            break
        n += 1
    return n


def check_entries(entries: list[LogEntry], eos_token_id: int | None, *, scenario: str) -> ComplianceResult:
    """The three checks; ``scenario`` is LoadGen's (Offline, Server, SingleStream) or a result
    folder's (Interactive is a Server run). ``eos_token_id`` None skips the EOS check."""
    check_first = scenario != "Offline"
    first_bad, eos_bad, len_bad = [], [], []
    for e in entries:
        if check_first and (e.first_token_ids is None
                            or any(a != b for a, b in zip(e.token_ids, e.first_token_ids, strict=False))):
            first_bad.append(e.qsl_idx)
        if eos_token_id is not None and _trailing_eos(e.token_ids, eos_token_id) >= 2:
            eos_bad.append(e.qsl_idx)
        if e.token_count is None or e.token_count != len(e.token_ids):
            len_bad.append(e.qsl_idx)
    failures = {k: v for k, v in (("First token check", first_bad), ("EOS check", eos_bad),
                                  ("Sample length check", len_bad)) if v}
    return ComplianceResult(not first_bad if check_first else None, not eos_bad, not len_bad, len(entries),
                            failures)


def verify_accuracy_log(log_path: Path, eos_token_id: int | None, out_dir: Path | None = None, *,
                        scenario: str) -> ComplianceResult:
    """Run the checks on ``log_path``; write ``verify_accuracy.txt`` into ``out_dir`` if given."""
    result = check_entries(read_accuracy_entries(log_path), eos_token_id, scenario=scenario)
    if out_dir is not None:
        (Path(out_dir) / VERIFY_FILE).write_text("\n".join(result.lines()) + "\n", encoding="utf-8")
    return result
