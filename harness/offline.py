"""Nothing is downloaded at run time: models, datasets and metrics come from local paths.

The Hugging Face libraries read these variables when they are first imported, so every command
calls :func:`enforce` first thing (``main()``), and so does :func:`harness.run.run_benchmark` for
runs driven from Python; importing ``harness`` changes nothing. A user may still set them
otherwise in the environment.
"""

from __future__ import annotations

import os

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_EVALUATE_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
}


def enforce() -> None:
    """Put the Hugging Face libraries offline for this process and its children (user values kept)."""
    for name, value in OFFLINE_ENV.items():
        os.environ.setdefault(name, value)
