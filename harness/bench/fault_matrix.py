"""The fault matrix: every fault the harness must survive, run end to end, one line per cell.

Each cell runs the real ``harness`` (or ``harness-audit``) command in a fresh directory, with
tracking to its own SQLite MLflow store, against loopback servers that misbehave on purpose
(:mod:`harness.bench.stub_server`: HTTP 500, a 401 that echoes the API key, streams cut
half-way, a server that hangs or dies), fake SUTs that fail, bad config values, signals, a full
disk (a small tmpfs; needs root), concurrent runs and dead stores. Secrets are planted in every
cell (``HF_TOKEN``, an API key the server echoes, a password in ``sut.base_url``), and afterwards
every file the cell left (run directories, MLflow's database and artifacts), its stdout and its
stderr are searched for them. Hydra's own records of the command line (``.hydra/``,
``multirun.yaml``) are local copies of what the user typed and are not searched; their MLflow
copies (in the artifacts) are.

A line says: the fault, the exit code, the wall time, what the user saw (the ``error:`` line or
the verdict), what was kept, the MLflow status of the cell's runs, and how many places a secret
was found in (0 is the only good answer). It is a script, not a test: cells depend on timing and
on the machine (the tmpfs cell is skipped where mounting is not allowed)::

    python -m harness.bench.fault_matrix                 # every cell (several minutes)
    python -m harness.bench.fault_matrix --only sigterm,disk --markdown
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from harness import offline

SECRET_TOKEN = "hf_faultmatrixTOKEN0123456789abcdefXYZ"  # HF_TOKEN in every cell's environment
SECRET_KEY = "sk-faultmatrix-KEY-0123456789abcdef"  # the API key (sut.api_key_env), echoed by a 401
SECRET_PASSWORD = "PASSWORDfm4711"  # in sut.base_url of the HTTP cells
SECRETS = (SECRET_TOKEN, SECRET_KEY, SECRET_PASSWORD)
HYDRAS_OWN = (".hydra", "multirun.yaml")
CELL_TIMEOUT_S = 300
FAST_ECHO = ("sut=echo", "sut.ttft_ms=2", "sut.tpot_ms=0.2", "sut.output_tokens=8")
QUICK_SERVER = ("scenario=server", "scenario.target_qps=50", "scenario.min_duration_s=1",
                "scenario.min_query_count=100")


@dataclass
class Outcome:
    """What one command (or several, for the concurrency cells) did."""

    exit: str
    wall_s: float
    stdout: str = ""
    stderr: str = ""
    note: str = ""  # replaces "what the user saw" when the cell judges something else


@dataclass(frozen=True)
class Row:
    fault: str
    exit: str
    wall_s: float
    saw: str
    kept: str
    mlflow: str
    secrets: int


@dataclass(frozen=True)
class Cell:
    key: str  # for --only
    fault: str
    run: Callable[[Path], Outcome]
    issue: str = ""  # the issue item a cell depends on, when another change fixes it


# -- running commands ------------------------------------------------------------------------

def _env() -> dict[str, str]:
    return {**os.environ, "HF_TOKEN": SECRET_TOKEN, "FM_KEY": SECRET_KEY, "PYTHONUNBUFFERED": "1"}


def _store(cell_dir: Path) -> str:
    return f"sqlite:///{cell_dir}/mlflow.db"


def _command(program: str, *args: str) -> list[str]:
    module = {"harness": "harness", "harness-audit": "harness.audit", "harness-peak": "harness.peak"}[program]
    return [sys.executable, "-m", module, *args]


def harness(cell_dir: Path, *args: str, program: str = "harness", tracked: bool = True,
            stop: tuple[int, bool] | None = None, timeout_s: float = CELL_TIMEOUT_S) -> Outcome:
    """Run one command in ``cell_dir``; ``stop`` = (signal, to the whole process group) is sent
    once LoadGen's first detail log exists under ``cell_dir``."""
    tracking = ("tracking=mlflow", f"tracking.uri={_store(cell_dir)}") if tracked and program != "harness-audit" else ()
    started = time.monotonic()
    proc = subprocess.Popen(_command(program, *args, *tracking), cwd=cell_dir, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    if stop is not None:
        deadline = started + timeout_s
        while not list(cell_dir.rglob("performance/mlperf_log_detail.txt")) and proc.poll() is None:
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        time.sleep(1)  # LoadGen is issuing
        signum, group = stop
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signum) if group else proc.send_signal(signum)
    try:
        out, err = proc.communicate(timeout=max(1.0, timeout_s - (time.monotonic() - started)))
        code = str(proc.returncode)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        code = f"timeout {timeout_s:g}s"
    return Outcome(code, time.monotonic() - started, out, err)


@contextlib.contextmanager
def stub(*args: str) -> Iterator[str]:
    """The scripted stub server on a free port; yields ``host:port``."""
    proc = subprocess.Popen([sys.executable, "-m", "harness.bench.stub_server", "--port", "0", "--tokens", "8", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        first = proc.stdout.readline() if proc.stdout else ""
        url = next(w for w in first.split() if w.startswith("http://"))
        yield url.removeprefix("http://").removesuffix("/v1")
    finally:
        proc.kill()
        proc.wait(timeout=10)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def openai(host: str) -> tuple[str, ...]:
    return ("sut=openai", f"sut.base_url=http://fm:{SECRET_PASSWORD}@{host}/v1", "sut.api_key_env=FM_KEY",
            "sut.read_timeout_s=5", "sut.connect_timeout_s=2")


# -- the cells ---------------------------------------------------------------------------------

def http_cell(stub_args: tuple[str, ...], *args: str) -> Callable[[Path], Outcome]:
    def run(cell_dir: Path) -> Outcome:
        with stub(*stub_args) as host:
            return harness(cell_dir, *openai(host), *args, f"hydra.run.dir={cell_dir}/run")
    return run


def plain_cell(*args: str, program: str = "harness", stop: tuple[int, bool] | None = None,
               run_dir: bool = True) -> Callable[[Path], Outcome]:
    def run(cell_dir: Path) -> Outcome:
        where = (f"hydra.run.dir={cell_dir}/run",) if run_dir else ()
        return harness(cell_dir, *args, *where, program=program, stop=stop)
    return run


def never_up(cell_dir: Path) -> Outcome:
    return harness(cell_dir, *openai(f"127.0.0.1:{closed_port()}"), "mode=performance", f"hydra.run.dir={cell_dir}/run")


def secrets_round(cell_dir: Path) -> Outcome:
    with stub("--fault", "401", "--fault-every", "3") as host:
        return harness(cell_dir, "-m", *openai(host), "mode=performance", "scenario=offline,single_stream",
                       "scenario.expected_latency_ms=5", "scenario.min_duration_s=0.2", "scenario.min_query_count=10",
                       f"hydra.sweep.dir={cell_dir}/round")


def full_disk(cell_dir: Path) -> Outcome:
    point = cell_dir / "disk"
    point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1400k", "tmpfs", str(point)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        return Outcome("skipped", 0.0, note=f"cannot mount a tmpfs: {mounted.stderr.strip()[:60]}")
    try:
        # 4,000-token answers: the accuracy test's LoadGen log (about 1 MB) does not fit.
        return harness(cell_dir, *FAST_ECHO[:1], "sut.ttft_ms=0", "sut.tpot_ms=0", "sut.output_tokens=4000",
                       "benchmark.max_new_tokens=4000", f"hydra.run.dir={point}/run", tracked=False)
    finally:
        _copy_out(point, cell_dir / "disk-copy")
        subprocess.run(["umount", str(point)], check=False)


def _copy_out(source: Path, target: Path) -> None:
    with contextlib.suppress(OSError):
        shutil.copytree(source, target)


def together(n: int, *args: str) -> Callable[[Path], Outcome]:
    """``n`` commands started at once (new store, default run directories)."""
    def run(cell_dir: Path) -> Outcome:
        started = time.monotonic()
        while time.time() % 1 > 0.5:  # early in a second: all start within it
            time.sleep(0.05)
        procs = [subprocess.Popen(_command("harness", *args, "tracking=mlflow", f"tracking.uri={_store(cell_dir)}"),
                                  cwd=cell_dir, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(n)]
        outs = [p.communicate(timeout=CELL_TIMEOUT_S) for p in procs]
        codes = ",".join(str(p.returncode) for p in procs)
        dirs = {p.parent for p in cell_dir.rglob("results.json") if "mlartifacts" not in p.parts}
        note = f"{len(dirs)} run directories for {n} runs; {len(_runs(cell_dir))} of {n} runs in MLflow"
        return Outcome(codes, time.monotonic() - started, "".join(o for o, _ in outs), "".join(e for _, e in outs),
                       note=note)
    return run


def reused_dir(cell_dir: Path) -> Outcome:
    first = harness(cell_dir, *FAST_ECHO, f"hydra.run.dir={cell_dir}/run", tracked=False)
    if first.exit != "0":
        first.note = f"the first run failed: {_saw(first)}"
        return first
    return harness(cell_dir, *FAST_ECHO, "mode=performance", f"hydra.run.dir={cell_dir}/run")


def dead_store(cell_dir: Path) -> Outcome:
    outcome = harness(cell_dir, *FAST_ECHO, "mode=performance", "tracking=mlflow",
                      f"tracking.uri=http://127.0.0.1:{closed_port()}", "tracking.timeout_s=2", "tracking.retries=0",
                      f"hydra.run.dir={cell_dir}/run", tracked=False)
    warning = next((ln.split("] ", 1)[-1] for ln in (outcome.stdout + outcome.stderr).splitlines()
                    if "WARNING" in ln and "tracking:" in ln), "no warning")
    outcome.note = f"{_saw(outcome)}; {warning}"
    return outcome


def audit_dead_store(cell_dir: Path) -> Outcome:
    temp = cell_dir / "tmp"
    temp.mkdir()
    started = time.monotonic()
    proc = subprocess.run(_command("harness-audit", "0123456789abcdef0123456789abcdef", "--tracking-uri",
                                   f"http://127.0.0.1:{closed_port()}"), cwd=cell_dir, capture_output=True, text=True,
                          env={**_env(), "TMPDIR": str(temp)}, timeout=CELL_TIMEOUT_S)
    left = [p.name for p in temp.iterdir()]
    return Outcome(str(proc.returncode), time.monotonic() - started, proc.stdout, proc.stderr,
                   note=f"{len(left)} temporary directories left; {_first_error(proc.stderr)}")


CELLS = (
    Cell("500", "HTTP 500 on every 4th request (Offline)",
         http_cell(("--fault", "500", "--fault-every", "4"), "mode=performance")),
    Cell("cut", "streams cut half-way, every 5th (Server)",
         http_cell(("--fault", "cut", "--fault-every", "5"), "mode=performance", *QUICK_SERVER)),
    Cell("killed", "server killed after 30 requests (Server)",
         http_cell(("--exit-after", "30"), "mode=performance", *QUICK_SERVER)),
    Cell("never-up", "server never up (connection refused)", never_up),
    Cell("hang", "server hangs after the role chunk (SingleStream)",
         http_cell(("--fault", "hang", "--fault-every", "1"), "mode=performance", "scenario=single_stream"),
         issue="17.8"),
    Cell("accuracy-500", "one HTTP 500 in an accuracy run (Server)",
         http_cell(("--fault", "500", "--fault-every", "10"), "mode=accuracy", *QUICK_SERVER), issue="17.2"),
    Cell("all-failed", "every sample fails (Offline, sut=failing)",
         plain_cell("sut=failing", "sut.fail_every=1", "mode=performance"), issue="17.3"),
    Cell("ss-all-failed", "every sample fails (SingleStream, sut=failing)",
         plain_cell("sut=failing", "sut.fail_every=1", "mode=performance", "scenario=single_stream"), issue="17.2"),
    Cell("secrets", "-m round: URL password, server echoes the key in 401s", secrets_round),
    Cell("qps0", "scenario.target_qps=0 (Server)", plain_cell(*FAST_ECHO, "scenario=server", "scenario.target_qps=0")),
    Cell("qps1e9", "scenario.target_qps=1e9 (Server)",
         plain_cell(*FAST_ECHO, "scenario=server", "scenario.target_qps=1e9")),
    Cell("qps-5", "scenario.target_qps=-5 (Server)",
         plain_cell(*FAST_ECHO, "scenario=server", "scenario.target_qps=-5")),
    Cell("max-errors", "run.max_errors=-1", plain_cell(*FAST_ECHO, "run.max_errors=-1")),
    Cell("max-new-tokens", "benchmark.max_new_tokens=0", plain_cell(*FAST_ECHO, "benchmark.max_new_tokens=0")),
    Cell("sigterm", "SIGTERM mid-run (Server, 120 s)",
         plain_cell(*FAST_ECHO, "scenario=server", "scenario.target_qps=20", "scenario.min_duration_s=120",
                    "mode=performance", stop=(signal.SIGTERM, False))),
    Cell("ctrl-c", "Ctrl-C in a -m round (process group)",
         lambda d: harness(d, "-m", *FAST_ECHO, "scenario=server", "scenario.target_qps=20", "mode=performance",
                           "scenario.min_duration_s=120,121", f"hydra.sweep.dir={d}/round",
                           stop=(signal.SIGINT, True))),
    Cell("disk", "disk fills during the run (1.4 MB tmpfs)", full_disk),
    Cell("store-race", "3 first runs create one SQLite store at once", together(3, *FAST_ECHO, "mode=performance")),
    Cell("same-second", "2 runs started in the same second", together(2, *FAST_ECHO, "mode=performance")),
    Cell("reused-dir", "a run into a directory an earlier run used", reused_dir),
    Cell("store-down", "MLflow server down (tracking.uri to a closed port)", dead_store),
    Cell("audit-dead-store", "harness-audit <run id> against a dead store", audit_dead_store),
)


# -- judging what a cell left -----------------------------------------------------------------

def _first_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith("[")]
    return lines[0] if lines else ""


def _saw(outcome: Outcome) -> str:
    if outcome.note:
        return outcome.note
    if "Traceback" in outcome.stderr:
        return "TRACEBACK: " + (outcome.stderr.strip().splitlines() or [""])[-1]
    verdicts = [line.split()[1].rstrip(":") for line in outcome.stdout.splitlines()
                if line.strip().startswith("result ")]  # VALID or INVALID, the reasons are in results.json
    verdicts = [f"result {v}" for v in verdicts]
    return "; ".join([*dict.fromkeys(verdicts), *filter(None, [_first_error(outcome.stderr)])]) or "(nothing)"


def _kept(cell_dir: Path) -> str:
    runs = sorted({p.parent for p in cell_dir.rglob("environment.json") if "mlartifacts" not in p.parts})
    if not runs:
        return "no run directory"
    kinds = []
    for run in runs:
        have = [name for name, pattern in (("results.json", "results.json"),
                                           ("LoadGen logs", "*/mlperf_log_detail.txt"),
                                           ("test logs", "*/harness_test.log")) if list(run.glob(pattern))]
        kinds.append(", ".join(have) or "environment.json only")
    counted = {k: kinds.count(k) for k in kinds}
    return "; ".join(f"{n}x {k}" if n > 1 else k for k, n in counted.items())


def _runs(cell_dir: Path) -> list[tuple[str, str]]:
    db = cell_dir / "mlflow.db"
    if not db.is_file():
        return []
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=_store(cell_dir))
    experiments = [e.experiment_id for e in client.search_experiments()]
    if not experiments:
        return []
    return [(r.data.tags.get("role", "?"), r.info.status) for r in client.search_runs(experiments)]


def _mlflow(cell_dir: Path) -> str:
    runs = _runs(cell_dir)
    if not runs:
        return "-"
    counted: dict[str, int] = {}
    for role, status in sorted(runs):
        counted[f"{role} {status}"] = counted.get(f"{role} {status}", 0) + 1
    return ", ".join(f"{n}x {k}" if n > 1 else k for k, n in counted.items())


def _secrets(cell_dir: Path, outcome: Outcome) -> int:
    found = sum(s in outcome.stdout or s in outcome.stderr for s in SECRETS)
    for path in cell_dir.rglob("*"):
        rel = path.relative_to(cell_dir).parts
        if path.is_file() and not path.is_symlink() and not any(part in HYDRAS_OWN for part in rel):
            data = path.read_bytes()
            found += sum(s.encode() in data for s in SECRETS)
    return found


def run_cell(cell: Cell, workdir: Path) -> Row:
    cell_dir = workdir / cell.key
    cell_dir.mkdir(parents=True)
    outcome = cell.run(cell_dir)
    fault = cell.fault + (f" [{cell.issue}]" if cell.issue else "")
    saw = re.sub(r"\b[0-9a-f]{32}\b", "<id>", _saw(outcome).replace(str(workdir), "<dir>"))
    return Row(fault, outcome.exit, outcome.wall_s, saw, _kept(cell_dir), _mlflow(cell_dir),
               _secrets(cell_dir, outcome))


def _short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 3] + "..."


def line(row: Row) -> str:
    return (f"{_short(row.fault, 58):<58} {row.exit:>8} {row.wall_s:>6.1f}s  {_short(row.saw, 110):<110}  "
            f"kept: {_short(row.kept, 46):<46}  mlflow: {_short(row.mlflow, 26):<26}  secrets: {row.secrets}")


def markdown(rows: list[Row]) -> str:
    out = ["| fault | exit | wall | what the user saw | kept | MLflow | secrets found |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        saw = _short(r.saw, 110).replace("|", "\\|")
        out.append(f"| {r.fault} | {r.exit} | {r.wall_s:.0f} s | {saw} | {r.kept} | {r.mlflow} | {r.secrets} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    offline.enforce()  # before anything imports a Hugging Face library
    p = argparse.ArgumentParser(prog="python -m harness.bench.fault_matrix", description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default="", help="comma-separated cell keys or parts of them: " +
                   ", ".join(c.key for c in CELLS))
    p.add_argument("--workdir", type=Path, help="keep every cell's files here (default: a temporary directory)")
    p.add_argument("--markdown", action="store_true", help="also print the table as Markdown (README)")
    a = p.parse_args(argv)
    wanted = [w for w in a.only.split(",") if w]
    cells = [c for c in CELLS if not wanted or any(w in c.key for w in wanted)]
    workdir = a.workdir or Path(tempfile.mkdtemp(prefix="harness-faults-"))
    workdir.mkdir(parents=True, exist_ok=True)
    sys.stdout.write(f"fault matrix: {len(cells)} cells in {workdir}\n")
    rows = []
    for cell in cells:
        row = run_cell(cell, workdir)
        rows.append(row)
        sys.stdout.write(line(row) + "\n")
        sys.stdout.flush()
    if a.markdown:
        sys.stdout.write("\n" + markdown(rows) + "\n")
    if a.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
