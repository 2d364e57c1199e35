"""The closed division refuses a run whose token counts were approximate (issue 16)."""

from __future__ import annotations

from harness.loadgen.logs import DetailLog
from harness.results import approximate_token_tests
from harness.submission import rules


def test_closed_rules_refuse_approximate_token_counts():
    extra = {"sut_stats": {"performance": {"token_counts_approximate": True, "token_count_source":
                                           "dataset word tokenizer"},
                           "accuracy": {"token_counts_approximate": False}}}
    official = DetailLog({"effective_min_duration_ms": 600000, "requested_use_token_latencies": True}, (), ())
    facts = {"official": True, "model_key": "llama3_1-8b", "dataset_samples": 13368, "official_sample_count": 13368,
             "approximate_token_tests": approximate_token_tests(extra)}
    (problem,) = rules.closed_problems(facts, official, "")
    assert problem.startswith("token counts approximate in the performance test(s)") and "sut.tokenizer_path" in problem

