"""EmbmapShardingPlanner: TorchRec's planner interface on TorchRec's DLRM, constraints honoured or refused."""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from embmap.ir.errors import SpecError
from embmap.mapper import SolverSettings
from embmap.mapper.torchrec.planner import available
from tests.gloo import on_ranks

pytestmark = pytest.mark.skipif(not available(), reason="TorchRec is not installed (make installs it)")

EBC = "sparse_arch.embedding_bag_collection"  # where DLRM keeps its EmbeddingBagCollection
FAST = SolverSettings(time_limit_s=2.0, workers=1, seed=0)
DIM = 16


def dlrm(device: str = "meta", tables: int = 8, seed: int = 0) -> Any:
    """TorchRec's DLRM with `tables` tables of DIM columns (DLRM needs one dim), one feature each."""
    import torch
    from torchrec.models.dlrm import DLRM
    from torchrec.modules.embedding_configs import EmbeddingBagConfig
    from torchrec.modules.embedding_modules import EmbeddingBagCollection

    torch.manual_seed(seed)
    configs = [
        EmbeddingBagConfig(name=f"t_{i}", embedding_dim=DIM, num_embeddings=100 * (i + 1), feature_names=[f"f_{i}"])
        for i in range(tables)
    ]
    ebc = EmbeddingBagCollection(tables=configs, device=torch.device(device))
    return DLRM(
        ebc,
        dense_in_features=13,
        dense_arch_layer_sizes=[32, DIM],
        over_arch_layer_sizes=[16, 1],
        dense_device=torch.device(device),
    )


def planner(**kwargs: Any) -> Any:
    from torchrec.distributed.planner import Topology

    from embmap.mapper.torchrec import EmbmapShardingPlanner

    topology = kwargs.pop("topology", None) or Topology(world_size=2, compute_device=kwargs.pop("device", "cpu"))
    return EmbmapShardingPlanner(topology=topology, batch_size=32, solver=FAST, debug=False, **kwargs)


def plan_of(constraints: dict[str, Any] | None = None, sharders: list[Any] | None = None, **kwargs: Any) -> Any:
    from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder

    model = dlrm().eval()
    p = planner(constraints=constraints, **kwargs)
    return p, p.plan(model, sharders or [EmbeddingBagCollectionSharder()])


def pc(**kwargs: Any) -> Any:
    from torchrec.distributed.planner.types import ParameterConstraints

    return ParameterConstraints(**kwargs)


# ------------------------------------------------------------------ end to end: DLRM on DMP, 2 gloo ranks


# What a TorchRec example passes besides topology and batch size; they make the plan use three sharding types.
CONSTRAINTS_KINDS = {"t_0": ["table_wise"], "t_1": ["column_wise"], "t_2": ["table_wise"], "t_3": ["data_parallel"]}


def _dlrm_rank(rank: int, world: int) -> Any:
    """One rank of the end-to-end run, written as a TorchRec user writes it, with EmbmapShardingPlanner."""
    import copy

    import torch
    import torch.distributed as dist
    from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
    from torchrec.distributed.model_parallel import DistributedModelParallel
    from torchrec.distributed.planner import Topology
    from torchrec.distributed.planner.types import ParameterConstraints
    from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

    from embmap.mapper.torchrec import EmbmapShardingPlanner
    from embmap.mapper.torchrec.dmp import copy_full_weights

    model = dlrm("cpu")  # the same seeded weights on every rank
    reference = copy.deepcopy(model).eval()
    sharders = [EmbeddingBagCollectionSharder()]
    pg = dist.GroupMember.WORLD
    constraints = {k: ParameterConstraints(sharding_types=v) for k, v in CONSTRAINTS_KINDS.items()}
    # the two lines a TorchRec user changes: the planner's class (and nothing else)
    topology = Topology(world_size=world, compute_device="cpu")
    planner = EmbmapShardingPlanner(topology=topology, batch_size=32, constraints=constraints)
    plan = planner.collective_plan(model, sharders, pg)
    dmp = DistributedModelParallel(model, device=torch.device("cpu"), plan=plan, sharders=sharders)
    copy_full_weights(dmp, reference.state_dict())  # DMP initialises its shards afresh: the check needs the reference's
    g = torch.Generator().manual_seed(rank + 1)
    lengths = torch.randint(0, 4, (8 * 32,), generator=g)
    values = torch.cat(
        [torch.randint(0, 100 * (i + 1), (int(lengths[i * 32 : (i + 1) * 32].sum()),), generator=g) for i in range(8)]
    )
    kjt = KeyedJaggedTensor.from_lengths_sync(keys=[f"f_{i}" for i in range(8)], values=values, lengths=lengths)
    dense = torch.rand((32, 13), generator=g)
    dmp.eval()
    with torch.no_grad():
        got, want = dmp(dense, kjt), reference(dense, kjt)
    kinds = sorted({ps.sharding_type for ps in plan.plan[EBC].values()})
    return rank, float((got - want).abs().max()), tuple(got.shape), sorted(plan.plan), kinds


def test_dlrm_with_the_embmap_planner_on_two_gloo_ranks_gives_the_unsharded_models_outputs() -> None:
    results = on_ranks(_dlrm_rank)
    for _rank, error, shape, paths, kinds in results:
        assert shape == (32, 1)
        assert error < 1e-5
        assert paths == [EBC]  # keyed by the module's real path, found by walking the model
        assert kinds == ["column_wise", "data_parallel", "table_wise"]


# ------------------------------------------------------------------ the plan's shape


def test_the_plan_covers_every_table_at_its_module_path_and_repeats() -> None:
    _, first = plan_of()
    _, second = plan_of()
    assert sorted(first.plan) == [EBC]
    assert sorted(first.plan[EBC]) == [f"t_{i}" for i in range(8)]
    assert {k: (v.sharding_type, v.ranks) for k, v in first.plan[EBC].items()} == {
        k: (v.sharding_type, v.ranks) for k, v in second.plan[EBC].items()
    }


def test_batch_size_is_per_rank_and_memory_is_the_topologys_less_the_reservation() -> None:
    from torchrec.distributed.planner import Topology
    from torchrec.distributed.planner.storage_reservations import FixedPercentageStorageReservation

    ddr = 64 << 20
    topology = Topology(world_size=2, compute_device="cpu", ddr_cap=ddr)
    p, _ = plan_of(topology=topology, storage_reservation=FixedPercentageStorageReservation(0.25))
    dense = sum(t.numel() * t.element_size() for n, t in dlrm().named_parameters() if "embedding_bag" not in n)
    assert p.last_plan.workload.batch_size == 64  # 32 per rank x 2 ranks
    assert p.last_plan.cluster.device.main.capacity_bytes == int(ddr * 0.75) - dense


def test_tables_that_do_not_fit_replicated_are_sharded() -> None:
    from torchrec.distributed.planner import Topology

    # 8 tables of 100..800 rows x 16 fp32 columns: 230 KB in all; 180 KB a device after the 15% reservation
    topology = Topology(world_size=2, compute_device="cpu", ddr_cap=180_000 * 100 // 85 + 30_000)
    p, plan = plan_of(topology=topology)
    kinds = {v.sharding_type for v in plan.plan[EBC].values()}
    assert kinds != {"data_parallel"}
    assert all(d.memory_bytes <= p.last_plan.cluster.device.main.capacity_bytes for d in p.last_plan.devices)


# ------------------------------------------------------------------ constraints honoured


def test_a_row_wise_only_table_is_row_wise_on_a_gpu_topology() -> None:
    # DMP on CPU and gloo cannot run row-wise (TorchRec's sharders do not offer it on cpu): the plan is checked
    _, plan = plan_of({"t_7": pc(sharding_types=["row_wise"])}, device="cuda", target="ascend910")
    ps = plan.plan[EBC]["t_7"]
    assert ps.sharding_type == "row_wise" and ps.compute_kernel == "fused"
    assert [s.shard_sizes for s in ps.sharding_spec.shards] == [[400, DIM], [400, DIM]]


def test_sharding_types_are_kept_within_the_allowed_ones() -> None:
    allowed = {
        "t_0": ["table_wise"],
        "t_1": ["column_wise"],
        "t_2": ["data_parallel"],
        "t_3": ["column_wise", "table_wise"],
    }
    _, plan = plan_of({k: pc(sharding_types=v) for k, v in allowed.items()})
    for table, kinds in allowed.items():
        assert plan.plan[EBC][table].sharding_type in kinds


def test_a_pinned_compute_kernel_is_kept() -> None:
    # with memory to spare every table would be a replica (dense kernel); pinning fused shards these two
    _, free = plan_of()
    assert free.plan[EBC]["t_0"].compute_kernel == "dense"
    _, plan = plan_of({"t_0": pc(compute_kernels=["fused"]), "t_1": pc(compute_kernels=["dense"])})
    assert plan.plan[EBC]["t_0"].compute_kernel == "fused"
    assert plan.plan[EBC]["t_0"].sharding_type != "data_parallel"
    assert (plan.plan[EBC]["t_1"].compute_kernel, plan.plan[EBC]["t_1"].sharding_type) == ("dense", "data_parallel")


def test_min_partition_wider_than_the_column_shards_leaves_column_wise_out() -> None:
    _, narrow = plan_of({"t_0": pc(sharding_types=["column_wise", "table_wise"], min_partition=8)})
    assert narrow.plan[EBC]["t_0"].sharding_type == "column_wise"  # 8-column shards allowed
    _, wide = plan_of({"t_0": pc(sharding_types=["column_wise", "table_wise"], min_partition=12)})
    assert wide.plan[EBC]["t_0"].sharding_type == "table_wise"


def test_pooling_factors_are_summed_per_table_and_kept_fractional() -> None:
    p, _ = plan_of({"t_0": pc(pooling_factors=[20.0]), "t_1": pc(pooling_factors=[0.3])})
    pooling = {t.name: t.pooling for t in p.last_plan.workload.tables}
    assert pooling["t_0"] == 20 and pooling["t_1"] == 0.3 and pooling["t_2"] == 1
    # 0.3 lookups per sample are priced as such, not as the whole lookup rounding used to make of them
    once, _ = plan_of({"t_0": pc(pooling_factors=[20.0]), "t_1": pc(pooling_factors=[1.0])})
    assert lookup_s(p, "t_1") < lookup_s(once, "t_1")


def lookup_s(p: Any, table: str) -> float:
    """The predicted lookup time of a table's items on every device's cores."""
    items = [it for d in p.last_plan.devices for plan in d.plans for it in plan.items]
    return sum(it.cost.lookup_s for it in items if it.table.split(".")[0] == table)


def test_kernel_options_are_copied_into_the_parameter_sharding() -> None:
    _, plan = plan_of({"t_0": pc(enforce_hbm=True, stochastic_rounding=False), "t_1": pc(num_poolings=[1.0])})
    ps = plan.plan[EBC]["t_0"]
    assert (ps.enforce_hbm, ps.stochastic_rounding) == (True, False)
    assert plan.plan[EBC]["t_1"].enforce_hbm is None


# ------------------------------------------------------------------ refused in one line


def _cache() -> Any:
    from torchrec.distributed.planner.types import CacheParams

    return CacheParams(load_factor=0.2)


def _fp16() -> Any:
    from torchrec.modules.embedding_configs import DataType

    return DataType.FP16


REFUSED = [
    ("sharding_types", {"sharding_types": ["table_row_wise"]}),
    ("sharding_types", {"sharding_types": ["row_wise"]}),  # not offered by the sharders on cpu
    ("compute_kernels", {"compute_kernels": ["fused_uvm_caching"]}),
    ("min_partition", {"sharding_types": ["column_wise"], "min_partition": 12}),
    ("pooling_factors", {"pooling_factors": [1.0, 2.0]}),
    ("num_poolings", {"num_poolings": [2.0]}),
    ("batch_sizes", {"batch_sizes": [7]}),
    ("cache_params", {"cache_params": "cache"}),
    ("is_weighted", {"is_weighted": True}),
    ("output_dtype", {"output_dtype": "fp16"}),
    ("device_group", {"device_group": "cuda"}),
    ("use_virtual_table", {"use_virtual_table": True}),
    ("feature_names", {"feature_names": ["other"]}),
]


@pytest.mark.parametrize(("field", "given"), REFUSED, ids=[f"{f}-{i}" for i, (f, _) in enumerate(REFUSED)])
def test_unsupported_constraints_are_refused_in_one_line(field: str, given: dict[str, Any]) -> None:
    given = {k: _cache() if v == "cache" else _fp16() if v == "fp16" else v for k, v in given.items()}
    with pytest.raises(SpecError) as e:
        plan_of({"t_3": pc(**given)})
    assert f"constraints.t_3.{field}" in str(e.value) and "\n" not in str(e.value)


def test_a_constraint_naming_no_table_is_refused() -> None:
    with pytest.raises(SpecError, match=r"constraints.nope: names no planned table"):
        plan_of({"nope": pc(sharding_types=["table_wise"])})


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"proposer": object()}, "proposer"),
        ({"timeout_seconds": 10}, "timeout_seconds"),
        ({"storage_reservation": object()}, "storage_reservation"),
        ({"device": "cuda"}, "target"),
    ],
)
def test_planner_arguments_not_modelled_are_refused(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as e:
        planner(**kwargs)
    assert str(e.value).startswith(field) or f" {field}" in str(e.value)
    assert "\n" not in str(e.value)


def test_weighted_features_and_other_sharded_modules_are_refused() -> None:
    import torch
    from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
    from torchrec.modules.embedding_configs import EmbeddingBagConfig
    from torchrec.modules.embedding_modules import EmbeddingBagCollection

    class Other(torch.nn.Module):
        pass

    class OtherSharder:
        module_type = Other

    with pytest.raises(SpecError, match="module lone: Other is not modelled"):
        planner().plan(torch.nn.ModuleDict({"lone": Other()}).eval(), [OtherSharder()])
    weighted = EmbeddingBagCollection(
        tables=[EmbeddingBagConfig(name="w", embedding_dim=8, num_embeddings=10, feature_names=["w"])],
        is_weighted=True,
        device=torch.device("meta"),
    )
    with pytest.raises(SpecError, match="weighted features"):
        planner().plan(weighted.eval(), [EmbeddingBagCollectionSharder()])


# ------------------------------------------------------------------ inference plans


def test_training_mode_and_an_optimizer_get_a_warning_and_an_inference_setup_none() -> None:
    from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder

    with pytest.warns(UserWarning, match="training mode: embmap plans are for inference"):
        planner().plan(dlrm(), [EmbeddingBagCollectionSharder()])
    with pytest.warns(UserWarning, match="optimizer in its fused_params"):
        planner().plan(dlrm().eval(), [EmbeddingBagCollectionSharder(fused_params={"optimizer": "sgd"})])
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        planner().plan(dlrm().eval(), [EmbeddingBagCollectionSharder()])


def test_collective_plan_without_a_process_group_is_refused() -> None:
    from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder

    with pytest.raises(SpecError, match="pg: no process group"):
        planner().collective_plan(dlrm().eval(), [EmbeddingBagCollectionSharder()])


def test_the_example_in_docs_torchrec_prints_what_the_page_shows() -> None:
    import re
    import subprocess
    import sys
    from pathlib import Path

    from embmap.ir.targets import cpu

    page = (Path(__file__).parent.parent / "docs" / "torchrec.md").read_text()
    generated_on = re.search(r"`(this machine: [^`]*)`", page)
    assert generated_on is not None
    if generated_on.group(1) != cpu().description:  # the cpu target, and so the plan, is the machine's
        pytest.skip(f"the page's plan was made on another machine ({generated_on.group(1)})")
    code = re.findall(r"```python\n(.*?)```", page, re.S)[1]
    shown = re.findall(r"```text\n(.*?)```", page, re.S)[0]
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert run.stdout.rstrip() == shown.rstrip()
    assert "EmbmapShardingPlanner(" in code and "t_0   | table_wise" in shown


def test_every_collection_in_the_tree_is_planned_at_its_path_and_names_must_be_unique() -> None:
    import torch
    from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
    from torchrec.modules.embedding_configs import EmbeddingBagConfig
    from torchrec.modules.embedding_modules import EmbeddingBagCollection

    def ebc(*names: str, features: int = 1) -> Any:
        return EmbeddingBagCollection(
            tables=[
                EmbeddingBagConfig(
                    name=n, embedding_dim=8, num_embeddings=50, feature_names=[f"{n}_{k}" for k in range(features)]
                )
                for n in names
            ],
            device=torch.device("meta"),
        )

    model = torch.nn.ModuleDict({"a": ebc("x", "y"), "b": torch.nn.Sequential(ebc("z", features=2))}).eval()
    p = planner(constraints={"z": pc(sharding_types=["table_wise"])})  # default pooling_factors: 1 per feature
    plan = p.plan(model, [EmbeddingBagCollectionSharder()])
    assert {path: sorted(m) for path, m in plan.plan.items()} == {"a": ["x", "y"], "b.0": ["z"]}
    assert plan.plan["b.0"]["z"].sharding_type == "table_wise"
    assert {t.name: t.pooling for t in p.last_plan.workload.tables} == {"x": 1, "y": 1, "z": 2}
    twice = torch.nn.ModuleDict({"a": ebc("x"), "b": ebc("x")}).eval()
    with pytest.raises(SpecError, match="tables.x: in both a and b"):
        planner().plan(twice, [EmbeddingBagCollectionSharder()])
