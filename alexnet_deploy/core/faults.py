"""Faults: the sentence an ordinary write failure gets, and the fault points the tests stop a writer at.

* :func:`write_error`: a failed write (no space left, quota, read-only, permission) becomes one sentence naming the
  path the user knows (never our temporary or lock file) and the cause.
* :func:`fault_point`: where ``ALEXNET_DEPLOY_KILL_AT`` names it, the process stops as a kill, a signal or a full
  disk would stop it there (tests only; unset, nothing happens).
"""

from __future__ import annotations

import errno
import os
import signal
import time
from pathlib import Path

from alexnet_deploy.core.tempnames import user_path

#: Fault injection for the tests: a process whose environment names one of its fault points (``"before-rename"``,
#: or ``"before-rename:best.pt"`` for one file) stops there. How is :data:`FAULT_SIGNAL_ENV`: ``KILL`` (default,
#: as ``kill -9`` or a power cut would), ``TERM`` or ``HUP`` (as ``docker stop`` or a closed terminal would), or
#: ``ENOSPC`` (the write fails as on a full disk).
FAULT_ENV = "ALEXNET_DEPLOY_KILL_AT"
FAULT_SIGNAL_ENV = "ALEXNET_DEPLOY_KILL_SIGNAL"

#: The errno values of ordinary write faults, each with the cause a sentence names.
WRITE_FAULTS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EFBIG: "file too large",
}
#: A folder with less free space than this after a failed write is on a full file system.
DISK_FULL_BYTES = 1 << 20


def fault_point(name: str, path: str | Path | None = None) -> None:
    """Stop here as :data:`FAULT_ENV` / :data:`FAULT_SIGNAL_ENV` say (tests only; unset, it does nothing)."""
    spec = os.environ.get(FAULT_ENV)
    if not spec or spec not in (name, f"{name}:{Path(path).name if path is not None else ''}"):
        return
    how = os.environ.get(FAULT_SIGNAL_ENV, "KILL").upper()
    if how == "ENOSPC":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path or ""))
    os.kill(os.getpid(), getattr(signal, f"SIG{how}"))
    time.sleep(1)  # a caught signal's handler runs at the next bytecode; never run past the point meanwhile


def nearly_full(folder: str | Path) -> bool:
    """Whether ``folder``'s file system has (almost) no space left."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < DISK_FULL_BYTES


def write_error(exc: BaseException, path: str | Path) -> str | None:
    """One sentence for a failed write of ``path`` (``"Cannot write PATH: no space left on device."``), or None
    when ``exc`` is not an ordinary write fault. A library that hides the errno (torch's "file write failed") is
    recognised by the file system having no space left."""
    path = user_path(path)
    cause = WRITE_FAULTS.get(exc.errno) if isinstance(exc, OSError) else None
    if cause is not None and exc.errno in (errno.EACCES, errno.EPERM):  # may be about an input read meanwhile
        names = [Path(os.fsdecode(n)) for n in (exc.filename, exc.filename2) if n]
        if names and not any(user_path(n) == path or n.parent in (path.parent, path) for n in names):
            return None
    if cause is None and isinstance(exc, (OSError, RuntimeError)) and nearly_full(path.parent):
        cause = WRITE_FAULTS[errno.ENOSPC]
    if cause is None:
        return None
    return f"Cannot write {path}: {cause}."  # what the user named, not our temporary or lock file
