"""`verify`: check every invariant of the module now (`ir.verify` states them all in one place)."""

from __future__ import annotations

import dataclasses

from embmap.ir.module import Module
from embmap.ir.verify import verify_module
from embmap.passes.base import ModulePass, PassContext, register


@register
@dataclasses.dataclass(frozen=True)
class VerifyPass(ModulePass):
    """Check every invariant now (the pass manager also does so between passes unless told not to)."""

    name = "verify"
    summary = "check every IR invariant (coverage, tiling, capacity, cores, schedule order)"

    def apply(self, module: Module, ctx: PassContext) -> Module:
        verify_module(module)
        return module
