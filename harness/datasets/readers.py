"""Reading local dataset files into rows through the ``datasets`` library (never the hub).

JSON lines, JSON (a list of records, or pandas' column-oriented dict), Parquet, CSV and pandas
pickles (MLPerf's preprocessed OpenOrca and Mixtral files) all come back as a list of dicts.
Every failure is a DatasetError naming the file.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from harness.errors import DatasetError

SUFFIXES = (".jsonl", ".json", ".parquet", ".csv", ".pkl", ".pickle")


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a local file, in file order."""
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DatasetError(f"{path}: unsupported file type '{suffix}' (use one of {', '.join(SUFFIXES)})")
    try:
        table = _load(path, suffix)
    except DatasetError:
        raise
    except Exception as exc:  # the readers raise many types (ArrowInvalid, JSONDecodeError, ...)
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DatasetError(f"{path}: not a readable {suffix[1:]} dataset ({reason[:200]})") from exc
    rows = table.to_list()
    if not rows:
        raise DatasetError(f"{path}: dataset is empty")
    return rows


def _load(path: Path, suffix: str):
    import datasets

    datasets.disable_progress_bars()
    if suffix in (".pkl", ".pickle"):
        import pandas as pd

        frame = pd.read_pickle(path)  # a pickle runs code: only read files you trust
        if not isinstance(frame, pd.DataFrame):
            raise DatasetError(f"{path}: expected a pandas DataFrame pickle, got {type(frame).__name__}")
        return datasets.Dataset.from_pandas(frame, preserve_index=False)
    if suffix == ".json" and _starts_with(path, "{"):
        import pandas as pd

        # pandas' to_json default: {"column": {"row": value}}, as MLPerf's cnn_eval.json files are.
        return datasets.Dataset.from_pandas(pd.read_json(path), preserve_index=False)
    if _blank(path):
        raise DatasetError(f"{path}: dataset is empty")
    reader = {".jsonl": datasets.Dataset.from_json, ".json": datasets.Dataset.from_json,
              ".parquet": datasets.Dataset.from_parquet, ".csv": datasets.Dataset.from_csv}[suffix]
    with tempfile.TemporaryDirectory(prefix="harness-datasets-") as cache:
        return reader(str(path), keep_in_memory=True, cache_dir=cache)


def _blank(path: Path) -> bool:
    """No rows at all: the readers would fail with less helpful messages."""
    if path.stat().st_size > 1024:
        return False
    return path.read_bytes().strip() in (b"", b"[]", b"{}")


def _starts_with(path: Path, char: str) -> bool:
    with path.open("rb") as f:
        head = f.read(4096).lstrip()
    return head[:1] == char.encode()
