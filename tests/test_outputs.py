"""Every file a command writes goes through ir/output.py: refused before any work where it cannot or must not be
written, written whole or not at all, with the user's umask, never over a file or link that only shares its
temporary's name; standard output that its reader closed or that is full never hides a failure nor stops a
plan being written; what the machine refuses is one line and status 4."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from embmap.ir.errors import ResourceError, SpecError
from embmap.ir.output import GuardedStream, check_outputs, check_writable, write_atomic, write_text_atomic
from embmap.mapper.cli import COMMANDS, EXIT, main

ROOT = Path(__file__).resolve().parent.parent
FAST = ["--target", "ascend910", "--time-limit", "0.2", "--workers", "1", "--seed", "0", "--no-baselines", "-q"]
WORKLOAD = """name: w
batch_size: 64
tables:
  - {name: a, rows: 1000, dim: 16}
  - {name: b, rows: 500, dim: 8, pooling: 3}
"""
CLI = [sys.executable, "-m", "embmap.mapper.cli"]


@pytest.fixture
def workload(tmp_path: Path) -> Path:
    path = tmp_path / "w.yaml"
    path.write_text(WORKLOAD, encoding="utf-8")
    return path


def cli(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)
    return code, out.getvalue(), err.getvalue()


def one_line(err: str, words: str) -> None:
    assert err.startswith("embmap: error: ") and err.count("\n") == 1, err
    assert words in err and "(fix: " in err and "Traceback" not in err, err


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


# The writer ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002, 0o077])
def test_a_written_file_has_the_mode_the_umask_asks_for(mask: int, tmp_path: Path) -> None:
    with umask(mask):
        write_text_atomic(tmp_path / "a.json", "{}\n")
        write_atomic(tmp_path / "b.bin", lambda f: f.write(b"\0"))
    for name in ("a.json", "b.bin"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~mask


def test_the_temporary_never_takes_over_a_file_or_link_of_its_name(tmp_path: Path) -> None:
    """A fixed `X.tmp` would be truncated, or written through a symbolic link to another file."""
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me", encoding="utf-8")
    for name in ("x.json.tmp", ".x.json.tmp"):
        (tmp_path / name).write_text("mine", encoding="utf-8")
    for name in ("x.pt.tmp", ".x.pt.tmp"):
        (tmp_path / name).symlink_to(victim)
    write_text_atomic(tmp_path / "x.json", "new\n")
    write_atomic(tmp_path / "x.pt", lambda f: f.write(b"new"))
    assert (tmp_path / "x.json").read_text(encoding="utf-8") == "new\n"
    assert (tmp_path / "x.pt").read_bytes() == b"new"
    assert victim.read_text(encoding="utf-8") == "keep me"
    assert all((tmp_path / n).read_text(encoding="utf-8") == "mine" for n in ("x.json.tmp", ".x.json.tmp"))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["victim.txt", "x.json", "x.pt", "x.json.tmp", ".x.json.tmp", "x.pt.tmp", ".x.pt.tmp"]
    )


def test_a_full_disk_leaves_the_old_file_and_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "plan.json"
    target.write_text("old\n", encoding="utf-8")

    class FullFile(io.BytesIO):
        def write(self, data: object) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    real_fdopen = os.fdopen

    def fdopen(fd: int, *args: object, **kwargs: object) -> IO[bytes]:
        real_fdopen(fd, "wb").close()
        return FullFile()

    monkeypatch.setattr(os, "fdopen", fdopen)
    with pytest.raises(ResourceError) as caught:
        write_text_atomic(target, "new\n")
    assert str(target) in caught.value.one_line() and "no space left" in caught.value.one_line()
    assert target.read_text(encoding="utf-8") == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["plan.json"]


@pytest.mark.parametrize(
    ("code", "words"),
    [(errno.EDQUOT, "quota"), (errno.EACCES, "permission"), (errno.EROFS, "read-only"), (errno.EIO, "input/output")],
)
def test_what_the_machine_refuses_is_a_resource_error(code: int, words: str, tmp_path: Path) -> None:
    def refuse(f: IO[bytes]) -> None:
        f.write(b"half")
        raise OSError(code, os.strerror(code))

    with pytest.raises(ResourceError, match=words):
        write_atomic(tmp_path / "x.bin", refuse)
    assert list(tmp_path.iterdir()) == []


def test_an_exception_or_a_signal_midway_leaves_no_temporary(tmp_path: Path) -> None:
    def interrupted(f: IO[bytes]) -> None:
        f.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomic(tmp_path / "x.bin", interrupted)
    assert list(tmp_path.iterdir()) == []


SIGNALLED = """
import sys, time
from pathlib import Path
from embmap.ir.output import write_atomic
from embmap.mapper.cli import _stop_signals, Terminated

def slow(f):
    f.write(b"half")
    f.flush()
    print("writing", flush=True)
    time.sleep(30)

with _stop_signals():
    try:
        write_atomic(Path(sys.argv[1]) / "x.bin", slow)
    except Terminated as exc:
        sys.exit(128 + exc.signum)
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_remove_the_temporary(signum: int, tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", SIGNALLED, str(tmp_path)], stdout=subprocess.PIPE, cwd=ROOT)
    assert proc.stdout is not None and proc.stdout.readline() == b"writing\n"
    assert [p.name for p in tmp_path.iterdir()][0].startswith(".x.bin.")  # the temporary, half written
    proc.send_signal(signum)
    assert proc.wait(timeout=10) == 128 + signum
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("raised", "status", "words"),
    [
        (OSError(errno.ENOSPC, "No space left on device", "/data/x"), EXIT["resource"], "/data/x: no space left"),
        (PermissionError(errno.EACCES, "Permission denied", "/etc/x"), EXIT["resource"], "/etc/x: permission denied"),
        (OSError(errno.ENAMETOOLONG, "File name too long", "/a/b"), EXIT["resource"], "/a/b: the name is too long"),
        (FileNotFoundError(errno.ENOENT, "No such file or directory", "in.csv"), EXIT["bad_input"], "in.csv: no such"),
        (OSError(errno.EINVAL, "Invalid argument"), EXIT["internal"], "internal error: OSError"),
    ],
)
def test_an_os_error_reaching_the_command_line_is_one_line_by_its_errno(
    raised: OSError, status: int, words: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def command(args: object) -> int:
        raise raised

    monkeypatch.setitem(COMMANDS, "workloads", command)
    code, _, err = cli(["workloads"])
    assert code == status
    assert err.count("\n") == 1 and words in err and "Traceback" not in err, err


# Refused before any work -----------------------------------------------------------------------------------


def test_outputs_that_are_not_regular_files_are_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path, words in ((Path("/dev/null"), "is a device"), (fifo, "is a FIFO"), (tmp_path, "is a directory")):
        with pytest.raises(SpecError, match=words):
            check_writable(path, "--output")
    assert check_writable("/dev/shm/x.json") == Path("/dev/shm")  # a file system in /dev
    assert check_writable("-") is None and check_writable("/dev/stdout") is None  # standard output
    for path in ("/dev/stderr", "/proc/self/fd/1", "/dev/x.json", "/sys/x"):  # links to descriptors, devices
        with pytest.raises(SpecError, match="the system's devices|is a device|is a FIFO"):
            check_writable(path, "--output")


def test_compile_to_a_fifo_is_refused_and_the_fifo_kept(workload: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "plan.json"
    os.mkfifo(fifo)
    code, _, err = cli(["compile", str(workload), *FAST, "-o", str(fifo)])
    assert code == EXIT["bad_input"]
    one_line(err, "is a FIFO")
    assert fifo.is_fifo()


def test_an_output_that_is_an_input_is_refused(workload: Path, tmp_path: Path) -> None:
    code, _, err = cli(["compile", str(workload), *FAST, "-o", str(workload)])
    assert code == EXIT["bad_input"]
    one_line(err, "is also an input")
    assert workload.read_text(encoding="utf-8") == WORKLOAD
    # the same file under another name
    os.symlink(workload, tmp_path / "link.yaml")
    code, _, err = cli(["compile", str(tmp_path / "link.yaml"), *FAST, "-o", str(workload)])
    assert code == EXIT["bad_input"] and workload.read_text(encoding="utf-8") == WORKLOAD


def test_calibrate_refuses_one_path_for_two_outputs_or_for_its_table(tmp_path: Path) -> None:
    shipped = (ROOT / "cost_models" / "profiles" / "cpu-measurements.csv").read_text(encoding="utf-8")
    source = tmp_path / "m.csv"
    source.write_text("".join(shipped.splitlines(keepends=True)[:60]), encoding="utf-8")
    before = source.read_bytes()
    out = tmp_path / "p.json"
    for args, words in (
        (["-o", str(out), "--save-csv", str(out)], "is also given to --output"),
        (["-o", str(tmp_path / "q.json"), "--save-csv", str(source)], "is also an input"),
        (["-o", str(source)], "is also an input"),
        (["-o", "-", "--save-csv", "-"], "is also given to --output"),
    ):
        code, _, err = cli(["calibrate", "--target", "cpu", "--from-csv", str(source), *args])
        assert code == EXIT["bad_input"], err
        one_line(err, words)
    assert source.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.csv"]


def test_check_outputs_compares_resolved_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    with pytest.raises(SpecError, match="also given to -a"):
        check_outputs([("-a", Path("x.json")), ("-b", tmp_path / "sub" / ".." / "x.json")])
    check_outputs([("-a", Path("x.json")), ("-b", Path("y.json")), ("-c", None)], [Path("nothing-here")])


def test_a_name_too_long_is_refused_before_compiling(workload: Path, tmp_path: Path) -> None:
    code, _, err = cli(["compile", str(workload), *FAST, "-o", str(tmp_path / ("p" * 300 + ".json"))])
    assert code == EXIT["resource"]
    one_line(err, "too long for the file system")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.yaml"]


def test_a_directory_the_user_may_not_write_is_the_machines_refusal(
    workload: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As root every directory is writable, so os.access stands in for the permission bits."""
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    code, _, err = cli(["compile", str(workload), *FAST, "-o", str(tmp_path / "p.json")])
    assert code == EXIT["resource"]
    one_line(err, "may not be written")


def test_a_deleted_working_directory_is_one_line_and_status_4(workload: Path, tmp_path: Path) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    proc = subprocess.Popen(
        [*CLI, "compile", str(workload), *FAST, "-o", "p.json"],
        cwd=gone,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: os.rmdir(gone),  # the child's working directory, deleted before it starts
    )
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT["resource"], err
    one_line(err, "working directory was deleted")


@pytest.mark.long  # torch and torchrec take seconds to import
def test_export_writes_through_the_writer(tmp_path: Path) -> None:
    pytest.importorskip("torchrec")
    plan = tmp_path / "c.json"
    code, _, err = cli(
        ["compile", "avazu", *FAST, "--devices", "2", "--device-method", "table-wise-greedy", "-o", str(plan)]
    )
    assert code == 0, err
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    (tmp_path / "x.pt.tmp").symlink_to(victim)
    code, _, err = cli(["export", str(plan), "-o", str(tmp_path / "x.pt")])
    assert code == 0, err
    assert victim.read_bytes() == b"keep" and (tmp_path / "x.pt").stat().st_size > 0
    code, _, err = cli(["export", str(plan), "-o", str(plan)])
    assert code == EXIT["bad_input"]
    one_line(err, "is also an input")


# Standard output -------------------------------------------------------------------------------------------


def test_compile_to_standard_output(workload: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(["compile", str(workload), *FAST, "-o", "-"])
    assert code == 0, err
    assert json.loads(out)["schema_version"] == "embmap.plan/1"
    assert "wrote standard output" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.yaml"]  # no file named "-"


def run_closed(args: list[str], cwd: Path, stderr_too: bool = False) -> tuple[int, str]:
    """Run the command line with standard output (and error, with `stderr_too`) a pipe whose reader is gone."""
    read, write = os.pipe()
    os.close(read)
    err_path = cwd / "stderr.txt"
    with open(err_path, "w", encoding="utf-8") as err_file:
        proc = subprocess.run(
            [*CLI, *args], cwd=cwd, stdout=write, stderr=write if stderr_too else err_file, timeout=120, check=False
        )
    os.close(write)
    err = err_path.read_text(encoding="utf-8")
    err_path.unlink()
    return proc.returncode, err


def test_a_compile_whose_reader_went_away_still_writes_its_plan(workload: Path, tmp_path: Path) -> None:
    """`compile --print-ir-after all 2>&1 | head`: the IR on standard error meets a closed pipe."""
    code, _ = run_closed(["compile", str(workload), *FAST, "--print-ir-after", "all", "-o", "p.json"], tmp_path, True)
    assert code == 0
    assert json.loads((tmp_path / "p.json").read_text(encoding="utf-8"))["schema_version"] == "embmap.plan/1"


@pytest.mark.long  # avazu, so that the IR overflows the pipe's buffer: about 5 s
def test_a_reader_that_stops_after_one_line_does_not_stop_the_compile(tmp_path: Path) -> None:
    """As `embmap compile avazu --print-ir-after all 2>&1 | head -1`: the reader leaves while the IR is printed."""
    args = [*CLI, "compile", "avazu", *FAST, "--print-ir-after", "all", "-o", "p.json"]
    proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None and proc.stdout.readline().startswith(b"// -----// IR after")
    proc.stdout.close()
    assert proc.wait(timeout=120) == 0
    assert json.loads((tmp_path / "p.json").read_text(encoding="utf-8"))["workload"]["name"] == "avazu"


def test_a_lost_message_does_not_change_the_status(workload: Path, tmp_path: Path) -> None:
    code, err = run_closed(["compile", str(workload), *FAST, "-o", "q.json"], tmp_path)
    assert code == 0 and err == ""  # "wrote q.json" lost: a message, not the result
    assert (tmp_path / "q.json").is_file()


@pytest.mark.parametrize("command", ["workloads", "explain", "compile"])
def test_a_result_that_did_not_reach_standard_output_is_status_4(command: str, workload: Path, tmp_path: Path) -> None:
    plan = ROOT / "docs" / "example-plan.json"
    args = {"workloads": ["workloads"], "explain": ["explain", str(plan)]}.get(command)
    code, err = run_closed(args or ["compile", str(workload), *FAST, "-o", "-"], tmp_path)
    assert code == EXIT["resource"], err
    one_line(err, "standard output: closed by its reader")
    assert "Exception ignored" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.yaml"]


WRONG_RUN = """
import sys
from embmap.mapper import cli

def wrong_run(args):
    for i in range(20000):
        print("core", i, "predicted 1.00 us measured 1.10 us")
    sys.stderr.write("embmap: error: pooled outputs differ from the reference lookup\\n")
    return cli.EXIT["wrong_output"]

cli.COMMANDS["run"] = wrong_run
sys.exit(cli.main(["run", "plan.json"]))
"""


def test_a_closed_pipe_never_hides_a_wrong_output(tmp_path: Path) -> None:
    """`embmap run wrong.json | head -c 10` exited 0 when the reader left before the report was printed."""
    read, write = os.pipe()
    os.close(read)
    proc = subprocess.run(
        [sys.executable, "-c", WRONG_RUN], cwd=ROOT, stdout=write, stderr=subprocess.PIPE, text=True, timeout=60
    )
    os.close(write)
    assert proc.returncode == EXIT["wrong_output"], proc.stderr
    assert proc.stderr == "embmap: error: pooled outputs differ from the reference lookup\n"


def test_a_full_standard_output_is_status_4(workload: Path, tmp_path: Path) -> None:
    with open("/dev/full", "w", encoding="utf-8") as full:
        proc = subprocess.run(
            [*CLI, "compile", str(workload), *FAST, "-o", "-"],
            cwd=tmp_path,
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    assert proc.returncode == EXIT["resource"], proc.stderr
    one_line(proc.stderr, "standard output: no space left")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.yaml"]


def test_a_listing_without_standard_output_is_status_4(tmp_path: Path) -> None:
    """Started with standard output closed (`>&-`), Python prints nothing and says nothing."""
    proc = subprocess.run(
        [*CLI, "targets"], cwd=tmp_path, stderr=subprocess.PIPE, text=True, timeout=60, preexec_fn=lambda: os.close(1)
    )
    assert proc.returncode == EXIT["resource"], proc.stderr
    one_line(proc.stderr, "standard output: is closed")


def test_the_guard_discards_after_a_failure_and_keeps_the_error() -> None:
    class Closed(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    guard = GuardedStream(Closed())
    assert guard.write("abc") == 3 and guard.write("more") == 4
    guard.flush()
    assert guard.error is not None and guard.error.errno == errno.EPIPE
    assert GuardedStream(None).error is not None  # started with the descriptor closed


def test_an_internal_error_quoting_input_stays_on_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def command(args: object) -> int:
        raise ValueError("bad name 'a\nembmap: done\x1b[31m'")

    monkeypatch.setitem(COMMANDS, "workloads", command)
    code, _, err = cli(["workloads"])
    assert code == EXIT["internal"]
    assert (
        err
        == "embmap: internal error: ValueError: bad name 'a\\nembmap: done\\x1b[31m' (set EMBMAP_DEBUG=1 for the trace)\n"
    )
