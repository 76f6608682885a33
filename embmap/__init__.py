"""embmap: maps the embedding tables of deep recommender models onto the cores of a chip.

One namespace: `embmap.ir` (specs, the IR, the plan format), `embmap.cost_models`, `embmap.passes`,
`embmap.mapper` (the front door: `compile`; and its wings: the command line, benchmarks, TorchRec, the
workload library) and `embmap.runtime` (the executors). In the repository each is a top-level folder; this
package links them.

    import embmap
    plan = embmap.compile("avazu", "ascend910")
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("embmap")
except PackageNotFoundError:  # pragma: no cover - running from a checkout without installing
    __version__ = "0+unknown"

if TYPE_CHECKING:
    from embmap.mapper import SolverSettings, compile

__all__ = ["SolverSettings", "__version__", "compile"]


def __getattr__(name: str) -> Any:
    """`embmap.compile` and `embmap.SolverSettings`, imported when first used (the solver stack is heavy)."""
    if name in ("compile", "SolverSettings"):
        from embmap import mapper

        return getattr(mapper, name)
    raise AttributeError(f"module 'embmap' has no attribute {name!r}")
