"""Lowering: a workload spec and a target spec become an IR module, or a clear infeasibility error."""

from __future__ import annotations

from collections.abc import Sequence

from embmap.ir.cost_profile import CostProfile
from embmap.ir.errors import InfeasibleError
from embmap.ir.module import LookupOp, Module
from embmap.ir.printer import fmt_bytes
from embmap.ir.spec import TableSpec, TargetSpec, WorkloadSpec


def lower(workload: WorkloadSpec, target: TargetSpec, cost_profile: CostProfile, *, check: bool = True) -> Module:
    """`check=False` skips the memory fit, for costing tables that several devices will share."""
    effective = workload.effective()
    if check:
        check_fits(effective, target)
    lookups = tuple(
        LookupOp(
            table=t.name,
            batch_size=effective.batch_size,
            pooling=t.pooling,
            distribution=effective.distribution_of(t),
        )
        for t in effective.tables
    )
    return Module(workload=effective, target=target, cost_profile=cost_profile, lookups=lookups)


def check_fits(workload: WorkloadSpec, target: TargetSpec) -> None:
    """Every table must fit the target's shared main memory, and so must all of them together."""
    main = target.main
    for t in workload.tables:
        if t.bytes > main.capacity_bytes:
            raise InfeasibleError(
                f"table {t.name}",
                f"needs {fmt_bytes(t.bytes)} ({t.rows} rows x {t.row_bytes} B); the largest memory of "
                f"{target.name} ({main.name}) holds {fmt_bytes(main.capacity_bytes)}",
                # The cap applies to every table: it must leave room for the others too.
                f"cap rows with --row-cap {largest_fitting_cap(workload, main.capacity_bytes)} or less (ids hashed, "
                "as DLRM's --max-ind-range), use a smaller dtype, or a target with more memory",
            )
    total = workload.total_bytes
    if total > main.capacity_bytes:
        largest = max(workload.tables, key=lambda t: t.bytes)
        raise InfeasibleError(
            "workload.tables",
            f"together need {fmt_bytes(total)}; {target.name} {main.name} holds {fmt_bytes(main.capacity_bytes)} "
            f"(largest table {largest.name}: {fmt_bytes(largest.bytes)})",
            f"cap rows with --row-cap {largest_fitting_cap(workload, main.capacity_bytes)} or less (ids hashed, "
            "as DLRM's --max-ind-range), use a smaller dtype, or plan across several devices",
        )


def largest_fitting_cap(workload: WorkloadSpec | Sequence[TableSpec], capacity_bytes: int) -> int:
    """The largest per-table row cap with which all tables fit in `capacity_bytes` (binary search)."""
    tables = workload.tables if isinstance(workload, WorkloadSpec) else workload
    lo, hi = 0, max(t.rows for t in tables)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if sum(min(t.rows, mid) * t.row_bytes for t in tables) <= capacity_bytes:
            lo = mid
        else:
            hi = mid - 1
    return lo
