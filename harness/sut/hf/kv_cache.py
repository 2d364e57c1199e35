"""The KV cache argument of a transformers model's forward, on both sides of its rename.

transformers 5.24 renamed ``past_key_values`` to ``cache``, as the forward keyword and the output
field; the old names still work there but warn on every call (a FutureWarning per forward), and go
in 5.40. The keyword is chosen once per model from its forward's signature, so each supported
version (pyproject.toml) gets the name it expects and no warning.
"""

from __future__ import annotations

import inspect
from typing import Any


def cache_keyword(model: Any) -> str:
    """``cache`` where the model's forward takes it (transformers >= 5.24), else ``past_key_values``."""
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return "past_key_values"
    return "cache" if "cache" in params else "past_key_values"


def output_cache(out: Any) -> Any:
    """The KV cache a forward returned (``out.cache``, or ``out.past_key_values`` before 5.24)."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values
