"""A real `mlflow server` for the tests that track over HTTP (test_tracking, test_rounds)."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

SERVER_START_S = 90  # `mlflow server` takes ~15 s on an idle 2-core machine


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def mlflow_server_process(tmp_path_factory):
    """Starts `mlflow server` on 127.0.0.1 (SQLite backend store, artifacts served by the server) once
    per session. Modules that use it request it for all their tests, so it starts while their first
    tests run (about 15 s) and only the tests that talk to it wait (:func:`mlflow_server`)."""
    port = closed_port()
    root = tmp_path_factory.mktemp("mlflow-server")
    log = (root / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{root}/mlflow.db",
         "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
    try:
        yield proc, f"http://127.0.0.1:{port}", root
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # its own session: the server and its workers only
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        log.close()


@pytest.fixture
def mlflow_server(mlflow_server_process):
    """The server's URL and root once /health answers; skipped (with the reason) if it cannot start."""
    proc, url, root = mlflow_server_process
    deadline = time.monotonic() + SERVER_START_S
    while True:
        if proc.poll() is not None:
            pytest.skip(f"mlflow server exited with {proc.returncode}: {(root / 'server.log').read_text()[-500:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                if answer.status == 200:
                    return url, root
        except OSError:
            pass
        if time.monotonic() > deadline:
            pytest.skip(f"mlflow server did not answer within {SERVER_START_S}s")
        time.sleep(0.5)
