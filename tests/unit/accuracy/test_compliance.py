"""TEST06 checks, as the reference compliance/TEST06/run_verification.py makes them."""

import json

import numpy as np
import pytest

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
    result = verify_accuracy_log(log, EOS, tmp_path, scenario="Server")
    assert result.passed and result.first_token is True
    # byte for byte what the reference script writes for this log
    assert (tmp_path / VERIFY_FILE).read_text() == (
        "First token check pass: True\nEOS check pass: True\nSample length check pass: True\n"
        "TEST06 verification complete\n")


def test_each_violation_is_reported_with_its_sample():
    entries = [
        LogEntry(0, (5, 6), (9,), 2),            # first token reported is not the output's first
        LogEntry(1, (5, EOS, EOS), (5,), 3),     # two trailing EOS
        LogEntry(2, (5, 6, 7), (5,), 4),         # token_count disagrees with the data
    ]
    result = check_entries(entries, EOS, scenario="Server")
    assert (result.first_token, result.eos, result.sample_length, result.passed) == (False, False, False, False)
    assert result.failures == {"First token check": [0], "EOS check": [1], "Sample length check": [2]}
    assert result.lines()[:4] == ["First token check pass: False", "EOS check pass: False",
                                  "Sample length check pass: False", "TEST06 verification failed"]
    assert result.lines()[4] == "First token check failed for qsl_idx 0"


def test_offline_skips_the_first_token_check():
    result = check_entries([LogEntry(0, (5, EOS), None, 2)], EOS, scenario="Offline")
    assert result.first_token is None and result.passed
    assert result.lines()[0] == "First token check pass: Skipped"


@pytest.mark.parametrize("scenario", ["Server", "Interactive", "SingleStream"])
def test_the_scenario_not_the_data_decides_the_first_token_check(scenario):
    # A streaming run whose first tokens were never reported: no entry has token_data. Deciding
    # from the data would skip the check; the reference script fails it.
    result = check_entries([LogEntry(0, (5, 6), None, 2), LogEntry(1, (7,), None, 1)], EOS, scenario=scenario)
    assert result.first_token is False and not result.passed
    assert result.failures["First token check"] == [0, 1]


def test_eos_is_counted_as_the_reference_counts_it():
    # The reference walks back from the last token down to index 1: [EOS, EOS] has one trailing
    # EOS for it, [x, EOS, EOS] two.
    assert check_entries([LogEntry(0, (EOS, EOS), (EOS,), 2)], EOS, scenario="Server").eos is True
    assert check_entries([LogEntry(0, (4, EOS, EOS), (4,), 3)], EOS, scenario="Server").eos is False
    assert check_entries([LogEntry(0, (4, EOS, EOS), (4,), 3)], None, scenario="Server").eos is True  # EOS unknown
