"""TorchRec `ParameterConstraints` read for the device level: each field honoured, or refused in one line
(a SpecError naming the constraint and the table). Nothing is dropped unseen.

Honoured: `sharding_types` (within the four embmap plans: table_wise, row_wise, column_wise, data_parallel, and
those the sharders offer on the topology's device), `compute_kernels` (sharded tables use `fused`, replicas
`dense`: a table pinned to one keeps it), `min_partition` (column-wise shards are dim / N wide, so column_wise
is left out where that is narrower), `pooling_factors` (summed over the table's features), `num_poolings` and
`batch_sizes` where they say what the planner assumes anyway (one pooling per sample, the planner's batch),
`enforce_hbm` (every plan keeps all weights in device memory), `stochastic_rounding` and `bounds_check_mode`
(copied into the ParameterSharding for FBGEMM), `feature_names` equal to the table's.
Refused: `cache_params` (no cache kernel is modelled), `is_weighted` (the cost model prices unweighted sums),
other `num_poolings` and `batch_sizes`, `output_dtype` other than FP32 (outputs are priced as fp32),
`device_group`, `key_value_params`, `use_virtual_table` (no SSD, parameter-server or virtual tables).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from embmap.ir.cluster import Sharding
from embmap.ir.errors import SpecError
from embmap.mapper.torchrec.io import DEFAULT_POOLING

KERNEL = {
    Sharding.TABLE_WISE: "fused",
    Sharding.ROW_WISE: "fused",
    Sharding.COLUMN_WISE: "fused",
    Sharding.DATA_PARALLEL: "dense",
}
MODELLED = ", ".join(s.value for s in Sharding)
# Fields whose any value but these is refused, with the reason.
REFUSED = {
    "cache_params": (None, "no cache kernel (fused_uvm_caching) is modelled"),
    "is_weighted": (False, "weighted features are not modelled: the cost model prices unweighted sums"),
    "device_group": (None, "every table is planned on the topology's compute device"),
    "key_value_params": (None, "SSD and parameter-server tables are not modelled"),
    "use_virtual_table": (False, "virtual tables are not modelled"),
}
PASSED_THROUGH = ("enforce_hbm", "stochastic_rounding", "bounds_check_mode")


@dataclass(frozen=True)
class TableConstraints:
    """What the device level takes from one table's constraints."""

    allowed: tuple[Sharding, ...]
    pooling: float | None  # mean ids per sample over the table's features; None: none given
    passed_through: dict[str, Any]  # ParameterSharding fields copied as given


def read_constraints(
    config: Any, pc: Any, offered: dict[str, list[str]], devices: int, batch_size: int
) -> TableConstraints:
    """One table's constraints (`pc`, a ParameterConstraints or None) within what the sharders offer
    (`offered`: sharding type -> compute kernels on the topology's device) on `devices` devices."""
    name = config.name
    where = f"constraints.{name}"
    allowed = [s for s in Sharding if s.value in offered and KERNEL[s] in offered[s.value]]
    if pc is None:
        return TableConstraints(tuple(allowed), None, {})
    _refuse_unmodelled(pc, where)
    allowed = _sharding_types(pc, allowed, offered, where)
    allowed = _compute_kernels(pc, allowed, where)
    allowed = _min_partition(pc, allowed, config.embedding_dim, devices, where)
    _per_feature(pc, config, batch_size, where)
    pooling = float(sum(pc.pooling_factors)) if _pooling_given(pc) else None
    passed = {k: getattr(pc, k) for k in PASSED_THROUGH if getattr(pc, k, None) is not None}
    return TableConstraints(tuple(allowed), pooling, passed)


def _refuse_unmodelled(pc: Any, where: str) -> None:
    for field, (default, reason) in REFUSED.items():
        value = getattr(pc, field, default)
        if value is not None and value != default:
            raise SpecError(f"{where}.{field}", f"{value!r} is not supported: {reason}", f"leave {field} unset")
    dtype = getattr(pc, "output_dtype", None)
    if dtype is not None and getattr(dtype, "name", str(dtype)) != "FP32":
        raise SpecError(
            f"{where}.output_dtype", f"{dtype} is not supported: outputs are priced as fp32", "leave it unset or FP32"
        )


def _sharding_types(pc: Any, allowed: list[Sharding], offered: dict[str, list[str]], where: str) -> list[Sharding]:
    if not pc.sharding_types:
        return allowed
    asked = [str(getattr(k, "value", k)) for k in pc.sharding_types]
    kept = [s for s in allowed if s.value in asked]
    if not kept:
        not_offered = [k for k in asked if k not in offered]
        why = (
            f"the sharders on this device offer only {', '.join(offered)}"
            if not_offered and all(k in MODELLED for k in not_offered)
            else f"embmap plans {MODELLED}"
        )
        raise SpecError(f"{where}.sharding_types", f"{asked} leaves no sharding type: {why}", "allow another type")
    return kept


def _compute_kernels(pc: Any, allowed: list[Sharding], where: str) -> list[Sharding]:
    if not pc.compute_kernels:
        return allowed
    asked = [str(getattr(k, "value", k)) for k in pc.compute_kernels]
    kept = [s for s in allowed if KERNEL[s] in asked]
    if not kept:
        kinds = ", ".join(f"{s.value}: {KERNEL[s]}" for s in allowed)
        raise SpecError(
            f"{where}.compute_kernels",
            f"{asked} leaves no sharding type: embmap plans only the kernels {kinds}",
            "allow fused (sharded) or dense (data_parallel)",
        )
    return kept


def _min_partition(pc: Any, allowed: list[Sharding], dim: int, devices: int, where: str) -> list[Sharding]:
    if pc.min_partition is None or Sharding.COLUMN_WISE not in allowed or dim // devices >= pc.min_partition:
        return allowed
    kept: list[Sharding] = [s for s in allowed if s is not Sharding.COLUMN_WISE]
    if not kept:
        raise SpecError(
            f"{where}.min_partition",
            f"{pc.min_partition} is wider than the {dim // devices}-column shards of column_wise over {devices} devices, "
            "the only sharding type allowed",
            "lower min_partition or allow another type",
        )
    return kept


def _per_feature(pc: Any, config: Any, batch_size: int, where: str) -> None:
    features = len(config.feature_names)
    if _pooling_given(pc) and (len(pc.pooling_factors) != features or not all(f > 0 for f in pc.pooling_factors)):
        raise SpecError(
            f"{where}.pooling_factors",
            f"{list(pc.pooling_factors)}: must be {features} positive values, one per feature",
            "give each feature's mean ids per sample",
        )
    if pc.num_poolings and any(n != 1 for n in pc.num_poolings):
        raise SpecError(
            f"{where}.num_poolings", f"{list(pc.num_poolings)}: only one pooling per sample is modelled", "leave unset"
        )
    if pc.batch_sizes and any(b != batch_size for b in pc.batch_sizes):
        raise SpecError(
            f"{where}.batch_sizes",
            f"{list(pc.batch_sizes)}: per-feature batches are not modelled (the planner's batch is {batch_size})",
            "leave unset",
        )
    if pc.feature_names and list(pc.feature_names) != list(config.feature_names):
        raise SpecError(
            f"{where}.feature_names",
            f"{list(pc.feature_names)} differ from the table's {list(config.feature_names)}",
            "leave unset",
        )


def _pooling_given(pc: Any) -> bool:
    """Whether pooling factors were given: ParameterConstraints defaults to [1.0] (TorchRec's one id per
    feature), which for a table of several features means the default, not a wrong length."""
    factors = list(getattr(pc, "pooling_factors", None) or [])
    return bool(factors) and factors != [DEFAULT_POOLING]
