"""benchmarks/scale.py: the quick variant end to end, one fresh process per cell."""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path
from types import ModuleType

import pytest

from cost_models import preset_profile
from ir.lowering import lower
from ir.spec import TableSpec, WorkloadSpec
from tests.conftest import run, tiny_target

ROOT = Path(__file__).resolve().parents[1]


def _scale() -> ModuleType:
    spec = importlib.util.spec_from_file_location("scale_bench", ROOT / "benchmarks" / "scale.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


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
    for tables, _, plan_time, _, gap, makespan, bound, capacity, gap_to_it, items, memory in rows:
        assert float(plan_time.removesuffix(" s")) > 0
        assert 0.0 <= float(gap_to_it.removesuffix("%")) <= float(gap.removesuffix("%")) <= 100.0
        assert float(makespan) >= float(capacity) >= float(bound) > 0
        assert int(items) >= int(tables)  # every table has at least one part
        assert float(memory.removesuffix(" MiB").replace(",", "")) > 10
    assert "Seconds per pass" in written and "| 300 | 128 |" in written.split("Seconds per pass")[1]


def test_a_cell_that_runs_out_of_time_says_so() -> None:
    scale = _scale()
    cell = scale.measure(100, 32, 1.0, timeout_s=0.01)
    assert cell.error == "did not finish in 0.01 s"
    assert "did not finish in 0.01 s" in scale.cell_table([cell])[-1]


@pytest.mark.parametrize("seed", [0, 9])
def test_capacity_bound_never_exceeds_the_optimum(seed: int) -> None:
    """On small random workloads that CP-SAT solves to optimality, the capacity bound lies between the plans'
    own lower bound and the optimum; with seed 9 the local buffers bind and it rises above the former."""
    rng = random.Random(seed)
    target = tiny_target(cores=rng.randint(2, 4), local_bytes=rng.choice([16, 64, 256]) * 1024)
    tables = tuple(
        TableSpec(
            name=f"t{i}",
            rows=rng.choice([100, 1000, 5000, 20000]),
            dim=rng.choice([8, 16, 32]),
            pooling=rng.randint(1, 4),
        )
        for i in range(rng.randint(3, 6))
    )
    lowered = lower(WorkloadSpec(name="w", batch_size=64, tables=tables), target, preset_profile(target))
    m = run(lowered, "profile,select-strategy,partition,assign-cores{time-limit=20},schedule")
    assert m.solver is not None and m.solver.status == "OPTIMAL" and m.options is not None
    assert m.lower_bound_s is not None and m.makespan_s is not None
    start = m.cost_profile.core_start_s
    optimum, lower_bound = m.solver.objective_s - start, m.lower_bound_s - start
    bound = _scale().capacity_bound_s(
        m.options, target.cores, target.local.capacity_bytes, (lower_bound, m.makespan_s - start)
    )
    assert lower_bound <= bound <= optimum * (1 + 1e-9)
    assert (bound > lower_bound * 1.1) == (seed == 9)
