"""The parameters of the analytic cost model, as data: one JSON file per target, units in the field names.

Latencies are seconds per access (`_s`), bandwidths are bytes per second per core (`_bytes_per_s`). Every
value's origin is recorded in `sources` (spec sheet, assumption, or the fit that produced it).
"""

from __future__ import annotations

from typing import Final, Literal

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from embmap.ir.spec import Frozen

PROFILE_SCHEMA: Final = "embmap.cost-profile/1"
MAX_COST_S = 1.0  # no single access, item or start-up of an embedding lookup takes a second
# The least an item of one sample and one lookup costs (item_fixed_s + bag_s + index_s): one unit of the
# solver's integer time (`passes.solver.problem.TIME_UNIT_S`). A profile that prices items below it makes
# plans whose makespan rounds to nothing, which no compile can verify.
MIN_ITEM_S = 1e-9


class FitReport(Frozen):
    """How a calibrated profile was fitted, and how well it predicts points it was not fitted on."""

    command: str = Field(description="the command that produced the measurements and the fit")
    machine: str = ""
    points_fit: int = Field(ge=0)
    points_held_out: int = Field(ge=0)
    train_median_rel_error: float = Field(ge=0)
    train_max_rel_error: float = Field(ge=0)
    holdout_median_rel_error: float = Field(ge=0)
    holdout_max_rel_error: float = Field(ge=0)


class CostProfile(Frozen):
    schema_version: Literal["embmap.cost-profile/1"] = PROFILE_SCHEMA
    target: str
    calibrated: bool = False
    item_fixed_s: float = Field(ge=0, description="launching one work item on one core")
    core_start_s: float = Field(
        0.0, ge=0, description="once per busy core and batch: joining the batch and starting its first item cold"
    )
    item_evicted_s: float = Field(
        0.0,
        ge=0,
        description="an item whose core's other work fills the core's private cache (a target whose local memory is "
        "a cache): fetching its own code and data again, in proportion to the part of the cache the others filled",
    )
    bag_s: float = Field(
        0.0,
        ge=0,
        description="pooling one sample's rows, whatever they are and wherever they come from: starting its sum, "
        "the loop over its lookups, storing the result",
    )
    main_row_s: float = Field(ge=0, description="latency of one row read from main memory, after double-buffering")
    main_bytes_per_s: float = Field(gt=0, description="per-core share of main-memory bandwidth for row reads")
    main_bag_s: float = Field(
        0.0,
        ge=0,
        description="a pooled bag whose rows come from main memory, in proportion to the share of them that do: "
        "a core overlaps the reads of one bag better than reads across bags",
    )
    main_window_rows: float = Field(
        1.0,
        ge=1.0,
        le=64.0,
        description="consecutive row reads whose main-memory accesses a core overlaps: a stretch of that many "
        "reads with any from main memory takes about one round trip, so a miss among hits is paid as if the whole "
        "stretch missed (1: every miss overlaps with the others, the linear model)",
    )
    cache_row_s: float = Field(ge=0, description="latency of one row read that hits the shared cache")
    cache_bytes_per_s: float = Field(gt=0, description="per-core share of shared-cache bandwidth")
    page_walk_s: float = Field(
        0.0,
        ge=0,
        description="a row read from a cache whose page the core's TLB does not hold: the page walk, which the "
        "read cannot overlap (TLB targets only)",
    )
    page_walk_overlapped_s: float = Field(
        0.0,
        ge=0,
        description="a row read from main memory whose page the core's TLB does not hold: what the walk adds to "
        "the read, which overlaps it",
    )
    page_walk_cache_s: float = Field(
        0.0,
        ge=0,
        description="a page walk whose page-table line the core's private cache (if any) does not hold: one "
        "shared-cache access",
    )
    page_walk_main_s: float = Field(
        0.0,
        ge=0,
        description="a page walk whose page-table line the shared cache does not hold: one more main-memory access",
    )
    local_row_s: float = Field(ge=0, description="latency of one row read from the core's local buffer")
    local_bytes_per_s: float = Field(gt=0, description="local-buffer read bandwidth")
    scratch_row_s: float = Field(ge=0, description="vector gather of one row inside the scratchpad")
    scratch_bytes_per_s: float = Field(gt=0, description="scratchpad bandwidth for gather and accumulate")
    stream_main_bytes_per_s: float = Field(gt=0, description="streaming table chunks main -> scratchpad")
    stream_local_bytes_per_s: float = Field(gt=0, description="streaming table chunks local buffer -> scratchpad")
    stream_cache_bytes_per_s: float = Field(gt=0, description="streaming chunks that the shared cache holds")
    stream_setup_s: float = Field(ge=0, description="bucketing a streamed item's indices by chunk, once per item")
    chunk_fixed_s: float = Field(ge=0, description="setting up one streamed chunk (one DMA)")
    chunk_gather_s: float = Field(ge=0, description="issuing the gather of one chunk that holds lookups")
    shard_setup_s: float = Field(ge=0, description="filtering a row shard's indices to its rows, once per item")
    index_s: float = Field(ge=0, description="reading and bucketing one index")
    output_bytes_per_s: float = Field(gt=0, description="writing pooled outputs")
    combine_bytes_per_s: float = Field(
        gt=0, description="row shards accumulating partial sums into the output (read + write)"
    )
    cache_effective_fraction: float = Field(
        1.0, gt=0.0, le=1.0, description="share of the shared cache that holds a table's hot rows in steady state"
    )
    sources: dict[str, str] = Field(default_factory=dict)
    fit: FitReport | None = Field(None, description="present when the profile was fitted to measurements")

    @model_validator(mode="after")
    def _plausible_times(self) -> CostProfile:
        # Times are turned into integer nanoseconds for the solver; a second per access is no chip's cost,
        # and far larger values would overflow it.
        for name in self.parameter_names():
            if name.endswith("_s") and not name.endswith("_bytes_per_s") and getattr(self, name) > MAX_COST_S:
                raise PydanticCustomError(
                    "cost_too_large",
                    "{name} is {value} s, more than {most} s",
                    {"name": name, "value": repr(getattr(self, name)), "most": f"{MAX_COST_S:g}"},
                )
        least = self.item_fixed_s + self.bag_s + self.index_s
        if least < MIN_ITEM_S:
            raise PydanticCustomError(
                "item_cost_too_small",
                "item_fixed_s + bag_s + index_s is {value} s, less than {least} s: items of one sample would cost "
                "nothing, and no plan could be checked",
                {"value": repr(least), "least": f"{MIN_ITEM_S:g}"},
            )
        return self

    @staticmethod
    def parameter_names() -> tuple[str, ...]:
        return tuple(n for n in CostProfile.model_fields if n.endswith(("_s", "_bytes_per_s")))
