"""An MLPerf-style benchmark harness for LLM inference, driving the real MLPerf LoadGen."""

import os as _os

__version__ = "0.1.0"

# Nothing is downloaded at run time: models, datasets and metrics come from local paths.
# Hugging Face libraries read these when first imported; a user may still override them.
for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE", "TRANSFORMERS_OFFLINE"):
    _os.environ.setdefault(_var, "1")
_os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
