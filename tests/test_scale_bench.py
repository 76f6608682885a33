"""benchmarks/scale.py: the quick variant end to end, one fresh process per cell."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import load_script


def _scale() -> ModuleType:
    return load_script("benchmarks/scale.py", "scale_bench")


def test_quick_scale_bench_reports_every_cell_with_sane_numbers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scale = _scale()
    out = tmp_path / "SCALE.md"
    assert scale.main(["--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    written = out.read_text()
    assert printed in written and "- machine:" in written and "- command:" in written
    lines = written.splitlines()
    start = lines.index(scale.HEADER) + 2
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[start : start + 2]]
    assert [(int(r[0]), int(r[1])) for r in rows] == list(scale.QUICK_CELLS)
    # The first cell is small enough for CP-SAT; the second is above its size rule, so the greedy plan stands.
    assert rows[0][3] in ("OPTIMAL", "FEASIBLE") and rows[1][3] == "NOT_SOLVED"
    for tables, _, plan_time, _, gap, makespan, bound, menu_bound, items, memory in rows:
        assert float(plan_time.removesuffix(" s")) > 0
        assert 0.0 <= float(gap.removesuffix("%")) <= 100.0
        assert float(makespan) >= float(bound) > 0 and float(makespan) >= float(menu_bound) > 0
        assert int(items) >= int(tables)  # every table has at least one part
        assert float(memory.removesuffix(" MiB").replace(",", "")) > 10
    assert "Seconds per pass" in written and "| 300 | 128 |" in written.split("Seconds per pass")[1]


def test_a_cell_that_runs_out_of_time_says_so() -> None:
    scale = _scale()
    cell = scale.measure(100, 32, 1.0, timeout_s=0.01)
    assert cell.error == "did not finish in 0.01 s"
    assert "did not finish in 0.01 s" in scale.cell_table([cell])[-1]
