"""Where the harness's own files are: its Hydra configs, its scenarios and, when there is one, its
source checkout.

The repository keeps ``conf/`` and ``scenarios/`` at its top level; ``harness/_conf`` and
``harness/_scenarios`` link to them, and a wheel carries copies (pyproject.toml's package-data).
So the same lookup through the package finds them in a checkout, an editable install and an
installed wheel, wherever the command runs from.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path


def _package_dir(name: str) -> Path:
    # The package is installed as files (no zip import), so the resource is a real directory,
    # which Hydra's config search path needs.
    return Path(str(importlib.resources.files("harness") / name))


def conf_dir() -> Path:
    """The Hydra config directory (the repository's ``conf/``)."""
    return _package_dir("_conf")


def scenarios_dir() -> Path:
    """The scenario files (the repository's ``scenarios/``), the ``scenario`` config group."""
    return _package_dir("_scenarios")


def source_checkout() -> Path | None:
    """The repository the package runs from (a checkout, editable or on PYTHONPATH); None for a wheel."""
    package = Path(str(importlib.resources.files("harness"))).resolve()
    root = package.parent
    return root if (root / "pyproject.toml").is_file() and (root / "conf").is_dir() else None
