"""Runtime faults: a worker that dies, exits, raises or hangs is reported in one line naming its core, batch
and item, quickly, and the run leaves no shared-memory segment and no process behind."""

from __future__ import annotations

import dataclasses
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from embmap.ir.errors import RunFault
from embmap.ir.plan import ExecutionPlan, PartitionMode, Strategy
from embmap.mapper.cli import main
from embmap.mapper.planio import save_plan
from embmap.runtime import Fault, RunConfig, run_plan
from embmap.runtime.data import SharedRegion
from embmap.runtime.executor import usable_cpus
from tests.test_runtime import plan_for

pytestmark = pytest.mark.skipif(len(usable_cpus()) < 2, reason="needs two cores")

HANG_TIMEOUT_S = 1.0
DEATH_TIMEOUT_S = 30.0  # a death must be seen at once, not when this runs out


def child_pids() -> list[int]:
    """This process's children, zombies included, but not multiprocessing's resource tracker."""
    me, out = os.getpid(), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == me and b"resource_tracker" not in cmdline:
            out.append(int(entry.name))
    return out


@pytest.fixture
def segments(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[SharedRegion]]:
    """The shared regions the run makes: each must be released, none may be a file of /dev/shm, and no
    worker may be left."""
    made: list[SharedRegion] = []
    create = SharedRegion.__init__

    def recording(self: SharedRegion, *args: Any) -> None:
        create(self, *args)
        made.append(self)

    monkeypatch.setattr(SharedRegion, "__init__", recording)
    assert child_pids() == []
    yield made
    assert made, "the run created no shared memory: the fixture watched nothing"
    assert all(r.closed for r in made), "shared memory not released"
    maps = Path(f"/proc/{os.getpid()}/maps").read_text()
    assert "/dev/shm/" not in maps, "a file of /dev/shm mapped"
    assert child_pids() == [], "worker processes left behind"


@pytest.fixture(scope="module")
def sharded() -> ExecutionPlan:
    """Row shards on two cores: the cores zero outputs and meet at two barriers per batch."""
    return plan_for(Strategy.GM, PartitionMode.ROWS, 2)


def run_with(plan: ExecutionPlan, fault: Fault, timeout_s: float) -> tuple[str, float]:
    config = RunConfig(batches=3, warmup=1, index_batches=2, backend="numpy", timeout_s=timeout_s, fault=fault)
    began = time.monotonic()
    with pytest.raises(RunFault) as info:
        run_plan(plan, config)
    return str(info.value), time.monotonic() - began


@pytest.mark.parametrize(
    ("kind", "what"),
    [("exit", "exited with status 3"), ("kill", "was killed by SIGKILL"), ("raise", "raised")],
)
def test_a_dead_worker_is_named_at_once(
    sharded: ExecutionPlan, segments: list[SharedRegion], kind: str, what: str
) -> None:
    item = sharded.cores[1].items[0]
    message, elapsed = run_with(sharded, Fault(core=1, batch=2, kind=kind), DEATH_TIMEOUT_S)  # type: ignore[arg-type]
    assert "\n" not in message
    assert message.startswith(f"core 1: {what} at batch 2, item {item} (table t)"), message
    assert message.count("the run was stopped") == 1
    if kind == "raise":
        assert "RuntimeError: injected fault at batch 2" in message
    assert elapsed < 10.0, f"took {elapsed:.1f} s to see a dead worker; it must not wait for the timeout"


def test_a_hung_worker_is_named_after_the_timeout(sharded: ExecutionPlan, segments: list[SharedRegion]) -> None:
    item = sharded.cores[0].items[0]
    message, elapsed = run_with(sharded, Fault(core=0, batch=1, kind="hang"), HANG_TIMEOUT_S)
    assert "\n" not in message
    assert re.match(rf"core 0: hung at batch 1, item {item} \(table t\): no core passed a barrier for 1 s", message)
    assert HANG_TIMEOUT_S <= elapsed < HANG_TIMEOUT_S + 6.0, f"detected after {elapsed:.1f} s"


def test_a_fault_without_zeroing_in_the_first_batch(segments: list[SharedRegion]) -> None:
    """Split samples write their outputs: one barrier per batch, so the batch is read differently."""
    plan = plan_for(Strategy.GM, PartitionMode.SAMPLES, 2)
    assert {it.output for it in plan.items} == {"write"}
    message, _ = run_with(plan, Fault(core=0, batch=0, kind="kill"), DEATH_TIMEOUT_S)
    assert message.startswith(f"core 0: was killed by SIGKILL at batch 0, item {plan.cores[0].items[0]} (table t)")
    message, _ = run_with(plan, Fault(core=1, batch=3, kind="hang"), HANG_TIMEOUT_S)
    assert message.startswith(f"core 1: hung at batch 3, item {plan.cores[1].items[0]} (table t)")


def test_no_fault_means_a_correct_run(sharded: ExecutionPlan, segments: list[SharedRegion]) -> None:
    """The fault hook is off by default, and a fault on a later batch than the run has never fires."""
    assert RunConfig().fault is None
    config = RunConfig(batches=3, warmup=1, index_batches=2, backend="numpy", fault=Fault(core=1, batch=4, kind="kill"))
    assert run_plan(sharded, config).correct


def test_run_command_exits_3_on_a_dead_worker(
    sharded: ExecutionPlan, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from embmap import runtime

    path = tmp_path / "plan.json"
    save_plan(sharded, path)
    real = runtime.run_plan

    def faulty(plan: ExecutionPlan, config: RunConfig) -> object:
        return real(plan, dataclasses.replace(config, fault=Fault(core=1, batch=1, kind="exit")))

    monkeypatch.setattr(runtime, "run_plan", faulty)
    assert main(["run", str(path), "--batches", "2", "--backend", "numpy"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("embmap: error: run failed: core 1: exited with status 3 at batch 1, item ")
    assert main(["run", str(path), "--timeout", "0"]) == 2
    assert "--timeout: must be positive" in capsys.readouterr().err
    assert child_pids() == []


def test_run_help_documents_the_exit_statuses(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "2 bad input" in out and "3 the run failed" in out
