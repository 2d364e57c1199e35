"""A SUT from another package, found through the ``harness.suts`` entry-point group, run by
``harness sut=<name>`` through the real LoadGen. The package is the README's own example ("Write
your own SUT"): its code and pyproject entry point are read from README.md, so the example stays true.

The package lives in a temporary directory with its own ``.dist-info`` (METADATA and
entry_points.txt, what ``pip install`` writes), put on PYTHONPATH: the harness process and the
LoadGen test processes it spawns see it the way they would see an installed package.
"""

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from harness.config import compose
from harness.datasets import load_dataset
from harness.datasets.prompts import build_samples

README = Path(__file__).resolve().parents[2] / "README.md"
PIECE = re.compile(r"\w+|\s+|[^\w\s]")  # the word tokenizer's pieces (harness/sut/tokenizer.py)


def readme_example() -> tuple[str, dict]:
    """The python and toml blocks of README's "Write your own SUT" section."""
    text = README.read_text(encoding="utf-8")
    section = re.split(r"\n##+ ", text.split("### Write your own SUT", 1)[1], maxsplit=1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    pyproject = tomllib.loads(re.search(r"```toml\n(.*?)```", section, re.S).group(1))
    return code, pyproject


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory) -> str:
    """A directory holding the README's package as pip would install it: the module and its dist-info."""
    code, pyproject = readme_example()
    site = tmp_path_factory.mktemp("site")
    project = pyproject["project"]
    ((module, _),) = [value.split(":") for value in project["entry-points"]["harness.suts"].values()]
    (site / f"{module}.py").write_text(code)
    dist = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    entries = "".join(f"{name} = {value}\n" for name, value in project["entry-points"]["harness.suts"].items())
    (dist / "entry_points.txt").write_text(f"[harness.suts]\n{entries}")
    return str(site)


def harness(plugin_path: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    path = os.pathsep.join(p for p in (plugin_path, os.environ.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": path})


def prompts() -> dict[int, str]:
    config = compose(["sut=echo"])  # the default benchmark and dataset, as the plugin's runs use
    return {s.index: s.prompt for s in build_samples(config.benchmark, load_dataset(config.dataset))}


def test_readme_example_declares_a_harness_suts_entry_point():
    code, pyproject = readme_example()
    assert "class ReverseSUT(SUT)" in code
    assert pyproject["project"]["entry-points"]["harness.suts"] == {"reverse": "my_sut:ReverseSUT"}


def test_a_plugin_sut_runs_offline_through_loadgen_with_its_default_config(plugin_path, tmp_path):
    run = tmp_path / "run"
    proc = harness(plugin_path, "sut=reverse", "sut.max_tokens=16", "run.progress=false", f"hydra.run.dir={run}",
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    results = json.loads((run / "results.json").read_text())
    assert results["sut"] == "reverse" and results["errors"] == 0 and results["verdict"] == "VALID"
    # No conf/sut/reverse.yaml: the settings are the adapter's Params defaults, with the override.
    assert json.loads((run / "config.json").read_text())["sut"] == {"name": "reverse", "max_tokens": 16,
                                                                     "max_batch_size": 8}
    # The adapter's describe() reached results.json: its own counter, once per sample of each test.
    extra = results["extra"]
    assert extra["sut_stats"] == {test: {"answered": n} for test, n in extra["samples_issued"].items()}
    assert set(extra["samples_issued"]) == {"performance", "accuracy"}
    assert "fake SUT" in results["roofline"]["reason"]  # runs_model=False: no roofline is guessed
    # Its outputs: each prompt's pieces in reverse order, the first 16, decoded from LoadGen's accuracy log.
    predictions = json.loads((run / "accuracy" / "predictions.json").read_text())
    expected = {str(i): "".join(list(reversed(PIECE.findall(p)))[:16]) for i, p in prompts().items()}
    assert predictions == expected


def test_a_plugin_sut_streams_single_stream_queries(plugin_path, tmp_path):
    run = tmp_path / "run"
    proc = harness(plugin_path, "sut=reverse", "scenario=single_stream", "mode=performance",
                   "scenario.min_duration_s=0.3", "scenario.min_query_count=20", "run.progress=false",
                   f"hydra.run.dir={run}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    results = json.loads((run / "results.json").read_text())
    assert results["sut"] == "reverse" and results["errors"] == 0
    issued = results["extra"]["samples_issued"]["performance"]
    assert issued >= 20 and results["extra"]["sut_stats"] == {"performance": {"answered": issued}}
    assert results["ttft_ms"] is not None  # submit() streamed: LoadGen saw a first token


def test_help_and_unknown_names_list_the_plugin_sut(plugin_path, tmp_path):
    listed = harness(plugin_path, "--help", cwd=tmp_path)
    assert listed.returncode == 0 and re.search(r"sut: .*\breverse\b", listed.stdout), listed.stdout
    unknown = harness(plugin_path, "sut=nope", cwd=tmp_path)
    assert unknown.returncode == 2
    assert "sut/nope" in unknown.stderr and "reverse" in unknown.stderr
