"""The lossless check: two accuracy logs compared token by token, every difference named."""

from __future__ import annotations

import json

import numpy as np
import pytest

from harness.accuracy.lossless import compare_token_logs, first_difference
from harness.audit import main as audit_main
from harness.errors import AccuracyError


def write_log(path, outputs: dict[int, list[int]]):
    entries = [{"seq_id": n, "qsl_idx": idx, "data": np.array(ids, dtype="<i4").tobytes().hex().upper()}
               for n, (idx, ids) in enumerate(outputs.items())]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(entries))
    return path


def run_dir(tmp_path, name, outputs):
    """A directory laid out as a run: the log under accuracy/."""
    write_log(tmp_path / name / "accuracy" / "mlperf_log_accuracy.json", outputs)
    return tmp_path / name


def test_first_difference_is_a_position_or_the_shorter_length():
    assert first_difference([1, 2, 3], [1, 2, 3]) is None
    assert first_difference([1, 2, 3], [1, 9, 3]) == 1
    assert first_difference([1, 2], [1, 2, 3]) == 2  # one output extends the other


def test_identical_logs_pass_in_any_entry_order(tmp_path):
    a = run_dir(tmp_path, "a", {0: [5, 6, 2], 1: [7], 2: [8, 9]})
    b = run_dir(tmp_path, "b", {2: [8, 9], 0: [5, 6, 2], 1: [7]})
    report = compare_token_logs(a, b)
    assert report.identical and report.compared == 3 and report.differences == ()
    assert report.lines()[-1] == "token ids: identical"


def test_every_differing_sample_is_reported(tmp_path):
    a = run_dir(tmp_path, "a", {0: [5, 6, 2], 1: [7, 7, 7], 2: [8, 9], 3: [1]})
    b = write_log(tmp_path / "b.json", {0: [5, 6, 2], 1: [7, 4, 7], 2: [8, 9, 9, 2], 4: [1]})
    report = compare_token_logs(a, b)  # a run directory against a bare log file
    assert not report.identical
    assert [(d.qsl_idx, d.first_difference, d.length, d.other_length) for d in report.differences] == [
        (1, 1, 3, 3), (2, 2, 2, 4)]
    assert report.only_in_log == (3,) and report.only_in_other == (4,)
    text = "\n".join(report.lines())
    assert "sample 1: token ids differ from position 1 (3 vs 3 tokens)" in text
    assert "sample 2: token ids differ from position 2 (2 vs 4 tokens)" in text
    assert "only in the first log: samples 3" in text and "only in the other log: samples 4" in text


def test_a_run_without_an_accuracy_log_is_bad_input(tmp_path):
    (tmp_path / "perf-only").mkdir()
    with pytest.raises(AccuracyError, match="mlperf_log_accuracy.json"):
        compare_token_logs(tmp_path / "perf-only", tmp_path / "perf-only")


def test_the_audit_command_exits_4_and_names_the_sample(tmp_path, capsys):
    a = run_dir(tmp_path, "a", {0: [5, 6, 2], 1: [7, 7]})
    same = run_dir(tmp_path, "same", {0: [5, 6, 2], 1: [7, 7]})
    other = run_dir(tmp_path, "other", {0: [5, 6, 2], 1: [7, 3]})
    with pytest.raises(SystemExit) as exit_:
        audit_main([str(a), "--same-tokens-as", str(same)])
    assert exit_.value.code == 0 and "token ids: identical" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        audit_main([str(a), "--same-tokens-as", str(other), "--json"])
    assert exit_.value.code == 4
    out = json.loads(capsys.readouterr().out)
    assert out["identical"] is False and out["differences"] == [
        {"qsl_idx": 1, "first_difference": 1, "length": 2, "other_length": 2}]
    with pytest.raises(SystemExit) as exit_:
        audit_main([str(a), "--same-tokens-as", str(tmp_path / "missing")])
    assert exit_.value.code == 2 and "not found" in capsys.readouterr().err


def test_text_comparison_names_differences_and_explains_a_trailing_incomplete_character():
    from harness.accuracy.lossless import compare_texts

    ours = {0: "same text", 1: "cut inside a char \ufffd", 2: "one thing", 3: "only here"}
    theirs = {0: "same text", 1: "cut inside a char ", 2: "another thing"}
    report = compare_texts(ours, theirs, "a.json", "b.json", "a holds re-tokenized text")
    assert report.basis == "text" and report.trailing_partial == (1,) and report.only_in_log == (3,)
    assert [(d.qsl_idx, d.first_difference) for d in report.differences] == [(2, 0)]
    text = "\n".join(report.lines())
    assert text.startswith("compared 3 samples by text: a.json vs b.json\n(text, not token ids: a holds")
    assert "sample 2: text differs from position 0 (9 vs 13 characters)" in text
    assert "samples 1: same text but for a trailing incomplete UTF-8 character" in text
    assert text.endswith("text: 1 samples differ")
    assert compare_texts({0: "x\ufffd"}, {0: "x"}, "a", "b", "why").identical
