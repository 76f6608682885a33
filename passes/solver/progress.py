"""Progress of the CP-SAT search, and Ctrl-C that stops it and keeps the best plan found so far.

A listener is any callable that takes a `ProgressEvent`: the best objective and the best proven bound so far,
and their gap. The library reports nothing unless given one; the command line renders the events as a live
line on a terminal (`ProgressBar`) or as one log line per improvement otherwise (`ProgressLog`).

`run_solver` runs the solve on a helper thread, so that the main thread stays in Python and answers SIGINT at
once: the first Ctrl-C stops the search (CP-SAT returns its best solution, as at a time limit), a second one
goes to the handler that was there before (a KeyboardInterrupt, by default). Neither the callbacks nor the
thread change the search: the same seed and workers give the same plan with or without a listener.
"""

from __future__ import annotations

import dataclasses
import signal
import sys
import threading
import time
from types import FrameType
from typing import Literal, Protocol, TextIO

from ortools.sat.python import cp_model

from embmap.ir.plan import relative_gap

EventKind = Literal["hint", "solution", "bound", "tick", "done"]

POLL_S = 0.05  # how soon the waiting thread passes a Ctrl-C on to the solver
TICK_S = 0.25  # how often a live display may update its clock


@dataclasses.dataclass(frozen=True)
class ProgressEvent:
    """The state of the search after one event, in seconds of predicted makespan.

    kind: `hint` (the heuristic plan, before the search), `solution` (a better plan), `bound` (a better proven
    bound), `tick` (no news, every `TICK_S` or so while the solver runs) or `done` (what the pass keeps).
    `objective_s` is None until a plan is known; `status` and `interrupted` are set on `done` only.
    """

    kind: EventKind
    elapsed_s: float
    objective_s: float | None
    bound_s: float
    status: str | None = None
    interrupted: bool = False

    @property
    def gap(self) -> float | None:
        """(objective - bound) / objective, as in the plan's solver report."""
        return None if self.objective_s is None else relative_gap(self.objective_s, self.bound_s)

    def shifted(self, offset_s: float) -> ProgressEvent:
        """The event with `offset_s` added to objective and bound (the per-core start-up every plan pays)."""
        objective = None if self.objective_s is None else self.objective_s + offset_s
        return dataclasses.replace(self, objective_s=objective, bound_s=self.bound_s + offset_s)


class ProgressListener(Protocol):
    def __call__(self, event: ProgressEvent, /) -> None: ...


class SolveReporter(cp_model.CpSolverSolutionCallback):
    """Turns CP-SAT's solution and bound callbacks into events that only ever improve: the objective never
    rises and the bound never falls, whichever worker thread reports. Values are integer solver units times
    `unit_s`; bounds below `floor_units` (a bound known before the search) are raised to it."""

    def __init__(self, listener: ProgressListener, unit_s: float, floor_units: int, hint_units: int | None) -> None:
        super().__init__()
        self._listener = listener
        self._unit_s = unit_s
        self._objective = hint_units
        self._bound = floor_units
        self._lock = threading.Lock()
        self._start = time.perf_counter()
        self.error: BaseException | None = None  # raised by the listener; re-raised once the solve returns
        self.solver: cp_model.CpSolver | None = None

    def start(self) -> None:
        """Report the hint (or that there is none) and start the clock."""
        self._start = time.perf_counter()
        self._emit("hint")

    def on_solution_callback(self) -> None:
        self._update("solution", round(self.objective_value), self.best_objective_bound)

    def on_bound(self, bound: float) -> None:
        self._update("bound", None, bound)

    def tick(self) -> None:
        with self._lock:
            self._emit("tick")

    def _update(self, kind: EventKind, objective: int | None, bound: float) -> None:
        with self._lock:
            better = objective is not None and (self._objective is None or objective < self._objective)
            if better:
                self._objective = objective
            raised = int(bound) > self._bound  # a minimization bound of integers: its floor still holds
            if raised:
                self._bound = int(bound)
            if better or raised:
                self._emit(kind if better else "bound")

    def _emit(self, kind: EventKind) -> None:
        if self.error is not None:
            return
        objective = None if self._objective is None else self._objective * self._unit_s
        event = ProgressEvent(kind, time.perf_counter() - self._start, objective, self._bound * self._unit_s)
        try:
            self._listener(event)
        except BaseException as exc:  # an exception must not unwind into the solver's threads: stop, re-raise
            self.error = exc
            if self.solver is not None:
                self.solver.stop_search()


def run_solver(
    solver: cp_model.CpSolver, model: cp_model.CpModel, reporter: SolveReporter | None = None
) -> tuple[cp_model.CpSolverStatus, bool]:
    """`solver.solve(model)`, reporting to `reporter`, stoppable with Ctrl-C from the main thread.

    Returns the status and whether Ctrl-C stopped the search. The hint event is sent once the handler is in
    place, so a Ctrl-C after it stops the search rather than aborting the program.
    """
    solver.parameters.catch_sigint_signal = False  # ours below; CP-SAT's would hide the Ctrl-C from Python
    interrupted = threading.Event()
    previous = signal.getsignal(signal.SIGINT)
    handle = threading.current_thread() is threading.main_thread() and previous not in (signal.SIG_IGN, None)

    # The handler only sets a flag that the waiting loop passes on: it runs between two bytecodes of the main
    # thread, which may hold the solver's lock at that moment.
    def on_sigint(signum: int, frame: FrameType | None) -> None:
        if not interrupted.is_set():
            interrupted.set()
            return
        signal.signal(signal.SIGINT, previous)  # a second Ctrl-C does what it did before
        signal.raise_signal(signal.SIGINT)

    if handle:
        signal.signal(signal.SIGINT, on_sigint)
    try:
        if reporter is not None:
            reporter.solver = solver
            solver.best_bound_callback = reporter.on_bound
            reporter.start()
        status = _solve_on_helper_thread(solver, model, reporter, interrupted)
    finally:
        if handle and signal.getsignal(signal.SIGINT) is on_sigint:
            signal.signal(signal.SIGINT, previous)
    if reporter is not None and reporter.error is not None:
        raise reporter.error
    return status, interrupted.is_set()


def _solve_on_helper_thread(
    solver: cp_model.CpSolver,
    model: cp_model.CpModel,
    reporter: SolveReporter | None,
    interrupted: threading.Event,
) -> cp_model.CpSolverStatus:
    result: list[cp_model.CpSolverStatus] = []
    failure: list[BaseException] = []
    # Waited on rather than Thread.join: on Python 3.11 a KeyboardInterrupt inside join() can mark a running
    # thread as stopped, and a solve still running when the interpreter exits aborts the process.
    done = threading.Event()

    def target() -> None:
        try:
            result.append(solver.solve(model, reporter))
        except BaseException as exc:
            failure.append(exc)
        finally:
            done.set()

    threading.Thread(target=target, name="cp-sat", daemon=True).start()
    next_tick = time.perf_counter() + TICK_S
    try:
        while not done.wait(POLL_S):
            if interrupted.is_set() or (reporter is not None and reporter.error is not None):
                solver.stop_search()  # repeated: a stop sent before the solve has started is lost
            elif reporter is not None and time.perf_counter() >= next_tick:
                reporter.tick()
                next_tick = time.perf_counter() + TICK_S
    except BaseException:
        solver.stop_search()  # the program is going down (second Ctrl-C): end the search before it does
        done.wait()
        raise
    if failure:
        raise failure[0]
    return result[0]


class ProgressLog:
    """One line per event that improves the objective or the bound (ticks are left out), for logs and pipes:

    `assign-cores    1.23 s  solution   best   13.960us  bound 12.270us  gap 12.11%`
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream

    def __call__(self, event: ProgressEvent) -> None:
        if event.kind == "tick":
            return
        stream = self._stream or sys.stderr
        stream.write(f"assign-cores {event.elapsed_s:7.2f} s  {event.kind:<9}  {_numbers(event)}{_outcome(event)}\n")
        stream.flush()


class ProgressBar:
    """One line rewritten in place, for a terminal, ended when the search is done:

    `assign-cores [#######-------------]   12.5 s  best   13.960us  bound 12.270us  gap 12.11%`

    The bar is the share of the first known gap that the search has closed since (full: proven optimal).
    """

    WIDTH = 20

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._first_gap: float | None = None
        self._open = False  # a line is on screen that no done event has ended yet

    def __call__(self, event: ProgressEvent) -> None:
        gap = event.gap
        if self._first_gap is None and gap:
            self._first_gap = gap
        closed = 1.0 if gap == 0.0 else max(0.0, 1.0 - gap / self._first_gap) if gap and self._first_gap else 0.0
        filled = round(closed * self.WIDTH)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        line = f"assign-cores [{bar}] {event.elapsed_s:6.1f} s  {_numbers(event)}{_outcome(event)}"
        stream = self._stream or sys.stderr
        stream.write("\r" + line + "\x1b[K" + ("\n" if event.kind == "done" else ""))  # \x1b[K: clear to the end
        stream.flush()
        self._open = event.kind != "done"

    def close(self) -> None:
        """End the line if the search left it open (an error or a second Ctrl-C before `done`)."""
        if self._open:
            (self._stream or sys.stderr).write("\n")
            self._open = False


def _numbers(event: ProgressEvent) -> str:
    best = "-" if event.objective_s is None else f"{event.objective_s * 1e6:.3f}us"
    gap = "-" if event.gap is None else f"{event.gap:.2%}"
    return f"best {best:>10}  bound {event.bound_s * 1e6:.3f}us  gap {gap}"


def _outcome(event: ProgressEvent) -> str:
    if event.kind != "done":
        return ""
    return f"  {event.status}" + ("  interrupted" if event.interrupted else "")
