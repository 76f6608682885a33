"""Passes over the IR module, their registry, and the pass manager.

Importing this package registers every pass.
"""

from passes import balance, packing, placement, profile, strategy  # noqa: F401  (registration)
from passes.base import REGISTRY, ModulePass
from passes.pipeline import PassManager, PrintIRAfter, TimingInstrument, parse_pipeline, pipeline_text

__all__ = [
    "REGISTRY",
    "ModulePass",
    "PassManager",
    "PrintIRAfter",
    "TimingInstrument",
    "parse_pipeline",
    "pipeline_text",
]
