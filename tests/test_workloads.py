"""The built-in workload library (`mapper/workloads`): the dataset workloads match their sources, and the
synthetic generator is seeded, sized and refuses bad recipes."""

from __future__ import annotations

import pytest

from embmap.ir.errors import SpecError
from embmap.mapper.workloads import builtin_names, builtin_workload, resolve_workload


def test_builtin_workloads_match_their_sources() -> None:
    names = builtin_names()
    assert set(names) >= {
        "criteo-1tb-t3",
        "criteo-1tb-dlrmv2",
        "avazu",
        "kuairec-big",
        "taobao-ub",
        "tenrec-qb-article",
        "huawei-25mb-like",
    }
    avazu = builtin_workload("avazu")
    assert len(avazu.tables) == 22 and avazu.tables[9].name == "device_ip" and avazu.tables[9].rows == 6_729_486
    t3 = builtin_workload("criteo-1tb-t3")
    assert sum(t.rows for t in t3.tables) * 128 * 4 == pytest.approx(91.1e9, rel=0.001)
    assert t3.row_cap == 10_000_000 and any("max-ind-range" in a for a in t3.assumptions)
    dlrm = builtin_workload("criteo-1tb-dlrmv2")
    assert sum(t.pooling for t in dlrm.tables) == 214


def test_synthetic_generator_is_seeded_and_sized() -> None:
    a = resolve_workload("synthetic:tables=50,total_bytes=1e8,size_skew=1.2,seed=3")
    b = resolve_workload("synthetic:tables=50,total_bytes=1e8,size_skew=1.2,seed=3")
    c = resolve_workload("synthetic:tables=50,total_bytes=1e8,size_skew=1.2,seed=4")
    assert a == b and a != c
    assert len(a.tables) == 50
    assert a.total_bytes == pytest.approx(1e8, rel=0.05)
    sizes = sorted(t.bytes for t in a.tables)
    assert sizes[-1] > 20 * sizes[len(sizes) // 2]  # skewed: the largest dwarfs the median
    flat = resolve_workload("synthetic:tables=20,total_bytes=1e7,size_skew=0,dims=32")
    assert max(t.bytes for t in flat.tables) == pytest.approx(min(t.bytes for t in flat.tables), rel=0.01)


def test_huawei_like_preset_is_25mb_over_a_few_dozen_tables() -> None:
    w = builtin_workload("huawei-25mb-like")
    assert 24 <= len(w.tables) <= 48
    assert w.total_bytes == pytest.approx(25e6, rel=0.05)
    assert "synthetic" in w.notes


@pytest.mark.parametrize("recipe", ["synthetic:tables=0", "synthetic:colour=3", "synthetic:tables=x"])
def test_bad_synthetic_recipes(recipe: str) -> None:
    with pytest.raises(SpecError):
        resolve_workload(recipe)
