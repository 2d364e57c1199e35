"""``harness-providers``: compare OpenAI-compatible endpoints side by side, as independent API benchmarks do.

For each endpoint of a YAML file: ``repetitions`` streamed requests, one at a time, with a fixed
prompt and output length; per request TTFT (first content or reasoning chunk), output speed
(output tokens / seconds after the first token) and end-to-end time; p50/p90/p99 of each, a
table on stdout, ``providers.json`` and ``providers.png`` in the output directory, and one MLflow
run per endpoint when ``tracking`` is on. Requests use the same client code as ``sut=openai``.

    harness providers providers.yaml [--out DIR] [--repetitions N] [--tracking mlflow] [--set KEY=VALUE]

The older ``key=value`` form (``harness-providers conf=providers.yaml out=DIR repetitions=N
tracking=mlflow``) still works. Exit 0; 1 when an endpoint answered no request; 2 bad input (one
`error:` line).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness import offline
from harness.config import TrackingConfig, bounded, build_dataclass
from harness.errors import ConfigError, HarnessError
from harness.invocation import invoked_as

log = logging.getLogger("harness.providers")

EXAMPLE = """example providers.yaml:
  max_tokens: 128          # output length asked of every endpoint (ignore_eos where supported)
  repetitions: 10
  prompt_words: 200        # or prompt: "..."
  endpoints:
    - {name: local-vllm, base_url: "http://127.0.0.1:8000/v1", model: meta-llama/Llama-3.1-8B-Instruct}
    - {name: groq, base_url: "https://api.groq.com/openai/v1", model: llama-3.1-8b-instant, api: chat,
       api_key_env: GROQ_API_KEY}
  tracking: {backend: mlflow}   # optional: one MLflow run per endpoint"""


@dataclass(frozen=True)
class EndpointConfig:
    name: str
    base_url: str
    model: str
    api: str = "completions"
    api_key_env: str | None = None  # NAME of the variable holding the key
    extra_body: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProvidersConfig:
    endpoints: list[EndpointConfig]
    prompt: str | None = None
    prompt_words: int = bounded(200, ge=1)  # used when prompt is null: a fixed, deterministic filler text
    max_tokens: int = bounded(128, ge=1)
    repetitions: int = bounded(5, ge=1)
    ignore_eos: bool = True
    timeout_s: float = bounded(60.0, gt=0)
    out: str = "runs/providers"
    tracking: TrackingConfig = TrackingConfig()


def _percentiles(values: Sequence[float]) -> dict[str, float | None]:
    import numpy as np

    if not values:
        return {"p50": None, "p90": None, "p99": None}
    return {f"p{q}": float(np.percentile(values, q)) for q in (50, 90, 99)}


def prompt_text(config: ProvidersConfig) -> str:
    if config.prompt:
        return config.prompt
    words = ("the quick brown fox jumps over a lazy dog while seven wizards quietly judge boxing matches").split()
    body = " ".join(words[i % len(words)] for i in range(config.prompt_words))
    return f"Summarize the following text in detail.\n\n{body}\n\nSummary:"


async def measure(endpoint: EndpointConfig, config: ProvidersConfig) -> dict[str, Any]:
    """``repetitions`` sequential streamed requests to one endpoint; its percentiles and errors."""
    from harness.sut.openai.client import Endpoint, RequestError, client, env_proxy, request_body, send

    key = None
    if endpoint.api_key_env:
        key = os.environ.get(endpoint.api_key_env)
        if not key:
            raise ConfigError(f"endpoints[{endpoint.name}].api_key_env={endpoint.api_key_env}: variable not set")
    ep = Endpoint(endpoint.base_url, endpoint.model, endpoint.api, key)  # type: ignore[arg-type]
    body = request_body(ep, prompt_text(config), max_tokens=config.max_tokens, stream=True,
                        ignore_eos=config.ignore_eos, extra=endpoint.extra_body)
    ttft, speed, e2e, tokens, errors = [], [], [], [], []
    proxy = env_proxy(endpoint.base_url)  # hosted endpoints are often reached through one
    if proxy is not None and not proxy.startswith("http://"):
        raise ConfigError(f"endpoints[{endpoint.name}]: the environment's proxy for {endpoint.base_url} is not an "
                          "http:// proxy")
    async with client(endpoint.base_url, limit=1, connect_timeout_s=min(10.0, config.timeout_s),
                      read_timeout_s=config.timeout_s, proxy=proxy) as s:
        for _ in range(config.repetitions):
            try:
                reply = await asyncio.wait_for(send(s, ep, body), config.timeout_s * 2)
            except (RequestError, TimeoutError) as exc:
                errors.append(str(exc) or type(exc).__name__)
                continue
            if reply.t_first is None:
                errors.append("no content in the response")
                continue
            n = reply.usage_tokens if reply.usage_tokens is not None else reply.chunks  # chunks: a lower bound
            ttft.append((reply.t_first - reply.t_start) * 1000)
            e2e.append((reply.t_end - reply.t_start) * 1000)
            tokens.append(n)
            after_first = reply.t_end - reply.t_first
            if after_first > 0:
                speed.append(n / after_first)
    return {"name": endpoint.name, "model": endpoint.model, "base_url": endpoint.base_url, "api": endpoint.api,
            "requests": config.repetitions, "errors": len(errors), "error_messages": sorted(set(errors))[:5],
            "ttft_ms": _percentiles(ttft), "output_tokens_per_s": _percentiles(speed), "e2e_ms": _percentiles(e2e),
            "output_tokens": _percentiles(tokens)}


def table(rows: Sequence[Mapping[str, Any]]) -> str:
    def f(v: float | None, digits: int = 1) -> str:
        return "-" if v is None else f"{v:,.{digits}f}"

    head = (f"{'endpoint':<20}{'TTFT p50':>10}{'p90':>9}{'p99':>9}{'tok/s p50':>11}{'p90':>9}{'p99':>9}"
            f"{'e2e p50':>10}{'p90':>9}{'p99':>9}{'tokens':>8}  errors")
    lines = [head, "-" * len(head)]
    for r in rows:
        t, s, e = r["ttft_ms"], r["output_tokens_per_s"], r["e2e_ms"]
        lines.append(f"{r['name'][:19]:<20}{f(t['p50']):>10}{f(t['p90']):>9}{f(t['p99']):>9}"
                     f"{f(s['p50']):>11}{f(s['p90']):>9}{f(s['p99']):>9}"
                     f"{f(e['p50']):>10}{f(e['p90']):>9}{f(e['p99']):>9}{f(r['output_tokens']['p50'], 0):>8}  "
                     f"{r['errors']}/{r['requests']}")
    lines.append("TTFT and e2e in ms; tok/s = output tokens / seconds after the first token")
    return "\n".join(lines)


def chart(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["name"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(4 + 1.2 * len(rows) * 3, 4))
    for ax, key, title in zip(axes, ("output_tokens_per_s", "ttft_ms", "e2e_ms"),
                              ("output speed (tokens/s, higher is better)", "TTFT (ms)", "end-to-end (ms)"),
                              strict=True):
        p50 = [r[key]["p50"] or 0 for r in rows]
        ax.bar(names, p50, color="tab:blue", label="p50")
        for pct, color in (("p90", "tab:orange"), ("p99", "tab:red")):  # none for an endpoint that never answered
            shown = [(n, r[key][pct]) for n, r in zip(names, rows, strict=True) if r[key][pct] is not None]
            ax.scatter([n for n, _ in shown], [v for _, v in shown], color=color, marker="_", s=400, label=pct,
                       zorder=3)
        ax.set_title(title, fontsize=9)
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def track(config: ProvidersConfig, rows: Sequence[Mapping[str, Any]], out: Path) -> None:
    """One MLflow run per endpoint (params, percentile metrics) with the table, JSON and chart attached."""
    from harness.redact import Redactor
    from harness.tracking.store import Store

    store = Store.open(config.tracking)
    redactor = Redactor.collect(asdict(config))
    for r in rows:
        run_id = store.start_run(f"providers {r['name']}", {"harness.kind": "providers"})
        metrics = {f"{k}_{p}": v for k in ("ttft_ms", "output_tokens_per_s", "e2e_ms")
                   for p, v in r[k].items() if v is not None}
        store.log(run_id, params={"endpoint": r["name"], "model": r["model"], "api": r["api"],
                                  "base_url": redactor.text(r["base_url"]), "max_tokens": config.max_tokens,
                                  "repetitions": config.repetitions},
                  metrics={**metrics, "errors": r["errors"]})
        store.log_dir(run_id, out, redactor)
        store.end(run_id, "FINISHED" if not r["errors"] else "FAILED")
    log.info("logged %d endpoints to MLflow %s", len(rows), store.uri)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one `error:` line and exit 2, as every bad input
        raise ConfigError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=invoked_as("harness-providers"), description=__doc__.split("\n\n")[0].strip("`"),
                     epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("conf", nargs="?", help="YAML file of the endpoints to compare (and the request settings)")
    parser.add_argument("--out", help="output directory (default: runs/providers)")
    parser.add_argument("--repetitions", help="requests per endpoint")
    parser.add_argument("--tracking", help="mlflow: one MLflow run per endpoint; none: no tracking")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any other top-level key of the file, e.g. --set max_tokens=64 (repeatable)")
    return parser


_OPTIONS = ("out", "repetitions", "tracking")
_VALUED = tuple(f"--{o}" for o in (*_OPTIONS, "set"))


def _options(argv: Sequence[str]) -> list[str]:
    """The older ``key=value`` words as options: ``conf=F`` -> ``F``, ``out=D`` -> ``--out D``, any other
    ``key=value`` -> ``--set key=value``."""
    words: list[str] = []
    for i, arg in enumerate(argv):
        key, eq, value = arg.partition("=")
        if arg.startswith("-") or not eq or (i and argv[i - 1] in _VALUED):  # an option's own value stays
            words.append(arg)
        elif key == "conf":
            words.append(value)
        elif key in _OPTIONS:
            words += [f"--{key}", value]
        else:
            words += ["--set", arg]
    return words


def load(argv: Sequence[str]) -> ProvidersConfig:
    import yaml

    args = build_parser().parse_args(_options(argv))
    if args.conf is None:
        raise ConfigError("missing the endpoints file: harness providers providers.yaml (or conf=providers.yaml)")
    overrides = dict(s.split("=", 1) for s in args.set if "=" in s)
    bad = [s for s in args.set if "=" not in s]
    if bad:
        raise ConfigError(f"--set {bad[0]}: use KEY=VALUE, e.g. --set max_tokens=64")
    overrides.update({k: getattr(args, k) for k in _OPTIONS if getattr(args, k) is not None})
    path = Path(args.conf)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"conf={path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"conf={path}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    for key, value in overrides.items():  # command-line overrides of top-level scalars
        if key == "tracking":
            raw["tracking"] = {**(raw.get("tracking") or {}), "backend": value}
        else:
            raw[key] = yaml.safe_load(value)
    if isinstance(raw.get("tracking"), str):
        raw["tracking"] = {"backend": raw["tracking"]}
    config = build_dataclass(ProvidersConfig, raw, "")
    if not config.endpoints:
        raise ConfigError(f"conf={path}: 'endpoints' lists no endpoint")
    return config


def main(argv: Sequence[str] | None = None) -> int:
    offline.enforce()  # before anything imports a Hugging Face library
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        build_parser().print_help(sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(levelname)s] %(message)s")
    try:
        config = load(argv)
        rows = [asyncio.run(measure(e, config)) for e in config.endpoints]
        out = Path(config.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "providers.json").write_text(json.dumps({"prompt_words": len(prompt_text(config).split()),
                                                        "max_tokens": config.max_tokens, "endpoints": rows},
                                                       indent=2) + "\n")
        chart(rows, out / "providers.png")
        sys.stdout.write(table(rows) + f"\noutput: {out}/providers.json, {out}/providers.png\n")
        for r in rows:
            for m in r["error_messages"]:
                sys.stdout.write(f"  {r['name']}: {m}\n")
        if config.tracking.backend == "mlflow":
            track(config, rows, out)
    except HarnessError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return exc.exit_code
    return 1 if any(r["errors"] == r["requests"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
