"""The `embmap` command line. Bad input exits with status 2 and one line naming the field and the fix.

Exit status (`EXIT`): 0 done; 1 `embmap run` computed wrong outputs (nothing else exits 1); 2 bad input
(nothing written); 3 `embmap run` failed on good input because a worker died or hung (a `RunFault`); 4 the
machine refused a resource the command needs (disk full, permission, shared memory, memory, a missing
optional package: a `ResourceError`); 5 an internal error, a bug; 128+N stopped by signal N (130: Ctrl-C).
A Ctrl-C while `embmap compile` runs the CP-SAT search is not an interruption of the command: it stops the
search, and the compile finishes with the best plan found so far (status 0).

Standard output and error outlive their readers (`GuardedStream`): when the reader of a pipe goes away the
command still does its work (a compile whose progress reader went away still writes its plan) and exits with
the status of that work, so a closed pipe never turns a wrong output or a missing plan into success. Where
the command's result itself went to standard output (a listing, a report, `-o -`) and could not be written
whole, the status is 4: the result was not delivered. SIGTERM and SIGHUP stop the command as Ctrl-C does,
through its clean-up (no temporary file is left), with status 128+N.

`parser` builds the argument parser; the commands live one group to a module: `plans` (compile, export,
explain), `measure` (run, calibrate, bench) and `listings` (passes, targets, workloads).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from types import FrameType
from typing import NoReturn, TextIO, cast

from embmap.ir.errors import EmbmapError, ResourceError, RunFault
from embmap.ir.output import GuardedStream, is_stdout, os_error, stdout_error
from embmap.ir.printer import printable
from embmap.mapper.cli.listings import cmd_passes, cmd_targets, cmd_workloads
from embmap.mapper.cli.measure import cmd_bench, cmd_calibrate, cmd_run
from embmap.mapper.cli.parser import build_parser
from embmap.mapper.cli.plans import cmd_compile, cmd_explain, cmd_export
from embmap.mapper.cli.trace import cmd_profile_trace

EXIT = {"done": 0, "wrong_output": 1, "bad_input": 2, "run_failed": 3, "resource": 4, "internal": 5, "interrupted": 130}

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "bench": cmd_bench,
    "compile": cmd_compile,
    "explain": cmd_explain,
    "export": cmd_export,
    "run": cmd_run,
    "calibrate": cmd_calibrate,
    "passes": cmd_passes,
    "profile-trace": cmd_profile_trace,
    "targets": cmd_targets,
    "workloads": cmd_workloads,
}


# Commands whose result is what they print (not a file they write).
PRINTS_RESULT = frozenset({"explain", "passes", "targets", "workloads", "run"})
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived: unwinds the command like KeyboardInterrupt, through every `finally`."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def main(argv: Sequence[str] | None = None) -> int:
    with _guarded_streams() as stdout, _stop_signals():
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exc:  # --help, --version, or a usage error already reported on one line
            return _delivered(int(exc.code or 0), stdout, prints_result=True)
        status = _run(args)
        return _delivered(status, stdout, _prints_result(args))


def _run(args: argparse.Namespace) -> int:
    try:
        return COMMANDS[args.command](args)
    except RunFault as exc:  # good input, failed run: not status 2, so scripts can tell them apart
        sys.stderr.write(f"embmap: error: run failed: {exc.one_line()}\n")
        return EXIT["run_failed"]
    except ResourceError as exc:
        sys.stderr.write(f"embmap: error: {exc.one_line()}\n")
        return EXIT["resource"]
    except EmbmapError as exc:
        sys.stderr.write(f"embmap: error: {exc.one_line()}\n")
        return EXIT["bad_input"]
    except KeyboardInterrupt:
        sys.stderr.write("embmap: interrupted\n")
        return EXIT["interrupted"]
    except Terminated as exc:
        sys.stderr.write(f"embmap: stopped by {signal.Signals(exc.signum).name}\n")
        return 128 + exc.signum
    except OSError as exc:  # the machine refused (disk full, permission, a deleted working directory), or a bug
        error = os_error(exc)
        if error is None:
            return _internal(exc)
        sys.stderr.write(f"embmap: error: {error.one_line()}\n")
        return EXIT["resource"] if isinstance(error, ResourceError) else EXIT["bad_input"]
    except Exception as exc:
        return _internal(exc)


def _internal(exc: Exception) -> int:
    """A bug, not bad input: say so in one line, with the trace on request."""
    if os.environ.get("EMBMAP_DEBUG"):
        raise exc
    text = printable(f"{type(exc).__name__}: {exc}")  # a message may quote input: one line, nothing forged
    sys.stderr.write(f"embmap: internal error: {text} (set EMBMAP_DEBUG=1 for the trace)\n")
    return EXIT["internal"]


def _prints_result(args: argparse.Namespace) -> bool:
    """The command's result goes to standard output: a listing, a report, or an output given as `-`."""
    if args.command in PRINTS_RESULT or (args.command == "calibrate" and args.check is not None):
        return True
    return any(is_stdout(getattr(args, flag, None)) for flag in ("output", "save_csv"))


def _delivered(status: int, stdout: GuardedStream, prints_result: bool) -> int:
    """The work's status, or 4 where it succeeded but its result, printed, did not reach standard output whole
    (the reader closed the pipe, the disk is full): the caller must not take a cut listing or plan for a whole
    one. Output that is only a message ("wrote plan.json") may be lost without changing the status."""
    sys.stdout.flush()
    if status != EXIT["done"] or stdout.error is None or not prints_result:
        return status
    error = stdout_error(stdout.error)
    sys.stderr.write(f"embmap: error: {error.one_line()}\n")
    return EXIT["resource"]


@contextlib.contextmanager
def _guarded_streams() -> Iterator[GuardedStream]:
    """sys.stdout and sys.stderr as `GuardedStream`s for the command, restored after it."""
    saved = sys.stdout, sys.stderr
    stdout, stderr = GuardedStream(sys.stdout), GuardedStream(sys.stderr)
    sys.stdout, sys.stderr = cast(TextIO, stdout), cast(TextIO, stderr)
    try:
        yield stdout
    finally:
        for stream in (stdout, stderr):
            stream.flush()
        sys.stdout, sys.stderr = saved


# The handlers `_stop_signals` replaced, while it holds them: a forked child (a worker of `embmap run`) gets
# them back at once, so that a signal ends it as it did before instead of unwinding a copy of the command.
_REPLACED: dict[int, Callable[[int, FrameType | None], object] | int | None] = {}


def _restore_replaced() -> None:
    for signum, handler in _REPLACED.items():
        with contextlib.suppress(ValueError, OSError):  # not the main thread of the child
            signal.signal(signum, handler)


os.register_at_fork(after_in_child=_restore_replaced)


@contextlib.contextmanager
def _stop_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP raise `Terminated` while the command runs (where they are not ignored, as nohup
    ignores SIGHUP); a second one does what it did before, e.g. ends the process at once."""
    if threading.current_thread() is not threading.main_thread() or _REPLACED:
        yield
        return

    def stop(signum: int, frame: FrameType | None) -> None:
        signal.signal(signum, _REPLACED.get(signum, signal.SIG_DFL))
        raise Terminated(signum)

    for signum in STOP_SIGNALS:
        handler = signal.getsignal(signum)
        if handler is not signal.SIG_IGN:
            _REPLACED[signum] = handler
            signal.signal(signum, stop)
    try:
        yield
    finally:
        _restore_replaced()
        _REPLACED.clear()


def entry() -> NoReturn:
    status = main()
    # The command is over and its status decided: a Ctrl-C during the interpreter's exit (libraries' exit
    # handlers) would only print a traceback after the command's one line, or end it with another status.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise SystemExit(status)


__all__ = ["COMMANDS", "EXIT", "Terminated", "build_parser", "entry", "main"]
