"""The speculative decoding benchmark's built pair: the draft really is the target's first layer."""

from __future__ import annotations

from harness.bench.speculative import build_pair, differing, measure, parse_args, render


def test_an_undamped_built_pair_accepts_everything_and_changes_no_token(tmp_path):
    args = parse_args(["--samples", "2", "--max-new-tokens", "10", "--repeats", "2", "--threads", "1",
                       "--layers", "2", "--hidden", "32", "--damp", "0", "--num-draft-tokens", "3"])
    # damp 0: the second layer adds exactly nothing, so the target computes what its draft does.
    target, draft = build_pair(tmp_path, layers=args.layers, draft_layers=1, hidden=args.hidden, damp=0.0, seed=0)
    result = measure(args, target, draft)
    assert result["stats"]["acceptance_rate"] == 1.0
    assert result["model"]["draft"]["parameters"] < result["model"]["parameters"]
    assert differing(result["rounds"]) == []
    assert len(result["rounds"]["plain"]) == len(result["rounds"]["draft"]) == 2
    text = render(args, result, "built")
    assert "acceptance rate               1.000" in text and "token ids identical           yes" in text
