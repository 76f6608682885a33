"""Progress of the CP-SAT search and Ctrl-C: events only improve and end with the plan's gap, watching does
not change the plan, the same seed and workers give the same plan, and Ctrl-C keeps the best plan so far."""

from __future__ import annotations

import io
import itertools
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from embmap.ir.errors import PipelineError
from embmap.ir.plan import ExecutionPlan
from embmap.mapper import SolverSettings, compile
from embmap.mapper.cli import main
from embmap.mapper.planio import load_plan
from embmap.passes import parse_pipeline
from embmap.passes.assign_cores import AssignCoresPass
from embmap.passes.solver.cpsat import WALL_CAP_FACTOR, solve
from embmap.passes.solver.greedy import round_robin
from embmap.passes.solver.problem import AssignmentProblem, OptionData
from embmap.passes.solver.progress import ProgressBar, ProgressEvent, ProgressLog
from tests.conftest import KiB, tiny_target

ROOT = Path(__file__).resolve().parents[1]
# Stopped by its (deterministic) 1 s limit mid-search, after better plans and better bounds than the hint's.
RECIPE = "synthetic:tables=16,total_bytes=2e6,size_skew=1.0,seed=1"
SHORT = SolverSettings(time_limit_s=1.0, workers=1, seed=0)
# The events describe the search of assign-cores: the passes after it (balance, pack) may still change the plan.
SEARCH = "profile,select-strategy,partition,assign-cores,schedule,verify"
LOG_LINE = re.compile(
    r"^assign-cores +\d+\.\d\d s  (hint|solution|bound|done) +best +(-|\d+\.\d{3}us)  bound \d+\.\d{3}us  "
    r"gap (-|\d+\.\d\d%)(  [A-Z_]+(  interrupted)?)?$"
)


def _target() -> Any:
    return tiny_target(cores=4, local_bytes=256 * KiB)


def _comparable(plan: ExecutionPlan) -> dict[str, Any]:
    """The plan as JSON, less the one field that may differ between identical solves: the wall time."""
    data = plan.model_dump(mode="json")
    del data["solver"]["wall_s"]
    return data


def _assert_same(a: ExecutionPlan, b: ExecutionPlan) -> None:
    """Equal plans, unless the solver's wall-clock guard rather than its deterministic limit stopped a search
    (a machine too busy for the limit): no repeat is promised then, and the test says so instead of failing."""
    if _comparable(a) != _comparable(b):
        _skip_if_wall_clock_stopped(a.solver.time_limit_s or 0.0, a.solver.wall_s, b.solver.wall_s)
    assert _comparable(a) == _comparable(b)


def _skip_if_wall_clock_stopped(time_limit_s: float, *walls_s: float) -> None:
    cap_s = WALL_CAP_FACTOR * time_limit_s + 1.0
    if max(walls_s) >= 0.9 * cap_s:
        pytest.skip(f"a solve ran {max(walls_s):.2f} s, into the {cap_s:.2f} s wall-clock guard: machine too busy")


@pytest.fixture(scope="module")
def watched() -> tuple[ExecutionPlan, list[ProgressEvent]]:
    events: list[ProgressEvent] = []
    plan = compile(RECIPE, _target(), pipeline=SEARCH, solver=SHORT, progress=events.append, baselines=False)
    return plan, events


def _assert_only_improving(events: list[ProgressEvent]) -> None:
    objectives = [e.objective_s for e in events if e.objective_s is not None]
    bounds = [e.bound_s for e in events]
    assert all(a >= b for a, b in itertools.pairwise(objectives)), objectives
    assert all(a <= b for a, b in itertools.pairwise(bounds)), bounds
    assert all(e.objective_s is None or e.bound_s <= e.objective_s for e in events)


def test_events_only_improve_and_end_with_the_reported_gap(watched: tuple[ExecutionPlan, list[ProgressEvent]]) -> None:
    plan, events = watched
    kinds = [e.kind for e in events]
    assert kinds[0] == "hint" and kinds[-1] == "done" and kinds.count("done") == 1
    assert {"solution", "bound"} <= set(kinds)  # the search improved on the hint's plan and bound
    _assert_only_improving(events)
    assert events[0].objective_s == plan.solver.hint_objective_s
    done = events[-1]
    # The events follow CP-SAT's search over the menu, in whole nanoseconds: its last bound is the plan's menu
    # bound, its objective the plan's makespan up to a nanosecond per item; the plan's own bound, over every
    # plan, lies below.
    assert plan.solver.status == "FEASIBLE" and plan.solver.gap > 0  # stopped by the time limit
    assert done.status == "FEASIBLE" and done.gap > 0
    assert done.bound_s == plan.solver.menu_bound_s
    assert 0 <= done.objective_s - plan.makespan_s <= len(plan.items) * 1e-9
    assert plan.solver.best_bound_s <= done.bound_s and plan.solver.objective_s == plan.makespan_s
    assert not done.interrupted and not plan.solver.interrupted


def test_a_listener_does_not_change_the_plan(watched: tuple[ExecutionPlan, list[ProgressEvent]]) -> None:
    plan, _ = watched
    _assert_same(compile(RECIPE, _target(), pipeline=SEARCH, solver=SHORT, baselines=False), plan)


@pytest.mark.parametrize("workers", [1, 2])
def test_same_seed_and_workers_give_the_same_plan(workers: int) -> None:
    """Stopped mid-search by the deterministic time limit, twice; the second run is watched. (With two
    workers on a busy machine, a limit of a few tenths of a second already runs into the wall-clock guard.)"""
    options = SolverSettings(time_limit_s=0.1, workers=workers, seed=5)
    a = compile(RECIPE, _target(), solver=options, baselines=False)
    b = compile(RECIPE, _target(), solver=options, progress=lambda event: None, baselines=False)
    assert a.solver.status == "FEASIBLE" and a.solver.gap > 0 and a.solver.workers == workers
    _assert_same(a, b)


def test_same_seed_and_workers_give_the_same_plan_on_a_builtin_workload() -> None:
    """Avazu on 32 cores: 0.5 s of deterministic time ends the search before CP-SAT has a plan of its own
    (status UNKNOWN, the hint stands), at the same point on every run."""
    options = SolverSettings(time_limit_s=0.5, workers=2, seed=1)
    a = compile("avazu", "ascend910", solver=options, baselines=False)
    b = compile("avazu", "ascend910", solver=options, progress=lambda event: None, baselines=False)
    assert a.solver.status in ("UNKNOWN", "FEASIBLE") and a.solver.workers == 2
    _assert_same(a, b)


def _partition_problem(seed: int, tables: int = 40, cores: int = 6) -> AssignmentProblem:
    """Tables of random work on identical cores, each split 1, 2 or 3 ways: CP-SAT improves the round-robin
    plan many times before it proves anything."""
    rng = random.Random(seed)
    options = []
    for _ in range(tables):
        work = rng.randint(1000, 100_000)
        menu = [OptionData(parts=p, part_units=work // p + 37 * p, part_bytes=0) for p in (1, 2, 3)]
        options.append(tuple(menu[: rng.randint(1, 3)]))
    return AssignmentProblem(
        tables=tuple(f"t{i}" for i in range(tables)), options=tuple(options), cores=cores, capacity_bytes=100
    )


@pytest.mark.parametrize("workers", [1, 2])
def test_solver_events_follow_the_search_without_changing_it(workers: int) -> None:
    problem = _partition_problem(0)
    params = SolverSettings(time_limit_s=0.2, workers=workers, seed=0)
    hint = round_robin(problem)
    events: list[ProgressEvent] = []
    watched = solve(problem, params, hint, listener=events.append)
    plain = solve(problem, params, hint)
    if watched.assignment != plain.assignment or watched.best_bound_units != plain.best_bound_units:
        _skip_if_wall_clock_stopped(params.time_limit_s, watched.wall_s, plain.wall_s)
    assert watched.assignment == plain.assignment and watched.best_bound_units == plain.best_bound_units
    kinds = [e.kind for e in events]
    # One worker's search is deterministic; with two, how many improvements it finds in 0.2 s depends on the load.
    assert kinds[0] == "hint" and kinds.count("solution") >= (3 if workers == 1 else 1)
    _assert_only_improving(events)
    assert watched.objective_units is not None
    assert round(min(e.objective_s for e in events if e.objective_s) * 1e9) >= watched.objective_units


def test_an_exception_in_the_listener_stops_the_search_and_is_raised() -> None:
    problem = _partition_problem(1)

    def fail(event: ProgressEvent) -> None:
        if event.kind == "solution":
            raise RuntimeError("listener failed")

    start = time.perf_counter()
    with pytest.raises(RuntimeError, match="listener failed"):
        solve(problem, SolverSettings(time_limit_s=30.0), listener=fail)
    assert time.perf_counter() - start < 10.0


def test_the_sigint_handler_is_restored(watched: tuple[ExecutionPlan, list[ProgressEvent]]) -> None:
    # The fixture compiled with a listener in this (main) thread; after it, Ctrl-C aborts as usual.
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_second_ctrl_c_during_the_search_raises_keyboard_interrupt() -> None:
    """The listener holds the search at its first solution, so both signals arrive while it runs."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("Ctrl-C is only handled in the main thread; here it would stop the test run")
    in_search, release = threading.Event(), threading.Event()

    def hold(event: ProgressEvent) -> None:
        if event.kind == "solution" and not in_search.is_set():
            in_search.set()
            release.wait(10.0)

    def press_ctrl_c_twice() -> None:
        in_search.wait(10.0)
        for _ in range(2):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)  # handled at once: the main thread waits in Python for the solver thread
        release.set()

    presser = threading.Thread(target=press_ctrl_c_twice)
    presser.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            solve(_partition_problem(2), SolverSettings(time_limit_s=30.0), listener=hold)
    finally:
        release.set()
        presser.join()
    assert in_search.is_set()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert not any(t.name == "cp-sat" for t in threading.enumerate())  # the search ended before the raise


def test_log_lines_when_stderr_is_not_a_terminal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["compile", "tenrec-qb-article", "--target", "ascend910", "--no-baselines", "-o", str(tmp_path / "p.json")]
    assert main([*args, "--time-limit", "5"]) == 0
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert lines and all(LOG_LINE.match(line) for line in lines), err
    assert lines[0].split()[3] == "hint" and lines[-1].split()[3] == "done"
    plan = load_plan(tmp_path / "p.json")
    # The log follows CP-SAT's search over the menu: it proves the menu's best plan with equal cuts. `balance`
    # then cuts tables unevenly, beating it; the plan's menu_bound_s is the bound over such plans, and its own
    # gap is to the bound over every plan.
    assert lines[-1].endswith("gap 0.00%  OPTIMAL")
    logged_s = float(lines[-1].split()[5].removesuffix("us")) * 1e-6
    assert plan.solver.menu_bound_s is not None
    assert plan.solver.menu_bound_s <= plan.makespan_s < logged_s
    assert main([*args, "--time-limit", "5", "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_a_live_line_on_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    args = ["compile", "tenrec-qb-article", "--target", "ascend910", "--no-baselines", "--time-limit", "5"]
    assert main([*args, "-o", str(tmp_path / "p.json")]) == 0
    text = terminal.getvalue()
    assert text.startswith("\rassign-cores [") and text.count("\n") == 1 and text.endswith("OPTIMAL\x1b[K\n")
    assert "[####################]" in text.splitlines()[-1]  # the whole gap closed: proven optimal


def test_the_bar_fills_as_the_gap_closes() -> None:
    stream = io.StringIO()
    bar = ProgressBar(stream)
    bar(ProgressEvent("hint", 0.0, 10e-6, 6e-6))
    bar(ProgressEvent("bound", 1.0, 10e-6, 8e-6))  # half the first gap closed
    bar(ProgressEvent("done", 1.0, 10e-6, 10e-6, status="OPTIMAL"))
    frames = stream.getvalue().split("\r")[1:]
    assert [f[len("assign-cores [") :].split("]")[0] for f in frames] == ["-" * 20, "#" * 10 + "-" * 10, "#" * 20]
    bar.close()
    assert stream.getvalue().endswith("OPTIMAL\x1b[K\n")  # done ended the line; close adds nothing
    stopped = io.StringIO()
    open_bar = ProgressBar(stopped)
    open_bar(ProgressEvent("hint", 0.0, 10e-6, 6e-6))
    open_bar.close()  # an error before done: the next message starts on a line of its own
    assert stopped.getvalue().endswith("gap 40.00%\x1b[K\n")
    log = io.StringIO()
    ProgressLog(log)(ProgressEvent("tick", 1.0, None, 0.0))
    assert log.getvalue() == ""  # ticks are for live displays only


def _embmap(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "embmap.mapper.cli", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # Ctrl-C at this terminal must not reach it; the test sends its own
    )


def test_ctrl_c_stops_the_search_and_writes_the_best_plan(tmp_path: Path) -> None:
    out = tmp_path / "plan.json"
    proc = _embmap("compile", "avazu", "--target", "ascend910", "--time-limit", "600", "--seed", "3", "-o", str(out))
    try:
        first = proc.stderr.readline() if proc.stderr else ""
        assert LOG_LINE.match(first.rstrip("\n")) and " hint " in first, first
        proc.send_signal(signal.SIGINT)
        sent = time.monotonic()
        stdout, stderr = proc.communicate(timeout=60)
        after_s = time.monotonic() - sent
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert after_s < 10.0
    plan = load_plan(out)  # validated and verified
    assert plan.solver.interrupted and plan.solver.time_limit_s == 600.0 and plan.solver.seed == 3
    assert plan.solver.wall_s < 60.0 and plan.baselines_s  # the rest of the compile ran
    done = stderr.splitlines()[-2]
    # The search's last line; the plan's gap is the one after `balance` re-cut it, said on the last line.
    assert LOG_LINE.match(done) and done.endswith("  interrupted")
    assert stderr.splitlines()[-1].startswith("embmap: interrupted: stopped the search after ")
    assert f"at gap {plan.solver.gap:.2%}" in stderr and "wrote" in stdout


def test_ctrl_c_after_the_search_aborts_as_usual(tmp_path: Path) -> None:
    out = tmp_path / "plan.json"
    proc = _embmap("compile", "avazu", "--target", "ascend910", "--time-limit", "600", "-o", str(out))
    try:
        assert proc.stderr is not None
        assert " hint " in proc.stderr.readline()
        proc.send_signal(signal.SIGINT)
        done = proc.stderr.readline()
        assert " done " in done and done.endswith("  interrupted\n"), done
        proc.send_signal(signal.SIGINT)  # while the baselines compile: the handler is the usual one again
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert stderr.splitlines()[-1] == "embmap: interrupted" and not out.exists()


def test_the_listener_is_not_a_pipeline_option(watched: tuple[ExecutionPlan, list[ProgressEvent]]) -> None:
    plan, _ = watched
    # Nor are the solver settings: they travel in the pass context, and the plan's report records them.
    assert "time-limit" not in plan.pipeline and "progress" not in plan.pipeline and plan.solver.time_limit_s == 1.0
    assert "progress" not in AssignCoresPass.option_names()
    with pytest.raises(PipelineError, match="unknown option"):
        parse_pipeline("assign-cores{progress=x}")
