"""Fidelity and overhead of the HTTP client (``sut=openai``), beside AIPerf and GuideLLM, in one run.

    python -m harness.bench.http_client [--quick] [--aiperf PATH] [--guidellm PATH]

Every client runs as its own process against a fresh stub server (``harness.bench.stub_server``),
which streams with known delays and records, per request, its arrival and first/last chunk
times. The harness's client is ``drive`` below: ``OpenAISUT.submit`` -> TokenStream, timed the
way the bridge sees it (TTFT = first ``emit`` - submit, TPOT = (finish - first emit) / (n - 1)).
AIPerf and GuideLLM, each installed in its own virtual environment, are optional reference
points (see ``harness.bench.reference_clients``).

1. Fidelity: server TTFT 20 ms, 5 ms per token, 32 tokens, with 1 and 32 concurrent streams.
   Per request: what the client reported minus the server's truth; p50 and p99 over requests,
   leaving out each run's first wave (as many requests as streams, all started at once: warm-up).
2. Capacity: a zero-delay server, 64 concurrent streams of 64 tokens. Requests/s and streamed
   tokens/s from the server's own timestamps (first arrival to last chunk), and the client's CPU
   time per streamed token: the difference between a long and a short run (CPU of the process
   and its children, from wait4), so start-up costs (imports, tokenizers, datasets) cancel out.

``--https`` measures both again over TLS (a certificate made for the run, ``harness.bench.tls``;
each client trusts its CA through ``SSL_CERT_FILE``): real endpoints are https, and TLS costs the
client a record's decryption per read and its encryption per request.

Placement: client and server run on the same machine, either on separate cores (``split``: the
server on the last core, the client on the others, as if on two machines) or wherever the OS puts
them (``shared``); by default every figure is measured both ways. Sharing two cores, a burst of
32 chunks on one side delays the other side's reads; split, a core that sat idle takes longer to
wake (a few hundred µs on this VM), which matters most at 1 stream. Capacity figures are a floor.

Repeats (``--repeat N``): each fidelity measurement is made N times, and the median p50 and p99
over the runs are reported with the range of the p99s. A p99 over a few hundred requests is set
by a handful of them, and on a virtual machine a few are hit by the host taking the CPU away for
milliseconds. How often that happened is measured first (``stalls``): one busy process per core,
all at once, noting every gap of 1 ms or more in its own progress. And for each placement, the
floor any client pays (``wakeup``): how long one process, blocked in a read, takes to see 8 bytes
another process wrote after 5 ms of quiet (a streamed token's trip, with no HTTP and no parsing).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness import offline
from harness.bench.reference_clients import CLIENTS, ClientRun, match, pin, run
from harness.bench.tls import LoopbackCertificates, make_certificates
from harness.results import RunResult
from harness.sut import SUTContext
from harness.sut.base import Sample
from harness.sut.openai.adapter import OpenAIParams, OpenAISUT


class Timed:
    """A TokenStream recording when the bridge would see the first token and the end."""

    __slots__ = ("start", "first", "end", "n", "emitted", "error", "done")

    def __init__(self, done: threading.Semaphore) -> None:
        self.start = time.perf_counter()
        self.first = 0.0
        self.end = 0.0
        self.n = 0
        self.emitted = 0  # ids the client emitted (the server's, or its own tokenizer's)
        self.error: BaseException | None = None
        self.done = done

    def emit(self, ids) -> None:
        if ids and not self.first:
            self.first = time.perf_counter()
        self.n += len(ids)
        self.emitted += len(ids)

    def finish(self, n_tokens: int | None = None) -> None:
        self.end = time.perf_counter()
        if n_tokens is not None:  # the server's count, as LoadGen would get it
            self.n = n_tokens
        self.done.release()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.end = time.perf_counter()
        self.done.release()


def drive(url: str, streams: int, requests: int, tokenizer: Path | None = None) -> list[dict]:
    """The harness's client, closed loop: ``streams`` requests in flight until ``requests`` are sent.

    Output ids are the server's, or with ``tokenizer`` (a local HF tokenizer directory) the text
    re-tokenized by the client, as AIPerf and GuideLLM do (the same CPU work); the count LoadGen
    would get is still the server's usage where it reports one (``sut=openai``'s truth order)."""
    # The stub's ids are only counted, never decoded; a tokenizer is required with them all the same.
    params = OpenAIParams(base_url=url, model="stub", max_concurrency=streams, return_token_ids=tokenizer is None,
                          tokenizer_path="embedded" if tokenizer is None else str(tokenizer))
    sut = OpenAISUT.create(params, SUTContext(corpus=[], max_new_tokens=10_000))
    timed: list[tuple[str, Timed]] = []
    try:
        in_flight = threading.Semaphore(streams)  # a finished stream frees its slot
        for i in range(requests):
            in_flight.acquire()
            prompt = f"request {i}"
            t = Timed(in_flight)
            timed.append((prompt, t))
            sut.submit(Sample(i, prompt, prompt), t)
        deadline = time.perf_counter() + 120
        while any(not t.end for _, t in timed) and time.perf_counter() < deadline:
            time.sleep(0.01)
    finally:
        sut.close()
    return [{"prompt": p, "ttft_s": t.first - t.start, "tokens": t.n, "emitted": t.emitted,
             "tpot_s": (t.end - t.first) / (t.n - 1) if t.n > 1 else None}
            for p, t in timed if t.end and t.error is None and t.first]


@dataclass(frozen=True)
class Placement:
    """Which cores the stub server and the client under test run on (None: wherever the OS likes)."""

    server: frozenset[int] | None = None
    client: frozenset[int] | None = None

    @classmethod
    def split(cls) -> Placement:
        """The server on the last core, the client on the others, as if on two machines; shared
        when there is only one core or no way to pin (not Linux)."""
        cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        return cls(frozenset(cores[-1:]), frozenset(cores[:-1])) if len(cores) >= 2 else cls()

    @property
    def name(self) -> str:
        return "shared" if self.server is None else "split"

    def __str__(self) -> str:
        if self.server is None:
            return "client and server share all cores"
        return f"server on core {_cores(self.server)}, client on core(s) {_cores(self.client)}"


def _cores(cores: frozenset[int] | None) -> str:
    return ",".join(map(str, sorted(cores or ())))


def start_stub(*args: str, cores: frozenset[int] | None = None,
               tls: LoopbackCertificates | None = None) -> tuple[subprocess.Popen, str]:
    tls_args = ["--tls", str(tls.cert.parent)] if tls else []
    proc = subprocess.Popen([sys.executable, "-m", "harness.bench.stub_server", "--port", "0", *tls_args, *args],
                            stdout=subprocess.PIPE, text=True)
    pin(proc.pid, cores)
    url = proc.stdout.readline().split()[-1]
    return proc, url


def server_records(url: str, tls: LoopbackCertificates | None = None) -> list[dict]:
    context = ssl.create_default_context(cafile=str(tls.ca)) if tls else None
    with urllib.request.urlopen(url.removesuffix("/v1") + "/stats", timeout=30, context=context) as resp:
        return json.load(resp)


def against_stub(client: str, exe: str, stub_args: list[str], *, streams: int, requests: int, tokens: int,
                 tokenizer: Path, out: Path, placement: Placement,
                 tls: LoopbackCertificates | None = None) -> tuple[ClientRun, list[dict]]:
    """One client run against a fresh stub (https with ``tls``); the run and the stub's records."""
    proc, url = start_stub(*stub_args, "--tokens", str(tokens), cores=placement.server, tls=tls)
    try:
        result = run(client, exe, url=url, streams=streams, requests=requests, tokens=tokens, tokenizer=tokenizer,
                     out=out, cores=placement.client, ca=tls.ca if tls else None)
        return result, server_records(url, tls)
    finally:
        proc.kill()
        proc.wait()


def fidelity(client: str, exe: str, *, streams: int, requests: int, tokenizer: Path, out: Path,
             placement: Placement, tls: LoopbackCertificates | None = None) -> dict:
    result, server = against_stub(client, exe, ["--ttft-ms", "20", "--tpot-ms", "5"], streams=streams,
                                  requests=requests, tokens=32, tokenizer=tokenizer, out=out, placement=placement,
                                  tls=tls)
    # The first wave (``streams`` requests, in order of arrival) is warm-up, left out for every
    # client: it starts together, so its first chunks all come due at once.
    pairs = sorted(match(result, server), key=lambda pair: pair[1]["arrival"])[streams:]
    d_ttft = [m.ttft_s - (s["first"] - s["arrival"]) for m, s in pairs]
    # The server's time per token over as many tokens as the client counted (a tokenizer's count
    # of the streamed text may differ from the server's), so a TPOT error is the client's timing alone.
    d_tpot = [m.tpot_s - (s["last"] - s["first"]) / ((m.tokens or s["tokens"]) - 1) for m, s in pairs
              if m.tpot_s is not None and (m.tokens or s["tokens"]) > 1]
    ms = lambda xs, q: float(np.percentile(xs, q) * 1000) if xs else float("nan")  # noqa: E731
    return {"client": client, "streams": streams, "placement": str(placement), "sent": requests,
            "scheme": "https" if tls else "http", "measured": len(pairs), "rc": result.returncode,
            "ttft_err_ms": {"p50": ms(d_ttft, 50), "p99": ms(d_ttft, 99)},
            "tpot_err_ms": {"p50": ms(d_tpot, 50), "p99": ms(d_tpot, 99)}, "log": str(result.log)}


def capacity(client: str, exe: str, *, streams: int, short: int, long: int, tokenizer: Path, out: Path,
             placement: Placement, tls: LoopbackCertificates | None = None) -> dict:
    runs = []
    for n in (short, long):
        result, server = against_stub(client, exe, [], streams=streams, requests=n, tokens=64, tokenizer=tokenizer,
                                      out=out / f"n{n}", placement=placement, tls=tls)
        done = [s for _, s in match(result, server)]
        runs.append((result, done))
    (r_short, d_short), (r_long, d_long) = runs
    if not d_long:
        raise SystemExit(f"capacity: {client} completed no request (exit {r_long.returncode}); see {r_long.log}")
    tokens_short, tokens_long = sum(s["tokens"] for s in d_short), sum(s["tokens"] for s in d_long)
    span = max(s["last"] for s in d_long) - min(s["arrival"] for s in d_long)  # server clock, seconds
    extra_tokens = tokens_long - tokens_short
    return {"client": client, "streams": streams, "placement": str(placement), "requests": len(d_long),
            "scheme": "https" if tls else "http", "rc": r_long.returncode,
            "requests_per_s": len(d_long) / span, "tokens_per_s": tokens_long / span,
            "cpu_us_per_token": (r_long.cpu_s - r_short.cpu_s) / extra_tokens * 1e6 if extra_tokens > 0 else None}


def loadgen_fidelity(qps: float, *, placement: Placement, out: Path, duration_s: float,
                     timeout_s: float = 600) -> dict:
    """The harness as a run uses it: ``harness sut=openai`` (LoadGen's Server scenario at ``qps``,
    performance mode) against a fresh stub (TTFT 20 ms, 5 ms per token, 32 tokens); LoadGen's own
    TTFT and TPOT percentiles minus the same percentiles of the stub's records of those requests.

    LoadGen does not log per-query times in performance mode, so percentiles are compared, not
    requests. Its TTFT starts at the query's scheduled time, so the error includes LoadGen's own
    lateness in issuing and the bridge, as every run's does.
    """
    proc, url = start_stub("--ttft-ms", "20", "--tpot-ms", "5", "--tokens", "32", cores=placement.server)
    out.mkdir(parents=True, exist_ok=True)
    try:
        queries = max(50, round(qps * duration_s))
        cmd = [sys.executable, "-m", "harness", "sut=openai", f"sut.base_url={url}", "sut.model=stub",
               "sut.return_token_ids=true", "scenario=server", f"scenario.target_qps={qps:g}",
               f"scenario.min_duration_s={duration_s:g}", f"scenario.min_query_count={queries}",
               "mode=performance", "benchmark.max_new_tokens=32", f"hydra.run.dir={out / 'run'}"]
        with (out / "harness.log").open("w") as sink:
            run_ = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, env={**os.environ, "NO_COLOR": "1"})
            pin(run_.pid, placement.client)
            rc = run_.wait(timeout=timeout_s)
        records = server_records(url)
    finally:
        proc.kill()
        proc.wait()
    result_file = out / "run" / "results.json"
    if rc != 0 and not result_file.is_file():
        raise SystemExit(f"loadgen: the harness run failed (exit {rc}); see {out / 'harness.log'}")
    return loadgen_errors(RunResult.load(result_file), records, qps=qps, placement=str(placement))


def loadgen_errors(result: RunResult | Mapping[str, Any], records: list[dict], *, qps: float,
                   placement: str) -> dict:
    """LoadGen's TTFT/TPOT p50 and p99 (the run's result, ms) minus the stub records' (seconds)."""
    if not isinstance(result, RunResult):
        result = RunResult.from_dict(result, "results")
    server = {"ttft": [r["first"] - r["arrival"] for r in records],
              "tpot": [(r["last"] - r["first"]) / (r["tokens"] - 1) for r in records if r["tokens"] > 1]}
    out = {"qps": qps, "placement": placement, "requests": len(records), "errors": result.errors,
           "valid": result.valid}
    for metric in ("ttft", "tpot"):
        loadgen = getattr(result, f"{metric}_ms")
        truth = {q: float(np.percentile(server[metric], int(q[1:])) * 1000) if server[metric] else float("nan")
                 for q in ("p50", "p99")}
        measured = {q: getattr(loadgen, q) if loadgen is not None else None for q in truth}
        out[f"{metric}_err_ms"] = {q: measured[q] - truth[q] if measured[q] is not None else float("nan")
                                   for q in truth}
        out[f"{metric}_server_ms"] = truth
    return out


_SPIN = "import os\nos.nice(19)\nwhile True:\n    pass\n"


@contextlib.contextmanager
def kept_awake(cores: frozenset[int] | None) -> Iterator[None]:
    """A lowest-priority busy loop on ``cores`` for the duration: the client's core never idles,
    as GuideLLM's scheduler keeps its own awake with a 100 µs polling loop (asyncio.sleep(1e-4)).
    A woken client preempts it at once (nice 19), so it only removes the idle CPU's wake-up."""
    spinner = subprocess.Popen([sys.executable, "-c", _SPIN])
    pin(spinner.pid, cores)
    try:
        yield
    finally:
        spinner.kill()
        spinner.wait()


_PROBE = """
import json, sys, time
end = time.perf_counter() + float(sys.argv[1])
last = time.perf_counter()
gaps = []
while last < end:
    now = time.perf_counter()
    if now - last >= 0.001:
        gaps.append(now - last)
    last = now
print(json.dumps(gaps))
"""


def stalls(seconds: float = 5.0) -> dict:
    """How often this machine stops a busy process for 1 ms or more: one probe per core, all at
    once (as during a run, when both sides are busy), each pinned where pinning is possible."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [None]
    procs = []
    for core in cores:
        proc = subprocess.Popen([sys.executable, "-c", _PROBE, str(seconds)], stdout=subprocess.PIPE, text=True)
        pin(proc.pid, None if core is None else {core})
        procs.append(proc)
    gaps = [g for proc in procs for g in json.loads(proc.communicate()[0])]
    per_s = len(cores) * seconds
    return {"cores": len(cores), "seconds": seconds, "stalls_1ms_per_core_s": sum(g >= 0.001 for g in gaps) / per_s,
            "stalls_2ms_per_core_s": sum(g >= 0.002 for g in gaps) / per_s,
            "longest_ms": max(gaps, default=0.0) * 1000}


_SEND = """
import socket, struct, sys, time
s = socket.socket(fileno=int(sys.argv[1]))
for _ in range(int(sys.argv[2])):
    time.sleep(float(sys.argv[3]))
    s.sendall(struct.pack("d", time.perf_counter()))
"""
_RECEIVE = """
import json, socket, struct, sys, time
s = socket.socket(fileno=int(sys.argv[1]))
out = []
for _ in range(int(sys.argv[2])):
    data = b""
    while len(data) < 8:
        data += s.recv(8 - len(data))
    out.append(time.perf_counter() - struct.unpack("d", data)[0])
print(json.dumps(out))
"""


def wakeup(placement: Placement, n: int = 400, quiet_s: float = 0.005) -> dict:
    """The floor under every client's error: one process (placed as the server) writes 8 bytes
    after ``quiet_s`` of sleep, another (placed as the client) blocked in a read sees them; p50
    and p99 of that delay, µs. On a VM, an idle virtual CPU can be slow to wake."""
    a, b = socket.socketpair()
    with a, b:
        tx = subprocess.Popen([sys.executable, "-c", _SEND, str(a.fileno()), str(n), str(quiet_s)],
                              pass_fds=[a.fileno()])
        rx = subprocess.Popen([sys.executable, "-c", _RECEIVE, str(b.fileno()), str(n)], pass_fds=[b.fileno()],
                              stdout=subprocess.PIPE, text=True)
        pin(tx.pid, placement.server)
        pin(rx.pid, placement.client)
    delays = json.loads(rx.communicate(timeout=60)[0])
    tx.wait(timeout=10)
    return {"p50_us": float(np.percentile(delays, 50) * 1e6), "p99_us": float(np.percentile(delays, 99) * 1e6)}


def repeated_fidelity(client: str, exe: str, *, streams: int, requests: int, tokenizer: Path, out: Path,
                      placement: Placement, repeat: int, keep_awake: bool = False,
                      tls: LoopbackCertificates | None = None) -> dict:
    """``repeat`` fidelity runs of one client, summarized; with ``keep_awake`` a nice-19 busy loop
    shares the client's cores during each (:func:`kept_awake`)."""
    runs = []
    for i in range(repeat):
        with kept_awake(placement.client) if keep_awake else contextlib.nullcontext():
            runs.append(fidelity(client, exe, streams=streams, requests=requests, tokenizer=tokenizer,
                                 out=out.with_name(f"{out.name}-{i}"), placement=placement, tls=tls))
    return {**summarize(runs), "kept_awake": keep_awake}


def summarize(runs: list[dict]) -> dict:
    """Repeated fidelity runs of one client: median p50 and p99 over the runs, and the p99 range."""
    out = {k: runs[0][k] for k in ("client", "streams", "placement", "sent", "scheme")}
    out.update(runs=len(runs), measured=sum(r["measured"] for r in runs), rc=max((r["rc"] for r in runs), key=abs),
               log=runs[-1]["log"])
    for metric in ("ttft_err_ms", "tpot_err_ms"):
        p99s = [r[metric]["p99"] for r in runs]
        out[metric] = {"p50": float(np.median([r[metric]["p50"] for r in runs])), "p99": float(np.median(p99s)),
                       "p99_min": min(p99s), "p99_max": max(p99s)}
    out["each"] = runs
    return out


def summarize_loadgen(runs: list[dict]) -> dict:
    """Repeated LoadGen-path runs at one rate: median p50 and p99 errors, and the p99 range."""
    out = {k: runs[0][k] for k in ("qps", "placement")}
    out.update(runs=len(runs), requests=sum(r["requests"] for r in runs),
               errors=sum(r["errors"] or 0 for r in runs), each=runs)
    for metric in ("ttft_err_ms", "tpot_err_ms"):
        p99s = [r[metric]["p99"] for r in runs]
        out[metric] = {"p50": float(np.median([r[metric]["p50"] for r in runs])), "p99": float(np.median(p99s)),
                       "p99_min": min(p99s), "p99_max": max(p99s)}
    return out


def _main_drive(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="python -m harness.bench.http_client drive",
                                 description="the harness's HTTP client, closed loop, per-request times as JSONL")
    ap.add_argument("--url", required=True)
    ap.add_argument("--streams", type=int, default=1)
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--tokenizer", type=Path, default=None,
                    help="count output tokens with this local tokenizer instead of asking for the server's ids")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    rows = drive(a.url, a.streams, a.requests, a.tokenizer)
    a.out.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _range(m: dict) -> str:
    return f" [{m['p99_min']:+.2f} to {m['p99_max']:+.2f}]"


def main(argv: list[str] | None = None) -> None:
    offline.enforce()  # before anything imports a Hugging Face library
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["drive"]:
        return _main_drive(argv[1:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="python -m harness.bench.http_client drive --help: the harness's client alone")
    ap.add_argument("--quick", action="store_true", help="fewer requests")
    ap.add_argument("--aiperf", metavar="PATH", help="the aiperf executable (in its own venv) to compare with")
    ap.add_argument("--guidellm", metavar="PATH", help="the guidellm executable (in its own venv) to compare with")
    ap.add_argument("--streams", type=int, default=64, help="concurrent streams of the capacity runs")
    ap.add_argument("--repeat", type=int, default=1, metavar="N",
                    help="make each fidelity measurement N times: median p50 and p99, and the p99 range")
    ap.add_argument("--json", type=Path, help="also write every figure to this file")
    ap.add_argument("--skip", choices=("fidelity", "loadgen", "capacity"), action="append", default=[])
    ap.add_argument("--https", action="store_true",
                    help="measure the clients over https too (a certificate made for the run)")
    ap.add_argument("--loadgen-qps", default="5,180", metavar="QPS,...",
                    help="rates of the LoadGen path: harness sut=openai, Server scenario, LoadGen's TTFT/TPOT "
                         "percentiles against the stub's (default: %(default)s; 180 QPS keeps ~32 in flight)")
    ap.add_argument("--awake", action="store_true",
                    help="also measure the harness's client at 1 stream with its core kept busy by a nice-19 loop "
                         "(why a polling client wakes faster on a VM)")
    ap.add_argument("--harness-tokenizer", action="store_true",
                    help="also run the harness's client counting output tokens with a tokenizer (the embedded "
                         "model's), as AIPerf and GuideLLM do, instead of taking the server's token ids")
    ap.add_argument("--placement", choices=("both", "split", "shared"), default="both",
                    help="split: the server on the last core, the client on the others, as if on two machines; "
                         "shared: both wherever the OS puts them; both (default): every measurement each way")
    a = ap.parse_args(argv)
    from harness.sut.hf.tiny_model import ensure_tiny_model

    clients = [("harness", sys.executable)] + [(c, getattr(a, c)) for c in CLIENTS[1:] if getattr(a, c)]
    if a.harness_tokenizer:
        clients.insert(1, ("harness-tok", sys.executable))
    try:
        loadgen_qps = [float(q) for q in a.loadgen_qps.split(",") if q.strip()]
    except ValueError:
        ap.error(f"--loadgen-qps: expected a comma list of rates, got {a.loadgen_qps!r}")
    tokenizer = ensure_tiny_model()  # AIPerf/GuideLLM need a local tokenizer for their synthetic prompts
    n = 200 if a.quick else 600
    report: dict = {"fidelity": [], "loadgen": [], "capacity": []}
    wanted = {"split": [Placement.split()], "shared": [Placement()], "both": [Placement.split(), Placement()]}
    placements = list(dict.fromkeys(wanted[a.placement]))  # one core: split falls back to shared, once
    report["stalls"] = st = stalls()
    print(f"machine: {os.cpu_count()} cores; busy processes on every core at once were stopped for 1 ms or more "
          f"{st['stalls_1ms_per_core_s']:.1f} times per core-second (2 ms or more: {st['stalls_2ms_per_core_s']:.1f}; "
          f"longest {st['longest_ms']:.1f} ms)")
    if a.awake:
        print("harness*: the harness's client with a nice-19 busy loop on its core(s), kept awake as GuideLLM's "
              "100 us polling loop keeps its own")
    print("fidelity: each run's first wave (as many requests as streams) is warm-up, left out for every client"
          + (f"; median of {a.repeat} runs, p99 range in brackets" if a.repeat > 1 else ""))
    with tempfile.TemporaryDirectory(prefix="http-client-bench-") as tmp:
        certs = make_certificates(Path(tmp) / "tls") if a.https else None
        schemes = [None, certs] if certs else [None]
        for placement in placements:
            floor = wakeup(placement)
            report.setdefault("wakeup", []).append({"placement": str(placement), **floor})
            print(f"placement: {placement}; a token's trip between two processes after 5 ms of quiet (the "
                  f"floor for any client): p50 {floor['p50_us']:.0f} us, p99 {floor['p99_us']:.0f} us", flush=True)
            for tls in schemes:
                scheme = "https" if tls else "http"
                for streams in (1, 32) if "fidelity" not in a.skip else ():
                    runs = [(client, exe, False) for client, exe in clients]
                    if a.awake and streams == 1:
                        runs.insert(1, ("harness", sys.executable, True))
                    for client, exe, keep_awake in runs:
                        r = repeated_fidelity(client, exe, streams=streams, requests=n if streams > 1 else n // 2,
                                              tokenizer=tokenizer, placement=placement, repeat=a.repeat,
                                              keep_awake=keep_awake, tls=tls,
                                              out=Path(tmp) / f"fid{streams}-{client}-{keep_awake}-"
                                                                f"{placement.name}-{scheme}")
                        if keep_awake:
                            client = "harness*"
                        report["fidelity"].append(r)
                        t, o = r["ttft_err_ms"], r["tpot_err_ms"]
                        ranges = a.repeat > 1
                        print(f"fidelity  {client:<11} {scheme:<5} {streams:>2} streams, {r['measured']}/"
                              f"{r['sent'] * a.repeat} requests (server: TTFT 20 ms, TPOT 5 ms, 32 tokens): client - "
                              f"server TTFT p50 {t['p50']:+.2f} ms p99 {t['p99']:+.2f} ms"
                              + (_range(t) if ranges else "")
                              + f"; TPOT p50 {o['p50']:+.3f} ms p99 {o['p99']:+.3f} ms" + (_range(o) if ranges else "")
                              + ("" if r["rc"] == 0 else f"  [exit {r['rc']}, see {r['log']}]"), flush=True)
                short, long = (200, 1000) if a.quick else (500, 3000)
                for client, exe in clients if "capacity" not in a.skip else ():
                    c = capacity(client, exe, streams=a.streams, short=short, long=long, tokenizer=tokenizer, tls=tls,
                                 out=Path(tmp) / f"cap-{client}-{placement.name}-{scheme}", placement=placement)
                    report["capacity"].append(c)
                    cpu = "-" if c["cpu_us_per_token"] is None else f"{c['cpu_us_per_token']:.1f} us/token"
                    print(f"capacity  {client:<11} {scheme:<5} zero-delay server, {c['streams']} streams of 64 tokens, "
                          f"{c['requests']} requests: {c['requests_per_s']:,.0f} requests/s, "
                          f"{c['tokens_per_s']:,.0f} streamed tokens/s, client CPU {cpu}", flush=True)
            # The LoadGen path runs over http: TLS changes the client's socket, which the direct runs measure.
            for qps in loadgen_qps if "loadgen" not in a.skip else ():
                r = summarize_loadgen([loadgen_fidelity(qps, placement=placement, duration_s=5 if a.quick else 10,
                                                        out=Path(tmp) / f"loadgen-{qps:g}-{placement.name}-{i}")
                                       for i in range(a.repeat)])
                report["loadgen"].append(r)
                t, o = r["ttft_err_ms"], r["tpot_err_ms"]
                ranges = a.repeat > 1
                print(f"loadgen   harness  {qps:g} QPS, {r['requests']} requests (server: TTFT 20 ms, TPOT 5 ms, 32 "
                      f"tokens): LoadGen's percentiles - the server's, TTFT p50 {t['p50']:+.2f} ms p99 "
                      f"{t['p99']:+.2f} ms" + (_range(t) if ranges else "")
                      + f"; TPOT p50 {o['p50']:+.3f} ms p99 {o['p99']:+.3f} ms" + (_range(o) if ranges else "")
                      + (f"  [{r['errors']} errors]" if r["errors"] else ""), flush=True)
    if a.json:
        a.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
