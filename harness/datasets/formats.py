"""Dataset layouts: which fields hold the prompt, the reference and the system prompt.

Each known layout is recognised by its columns (``format: auto``) or asked for by name:

- ``cnn_dailymail``: the Hugging Face columns (article, highlights); MLPerf GPT-J's
  ``cnn_eval.json`` (instruction, input, output); MLPerf Llama 3.1 8B's ``cnn_eval.json``
  (input already templated, tok_input, output).
- ``open_orca``: MLPerf Llama 2 70B's preprocessed pickle (input already templated, tok_input,
  output), Mixtral's (input, tok_input, gt_output, dataset: its reference is the ground truth
  ``gt_output``, as the reference's evaluate-accuracy.py scores it; ``ref_output`` is the
  reference model's own output; ``dataset`` names each record's task: OpenOrca, GSM8K or MBXP),
  or raw OpenOrca (system_prompt, question, response).
- ``sharegpt``: ShareGPT V3 JSON (first human turn = prompt, first assistant turn after it =
  reference).
- ``table``: any file, with ``dataset.prompt_field`` and ``dataset.reference_field``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harness.config import DatasetConfig


@dataclass(frozen=True)
class Layout:
    """Field names of one layout; ``templated`` when the prompt field is the whole prompt."""

    format: str
    prompt: str
    reference: str
    system: str | None = None
    templated: bool = False
    task: str | None = None  # field naming each record's task in a mixed dataset


# (format, required columns, layout), most specific first.
KNOWN: tuple[tuple[str, frozenset[str], Layout], ...] = (
    ("cnn_dailymail", frozenset({"article", "highlights"}), Layout("cnn_dailymail", "article", "highlights")),
    ("open_orca", frozenset({"input", "tok_input", "gt_output", "dataset"}),
     Layout("open_orca", "input", "gt_output", templated=True, task="dataset")),
    ("open_orca", frozenset({"input", "tok_input", "system_prompt", "output"}),
     Layout("open_orca", "input", "output", templated=True)),
    ("cnn_dailymail", frozenset({"input", "tok_input", "output"}),
     Layout("cnn_dailymail", "input", "output", templated=True)),
    ("cnn_dailymail", frozenset({"instruction", "input", "output"}), Layout("cnn_dailymail", "input", "output")),
    ("open_orca", frozenset({"question", "response"}),
     Layout("open_orca", "question", "response", system="system_prompt")),
    ("sharegpt", frozenset({"conversations"}), Layout("sharegpt", "prompt", "reference")),
)

HUMAN_ROLES = ("human", "user")
ASSISTANT_ROLES = ("gpt", "assistant", "chatgpt", "bing", "bard")


def resolve_layout(config: DatasetConfig, columns: Sequence[str]) -> Layout | str:
    """The layout for these columns, or why none fits (a message naming what is missing)."""
    present = set(columns)
    if config.format == "table" or (config.prompt_field and config.reference_field):
        unset = [k for k in ("prompt_field", "reference_field") if not getattr(config, k)]
        if unset:
            return f"dataset.{unset[0]} is not set (fields: {_list(columns)})"
        missing = [f for f in (config.prompt_field, config.reference_field) if not f or f not in present]
        if missing:
            name = "prompt_field" if missing[0] == config.prompt_field else "reference_field"
            return f"no field '{missing[0]}' (set dataset.{name}; fields: {_list(columns)})"
        return Layout("table", config.prompt_field, config.reference_field, config.system_field,
                      bool(config.templated))
    candidates = [(f, cols, lay) for f, cols, lay in KNOWN if config.format in ("auto", f)]
    for _, required, layout in candidates:
        if required <= present:
            return _with_overrides(layout, config)
    wanted = " or ".join("(" + ", ".join(sorted(cols)) + ")" for _, cols, _ in candidates)
    return (f"fields {_list(columns)} match no {config.format} layout: expected {wanted}, "
            f"or set dataset.prompt_field and dataset.reference_field")


def _with_overrides(layout: Layout, config: DatasetConfig) -> Layout:
    return Layout(layout.format, config.prompt_field or layout.prompt, config.reference_field or layout.reference,
                  config.system_field or layout.system,
                  layout.templated if config.templated is None else config.templated, layout.task)


def sharegpt_pair(row: dict[str, Any]) -> tuple[str, str] | None:
    """(first human turn, the first assistant turn after it), or None if the row has no such pair."""
    turns = row.get("conversations") or []
    prompt = None
    for turn in turns:
        role = str(turn.get("from", turn.get("role", ""))).lower()
        text = turn.get("value", turn.get("content"))
        if prompt is None and role in HUMAN_ROLES and text:
            prompt = str(text)
        elif prompt is not None and role in ASSISTANT_ROLES and text:
            return prompt, str(text)
    return None


def _list(columns: Sequence[str]) -> str:
    shown = list(columns)[:12]
    return ", ".join(shown) + (", ..." if len(columns) > 12 else "")
