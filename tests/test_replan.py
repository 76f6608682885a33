"""Re-planning from a previous plan: moves are bounded, counted right (against a recount from the two plans'
items) and never needed for nothing; the CP-SAT move bound matches exhaustive search; the CLI path."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from embmap.ir.errors import InfeasibleError, PipelineError, SpecError
from embmap.ir.lowering import lower
from embmap.ir.plan import ExecutionPlan
from embmap.ir.spec import TableSpec, WorkloadSpec, Zipf
from embmap.ir.verify import verify_plan
from embmap.mapper import SolverSettings
from embmap.mapper.cli import main
from embmap.mapper.compiler import compile, prepare_workload
from embmap.mapper.planio import save_plan
from embmap.passes.solver.cpsat import solve
from embmap.passes.solver.problem import Assignment, AssignmentProblem, Choice, OptionData
from embmap.passes.solver.replan import moves, warm_start
from tests.conftest import run, tiny_target
from tests.problems import exhaustive, random_problem

FAST = SolverSettings(time_limit_s=2.0, workers=1, seed=0)
TARGET = tiny_target(cores=4)
BASE = prepare_workload("synthetic:tables=12,seed=1,total_bytes=2e7,pooling_mean=4,pooling_skew=1")


def _changed(kind: str) -> WorkloadSpec:
    tables = list(BASE.tables)
    if kind == "pooling":
        tables[0] = tables[0].model_copy(update={"pooling": tables[0].pooling * 8})
        tables[5] = tables[5].model_copy(update={"pooling": tables[5].pooling * 5})
    elif kind == "added-table":
        tables.append(TableSpec(name="added", rows=3000, dim=32, pooling=6))
    elif kind == "distribution":
        return prepare_workload(BASE, distribution=Zipf(alpha=1.3))
    return BASE.model_copy(update={"tables": tuple(tables)})


CHANGES = ("pooling", "distribution", "added-table")


@pytest.fixture(scope="module")
def old() -> ExecutionPlan:
    return compile(BASE, TARGET, solver=FAST, baselines=False)


def replan(
    workload: WorkloadSpec, old: ExecutionPlan, max_moves: int | None, pipeline: str = "embmap"
) -> ExecutionPlan:
    return compile(workload, TARGET, pipeline, solver=FAST, baselines=False, previous=old, max_moves=max_moves)


def _served(plan: ExecutionPlan) -> dict[str, frozenset[tuple[object, ...]]]:
    """Per table, what serves it: (core, rows, samples, strategy) of each of its items."""
    served: dict[str, set[tuple[object, ...]]] = {t.name: set() for t in plan.tables}
    for it in plan.items:
        served[it.table].add((it.core, it.rows, it.samples, it.strategy))
    return {name: frozenset(s) for name, s in served.items()}


def recount(old: ExecutionPlan, new: ExecutionPlan) -> tuple[int, int, int, int]:
    """(moved tables, moved items, kept tables, free tables) from the two plans' items and the new menu
    alone: a table is free when it is new or the new menu has no option of its old shape; else it is kept
    when the same cores serve the same rows and samples with the same strategy, and moved otherwise."""
    options = run(lower(new.workload, new.target, new.cost_profile), "profile,select-strategy,partition").options
    assert options is not None
    menu = {m.table: {(o.strategy, o.mode, o.parts) for o in m.options} for m in options}
    shape = {t.name: (t.strategy, t.mode, t.parts) for t in old.tables}
    before, after = _served(old), _served(new)
    moved = items = kept = free = 0
    for t in new.tables:
        if t.name not in shape or shape[t.name] not in menu[t.name]:
            free += 1
        elif before[t.name] == after[t.name]:
            kept += 1
        else:
            moved += 1
            items += len(after[t.name])
    return moved, items, kept, free


@pytest.mark.parametrize("pipeline", ["embmap", "greedy"])
def test_an_unchanged_workload_moves_nothing(old: ExecutionPlan, pipeline: str) -> None:
    new = replan(BASE, old, None, pipeline)
    assert new.solver.moves is not None
    assert (new.solver.moves.moved_tables, new.solver.moves.kept_tables, new.solver.moves.free_tables) == (0, 12, 0)
    assert _served(new) == _served(old)
    assert new.makespan_s == pytest.approx(old.makespan_s, rel=1e-12)


@pytest.mark.parametrize("pipeline", ["embmap", "greedy"])
@pytest.mark.parametrize("max_moves", [0, 2])
@pytest.mark.parametrize("change", CHANGES)
def test_a_changed_workload_moves_at_most_max_moves_counted_right(
    old: ExecutionPlan, change: str, max_moves: int, pipeline: str
) -> None:
    new = replan(_changed(change), old, max_moves, pipeline)
    verify_plan(new)
    m = new.solver.moves
    assert m is not None and m.max_moves == max_moves
    assert m.moved_tables <= max_moves
    assert (m.moved_tables, m.moved_items, m.kept_tables, m.free_tables) == recount(old, new)
    if change == "added-table":
        assert m.free_tables >= 1
    if max_moves == 0:  # only free tables were placed: every other table is served as before
        assert m.moved_tables == m.moved_items == 0
        assert m.kept_tables + m.free_tables == len(new.tables)


@pytest.mark.parametrize("change", CHANGES)
def test_unbounded_is_no_worse_than_bounded_and_bounds_pay(old: ExecutionPlan, change: str) -> None:
    workload = _changed(change)
    spans = {k: replan(workload, old, k).makespan_s for k in (0, 2, None)}
    assert spans[None] <= spans[2] * (1 + 1e-9)
    assert spans[2] <= spans[0] * (1 + 1e-9)


def test_one_move_pays_for_a_pooling_change(old: ExecutionPlan) -> None:
    """Two tables' pooling grows: moving one table makes the batch over 10% faster than keeping every table."""
    workload = _changed("pooling")
    kept, one = replan(workload, old, 0), replan(workload, old, 1)
    assert one.solver.moves is not None and one.solver.moves.moved_tables == 1
    assert one.makespan_s < kept.makespan_s / 1.1


def test_max_moves_needs_a_previous_plan_and_a_placing_method(old: ExecutionPlan) -> None:
    with pytest.raises(SpecError, match="max_moves"):
        compile(BASE, TARGET, solver=FAST, baselines=False, max_moves=1)
    with pytest.raises(PipelineError, match="max-moves"):
        compile(
            BASE,
            TARGET,
            "profile,select-strategy,partition,assign-cores{max-moves=1},schedule",
            solver=FAST,
            baselines=False,
        )
    with pytest.raises(PipelineError, match="round-robin"):
        compile(BASE, TARGET, "round-robin", baselines=False, previous=old)
    plan = replan(BASE, old, 3)
    assert "assign-cores{max-moves=3}" in plan.pipeline  # the time limit is the default


def test_previous_plan_for_another_target_is_refused(old: ExecutionPlan) -> None:
    with pytest.raises(SpecError, match="previous.target") as exc:
        compile(BASE, tiny_target(cores=5), solver=FAST, baselines=False, previous=old)
    assert "cores 5" in str(exc.value) and "--target tiny" in exc.value.fix


def test_kept_tables_that_outgrew_the_buffer_must_move() -> None:
    """Both tables were on core 0 and grew: together they no longer fit, so one must move."""
    grown = (OptionData(parts=1, part_units=5, part_bytes=60),)
    problem = AssignmentProblem(tables=("a", "b"), options=(grown, grown), cores=2, capacity_bytes=100)
    previous = (Choice(0, (0,)), Choice(0, (0,)))
    with pytest.raises(InfeasibleError, match="raise --max-moves to 1"):
        warm_start(problem, previous, 0)
    plan = warm_start(problem, previous, 1)
    assert moves(plan, previous) == 1 and plan.makespan(problem) == 5


def _random_previous(problem: AssignmentProblem, rng: random.Random) -> tuple[Choice | None, ...] | None:
    """A random feasible placement, with some tables free (None); None if none was drawn."""
    for _ in range(50):
        used = [0] * problem.cores
        choices: list[Choice | None] = []
        for opts in problem.options:
            i = rng.randrange(len(opts))
            cores = tuple(sorted(rng.sample(range(problem.cores), opts[i].parts)))
            for c in cores:
                used[c] += opts[i].part_bytes
            choices.append(None if rng.random() < 0.2 else Choice(i, cores))
        if max(used) <= problem.capacity_bytes:
            return tuple(choices)
    return None


@pytest.mark.parametrize("seed", range(25))
def test_cpsat_move_bound_matches_exhaustive_search(seed: int) -> None:
    rng = random.Random(300 + seed)
    problem = random_problem(rng)
    previous = _random_previous(problem, rng)
    if previous is None:
        return
    for max_moves in (0, 1, 2):
        optimum = exhaustive(problem, previous, max_moves)
        try:
            hint: Assignment | None = warm_start(problem, previous, max_moves)
        except InfeasibleError:
            hint = None
        if hint is not None:
            assert moves(hint, previous) <= max_moves and hint.makespan(problem) >= optimum
        result = solve(problem, SolverSettings(time_limit_s=30.0), hint=hint, previous=previous, max_moves=max_moves)
        if optimum == math.inf:
            assert result.status == "INFEASIBLE" and hint is None
            continue
        assert result.status == "OPTIMAL" and result.assignment is not None
        assert result.assignment.makespan(problem) == optimum
        assert moves(result.assignment, previous) <= max_moves


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_replans_and_explains_the_moves(
    old: ExecutionPlan, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The pooling shift through the command line (workload and target as files): one move, as from Python."""
    previous, new = tmp_path / "old.plan.json", tmp_path / "new.plan.json"
    save_plan(old, previous)
    (tmp_path / "w.json").write_text(_changed("pooling").model_dump_json())
    (tmp_path / "t.json").write_text(TARGET.model_dump_json())
    args = ["compile", str(tmp_path / "w.json"), "--target", str(tmp_path / "t.json"), "--previous", str(previous)]
    code, out, err = _cli([*args, "--max-moves", "1", "-o", str(new), "--time-limit", "2", "--no-baselines"], capsys)
    assert code == 0, err
    saved = json.loads(new.read_text())["solver"]["moves"]
    from_python = replan(_changed("pooling"), old, 1).solver.moves
    assert from_python is not None and saved == from_python.model_dump()
    moves_line = next(line for line in out.splitlines() if line.startswith("re-planned:"))
    assert moves_line.startswith(f"re-planned: 1 table moved ({saved['moved_items']} work items; at most 1), ")
    assert moves_line.endswith(
        f"{saved['kept_tables']} kept, {saved['free_tables']} free (new, or previous option no longer offered)"
    )
    code, out, _ = _cli(["explain", str(new)], capsys)
    assert code == 0 and moves_line in out


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--target", "cpu"], "previous.target: the previous plan was compiled for ascend910; target cpu has cores"),
        (["--target", "ascend910", "--max-moves", "-1"], "--max-moves: must be >= 0"),
        (["--target", "ascend910", "--devices", "2"], "--previous: does not apply with --devices"),
    ],
)
def test_cli_bad_replans_exit_2_with_one_line(
    extra: list[str], words: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = tmp_path / "old.plan.json", tmp_path / "new.plan.json"
    save_plan(compile("tenrec-qb-article", "ascend910", solver=FAST, baselines=False), old)
    code, _, err = _cli(["compile", "tenrec-qb-article", "--previous", str(old), *extra, "-o", str(new)], capsys)
    assert code == 2 and err.startswith("embmap: error: ") and err.count("\n") == 1, err
    assert words in err and "(fix: " in err
    assert not new.exists()


def test_cli_max_moves_without_previous(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    new = tmp_path / "new.plan.json"
    code, _, err = _cli(["compile", "avazu", "--target", "ascend910", "--max-moves", "2", "-o", str(new)], capsys)
    assert code == 2 and err.count("\n") == 1 and "--max-moves" in err and "--previous" in err
    assert not new.exists()
