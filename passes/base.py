"""Pass infrastructure: the pass base class, the registry, typed options parsed from pipeline text, and the
pass context.

A pass is a frozen dataclass with a class-level kebab-case `name`, its options as typed fields, and one entry
point `apply(module, ctx) -> module`. It may declare which module annotations it `requires` and which it
`ensures`; the pass manager checks both. What is not the pass's own option travels in the `PassContext` the
manager hands to every pass: the solver settings, the progress listener and the instruments.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Protocol, TypeVar, get_type_hints

from embmap.ir.errors import PipelineError
from embmap.ir.module import Module
from embmap.passes.solver.progress import ProgressListener
from embmap.passes.solver.settings import SolverSettings

P = TypeVar("P", bound=type["ModulePass"])

REGISTRY: dict[str, type[ModulePass]] = {}

# The solver settings as pipeline text once named them (assign-cores{time-limit=5}), with the command-line flag
# and the `SolverSettings` field that now give them: they are the compile's, not a pass's.
SOLVER_SETTINGS = {
    "time-limit": ("--time-limit 5, or ", "time_limit_s=5"),
    "workers": ("--workers 2, or ", "workers=2"),
    "seed": ("--seed 1, or ", "seed=1"),
    "relative-gap": ("", "relative_gap=0.01"),
}


class Instrument(Protocol):
    """Observes passes from outside; passes themselves never print or time."""

    def before_pass(self, pass_: ModulePass, module: Module) -> None: ...

    def after_pass(self, pass_: ModulePass, module: Module, seconds: float) -> None: ...


@dataclasses.dataclass(frozen=True)
class PassContext:
    """What every pass of a run shares and none owns: how the solver searches, who hears of its progress (in
    seconds of makespan, as the plan will report them), and the instruments the manager calls around each
    pass. Passes read `solver` and `progress`; only the manager calls the instruments."""

    solver: SolverSettings = SolverSettings()
    progress: ProgressListener | None = None
    instruments: tuple[Instrument, ...] = ()


@dataclasses.dataclass(frozen=True)
class ModulePass(ABC):
    name: ClassVar[str]
    summary: ClassVar[str] = ""
    requires: ClassVar[tuple[str, ...]] = ()
    ensures: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def apply(self, module: Module, ctx: PassContext) -> Module: ...

    def spec(self) -> str:
        """Pipeline text for this pass: its name, and the options that differ from their defaults."""
        opts = []
        for f in option_fields(self):
            value = getattr(self, f.name)
            if f.default is not dataclasses.MISSING and value == f.default:
                continue
            shown = (
                ":".join(map(str, value))
                if isinstance(value, tuple)
                else str(value).lower()
                if isinstance(value, bool)
                else str(value)
            )
            opts.append(f"{f.name.replace('_', '-')}={shown}")
        return self.name + ("{" + ",".join(opts) + "}" if opts else "")

    @classmethod
    def option_names(cls) -> list[str]:
        return [f.name.replace("_", "-") for f in option_fields(cls)]

    @classmethod
    def from_options(cls, options: dict[str, str]) -> ModulePass:
        hints = get_type_hints(cls)
        known = {f.name: f for f in option_fields(cls)}
        values: dict[str, Any] = {}
        for key, raw in options.items():
            field = key.replace("-", "_")
            if field not in known and key in SOLVER_SETTINGS:
                flag, setting = SOLVER_SETTINGS[key]
                raise PipelineError(
                    f"{cls.name}{{{key}}}",
                    "is a solver setting of the compile, not an option of a pass",
                    f"give {flag}compile(..., solver=SolverSettings({setting}))",
                )
            if field not in known:
                valid = ", ".join(cls.option_names()) or "none"
                raise PipelineError(f"{cls.name}{{{key}}}", "unknown option", f"options of {cls.name}: {valid}")
            values[field] = _convert(raw, hints[field], f"{cls.name}{{{key}}}")
        try:
            return cls(**values)
        except ValueError as exc:
            raise PipelineError(cls.name, str(exc), "check the option values") from None


def option_fields(pass_: ModulePass | type[ModulePass]) -> list[dataclasses.Field[Any]]:
    """The fields of a pass: its options (written in pipeline text), in declaration order."""
    return list(dataclasses.fields(pass_))


def register(cls: P) -> P:
    if cls.name in REGISTRY:
        raise RuntimeError(f"pass name {cls.name!r} registered twice: {REGISTRY[cls.name]} and {cls}")
    REGISTRY[cls.name] = cls
    return cls


def _convert(raw: str, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        if raw.lower() in ("none", ""):
            return None
        return _convert(raw, next(a for a in args if a is not type(None)), where)
    if origin is tuple:
        return tuple(_convert(part, args[0], where) for part in raw.split(":") if part)
    try:
        if hint is bool:
            if raw.lower() in ("true", "1", "yes", "on"):
                return True
            if raw.lower() in ("false", "0", "no", "off"):
                return False
            raise ValueError(raw)
        if hint is int:
            return int(raw)
        if hint is float:
            return float(raw)
        if isinstance(hint, type) and issubclass(hint, str) and hint is not str:
            return hint(raw)  # a StrEnum
        return raw
    except ValueError:
        if isinstance(hint, type) and issubclass(hint, enum.Enum):
            allowed = f"one of {', '.join(str(m.value) for m in hint)}"
        else:
            allowed = f"a {getattr(hint, '__name__', hint)}"
        raise PipelineError(where, f"cannot read {raw!r}", f"give {allowed}") from None
