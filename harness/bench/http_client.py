"""Fidelity and overhead of the HTTP client (``sut=openai``) against a scripted local server.

    python -m harness.bench.http_client [--quick]

1. Fidelity: the stub server (``harness.bench.stub_server``) streams with known delays and
   records, per request, its arrival and first/last chunk times (CLOCK_MONOTONIC, shared with
   this process). The harness's own SUT path (``OpenAISUT.submit`` -> TokenStream) is timed the
   way the bridge sees it: TTFT = first ``emit`` - submit, TPOT = (finish - first emit) / (n - 1).
   Reported: harness minus server truth at p50/p99, with 1 and 32 concurrent streams.
2. Capacity: a zero-delay stub, ``--streams`` concurrent streams for ``--seconds``: requests/s,
   streamed tokens/s, and this process's CPU time per streamed token (the server runs in its own
   process and is not counted).

Client and server share the machine (here: 2 noisy cores), so the capacity figures are a floor.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np

from harness.sut import SUTContext
from harness.sut.base import Sample
from harness.sut.openai import OpenAIParams, OpenAISUT


class Timed:
    """A TokenStream recording when the bridge would see the first token and the end."""

    __slots__ = ("start", "first", "end", "n", "error", "done")

    def __init__(self, done: threading.Semaphore) -> None:
        self.start = time.perf_counter()
        self.first = 0.0
        self.end = 0.0
        self.n = 0
        self.error: BaseException | None = None
        self.done = done

    def emit(self, ids) -> None:
        if ids and not self.first:
            self.first = time.perf_counter()
        self.n += len(ids)

    def finish(self) -> None:
        self.end = time.perf_counter()
        self.done.release()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.end = time.perf_counter()
        self.done.release()


def start_stub(*args: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "harness.bench.stub_server", "--port", "0", *args],
                            stdout=subprocess.PIPE, text=True)
    url = proc.stdout.readline().split()[-1]
    return proc, url


def sut_for(url: str, concurrency: int) -> OpenAISUT:
    params = OpenAIParams(base_url=url, model="stub", max_concurrency=concurrency, return_token_ids=True)
    return OpenAISUT.create(params, SUTContext(corpus=[], max_new_tokens=10_000))


def fidelity(ttft_ms: float, tpot_ms: float, tokens: int, streams: int, requests: int) -> dict:
    proc, url = start_stub("--ttft-ms", str(ttft_ms), "--tpot-ms", str(tpot_ms), "--tokens", str(tokens))
    sut = sut_for(url, streams)
    try:
        done = threading.Semaphore(0)
        timed: dict[str, Timed] = {}
        in_flight = threading.Semaphore(streams)  # closed loop: `streams` requests always in flight

        def release_and_done() -> None:
            for _ in range(requests):
                done.acquire()
                in_flight.release()

        waiter = threading.Thread(target=release_and_done)
        waiter.start()
        for i in range(requests):
            in_flight.acquire()
            prompt = f"request {i}"
            timed[prompt] = t = Timed(done)
            sut.submit(Sample(i, prompt, prompt), t)
        waiter.join(120)
        server = {r["prompt"]: r for r in json.load(urllib.request.urlopen(url.removesuffix("/v1") + "/stats"))}
    finally:
        sut.close()
        proc.kill()
    d_ttft, d_tpot = [], []
    for prompt, t in timed.items():
        s = server.get(prompt)
        if t.error or s is None:
            continue
        d_ttft.append((t.first - t.start) - (s["first"] - s["arrival"]))
        d_tpot.append((t.end - t.first) / (t.n - 1) - (s["last"] - s["first"]) / (s["tokens"] - 1))
    ms = lambda xs, q: float(np.percentile(xs, q) * 1000)  # noqa: E731
    return {"streams": streams, "requests": len(d_ttft), "ttft_err_ms": {"p50": ms(d_ttft, 50), "p99": ms(d_ttft, 99)},
            "tpot_err_ms": {"p50": ms(d_tpot, 50), "p99": ms(d_tpot, 99)}}


def capacity(streams: int, seconds: float, tokens: int) -> dict:
    proc, url = start_stub("--tokens", str(tokens))
    sut = sut_for(url, streams)
    try:
        in_flight = threading.Semaphore(streams)  # a finished stream releases its slot
        finished: list[Timed] = []
        stop = time.perf_counter() + seconds
        cpu0, t0 = time.process_time(), time.perf_counter()
        while time.perf_counter() < stop:
            in_flight.acquire()
            t = Timed(in_flight)
            finished.append(t)
            sut.submit(Sample(len(finished), "x", "x"), t)
        deadline = time.perf_counter() + 30
        while any(not t.end for t in finished) and time.perf_counter() < deadline:
            time.sleep(0.01)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    finally:
        sut.close()
        proc.kill()
    ok = [t for t in finished if t.end and t.error is None]
    streamed = sum(t.n for t in ok)
    return {"streams": streams, "seconds": round(wall, 2), "requests_per_s": len(ok) / wall,
            "tokens_per_s": streamed / wall, "errors": sum(1 for t in finished if t.error),
            "client_cpu_us_per_token": cpu / max(1, streamed) * 1e6, "client_cpu_share": cpu / wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer requests and a shorter capacity run")
    ap.add_argument("--streams", type=int, default=64, help="concurrent streams of the capacity run")
    ap.add_argument("--seconds", type=float, default=10.0)
    a = ap.parse_args()
    n = 60 if a.quick else 300
    print(f"machine: {os.cpu_count()} cores; client and server on it")
    for streams in (1, 32):
        r = fidelity(ttft_ms=20, tpot_ms=5, tokens=32, streams=streams, requests=n if streams > 1 else n // 3)
        print(f"fidelity  {streams:>2} streams, {r['requests']} requests (server: TTFT 20 ms, TPOT 5 ms, 32 tokens): "
              f"harness - server TTFT p50 {r['ttft_err_ms']['p50']:+.2f} ms p99 {r['ttft_err_ms']['p99']:+.2f} ms; "
              f"TPOT p50 {r['tpot_err_ms']['p50']:+.3f} ms p99 {r['tpot_err_ms']['p99']:+.3f} ms")
    c = capacity(a.streams, 3.0 if a.quick else a.seconds, tokens=64)
    print(f"capacity  zero-delay server, {c['streams']} streams of 64 tokens for {c['seconds']} s: "
          f"{c['requests_per_s']:,.0f} requests/s, {c['tokens_per_s']:,.0f} streamed tokens/s, "
          f"client CPU {c['client_cpu_us_per_token']:.1f} us/token ({c['client_cpu_share']:.0%} of a core), "
          f"{c['errors']} errors")


if __name__ == "__main__":
    main()
