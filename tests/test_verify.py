"""The verifier catches each invariant it states, one broken module at a time."""

from __future__ import annotations

import networkx as nx
import pytest

from embmap.ir.module import Module
from embmap.ir.plan import WorkItem
from embmap.ir.verify import dataflow_graph, module_violations
from tests.conftest import run


@pytest.fixture
def planned(lowered: Module) -> Module:
    return run(lowered, "profile,select-strategy,partition,assign-cores{method=greedy},schedule")


def with_item(m: Module, index: int, **update: object) -> Module:
    assert m.items is not None
    items = list(m.items)
    items[index] = items[index].model_copy(update=update)
    return m.model_copy(update={"items": tuple(items)})


def test_a_correct_plan_has_no_violations(planned: Module) -> None:
    assert module_violations(planned) == []
    g = dataflow_graph(planned.workload.tables, planned.items or ())
    assert nx.is_directed_acyclic_graph(g)
    for t in planned.workload.tables:
        assert nx.has_path(g, f"lookup:{t.name}", f"output:{t.name}")


def test_core_that_does_not_exist(planned: Module) -> None:
    bad = with_item(planned, 0, core=99)
    assert any("core 99 does not exist" in v for v in module_violations(bad))


def test_lookups_served_twice(planned: Module) -> None:
    assert planned.items is not None
    dup = planned.items[0].model_copy(update={"id": len(planned.items)})
    bad = planned.model_copy(update={"items": (*planned.items, dup), "schedules": None})
    assert any("serve the same" in v or "two parts on one core" in v for v in module_violations(bad))


def test_lookups_not_served(planned: Module) -> None:
    assert planned.items is not None
    it = planned.items[0]
    bad = with_item(planned, 0, samples=(it.samples[0], it.samples[1] - 1)).model_copy(update={"schedules": None})
    assert any("cover" in v for v in module_violations(bad))


def test_local_capacity(planned: Module) -> None:
    from embmap.ir.plan import Strategy

    bad = with_item(planned, 0, strategy=Strategy.L1, local_bytes=planned.target.local.capacity_bytes + 1)
    found = module_violations(bad)
    assert any("preloaded tables need" in v for v in found)
    assert any("holds" in v and "locally" in v for v in found)


def test_row_shards_must_accumulate(target: object) -> None:
    from embmap.cost_models import preset_profile
    from embmap.ir.lowering import lower
    from embmap.ir.spec import TableSpec, WorkloadSpec
    from tests.conftest import tiny_target

    tgt = tiny_target()
    w = WorkloadSpec(name="w", batch_size=16, tables=(TableSpec(name="medium", rows=3000, dim=16),))
    # 192 KB preloaded into 64 KiB local buffers: only row shards fit.
    m = run(
        lower(w, tgt, preset_profile(tgt)),
        "profile,select-strategy{strategies=L1},partition,assign-cores{method=greedy},schedule",
    )
    assert m.items is not None and all(it.output == "accumulate" for it in m.items)
    assert module_violations(m) == []
    bad = with_item(m, 0, output="write")
    assert any("output mode" in v for v in module_violations(bad))


def test_schedule_overlap_and_dependencies(planned: Module) -> None:
    assert planned.schedules is not None and planned.items is not None
    busy = next(s for s in planned.schedules if len(s.items) >= 2)
    shifted = busy.model_copy(
        update={
            "start_s": (busy.start_s[0], 0.0, *busy.start_s[2:]),
            "finish_s": (busy.finish_s[0], planned.items[busy.items[1]].cost.total_s, *busy.finish_s[2:]),
        }
    )
    schedules = tuple(shifted if s.core == busy.core else s for s in planned.schedules)
    assert any(
        "starts before the previous one ends" in v
        for v in module_violations(planned.model_copy(update={"schedules": schedules}))
    )
    # An item that depends on a later item on the same core breaks the order.
    first, second = busy.items[0], busy.items[1]
    bad = with_item(planned, first, depends_on=(second,))
    found = module_violations(bad)
    assert any("depends on" in v for v in found) and any("cycle" in v for v in found)


def test_items_must_be_numbered_in_order(planned: Module) -> None:
    bad = with_item(planned, 0, id=1000)
    assert any("ids must be 0..n-1" in v for v in module_violations(bad))


def test_work_item_ranges_outside_the_table(planned: Module) -> None:
    assert planned.items is not None
    t = planned.table(planned.items[0].table)
    bad = with_item(planned, 0, rows=(0, t.rows + 5))
    assert any("fall outside" in v for v in module_violations(bad))


def test_unknown_table(planned: Module) -> None:
    bad = with_item(planned, 0, table="ghost")
    assert any("unknown table 'ghost'" in v for v in module_violations(bad))


def test_item_type_rejects_negative_cores() -> None:
    from pydantic import ValidationError

    from embmap.ir.plan import CostBreakdown, Strategy

    with pytest.raises(ValidationError):
        WorkItem(id=0, table="t", strategy=Strategy.GM, rows=(0, 1), samples=(0, 1), core=-1, cost=CostBreakdown())
