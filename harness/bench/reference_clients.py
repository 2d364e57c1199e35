"""The HTTP clients the client benchmark compares: the harness's own, AIPerf and GuideLLM.

Each runs as its own process against the stub server (``harness.bench.stub_server``), closed
loop: ``streams`` requests always in flight until ``requests`` have been sent. Every client
reports, per request, the TTFT and time per output token it measured, keyed so that the stub's
own record of the same request can be found:

- the harness (``python -m harness.bench.http_client drive``, the code of ``sut=openai``): by prompt;
  ``harness-tok`` is the same client counting output tokens with a tokenizer (as AIPerf and
  GuideLLM do), instead of asking the server for token ids;
- AIPerf (``aiperf profile``): by its ``X-Request-ID`` header;
- GuideLLM (``guidellm run``): by the response ``id`` the stub sent.

AIPerf and GuideLLM are not dependencies: they pin packages the harness cannot share (GuideLLM
an unpinned torch), so each lives in its own virtual environment and is named by the path of
its executable. Both need a tokenizer for their synthetic prompts; the embedded tiny model's
local tokenizer is used, so nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path

CLIENTS = ("harness", "aiperf", "guidellm")
HARNESS_CLIENTS = ("harness", "harness-tok")  # the harness's client: server token ids, or its own tokenizer


@dataclass(frozen=True)
class Measured:
    """What a client reported for one request (seconds)."""

    key: str  # prompt, X-Request-ID or response id: how the stub's record is found
    ttft_s: float
    tpot_s: float | None
    tokens: int | None = None  # output tokens the client counted (its TPOT's divisor), when it says


@dataclass(frozen=True)
class ClientRun:
    """One client process: its per-request figures, CPU time (with its children) and wall time."""

    client: str
    records: tuple[Measured, ...]
    cpu_s: float
    wall_s: float
    returncode: int
    log: Path


def command(client: str, exe: str, *, url: str, streams: int, requests: int, tokens: int, tokenizer: Path,
            out: Path) -> list[str]:
    """The command line that sends ``requests`` streamed completions, ``streams`` at a time."""
    host = url.removesuffix("/v1")
    if client in HARNESS_CLIENTS:
        tok = ["--tokenizer", str(tokenizer)] if client == "harness-tok" else []
        return [exe, "-m", "harness.bench.http_client", "drive", "--url", url, "--streams", str(streams),
                "--requests", str(requests), *tok, "--out", str(out / "harness.jsonl")]
    if client == "aiperf":
        # --use-server-token-count: the stub's usage count, so ITL is per real token, not per tokenizer piece.
        return [exe, "profile", "--model", "stub", "--url", host, "--endpoint-type", "completions", "--streaming",
                "--concurrency", str(streams), "--request-count", str(requests), "--tokenizer", str(tokenizer),
                "--prompt-input-tokens-mean", "32", "--prompt-output-tokens-mean", str(tokens),
                "--use-server-token-count", "--random-seed", "0", "--ui", "none", "--no-auto-plot",
                "--output-artifact-dir", str(out / "aiperf")]
    if client == "guidellm":
        return [exe, "run", "--backend", f"kind=openai_http,target={host},model=stub,request_format=/v1/completions",
                "--profile", f"kind=concurrent,streams={streams}",
                "--constraint", f"kind=max_requests,count={requests}",
                "--data", f"kind=synthetic_text,prompt_tokens=32,output_tokens={tokens}",
                "--tokenizer", f"kind=huggingface_auto,model={tokenizer}",
                "--output", f"kind=json,path={out / 'guidellm.json'}", "--disable-progress"]
    raise ValueError(f"unknown client {client!r} (known: {', '.join(CLIENTS)})")


def read(client: str, out: Path) -> tuple[Measured, ...]:
    """The per-request figures a finished client wrote into ``out``."""
    if client in HARNESS_CLIENTS:
        rows = [json.loads(line) for line in (out / "harness.jsonl").read_text().splitlines() if line]
        return tuple(Measured(r["prompt"], r["ttft_s"], r["tpot_s"], r.get("tokens")) for r in rows)
    if client == "aiperf":
        found = []
        for line in (out / "aiperf" / "profile_export.jsonl").read_text().splitlines():
            row = json.loads(line)
            m = row.get("metrics") or {}
            if row.get("error") or "time_to_first_token" not in m:
                continue
            itl = m.get("inter_token_latency", {}).get("value")
            found.append(Measured(row["metadata"]["x_request_id"], m["time_to_first_token"]["value"] / 1000,
                                  itl / 1000 if itl is not None else None))
        return tuple(found)
    if client == "guidellm":
        bench = json.loads((out / "guidellm.json").read_text())["benchmarks"][0]
        return tuple(Measured(r["response_id"], r["time_to_first_token_ms"] / 1000,
                              r["inter_token_latency_ms"] / 1000 if r.get("inter_token_latency_ms") else None)
                     for r in bench["requests"]["successful"])
    raise ValueError(f"unknown client {client!r}")


def pin(pid: int, cores: AbstractSet[int] | None) -> None:
    """Keep a just-started process (and the threads and processes it starts) on ``cores``."""
    if cores:
        os.sched_setaffinity(pid, cores)


def run(client: str, exe: str, *, url: str, streams: int, requests: int, tokens: int, tokenizer: Path,
        out: Path, timeout_s: float = 600, cores: AbstractSet[int] | None = None, ca: Path | None = None) -> ClientRun:
    """Run one client to completion, on ``cores`` when given; CPU time comes from wait4 (the process
    and its reaped children). ``ca``: the CA file an https stub's certificate is checked against
    (``SSL_CERT_FILE``, which OpenSSL, so every client, reads)."""
    out.mkdir(parents=True, exist_ok=True)
    log = out / f"{client}.log"
    cmd = command(client, exe, url=url, streams=streams, requests=requests, tokens=tokens, tokenizer=tokenizer,
                  out=out)
    env = {**os.environ, "NO_COLOR": "1", "HF_HUB_OFFLINE": "1", **({"SSL_CERT_FILE": str(ca)} if ca else {})}
    if client == "aiperf":
        # AIPerf 0.13 takes a local tokenizer path for a hub id when the hub is offline; the path is
        # local either way, so nothing is fetched without the variable.
        env = {k: v for k, v in env.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    t0 = time.perf_counter()
    with log.open("w") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, cwd=out, env=env)
        pin(proc.pid, cores)
        deadline = t0 + timeout_s
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    records = read(client, out) if proc.returncode == 0 else ()
    return ClientRun(client, records, usage.ru_utime + usage.ru_stime, wall, proc.returncode, log)


def match(run_: ClientRun, server: Sequence[dict]) -> list[tuple[Measured, dict]]:
    """Pairs of (client figure, stub record) for the same request."""
    field = {"harness": "prompt", "harness-tok": "prompt", "aiperf": "request_id", "guidellm": "id"}[run_.client]
    by_key = {str(r.get(field)): r for r in server}
    return [(m, by_key[m.key]) for m in run_.records if m.key in by_key]


def default_executable(client: str) -> str:
    return sys.executable if client in HARNESS_CLIENTS else client
