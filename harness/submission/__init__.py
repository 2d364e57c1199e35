"""MLPerf Inference submission trees: ``harness-submit`` writes one from runs, ``harness-check`` verifies it.

layout.py (names and paths), sources.py (a finished run), system.py (systems/<id>.json),
rules.py (division rules), rounds.py (MLPerf rounds: seeds, benchmarks, scenarios),
accuracy_log.py (truncation and its manifest), writer.py, checker.py.
"""
