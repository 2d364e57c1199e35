"""A run never reaches beyond the machine: the default `harness` run (sut=hf with the embedded model,
performance and accuracy with ROUGE through `evaluate`) under a guard that refuses and records every
connection and name lookup that is not loopback, in the command's process and its children."""

import json
import os
import subprocess
import sys
import textwrap

from harness import offline

GUARD = textwrap.dedent('''
    import atexit, json, os, socket, sys

    LOG = os.environ["NETWORK_GUARD_LOG"]
    LOCAL = {None, "", "localhost", "127.0.0.1", "::1", "0.0.0.0", "::"}

    def record(what):
        with open(LOG, "a") as f:
            f.write(json.dumps({"pid": os.getpid(), "attempt": repr(what)}) + "\\n")

    def local(address):
        return isinstance(address, (str, bytes)) or address[0] in LOCAL or str(address[0]).startswith("127.")

    def guarded(name):
        real = getattr(socket.socket, name)
        def call(self, address, *a):
            if self.family != socket.AF_UNIX and not local(address):
                record(address)
                raise OSError(f"network guard: {address}")
            return real(self, address, *a)
        setattr(socket.socket, name, call)

    for name in ("connect", "connect_ex", "sendto"):
        guarded(name)
    real_getaddrinfo = socket.getaddrinfo
    def getaddrinfo(host, *a, **k):
        if (host.decode() if isinstance(host, bytes) else host) not in LOCAL:
            record(host)
            raise socket.gaierror(f"network guard: {host}")
        return real_getaddrinfo(host, *a, **k)
    socket.getaddrinfo = getaddrinfo

    @atexit.register
    def offline_flags():  # what the Hugging Face libraries read, if this process loaded them
        hub = sys.modules.get("huggingface_hub.constants")
        if hub is not None:
            with open(LOG + ".hub", "a") as f:
                f.write(json.dumps({"pid": os.getpid(), "HF_HUB_OFFLINE": hub.HF_HUB_OFFLINE}) + "\\n")
''')


def test_the_default_run_never_touches_the_network(tmp_path):
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(GUARD)
    log = tmp_path / "network.log"
    env = {k: v for k, v in os.environ.items() if k not in offline.OFFLINE_ENV}  # the command sets them
    env["PYTHONPATH"] = os.pathsep.join([str(guard), *filter(None, [env.get("PYTHONPATH")])])
    env["NETWORK_GUARD_LOG"] = str(log)
    proc = subprocess.run([sys.executable, "-m", "harness", f"hydra.run.dir={tmp_path}/run"], cwd=tmp_path,
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "run/results.json").read_text())["accuracy"]["verdict"] is not None
    assert not log.exists(), log.read_text()
    hub = [json.loads(line) for line in (tmp_path / "network.log.hub").read_text().splitlines()]
    assert hub and all(h["HF_HUB_OFFLINE"] for h in hub)  # transformers was loaded, offline
