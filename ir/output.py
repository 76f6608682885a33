"""The one way embmap writes a file: checked before any work, written whole or not at all.

`check_outputs` refuses, before a command compiles or measures anything, an output it could not write or should
not: a directory that does not exist (bad input) or may not be written (the machine refused: a
`ResourceError`), a directory, device or FIFO in the output's place, an output that is one of the command's
inputs or another of its outputs. `write_text_atomic` and `write_atomic` (bytes, through a callback such as
`torch.save` or `savefig`) write a temporary file of a unique name beside the target (created exclusively, so
that no file or symbolic link of that name is followed or lost), give it the mode the user's umask asks for,
and rename it over the target; any error or signal removes it. The path `-` is standard output, for text.

`GuardedStream` keeps a command going when the reader of its standard output or error goes away, and
`os_error` turns what the machine refused (disk full, permission, a name too long, a deleted working
directory) into one line naming the path and the fix.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any, TextIO

from embmap.ir.errors import EmbmapError, ResourceError, SpecError

STDOUT = "-"
STDOUT_NAMES = (STDOUT, "/dev/stdout")
# Folders of the kernel's own files: a rename there would replace a device or a link to a descriptor (as root,
# `-o /dev/stderr` turned /dev/stderr into a regular file), so no output goes there (but /dev/shm, a tmpfs).
SYSTEM_FOLDERS = ("/dev", "/proc", "/sys")

# What each refusal of the machine means for the user, and what to do about it.
_REFUSALS: dict[int, tuple[str, str]] = {
    errno.ENOSPC: ("no space left on the device", "free space there, or write somewhere else"),
    errno.EDQUOT: ("disk quota exceeded", "free space within your quota, or write somewhere else"),
    errno.EFBIG: ("file too large for the file system", "write to another file system"),
    errno.ENAMETOOLONG: ("the name is too long for the file system", "give a shorter path"),
    errno.EACCES: ("permission denied", "choose a path you may write, or ask for write access"),
    errno.EPERM: ("operation not permitted", "choose a path you may write, or ask for write access"),
    errno.EROFS: ("read-only file system", "write to a writable file system"),
    errno.EIO: ("input/output error from the device", "check the disk (dmesg), or write elsewhere"),
    errno.EMFILE: ("too many open files", "raise the limit (ulimit -n) or close other programs"),
    errno.ENFILE: ("too many open files on the system", "close other programs"),
    errno.ENOMEM: ("out of memory", "free memory, or use a smaller workload"),
}


def is_stdout(path: Path | str | None) -> bool:
    """`-` or /dev/stdout: standard output, written as a stream rather than renamed over."""
    return path is not None and str(path) in STDOUT_NAMES


def working_directory_gone() -> bool:
    """The working directory was deleted (relative paths name nothing any more)."""
    try:
        os.getcwd()
    except FileNotFoundError:
        return True
    return False


def _gone_error(field: str) -> ResourceError:
    return ResourceError(
        field, "the working directory was deleted", "cd to an existing directory, or give an absolute path"
    )


def os_error(exc: OSError, field: str | None = None) -> EmbmapError | None:
    """`exc` as one line naming the path (or `field`) and the fix; None for an error that is not the machine's
    refusal nor a missing path (a bug). A missing file is bad input (status 2) unless the working directory
    itself is gone."""
    where = field or (str(exc.filename) if exc.filename is not None else "file system")
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        if working_directory_gone():
            return _gone_error(where)
        if exc.filename is None:
            return None
        return SpecError(where, "no such file or directory", "give an existing path")
    if exc.errno not in _REFUSALS:
        return None
    problem, fix = _REFUSALS[exc.errno]
    return ResourceError(where, problem, fix)


def check_outputs(outputs: Iterable[tuple[str, Path | None]], inputs: Iterable[Path | str | None] = ()) -> None:
    """Refuse, before any work, each output (flag, path) that cannot or must not be written: see `check_writable`,
    and an output that is one of `inputs` (files the command reads) or another output of the command."""
    given = [(flag, Path(path)) for flag, path in outputs if path is not None]
    sources = [Path(p) for p in inputs if p is not None and not is_stdout(p) and Path(p).exists()]
    for i, (flag, path) in enumerate(given):
        check_writable(path, flag)
        for source in sources:
            if not is_stdout(path) and _same_file(path, source):
                raise SpecError(flag, f"{path} is also an input of the command ({source})", "write somewhere else")
        for other_flag, other in given[:i]:
            if (is_stdout(path) and is_stdout(other)) or (not is_stdout(path) and _same_file(path, other)):
                raise SpecError(flag, f"{path} is also given to {other_flag}", "give each output its own path")


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
        return a.resolve() == b.resolve()
    except OSError:  # a deleted working directory; check_writable says so
        return False


def check_writable(path: Path | str, field: str = "output") -> Path | None:
    """`path` can be written as a regular file (or is `-`, standard output). Returns its directory (None for
    standard output). A directory that does not exist, or something other than a regular file in the
    output's place, is bad input; a directory the user may not write is the machine's refusal."""
    if is_stdout(path):
        return None
    path = Path(path)
    if not path.is_absolute() and working_directory_gone():
        raise _gone_error(field)
    _check_kind(path, field)
    parent = path.parent
    if not parent.is_dir():
        what = "is not a directory" if parent.exists() else "does not exist"
        raise SpecError(field, f"directory {parent} {what}", "create it first or choose another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        read_only = os.statvfs(parent).f_flag & os.ST_RDONLY
        problem = "is on a read-only file system" if read_only else "may not be written by you (permission denied)"
        raise ResourceError(field, f"directory {parent} {problem}", "choose a directory you may write")
    name_max = os.pathconf(parent, "PC_NAME_MAX")
    if len(os.fsencode(path.name)) > name_max:
        raise ResourceError(
            field,
            f"the name {path.name[:20]}... is too long for the file system (at most {name_max} bytes)",
            "give a shorter file name",
        )
    return parent


def _check_kind(path: Path, field: str) -> None:
    """Only a regular file (or nothing) may stand where the output goes: a rename over a device node or a FIFO
    would replace it with a file, and a directory cannot be replaced."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        mode = 0
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            raise ResourceError(field, "the name is too long for the file system", "give a shorter path") from None
        mode = 0  # e.g. a broken symbolic link: the rename replaces the link itself
    if stat.S_ISDIR(mode):
        raise SpecError(field, f"{path} is a directory", "give a file path, e.g. -o plan.json")
    if mode and not stat.S_ISREG(mode):
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
        raise SpecError(field, f"{path} is {kind}, not a regular file", "give a file path, or - for standard output")
    folder = os.path.normpath(path.parent.absolute())
    shm = folder == "/dev/shm" or folder.startswith("/dev/shm/")  # a file system for files, in /dev
    if not shm and any(folder == top or folder.startswith(top + "/") for top in SYSTEM_FOLDERS):
        raise SpecError(
            field, f"{path} is in {folder}, the system's devices", "give a file path, or - for standard output"
        )


def user_umask() -> int:
    """The process's umask, read without changing it where Linux says it (/proc), else set and restored."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text_atomic(path: Path | str, text: str) -> None:
    """Write `text` (UTF-8) to `path` whole or not at all; `-` writes it to standard output."""
    if is_stdout(path):
        import sys

        sys.stdout.write(text)
        sys.stdout.flush()
        failed = getattr(sys.stdout, "error", None)  # a GuardedStream's: the command's result did not arrive
        if failed is not None:
            raise stdout_error(failed)
        return
    write_atomic(path, lambda f: f.write(text.encode("utf-8")))


def write_atomic(path: Path | str, write: Callable[[IO[bytes]], Any], field: str = "output") -> None:
    """Call `write` with a binary file, a temporary of a unique name beside `path`, then rename it to `path`:
    readers never see half a file, and an error or signal (the command line turns SIGTERM and SIGHUP into
    exceptions) removes the temporary. The file gets the mode a new file gets under the user's umask."""
    path = Path(path)
    parent = check_writable(path, field) or Path(".")
    prefix = "." + os.fsencode(path.name)[:100].decode("utf-8", "ignore") + "."
    try:
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=parent)
    except OSError as exc:
        raise _refusal(exc, path) from None
    try:
        os.fchmod(fd, 0o666 & ~user_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())  # the rename must not reach the disk before the data
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise _refusal(exc, path) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _refusal(exc: OSError, path: Path) -> EmbmapError | OSError:
    """An OSError while writing `path` as one line naming it, or as it is where it is no refusal (a bug)."""
    return os_error(exc, str(path)) or exc


def stdout_error(exc: OSError) -> EmbmapError:
    """Standard output refused the command's result: its reader closed the pipe, or the disk is full."""
    if exc.errno == errno.EPIPE:
        return ResourceError(
            "standard output",
            "closed by its reader before the output was written whole",
            "read the whole output, or write it to a file",
        )
    if exc.errno == errno.EBADF:
        return ResourceError("standard output", "is closed (started with >&-)", "give the command a standard output")
    return os_error(exc, "standard output") or ResourceError("standard output", str(exc), "write it to a file")


class GuardedStream:
    """Standard output or error that outlives its reader: a write or flush that fails (the reader closed the
    pipe: EPIPE; or the disk is full) points the descriptor at /dev/null, keeps the error in `error` and lets
    the command finish its work, so that a closed pipe never hides a failure nor stops a plan being written,
    and the interpreter's own flush at exit finds nothing to complain about."""

    def __init__(self, stream: TextIO | None) -> None:
        self._stream = stream if stream is not None else open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115
        # started without the descriptor (`>&-`): nothing printed can arrive
        self.error: OSError | None = None if stream is not None else OSError(errno.EBADF, "closed")

    def write(self, text: str) -> int:
        if self.error is None:
            try:
                return self._stream.write(text)
            except OSError as exc:
                self._fail(exc)
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self.error is None:
            try:
                self._stream.flush()
            except OSError as exc:
                self._fail(exc)

    def _fail(self, exc: OSError) -> None:
        self.error = exc
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(null, self._stream.fileno())
            finally:
                os.close(null)
            self._stream.flush()  # what the buffer still holds goes to /dev/null
        except (OSError, ValueError):  # not a real descriptor (a test's capture): nothing is flushed at exit
            pass

    @property
    def stream(self) -> TextIO:
        return self._stream

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
