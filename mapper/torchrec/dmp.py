"""Run a ShardingPlan on TorchRec's DistributedModelParallel: N processes on this machine's CPU, gloo backend.

Each rank builds the EmbeddingBagCollection on the meta device, lets DMP shard it with the given plan, and
fills its shards from the same seeded full tables an unsharded collection gets. It then feeds its own
local batch (seeded ids, Poisson pooling around each table's factor), checks the pooled outputs against
the unsharded collection on the same input, and times forward passes (after warm-up; each a barrier, the
forward, and waiting for the outputs). Used by the end-to-end test and `benchmarks/torchrec_dmp.py`.
"""

from __future__ import annotations

import datetime
import gc
import os
import socket
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from embmap.ir.spec import WorkloadSpec
from embmap.mapper.torchrec.io import collection

# A collective that waits longer than this means a peer rank failed: give up rather than hang (gloo's default
# is 30 minutes). The whole run gets a little more, for start-up and teardown.
_COLLECTIVE_TIMEOUT_S = 120.0
_RUN_TIMEOUT_S = 2 * _COLLECTIVE_TIMEOUT_S


@dataclass(frozen=True)
class RankResult:
    rank: int
    max_abs_error: float
    outputs: int
    forward_s: tuple[float, ...]

    @property
    def median_s(self) -> float:
        return statistics.median(self.forward_s) if self.forward_s else float("nan")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_dmp(
    workload: WorkloadSpec, plan: Any, world_size: int = 2, iterations: int = 0, warmup: int = 3, seed: int = 0
) -> list[RankResult]:
    """Run `plan` (a TorchRec ShardingPlan for the workload's tables at module path "") on `world_size` CPU
    ranks; returns each rank's largest output difference from the unsharded collection and forward times.
    The workload's batch is the global batch, split evenly over the ranks."""
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    port = _free_port()
    procs = [
        ctx.Process(target=_rank, args=(r, world_size, port, workload, plan, iterations, warmup, seed, queue))
        for r in range(world_size)
    ]
    for p in procs:
        p.start()
    deadline = time.monotonic() + _RUN_TIMEOUT_S
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
    hung = [r for r, p in enumerate(procs) if p.is_alive()]
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join()
    results = [queue.get() for _ in procs if not queue.empty()]
    failed = [r for r in results if isinstance(r, str)]
    if hung:
        failed.append(f"ranks {hung} still running after {_RUN_TIMEOUT_S:.0f} s, killed")
    if failed or len(results) != world_size or any(p.exitcode for p in procs):
        reported = sorted(r.rank for r in results if isinstance(r, RankResult))
        raise RuntimeError(
            "DMP ranks failed: "
            + ("; ".join(failed) or f"exit codes {[p.exitcode for p in procs]}, results from ranks {reported}")
        )
    return sorted(results, key=lambda r: r.rank)


def _full_weights(workload: WorkloadSpec, seed: int) -> dict[str, Any]:
    import torch

    out = {}
    for i, t in enumerate(workload.tables):
        g = torch.Generator().manual_seed(seed * 100_003 + i)
        out[f"embedding_bags.{t.name}.weight"] = torch.rand((t.rows, t.dim), generator=g) - 0.5
    return out


def _local_batch(workload: WorkloadSpec, rank: int, world: int, seed: int) -> Any:
    import torch
    from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

    batch = workload.batch_size // world
    g = torch.Generator().manual_seed(seed * 7919 + rank + 1)
    lengths, values = [], []
    for t in workload.tables:
        n = torch.poisson(torch.full((batch,), float(t.pooling)), generator=g).long()
        lengths.append(n)
        values.append(torch.randint(0, t.rows, (int(n.sum()),), generator=g))
    return KeyedJaggedTensor.from_lengths_sync(
        keys=[t.name for t in workload.tables], values=torch.cat(values), lengths=torch.cat(lengths)
    )


def _rank(
    rank: int,
    world: int,
    port: int,
    workload: WorkloadSpec,
    plan: Any,
    iterations: int,
    warmup: int,
    seed: int,
    queue: Any,
) -> None:
    import faulthandler
    import logging
    import warnings

    faulthandler.enable()  # a rank that aborts in native code prints where it was
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    try:
        import torch
        import torch.distributed as dist

        torch.set_num_threads(1)
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[rank % len(os.sched_getaffinity(0))]})
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group(
            "gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=_COLLECTIVE_TIMEOUT_S)
        )
        model, reference = _sharded_model(workload, plan, seed)
        kjt = _local_batch(workload, rank, world, seed)
        result = RankResult(rank, *_check_and_time(model, reference, kjt, iterations, warmup))
        # Tear down only once every rank is done with its collectives: a rank whose peer closes the gloo
        # connection while it is still reading aborts the whole process (std::terminate). DMP's modules hold
        # the process group too, so they go first.
        del model
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()
    except Exception as exc:  # reported to the parent, which raises
        queue.put(f"rank {rank}: {type(exc).__name__}: {exc}")
        return
    queue.put(result)  # written to the pipe before put returns
    # Skip the interpreter's teardown: gloo's and FBGEMM's native threads can abort in static destructors
    # (std::terminate) after the work is done and checked, which would fail a correct run.
    os._exit(0)


def _sharded_model(workload: WorkloadSpec, plan: Any, seed: int) -> tuple[Any, Any]:
    """This rank's DMP model, its shards filled from the seeded full tables, and the unsharded collection."""
    import torch
    from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
    from torchrec.distributed.model_parallel import DistributedModelParallel

    full = _full_weights(workload, seed)
    model = DistributedModelParallel(
        collection(workload, "meta"),
        device=torch.device("cpu"),
        plan=plan,
        sharders=[EmbeddingBagCollectionSharder()],
        init_data_parallel=False,
    )
    copy_full_weights(model, full)
    reference = collection(workload, "cpu")
    reference.load_state_dict(full)
    return model, reference


def copy_full_weights(model: Any, full: Mapping[str, Any]) -> None:
    """Fill every shard and replica of a sharded model from the unsharded model's state dict `full`."""
    import torch
    from torch.distributed._shard.sharded_tensor import ShardedTensor

    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            whole = full[name.removeprefix("module.")]
            if isinstance(tensor, ShardedTensor):
                for shard in tensor.local_shards():
                    (r0, c0), (nr, nc) = shard.metadata.shard_offsets, shard.metadata.shard_sizes
                    shard.tensor.copy_(whole[r0 : r0 + nr, c0 : c0 + nc])
            else:
                tensor.copy_(whole)


def _check_and_time(
    model: Any, reference: Any, kjt: Any, iterations: int, warmup: int
) -> tuple[float, int, tuple[float, ...]]:
    """The largest difference of the model's pooled outputs from the reference's, how many outputs, and the
    forward times after warm-up (each a barrier, the forward, and waiting for the outputs)."""
    import torch
    import torch.distributed as dist

    model.eval()
    with torch.no_grad():
        got = model(kjt)
        got = got.wait() if hasattr(got, "wait") else got
        want = reference(kjt)
        got_by_key, want_by_key = got.to_dict(), want.to_dict()  # DMP orders its outputs by sharding type
        if set(got_by_key) != set(want_by_key):
            raise RuntimeError(f"DMP pooled {sorted(got_by_key)}, expected {sorted(want_by_key)}")
        error = max(float((got_by_key[k] - want_by_key[k]).abs().max()) for k in want_by_key)
        times = []
        for i in range(warmup + iterations):
            dist.barrier()
            start = time.perf_counter()
            out = model(kjt)
            (out.wait() if hasattr(out, "wait") else out).values()
            del out
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return error, int(want.values().numel()), tuple(times)
