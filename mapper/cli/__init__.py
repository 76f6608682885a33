"""The `embmap` command line. Bad input exits with status 2 and one line naming the field and the fix.

Exit status (`EXIT`): 0 done; 1 `embmap run` computed wrong outputs (nothing else exits 1); 2 bad input
(nothing written); 3 `embmap run` failed on good input because a worker died or hung (a `RunFault`); 4 the
machine refused a resource the command needs (disk full, permission, shared memory, memory, a missing
optional package: a `ResourceError`); 5 an internal error, a bug; 128+N stopped by signal N (130: Ctrl-C).
A Ctrl-C while `embmap compile` runs the CP-SAT search is not an interruption of the command: it stops the
search, and the compile finishes with the best plan found so far (status 0).

`parser` builds the argument parser; the commands live one group to a module: `plans` (compile, export,
explain), `measure` (run, calibrate, bench) and `listings` (passes, targets, workloads).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from embmap.ir.errors import EmbmapError, ResourceError, RunFault
from embmap.mapper.cli.listings import cmd_passes, cmd_targets, cmd_workloads
from embmap.mapper.cli.measure import cmd_bench, cmd_calibrate, cmd_run
from embmap.mapper.cli.parser import build_parser
from embmap.mapper.cli.plans import cmd_compile, cmd_explain, cmd_export

EXIT = {"done": 0, "wrong_output": 1, "bad_input": 2, "run_failed": 3, "resource": 4, "internal": 5, "interrupted": 130}

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "bench": cmd_bench,
    "compile": cmd_compile,
    "explain": cmd_explain,
    "export": cmd_export,
    "run": cmd_run,
    "calibrate": cmd_calibrate,
    "passes": cmd_passes,
    "targets": cmd_targets,
    "workloads": cmd_workloads,
}


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already reported on one line
        return int(exc.code or 0)
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
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a bug, not bad input: say so in one line, with the trace on request
        if os.environ.get("EMBMAP_DEBUG"):
            raise
        sys.stderr.write(f"embmap: internal error: {type(exc).__name__}: {exc} (set EMBMAP_DEBUG=1 for the trace)\n")
        return EXIT["internal"]


def entry() -> NoReturn:
    raise SystemExit(main())


__all__ = ["COMMANDS", "EXIT", "build_parser", "entry", "main"]
