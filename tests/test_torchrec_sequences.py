"""EmbeddingCollections: tables whose outputs are a row per id (sequences), planned by EmbmapShardingPlanner next
to EmbeddingBagCollections, priced for their larger outputs, and run by DMP exactly."""

from __future__ import annotations

from typing import Any

import pytest

from embmap.cost_models import preset_profile
from embmap.ir.cluster import Sharding
from embmap.ir.spec import TableSpec, Uniform, WorkloadSpec
from embmap.mapper import SolverSettings
from embmap.mapper.torchrec.cluster import cluster, compile_cluster, table_options
from embmap.mapper.torchrec.planner import available
from tests.gloo import on_ranks

pytestmark = pytest.mark.skipif(not available(), reason="TorchRec is not installed (make installs it)")

FAST = SolverSettings(time_limit_s=2.0, workers=1, seed=0)
BATCH = 32  # per rank


class SeqModel:  # built inside the ranks: torch is imported there
    @staticmethod
    def build(device: str) -> Any:
        import torch
        from torchrec.modules.embedding_configs import EmbeddingBagConfig, EmbeddingConfig
        from torchrec.modules.embedding_modules import EmbeddingBagCollection, EmbeddingCollection

        class Model(torch.nn.Module):
            """A model with both kinds: sequences of two features, pooled sums of a third."""

            def __init__(self) -> None:
                super().__init__()
                self.seq = EmbeddingCollection(
                    tables=[
                        EmbeddingConfig(name="s0", embedding_dim=8, num_embeddings=500, feature_names=["fs0"]),
                        EmbeddingConfig(name="s1", embedding_dim=8, num_embeddings=64, feature_names=["fs1"]),
                    ],
                    device=torch.device(device),
                )
                self.bags = EmbeddingBagCollection(
                    tables=[EmbeddingBagConfig(name="b0", embedding_dim=8, num_embeddings=300, feature_names=["fb"])],
                    device=torch.device(device),
                )

            def forward(self, seq: Any, bags: Any) -> Any:
                out = self.seq(seq)
                ids = torch.cat([out[f].values() for f in ("fs0", "fs1")])
                return ids, self.bags(bags).values()

        torch.manual_seed(0)
        return Model()


def sharders() -> list[Any]:
    from torchrec.distributed.embedding import EmbeddingCollectionSharder
    from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder

    return [EmbeddingCollectionSharder(), EmbeddingBagCollectionSharder()]


# s0 and b0 sharded row-wise and table-wise, so that outputs cross ranks; s1 as the planner likes.
def constraints() -> dict[str, Any]:
    from torchrec.distributed.planner.types import ParameterConstraints

    return {
        "s0": ParameterConstraints(sharding_types=["row_wise"], pooling_factors=[3.0]),
        "b0": ParameterConstraints(sharding_types=["table_wise"], pooling_factors=[3.0]),
    }


def planner() -> Any:
    from torchrec.distributed.planner import Topology

    from embmap.mapper.torchrec.sharding_planner import EmbmapShardingPlanner

    topology = Topology(world_size=2, compute_device="cpu")
    return EmbmapShardingPlanner(topology=topology, batch_size=BATCH, constraints=constraints(), solver=FAST)


def test_a_sequence_tables_outputs_are_its_pooling_factor_times_a_pooled_ones() -> None:
    spec = cluster("cpu", 2)
    profile = preset_profile(spec.device)
    t = TableSpec(name="t", rows=4000, dim=16, pooling=6, distribution=Uniform())
    w = WorkloadSpec(name="w", batch_size=256, tables=(t,))
    pooled = {o.sharding: o for o in table_options(w, spec, profile, {})[0]}
    seq = {o.sharding: o for o in table_options(w, spec, profile, {}, sequence={"t"})[0]}
    for kind in (Sharding.TABLE_WISE, Sharding.COLUMN_WISE):
        assert seq[kind].send_bytes == tuple(6 * b for b in pooled[kind].send_bytes)
    # a row block sends a row per id in its rows (half of them), a pooled block a partial sum per sample
    assert seq[Sharding.ROW_WISE].send_bytes == tuple(3 * b for b in pooled[Sharding.ROW_WISE].send_bytes)
    assert seq[Sharding.DATA_PARALLEL].send_bytes == (0, 0)
    # every option writes 5 more rows per sample than the pooled one (2 more per row block)
    for kind in Sharding:
        assert all(s > p for s, p in zip(seq[kind].compute_s, pooled[kind].compute_s, strict=True))


def test_a_devices_compute_adds_what_its_sequence_tables_write_beyond_the_pooled_rows() -> None:
    t = TableSpec(name="t", rows=4000, dim=16, pooling=6, distribution=Uniform())
    w = WorkloadSpec(name="w", batch_size=256, tables=(t,))
    spec = cluster("cpu", 2)
    pooled = compile_cluster(w, spec, solver=FAST, shardings={"t": ["table_wise"]})
    seq = compile_cluster(w, spec, solver=FAST, shardings={"t": ["table_wise"]}, sequence_tables=["t"])
    assert [s.output for s in seq.shardings] == ["sequence"]
    d = seq.shardings[0].ranks[0]
    assert seq.devices[d].sequence_write_s > 0
    assert seq.devices[d].compute_s == pytest.approx(pooled.devices[d].compute_s + seq.devices[d].sequence_write_s)
    assert seq.devices[d].send_bytes == 6 * pooled.devices[d].send_bytes
    with pytest.raises(Exception, match="sequence_tables.zz"):
        compile_cluster(w, spec, solver=FAST, sequence_tables=["zz"])


def test_the_planner_plans_both_kinds_at_their_module_paths() -> None:
    p = planner()
    plan = p.plan(SeqModel.build("meta").eval(), sharders())
    assert sorted(plan.plan) == ["bags", "seq"]
    assert sorted(plan.plan["seq"]) == ["s0", "s1"] and sorted(plan.plan["bags"]) == ["b0"]
    assert plan.plan["seq"]["s0"].sharding_type == "row_wise" and plan.plan["bags"]["b0"].sharding_type == "table_wise"
    outputs = {s.table: s.output for s in p.last_plan.shardings}
    assert outputs == {"s0": "sequence", "s1": "sequence", "b0": "pooled"}


def _rank(rank: int, world: int) -> Any:
    import copy

    import torch
    import torch.distributed as dist
    from torchrec.distributed.model_parallel import DistributedModelParallel
    from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

    from embmap.mapper.torchrec.dmp import copy_full_weights

    model = SeqModel.build("cpu")
    reference = copy.deepcopy(model).eval()
    plan = planner().collective_plan(model, sharders(), dist.GroupMember.WORLD)
    dmp = DistributedModelParallel(model, device=torch.device("cpu"), plan=plan, sharders=sharders())
    copy_full_weights(dmp, reference.state_dict())
    g = torch.Generator().manual_seed(rank + 1)

    def kjt(keys: list[str], rows: list[int]) -> Any:
        lengths = torch.randint(0, 6, (len(keys) * BATCH,), generator=g)
        values = torch.cat(
            [
                torch.randint(0, r, (int(lengths[i * BATCH : (i + 1) * BATCH].sum()),), generator=g)
                for i, r in enumerate(rows)
            ]
        )
        return KeyedJaggedTensor.from_lengths_sync(keys=keys, values=values, lengths=lengths)

    seq, bags = kjt(["fs0", "fs1"], [500, 64]), kjt(["fb"], [300])
    dmp.eval()
    with torch.no_grad():
        (got_ids, got_bags), (want_ids, want_bags) = dmp(seq, bags), reference(seq, bags)
    error = max(float((got_ids - want_ids).abs().max()), float((got_bags - want_bags).abs().max()))
    kinds = {k: v.sharding_type for m in plan.plan.values() for k, v in m.items()}
    return rank, error, tuple(got_ids.shape) == tuple(want_ids.shape), sorted(plan.plan), kinds


def test_dmp_runs_the_plan_of_sequences_and_bags_exactly_on_two_gloo_ranks() -> None:
    results = on_ranks(_rank)
    for _rank_id, error, same_shape, paths, kinds in results:
        assert same_shape and error < 1e-6
        assert paths == ["bags", "seq"]
        assert kinds["s0"] == "row_wise" and kinds["b0"] == "table_wise"


def test_any_plan_of_sequence_tables_is_priced_with_their_outputs() -> None:
    from embmap.mapper.torchrec.compare import all_options, predicted_s

    t = TableSpec(name="t", rows=4000, dim=16, pooling=6, distribution=Uniform())
    w = WorkloadSpec(name="w", batch_size=256, tables=(t,))
    spec = cluster("cpu", 2)
    plan = compile_cluster(w, spec, solver=FAST, shardings={"t": ["table_wise"]}, sequence_tables=["t"])
    shardings = {"t": (Sharding.TABLE_WISE, plan.shardings[0].ranks)}
    pooled = predicted_s(w, spec, shardings)
    seq = predicted_s(w, spec, shardings, options=all_options(w, spec, sequence={"t"}))
    d = plan.devices[plan.shardings[0].ranks[0]]
    # the difference: the extra writes and the five sixths of the sends a pooled table does not make
    extra_send_s = d.send_bytes * 5 / 6 / spec.link.bandwidth_bytes_per_s
    assert seq - pooled == pytest.approx(d.sequence_write_s + extra_send_s, rel=1e-6)
