"""The run's environment. What the machine refuses (memory, address space, an optional package) is one line
and exit 4; /dev/shm is not needed at all (not its size, not its being writable); the number of tables does
not cost file descriptors; and nothing of a run outlives it: not when its parent is killed by any signal, not
when its whole process group is, not when Ctrl-C comes twice. Both executors: the reference one (worker
processes, shared memory) and the native one (threads)."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from embmap.cost_models import preset_profile
from embmap.ir.errors import ResourceError
from embmap.ir.plan import ExecutionPlan, PartitionMode, Strategy
from embmap.ir.spec import TableSpec, WorkloadSpec
from embmap.ir.targets import cpu
from embmap.mapper.calibration import forced_plan
from embmap.mapper.cli import EXIT, main
from embmap.mapper.planio import save_plan
from embmap.runtime import RunConfig, kernels, limits, native, run_plan, workers
from embmap.runtime.data import SharedRegion
from embmap.runtime.executor import usable_cpus
from tests.test_runtime_faults import child_pids

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "embmap.mapper.cli"]
TWO_CORES = len(usable_cpus()) >= 2
needs_two_cores = pytest.mark.skipif(not TWO_CORES, reason="needs two cores")
BACKENDS = ["numpy", "native"]


def plan_of(tables: int, rows: int = 64, dim: int = 4, pooling: int = 1, batch: int = 8) -> ExecutionPlan:
    """`tables` alike tables, each cut into two row shards (accumulating, so the reference executor locks),
    placed greedily: made in about a second, whatever the count."""
    target = cpu()
    specs = tuple(TableSpec(name=f"t{i}", rows=rows, dim=dim, pooling=pooling) for i in range(tables))
    workload = WorkloadSpec(name="env", batch_size=batch, tables=specs)
    parts = 2 if TWO_CORES else 1
    mode = PartitionMode.ROWS if TWO_CORES else PartitionMode.SAMPLES
    plan, _ = forced_plan(workload, target, preset_profile(target), Strategy.GM, mode, parts, "env")
    return plan


@pytest.fixture(scope="module")
def small_plan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("plans") / "small.json"
    save_plan(plan_of(2), path)
    return path


@pytest.fixture(scope="module")
def long_plan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Rows of 8 KiB: a batch takes a while, its indices are few (a run's index batches stay small)."""
    path = tmp_path_factory.mktemp("plans") / "long.json"
    save_plan(plan_of(1, rows=4096, dim=2048, pooling=4, batch=64), path)
    return path


def one_line(err: str, *words: str) -> None:
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in err and "resource_tracker" not in err, err
    for w in words:
        assert w in err, (w, err)


# What the machine refuses: one line, exit 4 ----------------------------------------------------------------


def test_backend_torch_without_torch_is_one_line_naming_the_package(
    small_plan: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(kernels, "HAVE_TORCH", False)
    assert main(["run", str(small_plan), "--backend", "torch", "--batches", "1"]) == EXIT["resource"]
    one_line(capsys.readouterr().err, "embmap: error: torch:", "not installed", "pip install")
    with pytest.raises(ResourceError, match="torch"):
        run_plan(plan_of(1), RunConfig(batches=1, warmup=0, backend="torch"))


def test_backend_native_without_the_extension_is_one_line(
    small_plan: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(native, "NATIVE", None)
    assert main(["run", str(small_plan), "--backend", "native", "--batches", "1"]) == EXIT["resource"]
    one_line(capsys.readouterr().err, "embmap: error: native executor:", "pip install")


def with_address_space(limit_bytes: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))


@pytest.mark.parametrize("backend", ["numpy", pytest.param("native", marks=pytest.mark.long)])
def test_an_address_space_limit_is_one_line_naming_it(backend: str, tmp_path: Path) -> None:
    """Tables of 3 GiB under `ulimit -v` 2.5 GiB: the interpreter and its libraries fit, the tables do not."""
    path = tmp_path / "big.json"
    save_plan(plan_of(1, rows=3 << 20, dim=256, batch=8), path)
    limit = 5 << 29
    proc = subprocess.run(
        [*CLI, "run", str(path), "--backend", backend, "--batches", "1", "--warmup", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=lambda: with_address_space(limit),
        check=False,
    )
    assert proc.returncode == EXIT["resource"], proc.stderr
    one_line(proc.stderr, "embmap: error: memory:", "3.00 GiB", "2.50 GiB", "ulimit -v")


@pytest.mark.skipif(not native.available(), reason="the limits are measured by the native extension")
def test_the_limits_measurement_out_of_memory_is_a_resource_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(shape: tuple[int, ...], dtype: object) -> None:
        raise MemoryError

    monkeypatch.setattr(limits, "huge_page_array", refused)
    with pytest.raises(ResourceError, match=r"^memory: could not get 0.50 GiB for the arrays .* smaller table"):
        limits.measure(table_bytes=1 << 28)


@needs_two_cores
def test_a_worker_out_of_memory_is_a_resource_error_not_a_fault(monkeypatch: pytest.MonkeyPatch) -> None:
    def out_of_memory(fault: workers.Fault) -> None:
        raise MemoryError

    monkeypatch.setattr(workers, "_inject", out_of_memory)  # the forked workers inherit it
    config = RunConfig(batches=2, warmup=0, backend="numpy", fault=workers.Fault(core=1, batch=1))
    with pytest.raises(ResourceError, match=r"^memory: core 1 ran out of memory at batch 1"):
        run_plan(plan_of(1), config)


# /dev/shm and file descriptors: not needed ----------------------------------------------------------------


def shm_names(pids: list[int]) -> set[str]:
    """The /dev/shm files these processes map."""
    names = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
                if "/dev/shm/" in line:
                    names.add(line.split("/dev/shm/", 1)[1].removesuffix(" (deleted)"))
    return names


@needs_two_cores
def test_a_run_maps_nothing_in_dev_shm(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing there can fill up, be read-only or be deleted by someone mid-run: the reference executor's
    shared memory is anonymous (the native one's threads share this process's memory). Looked at from inside
    a worker, while it runs: it fails the run if it or its parent maps a file of /dev/shm."""

    def look(fault: workers.Fault) -> None:
        names = shm_names([os.getpid(), os.getppid()])
        if names:
            raise RuntimeError(f"maps /dev/shm/{sorted(names)[0]}")

    monkeypatch.setattr(workers, "_inject", look)  # the forked workers inherit it
    config = RunConfig(batches=2, warmup=0, backend="numpy", fault=workers.Fault(core=1, batch=1))
    assert run_plan(plan_of(3), config).correct


def unshare_works() -> bool:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        probe = ["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /dev/shm"]
        return subprocess.run(probe, capture_output=True, timeout=10, check=False).returncode == 0
    return False


@needs_two_cores
@pytest.mark.skipif(not unshare_works(), reason="needs unshare -rm (a user and mount namespace) and tmpfs")
@pytest.mark.parametrize("mount", ["size=64k", pytest.param("ro", marks=pytest.mark.long)])
def test_a_tiny_or_read_only_dev_shm_does_not_matter(mount: str, tmp_path: Path) -> None:
    """A /dev/shm of 64 KiB (Docker's --shm-size) under 2 MiB of tables, or a read-only one: in a mount
    namespace of its own, the run still runs."""
    path = tmp_path / "plan.json"
    save_plan(plan_of(2, rows=16384, dim=16), path)
    script = f'mount -t tmpfs -o {mount} tmpfs /dev/shm && exec "$@"'
    cmd = ["unshare", "-rm", "sh", "-c", script, "sh", *CLI, "run", str(path), "--backend", "numpy"]
    proc = subprocess.run([*cmd, "--batches", "2"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "output correct" in proc.stdout and proc.stderr == ""


@pytest.mark.parametrize("backend", BACKENDS)
def test_tables_do_not_cost_file_descriptors(backend: str) -> None:
    """400 tables (800 row shards) run under `ulimit -n 1024`: the run opens no descriptor per array."""
    plan = plan_of(400)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))
    try:
        report = run_plan(plan, RunConfig(batches=1, warmup=0, index_batches=1, backend=backend))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert report.correct


# Nothing outlives a run -----------------------------------------------------------------------------------


def group_members(pgid: int) -> list[int]:
    """Live processes (not zombies) of the process group."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                out.append(int(entry.name))
    return out


def pinned_tasks(pids: list[int]) -> int:
    """Threads of these processes pinned to one CPU: the run's cores, once they have started."""
    count = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{pid}/task").iterdir():
                with contextlib.suppress(OSError):
                    status = (task / "status").read_text()
                    allowed = status.split("Cpus_allowed_list:", 1)[1].split()[0]
                    count += "-" not in allowed and "," not in allowed
    return count


@contextlib.contextmanager
def running(plan: Path, backend: str, batches: int) -> Iterator[tuple[subprocess.Popen[str], set[str]]]:
    """`embmap run` in a session of its own, once both its cores run; yields it and the /dev/shm files its
    processes map at that moment. The whole group is SIGKILLed on the way out, whatever the test did."""
    proc = subprocess.Popen(
        [*CLI, "run", str(plan), "--backend", backend, "--batches", str(batches), "--warmup", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while pinned_tasks(group_members(proc.pid)) < 2:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the run's cores never started"
            time.sleep(0.02)
        time.sleep(0.3)  # into the batches
        names = shm_names(group_members(proc.pid))
        assert proc.poll() is None, "the run ended before the test could stop it: make it longer"
        yield proc, names
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()


def nothing_left(pgid: int, names: set[str]) -> None:
    """No process of the run 2 s after its parent went, and none of its /dev/shm files."""
    deadline = time.monotonic() + 2.0
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert group_members(pgid) == [], "a worker outlived its parent by 2 s"
    left = [n for n in names if Path("/dev/shm", n).exists()]
    assert left == [], f"shared memory left in /dev/shm: {left}"


@needs_two_cores
@pytest.mark.parametrize("backend", BACKENDS)
def test_sigkill_of_the_parent_leaves_no_worker_and_no_segment(backend: str, long_plan: Path) -> None:
    """The acceptance test: the parent of a run in progress is SIGKILLed; 2 s later no worker lives and no
    segment of the run is left in /dev/shm."""
    with running(long_plan, backend, 20_000) as (proc, names):
        proc.kill()
        assert proc.wait(timeout=10) == -signal.SIGKILL
        nothing_left(proc.pid, names)


@pytest.mark.long
@needs_two_cores
@pytest.mark.parametrize("backend", BACKENDS)
def test_sigkill_of_the_process_group_leaves_no_segment(backend: str, long_plan: Path) -> None:
    with running(long_plan, backend, 20_000) as (proc, names):
        os.killpg(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
        nothing_left(proc.pid, names)


@pytest.mark.long
@needs_two_cores
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_clean_up_and_exit_128_plus_n(backend: str, signum: int, long_plan: Path) -> None:
    with running(long_plan, backend, 20_000) as (proc, names):
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=10)
        assert proc.returncode == 128 + signum, err
        one_line(err, f"stopped by {signal.Signals(signum).name}")
        nothing_left(proc.pid, names)


@pytest.mark.long
@needs_two_cores
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_second_ctrl_c_during_clean_up_prints_one_line(backend: str, long_plan: Path) -> None:
    """Ctrl-C reaches every process of the terminal's group; a second one follows while the run stops."""
    with running(long_plan, backend, 20_000) as (proc, names):
        os.killpg(proc.pid, signal.SIGINT)
        time.sleep(0.005)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=10)
        assert proc.returncode == EXIT["interrupted"], err
        one_line(err, "embmap: interrupted")
        nothing_left(proc.pid, names)


@needs_two_cores
def test_a_second_ctrl_c_during_clean_up_does_not_cut_it_short(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first Ctrl-C stops the run while it waits for its workers, the second comes while it stops them:
    the clean-up still reaps every worker and releases the shared memory, and one KeyboardInterrupt leaves."""
    made: list[SharedRegion] = []
    create = SharedRegion.__init__

    def recording(self: SharedRegion, *args: Any) -> None:
        create(self, *args)
        made.append(self)

    def first_ctrl_c(*args: object) -> None:
        raise KeyboardInterrupt

    stop = workers._stop

    def second_ctrl_c(workers: list[Any]) -> None:
        signal.raise_signal(signal.SIGINT)
        stop(workers)

    monkeypatch.setattr(SharedRegion, "__init__", recording)
    monkeypatch.setattr(workers, "_supervise", first_ctrl_c)
    monkeypatch.setattr(workers, "_stop", second_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        run_plan(plan_of(2), RunConfig(batches=2, warmup=0, backend="numpy"))
    assert len(made) == 2 and all(r.closed for r in made)
    assert child_pids() == [] and shm_names([os.getpid()]) == set()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_signals_wait_while_the_workers_are_stopped() -> None:
    """A Ctrl-C during the clean-up is delivered after it; none is when the run already ends by an exception
    (the first Ctrl-C)."""
    stopped = []
    with pytest.raises(KeyboardInterrupt), workers.signals_deferred():
        signal.raise_signal(signal.SIGINT)
        stopped.append("clean-up finished")
    assert stopped == ["clean-up finished"]
    with pytest.raises(RuntimeError, match="first"), workers.signals_deferred():
        signal.raise_signal(signal.SIGINT)
        raise RuntimeError("first")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
