import json

import numpy as np
import pytest

from harness.accuracy import decode_accuracy_log, read_accuracy_log
from harness.errors import AccuracyError


def _entry(idx: int, ids: list[int]) -> dict:
    return {"seq_id": idx + 1, "qsl_idx": idx, "data": np.array(ids, dtype="<i4").tobytes().hex().upper()}


def test_int32_ids_decode_and_duplicates_are_dropped(tmp_path):
    path = tmp_path / "mlperf_log_accuracy.json"
    path.write_text(json.dumps([_entry(0, [5, 70000, 7]), _entry(1, [9]), _entry(0, [1, 1])]))
    assert read_accuracy_log(path) == {0: [5, 70000, 7], 1: [9]}
    assert decode_accuracy_log(path, lambda ids: "-".join(map(str, ids))) == {0: "5-70000-7", 1: "9"}


@pytest.mark.parametrize("content", ['[{"qsl_idx": 0, "data": "0102', '[{"qsl_idx": 0, "data": "010203"}]', "{}"])
def test_corrupt_or_truncated_logs_fail_clearly(tmp_path, content):
    path = tmp_path / "mlperf_log_accuracy.json"
    path.write_text(content)
    with pytest.raises(AccuracyError, match=str(path)):
        read_accuracy_log(path)
