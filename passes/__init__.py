"""Passes over the IR module, their registry, and the pass manager.

Importing this package registers every pass.
"""

from embmap.passes import balance, packing, placement, profile, strategy  # noqa: F401  (registration)
from embmap.passes.base import REGISTRY, ModulePass
from embmap.passes.pipeline import PassManager, PrintIRAfter, TimingInstrument, parse_pipeline, pipeline_text

__all__ = [
    "REGISTRY",
    "ModulePass",
    "PassManager",
    "PrintIRAfter",
    "TimingInstrument",
    "parse_pipeline",
    "pipeline_text",
]
