"""Division rules, one place for the writer and the checker.

Closed division (MLPerf rules): mlperf.conf's settings unchanged (the harness's official mode,
min_duration 600 s for every LLM), the full dataset, token latencies on for the LLMs that use
them, and user.conf setting only what the rules leave to the submitter (target QPS / latency).
Quick runs may only go to the open division.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.loadgen.logs import DetailLog
from harness.loadgen.settings import uses_token_latencies

OFFICIAL_MIN_DURATION_MS = 600_000
# user.conf keys a closed submission may set (the rest must come from mlperf.conf).
CLOSED_USER_CONF_KEYS = ("target_qps", "target_latency")


def user_conf_keys(text: str) -> list[str]:
    """The setting names of ``model.Scenario.key = value`` lines."""
    keys = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if "=" in line:
            keys.append(line.split("=", 1)[0].strip().rsplit(".", 1)[-1])
    return keys


def token_latency_problem(model_key: str, detail: DetailLog) -> str | None:
    if uses_token_latencies(model_key) and detail.get("requested_use_token_latencies") is not True:
        return "token latencies off (use_token_latencies must be 1 for this LLM)"
    return None


def closed_problems(run: Mapping[str, Any], detail: DetailLog, user_conf: str) -> list[str]:
    """Why a run cannot be a closed-division result; ``run`` holds ``official``, ``dataset_samples``,
    ``official_sample_count``, ``model_key`` and ``approximate_token_tests`` (results.json / the
    manifest)."""
    problems = []
    if not run.get("official"):
        problems.append("quick settings (benchmark.official=false)")
    expected, samples = run.get("official_sample_count"), run.get("dataset_samples")
    if expected is None:
        problems.append("not an official benchmark dataset (no official sample count)")
    elif samples != expected:
        problems.append(f"dataset has {samples} of the {expected} samples")
    min_ms = detail.get("effective_min_duration_ms")
    if min_ms is None or min_ms < OFFICIAL_MIN_DURATION_MS:
        problems.append(f"effective min_duration {min_ms} ms < {OFFICIAL_MIN_DURATION_MS} ms of mlperf.conf")
    extra = sorted(set(user_conf_keys(user_conf)) - set(CLOSED_USER_CONF_KEYS))
    if extra:
        problems.append(f"user.conf overrides {', '.join(extra)}")
    token = token_latency_problem(str(run.get("model_key", "")), detail)
    if token:
        problems.append(token)
    approximate = run.get("approximate_token_tests")
    if approximate:  # sut=openai had neither the server's ids nor its usage: TPOT and tokens/s are estimates
        problems.append(f"token counts approximate in the {', '.join(approximate)} test(s) (the server's text was "
                        "counted with the dataset's word tokenizer; set sut.tokenizer_path to the model's tokenizer)")
    return problems
