"""The fault-matrix script runs its cells end to end; here the quick config cells."""

from harness.bench.fault_matrix import CELLS, main


def test_every_cell_has_a_unique_key():
    keys = [c.key for c in CELLS]
    assert len(keys) == len(set(keys))


def test_config_cells_print_one_line_each_with_exit_code_and_no_secrets(capsys):
    main(["--only", "qps-5,max-new-tokens", "--markdown"])
    out = capsys.readouterr().out.splitlines()
    rows = [line for line in out if line.startswith(("scenario.target_qps=-5", "benchmark.max_new_tokens=0"))]
    assert len(rows) == 2
    for row in rows:
        assert " 2 " in row and "error: config key" in row and row.endswith("secrets: 0")
    assert "| scenario.target_qps=-5 (Server) | 2 |" in "\n".join(out)
