"""Datasets: records of (input, reference), loaded from local files only, and fingerprinted.

The default is ``data/sample.jsonl``, a small set of original news articles with reference
summaries in the CNN/DailyMail schema (``article``, ``highlights``), written for this project
so the harness runs anywhere without a download.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

from harness.config import DatasetConfig
from harness.errors import DatasetError

BUNDLED_SAMPLE = Path(__file__).resolve().parent / "data" / "sample.jsonl"


@dataclass(frozen=True)
class Record:
    """One dataset entry: the raw input text and the reference output."""

    id: str
    input: str
    reference: str


@dataclass(frozen=True)
class Dataset:
    """Records in QSL order (index i is QSL sample i) and a content fingerprint."""

    name: str
    source: str
    records: tuple[Record, ...]

    @property
    def fingerprint(self) -> str:
        """sha256 over the records' ids, inputs and references, in order."""
        h = hashlib.sha256()
        for r in self.records:
            h.update(json.dumps([r.id, r.input, r.reference], ensure_ascii=False).encode())
        return h.hexdigest()

    def __len__(self) -> int:
        return len(self.records)


def load_dataset(config: DatasetConfig) -> Dataset:
    """Load the configured dataset; every problem is a DatasetError naming file and field."""
    path = Path(config.path).expanduser() if config.path else BUNDLED_SAMPLE
    if not path.is_file():
        raise DatasetError(f"dataset file not found: {path} (set dataset.path)")
    rows = _read_rows(path)
    records = []
    for n, row in enumerate(rows, 1):
        missing = [f for f in (config.input_field, config.reference_field) if f not in row]
        if missing:
            raise DatasetError(f"{path}: record {n} has no field '{missing[0]}' "
                               f"(set dataset.input_field / dataset.reference_field)")
        records.append(Record(str(row.get("id", n - 1)), str(row[config.input_field]),
                              str(row[config.reference_field])))
    if not records:
        raise DatasetError(f"{path}: dataset is empty")
    if config.n_samples is not None:
        if not 0 < config.n_samples <= len(records):
            raise DatasetError(f"dataset.n_samples={config.n_samples} but {path} has {len(records)} records")
        keep = sorted(random.Random(config.seed).sample(range(len(records)), config.n_samples))
        records = [records[i] for i in keep]
    return Dataset(config.name, str(path), tuple(records))


def _read_rows(path: Path) -> list[dict]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read dataset file {path}: {exc}") from exc
    try:
        if path.suffix == ".jsonl":
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            rows = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise DatasetError(f"{path}: expected a list of JSON objects")
    return rows
