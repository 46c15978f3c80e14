"""Every file and folder alexnet-deploy creates goes through here, so that it never touches what is not its own.

* **Temporary names are unmistakably ours**: ``.NAME.~adtmp~<pid>-<start>-<what>-<random>``, where ``<start>`` is
  the writer's start time (``/proc/<pid>/stat`` field 22), so a reused pid never passes for a live writer.
  Files are created with ``O_CREAT | O_EXCL | O_NOFOLLOW``; folders with ``mkdir`` (which never follows a link).
* :func:`atomic_path` yields such a temporary file beside the destination; on success it is synced and renamed
  over the destination (the folder synced too), on failure removed. A destination that is a symbolic link is
  refused: we never write through one, and never silently replace a link the user made.
* :func:`output_lock` makes writers of one output take turns (an OS ``flock`` the kernel drops even after
  ``kill -9``). The lock file is opened with ``O_NOFOLLOW`` and must be a regular file with one link.
* :func:`sweep_leftovers` removes only names that carry our marker, whose writer is provably dead (its pid is gone
  or now belongs to a process that started at another time), never following a link and never another user's.
  Anything else in an output folder belongs to the user and is never touched.
* A failed write (disk full, read-only, permission, quota) is one sentence naming the path and the cause
  (:func:`~alexnet_deploy.core.faults.write_error`).

The names (:mod:`~alexnet_deploy.core.tempnames`) and the fault sentences and test fault points
(:mod:`~alexnet_deploy.core.faults`) live in their own modules; their public names are re-exported here, the one
place the rest of the code imports from.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import logging
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from alexnet_deploy.core.errors import ArtifactError
from alexnet_deploy.core.faults import (
    FAULT_ENV,
    FAULT_SIGNAL_ENV,
    WRITE_FAULTS,
    fault_point,
    nearly_full,
    write_error,
)
from alexnet_deploy.core.tempnames import (
    MARKER,
    NAME_KEEP,
    TempName,
    is_ours,
    parse_temp_name,
    process_start,
    temp_name,
    user_path,
    writer_alive,
)

log = logging.getLogger(__name__)

#: The lock file of an output *folder* (a training run, a Triton repository) lives inside it under this name.
FOLDER_LOCK = ".alexnet-deploy.lock"
#: Leftovers of a dead writer of *another* output are removed only once they are this old (seconds), so a writer
#: on another machine sharing the folder (NFS, where its pid means nothing here) is never robbed mid-write.
STALE_AFTER_S = 600.0

__all__ = [
    "FAULT_ENV", "FAULT_SIGNAL_ENV", "FOLDER_LOCK", "MARKER", "STALE_AFTER_S", "WRITE_FAULTS", "TempName",
    "atomic_path", "copy_atomic", "create_temp_dir", "create_temp_file", "ensure_folder", "exchange",
    "fault_point", "fsync_path", "is_ours", "link_into", "lock_path", "output_lock", "parse_temp_name",
    "process_start", "refuse_symlink", "remove_ours", "rename_new", "replace_durably", "scratch_dir",
    "sha256_file", "sha256_text", "sweep_leftovers", "temp_name", "user_path", "work_dir", "write_bytes_atomic",
    "write_error", "write_json_atomic", "write_new_file", "writer_alive",
]  # fmt: skip


def _raise_write_error(exc: BaseException, path: Path) -> None:
    sentence = write_error(exc, path)
    if sentence is not None:
        raise ArtifactError(sentence) from None


# -- making folders and files -------------------------------------------------------------------------------------
def refuse_symlink(path: str | Path, what: str = "output") -> Path:
    """Return ``path``, or refuse it when it is a symbolic link (we never write through one).

    Raises:
        ArtifactError: ``path`` is a symbolic link.
    """
    path = Path(path)
    if path.is_symlink():
        raise ArtifactError(
            f"The {what} {path} is a symbolic link; alexnet-deploy never writes through one: remove the link or "
            "name the real path."
        )
    return path


def ensure_folder(folder: str | Path, *, allow_link: bool = False) -> Path:
    """Create ``folder`` (and its parents) unless it exists; a folder that is a link is refused unless
    ``allow_link`` (the folder of a file the user named: where it lives is the user's choice).

    Raises:
        ArtifactError: it cannot be created (with the cause), is a file, or is a symbolic link.
    """
    folder = Path(folder)
    if allow_link and folder.is_dir():
        return folder
    refuse_symlink(folder, "folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ArtifactError(f"Cannot write to {folder}: it is a file, not a folder.") from None
    except OSError as exc:
        raise ArtifactError(write_error(exc, folder) or f"Cannot write to {folder}: {exc.strerror or exc}.") from None
    return folder


def create_temp_file(beside: str | Path) -> Path:
    """Create an empty temporary file of ours beside ``beside`` (``O_EXCL | O_NOFOLLOW``; mode from the umask).

    Raises:
        ArtifactError: the folder cannot be written (the cause named).
    """
    beside = Path(beside)
    while True:
        tmp = beside.with_name(temp_name(beside, "tmp"))
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        except FileExistsError:
            continue
        except OSError as exc:
            raise ArtifactError(
                write_error(exc, beside) or f"Cannot write to {beside.parent}: {exc.strerror or exc}."
            ) from None
        os.close(fd)
        return tmp


def create_temp_dir(beside: str | Path, what: str, mode: int = 0o700) -> Path:
    """Create a temporary folder of ours beside ``beside`` (``mode`` under the umask).

    Raises:
        ArtifactError: the folder cannot be written (the cause named).
    """
    beside = Path(beside)
    while True:
        path = beside.with_name(temp_name(beside, what))
        try:
            os.mkdir(path, mode)
        except FileExistsError:
            continue
        except OSError as exc:
            raise ArtifactError(
                write_error(exc, beside) or f"Cannot write to {beside.parent}: {exc.strerror or exc}."
            ) from None
        return path


def remove_ours(path: str | Path) -> None:
    """Remove a file or folder we made, never following a link (``rmtree`` unlinks links inside, it does not
    descend into them); what is already gone is fine."""
    path = Path(path)
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def fsync_path(path: Path) -> None:
    """Flush a file's (or a folder's) data to disk."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | (os.O_DIRECTORY if path.is_dir() else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    except OSError as exc:  # some file systems cannot sync a folder; the rename is still atomic
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def replace_durably(src: Path, dst: Path) -> None:
    """``os.replace(src, dst)`` after syncing ``src``, then sync the folder so the new name is on disk too.

    The rename replaces whatever name ``dst`` is (a link included) and never writes through it.

    Raises:
        ArtifactError: ``src`` is no longer a regular file, or the write failed for an ordinary cause.
    """
    st = src.lstat()
    if not stat.S_ISREG(st.st_mode):
        raise ArtifactError(f"The temporary file {src} was replaced by something else; {dst} was not written.")
    try:
        fsync_path(src)
        os.replace(src, dst)
        fsync_path(dst.parent)
    except OSError as exc:
        _raise_write_error(exc, dst)
        raise


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success sync it and rename it onto ``path``, on failure delete it.

    Readers never see a half-written file, and a failed write leaves nothing behind.

    Raises:
        ArtifactError: ``path`` is a symbolic link or a folder, or the write failed for an ordinary cause (no
            space left, read-only, permission), named in one sentence.
    """
    path = refuse_symlink(path)
    if path.is_dir():
        raise ArtifactError(f"The output {path} is a folder; give a file name.")
    ensure_folder(path.parent, allow_link=True)
    tmp = create_temp_file(path)
    try:
        yield tmp
        fault_point("before-rename", path)
        replace_durably(tmp, path)
        fault_point("after-rename", path)
    except BaseException as exc:
        sentence = write_error(exc, path) if isinstance(exc, Exception) else None
        remove_ours(tmp)
        if sentence is not None and not isinstance(exc, ArtifactError):
            raise ArtifactError(sentence) from None
        raise


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json_atomic(path: str | Path, obj) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    import json

    write_bytes_atomic(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def copy_atomic(src: str | Path, dst: str | Path) -> None:
    """Copy the file ``src`` to ``dst`` atomically."""
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def write_new_file(path: str | Path, data: bytes) -> None:
    """Write one of many files of a set whose completeness a marker file records (a synthetic data set, an
    unpacked archive): not synced or renamed, but never through a link and only into a regular file.

    Raises:
        ArtifactError: ``path`` is a link or not a regular file, or the write failed for an ordinary cause.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            refuse_symlink(path, "file")
        _raise_write_error(exc, path)
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ArtifactError(f"{path} is not a regular file; it was not written.")
        with open(fd, "wb", closefd=False) as f:
            f.write(data)
    except OSError as exc:
        _raise_write_error(exc, path)
        raise
    finally:
        os.close(fd)


@contextlib.contextmanager
def work_dir(beside: str | Path, what: str) -> Iterator[Path]:
    """A temporary folder of ours beside ``beside`` (not in /tmp), removed afterwards.

    Kept beside the output so that a killed run's leftovers are found and swept by the next run of that output,
    and so that renaming from it into place never crosses a file system. While it exists it is also
    ``tempfile``'s default folder, so the temporary folders made inside (ours and onnxruntime's) go with it.

    Raises:
        ArtifactError: the folder cannot be written, or a write inside it failed for an ordinary cause (no space
            left...), named as a write of ``beside``.
    """
    beside = Path(beside)
    ensure_folder(beside.parent, allow_link=True)
    path = create_temp_dir(beside, what)
    previous, tempfile.tempdir = tempfile.tempdir, str(path)
    try:
        yield path
    except Exception as exc:  # a library writing into our work folder on a full disk: name the output
        sentence = None if isinstance(exc, ArtifactError) else write_error(exc, beside)
        if sentence is not None:
            raise ArtifactError(sentence) from None
        raise
    finally:
        tempfile.tempdir = previous
        remove_ours(path)


@contextlib.contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A ``tempfile.TemporaryDirectory`` (inside :func:`work_dir` when one is open) for a library's work files.

    A library that fails on a full disk with its own exception (onnx's shape inference writes a truncated file
    silently, and the load after it raises ``DecodeError``) is recognised here, before the folder is removed and
    the space freed: one sentence, naming the output.

    Raises:
        ArtifactError: the file system of the folder is full.
    """
    with tempfile.TemporaryDirectory(prefix=prefix) as work:
        try:
            yield Path(work)
        except Exception as exc:
            if not isinstance(exc, ArtifactError) and nearly_full(work):
                raise ArtifactError(f"Cannot write {user_path(work)}: {WRITE_FAULTS[errno.ENOSPC]}.") from None
            raise


def link_into(work: str | Path, source: str | Path, name: str | None = None) -> Path:
    """A symbolic link in our own ``work`` folder to ``source``: a library that writes files beside the path it
    is given (onnxruntime's ``MODEL-inferred.onnx``) then writes them in ``work``, never beside ``source``."""
    link = Path(work) / (name or Path(source).name)
    os.symlink(Path(source).resolve(), link)
    return link


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


# -- swapping folders ---------------------------------------------------------------------------------------------
_RENAME_NOREPLACE, _RENAME_EXCHANGE, _AT_FDCWD = 1, 2, -100


def _renameat2(src: Path, dst: Path, flags: int) -> bool:
    """``renameat2(src, dst, flags)``; False where the system or file system does not offer it."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), flags) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(src), None, str(dst))


def exchange(a: str | Path, b: str | Path) -> bool:
    """Swap the names ``a`` and ``b`` in one step (Linux ``renameat2(RENAME_EXCHANGE)``): a reader sees either the
    old or the new one under each name, never none. False where the file system cannot (then nothing moved).

    Raises:
        OSError: the swap failed for another reason.
    """
    return _renameat2(Path(a), Path(b), _RENAME_EXCHANGE)


def rename_new(src: str | Path, dst: str | Path) -> None:
    """Rename ``src`` to ``dst``, which must not exist (``RENAME_NOREPLACE`` where offered).

    Raises:
        FileExistsError: ``dst`` appeared meanwhile.
    """
    src, dst = Path(src), Path(dst)
    if not _renameat2(src, dst, _RENAME_NOREPLACE):
        if dst.exists() or dst.is_symlink():
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(dst))
        os.rename(src, dst)


# -- the sweep and the lock ---------------------------------------------------------------------------------------
def sweep_leftovers(output: str | Path, *, inside: bool = False) -> list[Path]:
    """Remove what killed writers left: our marked temporary files and folders whose writer is dead.

    Looked for beside ``output`` (``inside``: in the folder ``output`` itself, where every leftover is the
    output's own). A leftover of ``output`` is removed once its writer is dead (its pid gone, or reused by a
    process that started at another time); one of another output only when it is also older than
    :data:`STALE_AFTER_S`. A live writer's files, links, another user's files and every name without our
    marker are never touched.

    Returns:
        The paths removed.
    """
    output = Path(output)
    folder = output if inside else output.parent
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        m = parse_temp_name(entry.name)
        if m is None or m.alive:
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISLNK(st.st_mode) or st.st_uid != os.geteuid():
            continue
        mine = inside or m.name == output.name[:NAME_KEEP]
        if mine or now - st.st_mtime > STALE_AFTER_S:
            remove_ours(entry.path)
            removed.append(Path(entry.path))
    if removed:
        log.info("Removed %d leftover(s) of interrupted runs in %s.", len(removed), folder)
    return removed


def lock_path(output: str | Path, folder: bool = False) -> Path:
    """The lock file of an output: ``.NAME.lock`` beside a file, :data:`FOLDER_LOCK` inside a folder."""
    output = Path(output)
    return output / FOLDER_LOCK if folder else output.with_name(f".{output.name}.lock")


def _open_lock(path: Path, output: Path) -> int:
    """Open (or create) a lock file without following a link; it must be a regular file with one name."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o666)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ArtifactError(
                f"The lock file {path} is a symbolic link, which alexnet-deploy never makes or writes through; "
                "remove it and retry."
            ) from None
        if exc.errno == errno.EISDIR:
            raise ArtifactError(f"The lock file {path} is not a regular file, so it is not one alexnet-deploy made; "
                                "remove it and retry.") from None  # fmt: skip
        _raise_write_error(exc, output)
        raise ArtifactError(f"Cannot write to {path.parent}: {exc.strerror or exc}.") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        os.close(fd)
        what = "is not a regular file" if not stat.S_ISREG(st.st_mode) else "has other hard links"
        raise ArtifactError(f"The lock file {path} {what}, so it is not one alexnet-deploy made; remove it and retry.")
    return fd


@contextlib.contextmanager
def output_lock(output: str | Path, *, folder: bool = False, sweep: bool = True) -> Iterator[None]:
    """Hold the lock of ``output`` while writing it; a second writer fails at once with a sentence.

    The lock is a ``flock`` on ``.NAME.lock`` beside a file output, or on :data:`FOLDER_LOCK` inside a folder
    output (``folder``: a training run, a Triton repository; it is created, and removed again if nothing else was
    written into it). The kernel drops it when the holder
    exits, also after ``kill -9``, so a stale lock file never blocks a later run. Taking it also sweeps the
    leftovers of earlier, interrupted writers of ``output`` (unless ``sweep`` is False: the caller sweeps).

    Raises:
        ArtifactError: another process is writing ``output``; ``output`` or the lock file is a symbolic link or
            not a regular file; or the folder cannot be written (the cause named).
    """
    output = refuse_symlink(output)
    path = lock_path(output, folder)
    created = folder and not output.exists()
    if folder:
        ensure_folder(output)
    else:
        ensure_folder(output.parent, allow_link=True)
    while True:
        fd = _open_lock(path, output)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            holder = holder if holder.isdigit() else "unknown"
            raise ArtifactError(
                f"Another process (pid {holder}) is writing {output}; wait for it to finish or write elsewhere."
            ) from None
        # The file may have been unlinked by the previous holder between our open and our flock: then the lock
        # we hold is on a dead inode and a third process could lock a new file. Retry on the current one.
        try:
            same = os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        if sweep:
            sweep_leftovers(output, inside=folder)
        yield
    finally:
        with contextlib.suppress(OSError):
            if os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino:
                path.unlink()
        os.close(fd)
        if created:
            with contextlib.suppress(OSError):
                output.rmdir()  # made for this run and nothing written: leave no empty folder (fails if not empty)
