"""Writing files so that a reader never sees half of one, and cleaning up after writers that were killed.

* :func:`atomic_path` yields a temporary path beside the destination; on success the file is flushed to disk
  (``fsync``) and renamed over the destination, and the folder is synced so the rename survives a power cut.
* Every temporary name says which process made it: ``.NAME.<pid>.<random>.tmp`` (files) and
  ``.NAME.<pid>.<what>-<random>`` (folders: build staging, calibration work). :func:`sweep_leftovers`
  removes those that no live writer owns.
* :func:`output_lock` makes writers of one output take turns: the second one fails at once with a sentence
  (an OS-level ``flock``, released by the kernel even when its holder is killed with ``kill -9``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import re
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from alexnet_deploy.core.errors import ArtifactError

log = logging.getLogger(__name__)

# .NAME.<pid>.<anything>: what our writers leave beside NAME while they work.
_TEMP = re.compile(r"^\.(?P<name>.+?)\.(?P<pid>\d+)\.(?P<rest>[^.]+(?:\.tmp)?)$")
#: Leftovers of a dead writer of *another* output are removed only once they are this old (seconds), so a
#: writer on another machine sharing the folder (NFS) is never robbed of its files mid-write.
STALE_AFTER_S = 600.0


#: Fault injection for the tests: a process whose environment names one of the points below kills itself there
#: with SIGKILL, as a power cut or ``kill -9`` would ("before-rename": a temporary file is complete but not in
#: place; "between-renames": an artifact is in place but its sidecar is not yet).
FAULT_ENV = "ALEXNET_DEPLOY_KILL_AT"


def fault_point(name: str) -> None:
    """Die here, without cleaning up, when ``ALEXNET_DEPLOY_KILL_AT`` names this point (tests only)."""
    if os.environ.get(FAULT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def temp_prefix(path: Path) -> str:
    """The prefix of this process's temporary names for ``path``: ``.NAME.<pid>.``."""
    return f".{path.name}.{os.getpid()}."


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_path(path: Path) -> None:
    """Flush a file's (or a folder's) data to disk."""
    flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    except OSError as exc:  # some file systems cannot sync a folder; the rename is still atomic
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def replace_durably(src: Path, dst: Path) -> None:
    """``os.replace(src, dst)`` after syncing ``src``, then sync the folder so the new name is on disk too."""
    fsync_path(src)
    os.replace(src, dst)
    fsync_path(dst.parent)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success sync it and rename it onto ``path``, on failure delete it.

    Readers never see a half-written file, and a failed write leaves nothing behind.

    Raises:
        ArtifactError: the destination folder cannot be written.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise ArtifactError(f"Cannot write to {path.parent}: {exc.strerror or exc}.") from None
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp makes owner-only files; an artifact is meant to be shared (an inference server, another
    # account), so it gets the mode any new file gets under the umask.
    tmp_path.chmod(0o666 & ~_umask())
    try:
        yield tmp_path
        fault_point("before-rename")
        replace_durably(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json_atomic(path: str | Path, obj) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    import json

    write_bytes_atomic(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


@contextlib.contextmanager
def work_dir(beside: str | Path, what: str) -> Iterator[Path]:
    """A temporary folder ``.NAME.<pid>.<what>-<random>`` beside ``beside`` (not in /tmp), removed afterwards.

    Kept beside the output so that a killed run's leftovers are found and swept by the next run of that output,
    and so that renaming from it into place never crosses a file system. While it exists it is also
    ``tempfile``'s default folder, so the temporary folders made inside (ours and onnxruntime's) go with it.

    Raises:
        ArtifactError: the folder cannot be written.
    """
    beside = Path(beside)
    try:
        beside.parent.mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(prefix=f"{temp_prefix(beside)}{what}-", dir=beside.parent))
    except OSError as exc:
        raise ArtifactError(f"Cannot write to {beside.parent}: {exc.strerror or exc}.") from None
    previous, tempfile.tempdir = tempfile.tempdir, str(path)
    try:
        yield path
    finally:
        tempfile.tempdir = previous
        shutil.rmtree(path, ignore_errors=True)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_text(*parts: str) -> str:
    """Hex sha256 of the given strings joined by newlines (for cache keys)."""
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def sweep_leftovers(output: str | Path, *, own_output_locked: bool = False) -> list[Path]:
    """Remove what killed writers left in ``output``'s folder: temporary files and work folders.

    A leftover of ``output`` itself is removed when ``own_output_locked`` (we hold :func:`output_lock`, so no
    other writer of it is alive) or its writer's pid is gone; one of another output only when its writer's pid
    is gone and it is older than :data:`STALE_AFTER_S`. Our own process's are never touched.

    Returns:
        The paths removed.
    """
    output = Path(output)
    removed = []
    try:
        entries = list(output.parent.iterdir())
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        m = _TEMP.match(entry.name)
        if not m or int(m["pid"]) == os.getpid():
            continue
        mine = m["name"] == output.name
        try:
            age = now - entry.lstat().st_mtime
        except OSError:
            continue
        dead = not _pid_alive(int(m["pid"]))
        if (mine and (own_output_locked or dead)) or (dead and age > STALE_AFTER_S):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    if removed:
        log.info("Removed %d leftover(s) of interrupted runs beside %s.", len(removed), output.name)
    return removed


def lock_path(output: Path) -> Path:
    """The lock file of an output: ``.NAME.lock`` beside it."""
    return output.with_name(f".{output.name}.lock")


@contextlib.contextmanager
def output_lock(output: str | Path) -> Iterator[None]:
    """Hold the lock of ``output`` while writing it; a second writer fails at once with a sentence.

    The lock is a ``flock`` on ``.NAME.lock``: the kernel drops it when the holder exits, also after
    ``kill -9``, so a stale lock file never blocks a later run. Taking it also sweeps the leftovers of
    earlier, interrupted writers of ``output``.

    Raises:
        ArtifactError: another process is writing ``output``, or its folder cannot be written.
    """
    output = Path(output)
    path = lock_path(output)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ArtifactError(f"Cannot write to {output.parent}: {exc.strerror or exc}.") from None
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
        except OSError as exc:
            raise ArtifactError(f"Cannot write to {output.parent}: {exc.strerror or exc}.") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise ArtifactError(
                f"Another process (pid {holder}) is writing {output}; wait for it to finish or write elsewhere."
            ) from None
        # The file may have been unlinked by the previous holder between our open and our flock: then the lock
        # we hold is on a dead inode and a third process could lock a new file. Retry on the current one.
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        sweep_leftovers(output, own_output_locked=True)
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)
