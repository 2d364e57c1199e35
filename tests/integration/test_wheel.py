"""The wheel works anywhere: built from this checkout (no network), installed into a fresh venv
outside the repository, run from an empty directory with the configs it carries.

The venv sees this environment's dependencies through a .pth file (plain paths: this environment's
own .pth files, e.g. an editable install of the checkout, are not run there), and the test checks
that ``harness`` and its Hydra plugin are imported from the venv, not from the checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from harness.cli import COMMANDS
from harness.resources import source_checkout

pytestmark = pytest.mark.wheel

CHECKOUT = source_checkout()
# What a build of the checkout does not need (and what a working checkout may have grown).
NOT_BUILT = (".git", ".venv", "runs", "multirun", "outputs", "build", "dist", "submissions", "*.egg-info",
             "__pycache__", ".pytest_cache", ".ruff_cache", "mlruns")
ALIASES = ("harness-peak", "harness-audit", "harness-compare", "harness-submit", "harness-check", "harness-serve",
           "harness-providers")


def _site_dirs() -> list[str]:
    """This environment's package directories (what the venv borrows its dependencies from)."""
    dirs = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *site.getsitepackages()}
    dirs |= {p for p in sys.path if p.endswith(("site-packages", "dist-packages"))}
    return sorted(d for d in dirs if Path(d).is_dir())


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    if CHECKOUT is None:
        pytest.skip("harness is not running from a source checkout: nothing to build")
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    shutil.copytree(CHECKOUT, src, symlinks=True, ignore=shutil.ignore_patterns(*NOT_BUILT))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                            "-w", str(root / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = (root / "dist").glob("*.whl")
    env = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True, timeout=120)
    python = env / "bin" / "python"
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "borrowed_dependencies.pth").write_text("\n".join(_site_dirs()) + "\n")
    install = subprocess.run([python, "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed",
                              str(wheel)], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stdout + install.stderr
    return env


def _run(venv: Path, cwd: Path, *argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}  # nothing from the checkout
    return subprocess.run([str(venv / "bin" / argv[0]), *argv[1:]], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_the_package_and_its_plugin_come_from_the_venv(venv, tmp_path):
    proc = _run(venv, tmp_path, "python", "-c", "import harness, hydra_plugins.harness_rounds as p, "
                "harness.config as c; print(harness.__file__, p.__file__, c.CONF_DIR, c.SCENARIOS_DIR, sep='\\n')")
    assert proc.returncode == 0, proc.stderr
    paths = [Path(p) for p in proc.stdout.split()]
    assert all(p.is_relative_to(venv) for p in paths), paths
    assert (paths[2] / "config.yaml").is_file() and (paths[3] / "offline.yaml").is_file()


def test_the_default_run_from_an_empty_directory(venv, tmp_path):
    proc = _run(venv, tmp_path, "harness")
    assert proc.returncode == 0, proc.stderr
    assert "offline · submission" in proc.stdout and "VALID" in proc.stdout
    (results,) = tmp_path.glob("runs/*/*/results.json")
    data = json.loads(results.read_text())
    assert data["valid"] is True and data["errors"] == 0 and data["sut"] == "hf"
    env = json.loads((results.parent / "environment.json").read_text())
    assert env["harness"]["git_commit"] is None  # an installed wheel: no checkout to describe


def test_a_round_finds_the_round_sweeper(venv, tmp_path):
    proc = _run(venv, tmp_path, "harness", "-m", "sut=echo", "mode=performance", "scenario=offline,single_stream",
                "scenario.min_duration_s=0.2", "scenario.min_query_count=8", "run.progress=false")
    assert proc.returncode == 0, proc.stderr
    assert len(list(tmp_path.glob("runs/multirun/*/*/*/results.json"))) == 2
    assert "round" in proc.stdout


@pytest.mark.parametrize("argv", [("harness", "--help"), *[("harness", c, "--help") for c in COMMANDS],
                                  *[(a, "--help") for a in ALIASES]], ids=" ".join)
def test_every_command_has_help(venv, tmp_path, argv):
    proc = _run(venv, tmp_path, *argv, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() and not proc.stderr.strip(), proc.stderr
    assert not list(tmp_path.iterdir())  # help writes nothing
