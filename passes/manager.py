"""Pipelines: parsing pass lists from text, and the pass manager that runs them in a pass context.

Text form: `profile,select-strategy{strategies=GM:L1},partition,assign-cores{method=greedy},schedule`. Every
name and option is resolved before anything runs. The manager hands every pass the same `PassContext` (solver
settings, progress listener, instruments), calls the instruments around each pass, verifies the module between
passes, checks each pass's `requires`/`ensures`, and re-raises a failure with the pass that failed and those
before it.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Sequence
from typing import TextIO

from embmap.ir.errors import EmbmapError, PipelineError
from embmap.ir.module import Module
from embmap.ir.printer import print_module
from embmap.ir.verify import verify_module
from embmap.passes.base import REGISTRY, Instrument, ModulePass, PassContext

__all__ = ["Instrument", "PassContext", "PassManager", "PrintIRAfter", "TimingInstrument", "parse_pipeline"]


def parse_pipeline(text: str) -> tuple[ModulePass, ...]:
    passes = []
    for chunk in _split_top_level(text.strip()):
        name, options = _parse_pass(chunk)
        if name not in REGISTRY:
            raise PipelineError(
                f"pipeline pass {name!r}", "unknown pass", f"known passes: {', '.join(sorted(REGISTRY))}"
            )
        passes.append(REGISTRY[name].from_options(options))
    if not passes:
        raise PipelineError("pipeline", "is empty", "name at least one pass, e.g. 'profile,select-strategy'")
    return tuple(passes)


def pipeline_text(passes: Sequence[ModulePass]) -> str:
    return ",".join(p.spec() for p in passes)


def _split_top_level(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for ch in text:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth < 0:
                raise PipelineError("pipeline", "has an unmatched '}'", "balance the braces")
        if ch == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += ch
    if depth != 0:
        raise PipelineError("pipeline", "has an unmatched '{'", "balance the braces")
    parts.append(current.strip())
    if any(not p for p in parts):
        raise PipelineError("pipeline", f"has an empty pass name in {text!r}", "remove the extra comma")
    return parts


def _parse_pass(chunk: str) -> tuple[str, dict[str, str]]:
    if "{" not in chunk:
        return chunk, {}
    name, _, rest = chunk.partition("{")
    if not rest.endswith("}"):
        raise PipelineError(f"pipeline pass {name!r}", "options must end with '}'", "write name{key=value,...}")
    options: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in rest[:-1].split(","))):
        key, eq, value = pair.partition("=")
        if not eq:
            raise PipelineError(f"{name}{{{pair}}}", "option without a value", "write key=value")
        options[key.strip()] = value.strip()
    return name.strip(), options


@dataclasses.dataclass
class TimingInstrument:
    records: list[tuple[str, float]] = dataclasses.field(default_factory=list)

    def before_pass(self, pass_: ModulePass, module: Module) -> None:
        pass

    def after_pass(self, pass_: ModulePass, module: Module, seconds: float) -> None:
        self.records.append((pass_.name, seconds))


@dataclasses.dataclass
class PrintIRAfter:
    """Prints the module after the named passes (all passes when `names` holds 'all')."""

    names: frozenset[str]
    stream: TextIO | None = None  # None: whatever sys.stderr is when printing
    as_json: bool = False

    def before_pass(self, pass_: ModulePass, module: Module) -> None:
        pass

    def after_pass(self, pass_: ModulePass, module: Module, seconds: float) -> None:
        if pass_.name in self.names or "all" in self.names:
            text = module.model_dump_json(indent=1) if self.as_json else print_module(module)
            (self.stream or sys.stderr).write(f"// -----// IR after {pass_.spec()} //----- //\n{text}\n")


@dataclasses.dataclass(frozen=True)
class PassManager:
    passes: tuple[ModulePass, ...]
    verify_each: bool = True

    def run(self, module: Module, ctx: PassContext | None = None) -> Module:
        """The module after every pass, each given `ctx` (default settings, no listener, no instruments)."""
        ctx = ctx or PassContext()
        instruments = ctx.instruments
        done: list[str] = []
        for pass_ in self.passes:
            missing = [a for a in pass_.requires if getattr(module, a) is None]
            if missing:
                raise PipelineError(
                    f"pass {pass_.name}",
                    f"requires {', '.join(missing)}, which no earlier pass produced (ran: {', '.join(done) or 'none'})",
                    _producers_hint(missing),
                )
            for ins in instruments:
                ins.before_pass(pass_, module)
            start = time.perf_counter()
            try:
                module = pass_.apply(module, ctx)
            except EmbmapError:
                raise
            except Exception as exc:
                raise RuntimeError(f"pass {pass_.name} failed after [{', '.join(done)}]: {exc}") from exc
            seconds = time.perf_counter() - start
            module = module.model_copy(update={"history": (*module.history, pass_.spec())})
            unmet = [a for a in pass_.ensures if getattr(module, a) is None]
            if unmet:
                raise RuntimeError(f"pass {pass_.name} did not produce {', '.join(unmet)} as it promises")
            if self.verify_each:
                verify_module(module, where=f"after pass {pass_.name}")
            for ins in instruments:
                ins.after_pass(pass_, module, seconds)
            done.append(pass_.name)
        return module


def _producers_hint(missing: list[str]) -> str:
    producers = {a: [n for n, p in REGISTRY.items() if a in p.ensures] for a in missing}
    return "; ".join(f"run {' or '.join(ps) or '?'} before it (for {a})" for a, ps in producers.items())
