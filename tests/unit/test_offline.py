"""Importing the package changes nothing; the commands put the Hugging Face libraries offline."""

import json
import os
import subprocess
import sys

from harness import offline


def test_import_harness_leaves_the_environment_unchanged():
    # A fresh interpreter: this test process has imported (and run) the harness already.
    code = ("import json, os, sys; before = dict(os.environ); import harness, harness.cli, harness.run; "
            "json.dump({k: v for k, v in os.environ.items() if before.get(k) != v}, sys.stdout)")
    env = {k: v for k, v in os.environ.items() if k not in offline.OFFLINE_ENV}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {}


def test_enforce_sets_what_the_user_did_not(monkeypatch):
    for name in offline.OFFLINE_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # the user's choice stands
    offline.enforce()
    assert os.environ["HF_HUB_OFFLINE"] == "0"
    assert all(os.environ[k] == v for k, v in offline.OFFLINE_ENV.items() if k != "HF_HUB_OFFLINE")
