"""End-to-end runs on N gloo ranks, one spawned process each, as a TorchRec user's script runs: the ranks' set-up
and tear-down and the collection of their results, for the tests that run DistributedModelParallel."""

from __future__ import annotations

import datetime
import os
import warnings
from collections.abc import Callable
from typing import Any

Body = Callable[[int, int], Any]  # (rank, world) -> the rank's result, inside an initialised process group


def _rank(body: Body, rank: int, world: int, port: int, queue: Any) -> None:
    import logging

    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    try:
        import torch
        import torch.distributed as dist

        torch.set_num_threads(1)
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=60))
        result = body(rank, world)
        dist.barrier()
        dist.destroy_process_group()
    except Exception as exc:
        queue.put(f"rank {rank}: {type(exc).__name__}: {exc}")
        return
    queue.put(result)
    os._exit(0)  # skip gloo's and FBGEMM's native teardown (see mapper/torchrec/dmp.py)


def on_ranks(body: Body, world: int = 2, timeout_s: float = 120.0) -> list[Any]:
    """`body` (a module-level function) on `world` ranks; every rank's result, asserting that none failed."""
    import torch.multiprocessing as mp

    from embmap.mapper.torchrec.dmp import _free_port

    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    port = _free_port()
    procs = [ctx.Process(target=_rank, args=(body, r, world, port, queue)) for r in range(world)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout_s)
    for p in procs:
        if p.is_alive():
            p.kill()
    results = [queue.get() for _ in range(world) if not queue.empty()]
    assert not [r for r in results if isinstance(r, str)], results
    assert len(results) == world, f"{world - len(results)} ranks gave no result in {timeout_s:g} s"
    return results
