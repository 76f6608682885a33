"""One error type for everything a user can get wrong, and for a run that fails on good input.

Every error renders as a single line that names the offending field, what is wrong with it and how to fix
it, so that the command line can print it as is and exit with the status of its kind: 2 for bad input, 3 for
a `RunFault` (good input, failed run), 4 for a `ResourceError` (good input, the machine refused a resource).
"""

from __future__ import annotations

from collections.abc import Sequence

from embmap.ir.printer import printable


class EmbmapError(Exception):
    """A user-facing error: `field: problem (fix: ...)` on one line."""

    def __init__(self, field: str, problem: str, fix: str = "") -> None:
        self.field = field
        self.problem = problem
        self.fix = fix
        super().__init__(self.one_line())

    def one_line(self) -> str:
        """One line whatever it quotes: whitespace runs become a space, other control characters (a name's
        escape sequence) are shown escaped (`printable`)."""
        text = f"{self.field}: {self.problem}" if self.field else self.problem
        if self.fix:
            text += f" (fix: {self.fix})"
        return printable(" ".join(text.split()))


class SpecError(EmbmapError):
    """A workload, target, profile or plan file is malformed or inconsistent."""


class PipelineError(EmbmapError):
    """A pipeline names an unknown pass or option, or a pass failed."""


class InfeasibleError(EmbmapError):
    """No plan exists for this workload on this target."""


class RunFault(EmbmapError):
    """A worker of the runtime died, exited early or hung: the run failed, though its input was good."""


class ResourceError(EmbmapError):
    """The machine refused something the command needs, though its input was good: disk space, a permission,
    shared memory, memory or address space, an optional package, an open standard output. `field` names the
    resource (a path, `/dev/shm`, `torch`), `fix` says what to free, grant or install."""


class VerificationError(EmbmapError):
    """An IR or plan invariant does not hold."""

    def __init__(self, violations: Sequence[str], where: str = "", fix: str = "") -> None:
        self.violations = tuple(violations)
        shown = "; ".join(self.violations[:3])
        more = f" (+{len(self.violations) - 3} more)" if len(self.violations) > 3 else ""
        super().__init__(where or "verify", f"{shown}{more}", fix)
