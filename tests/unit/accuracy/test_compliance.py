import json

import numpy as np

from harness.accuracy.compliance import VERIFY_FILE, check_entries, verify_accuracy_log
from harness.accuracy.log import LogEntry

EOS = 2


def _hex(ids):
    return np.array(ids, dtype="<i4").tobytes().hex().upper()


def test_a_clean_streaming_log_passes_all_three_checks(tmp_path):
    log = tmp_path / "mlperf_log_accuracy.json"
    log.write_text(json.dumps([
        {"seq_id": 0, "qsl_idx": 0, "data": _hex([5, 6, EOS]), "token_data": _hex([5]), "token_count": 3},
        {"seq_id": 1, "qsl_idx": 1, "data": _hex([7]), "token_data": _hex([7]), "token_count": 1},
    ]))
    result = verify_accuracy_log(log, EOS, tmp_path)
    assert result.passed and result.first_token is True
    assert (tmp_path / VERIFY_FILE).read_text().splitlines() == [
        "First token check pass: True", "EOS check pass: True", "Sample length check pass: True",
        "TEST06 verification complete"]


def test_each_violation_is_reported_with_its_sample():
    entries = [
        LogEntry(0, (5, 6), (9,), 2),            # first token reported is not the output's first
        LogEntry(1, (5, EOS, EOS), (5,), 3),     # two trailing EOS
        LogEntry(2, (5, 6, 7), (5,), 4),         # token_count disagrees with the data
    ]
    result = check_entries(entries, EOS)
    assert (result.first_token, result.eos, result.sample_length, result.passed) == (False, False, False, False)
    assert result.failures == {"First token check": [0], "EOS check": [1], "Sample length check": [2]}
    assert result.lines()[-1] == "TEST06 verification complete (FAILED)"


def test_offline_logs_skip_the_first_token_check():
    result = check_entries([LogEntry(0, (5, EOS), None, 2)], EOS)
    assert result.first_token is None and result.passed
    assert result.lines()[0] == "First token check pass: Skipped"
