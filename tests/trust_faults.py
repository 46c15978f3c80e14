"""What the fault suites of tests/reliability share: running the CLI as a real process (so it can be killed or
signalled), one-sentence checks, snapshots of the user's files, and a folder that is really full or read-only.

A full disk is a real tmpfs of a few MiB, and a read-only folder a real read-only bind mount, each inside a private
mount namespace (``unshare --mount``: root, as in CI, or an unprivileged user namespace where the kernel allows
one), so nothing outside the test process ever sees them. Where neither is possible, a full disk falls back to a
stand-in (``ALEXNET_DEPLOY_KILL_SIGNAL=ENOSPC`` makes the first write fail with ENOSPC) and a read-only folder to
``chmod 555`` (which only binds a user other than root); :data:`CONFINED` says which ran.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import torch

from alexnet_deploy.core.checkpoint import save_checkpoint
from alexnet_deploy.core.data import Preprocessing
from alexnet_deploy.core.files import FAULT_ENV, FAULT_SIGNAL_ENV, FOLDER_LOCK, parse_temp_name
from alexnet_deploy.core.models import alexnet_paper

REPO = Path(__file__).resolve().parents[1]
CODE = "from alexnet_deploy.cli.main import main; main()"
#: Files users keep beside their outputs; some look like the temporary names of older releases.
USER_FILES = {
    ".notes.2024.md": b"notes\n",
    ".env.12345.local": b"KEY=1\n",
    ".model.onnx.20240101.bak": b"backup\n",
    ".model.onnx.99999.abc123.tmp": b"not ours either\n",
    ".photos.2019.d/a.jpg": b"jpg\n",
    "keep.txt": b"keep\n",
}
#: Exit codes the shell reports for a command ended by each signal after its cleanup (128 + the number).
EXIT = {"TERM": 128 + signal.SIGTERM, "HUP": 128 + signal.SIGHUP, "INT": 130}


def env(fault: str | None = None, how: str = "KILL", **extra: str) -> dict[str, str]:
    """The environment of a CLI child: this checkout on the path, and a fault point when asked."""
    e = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200", **extra}
    e.pop(FAULT_ENV, None)
    e.pop(FAULT_SIGNAL_ENV, None)
    if fault:
        e |= {FAULT_ENV: fault, FAULT_SIGNAL_ENV: how}
    return e


def cli(*args: str, fault: str | None = None, how: str = "KILL", timeout: float = 300, code: str = CODE,
        **extra: str) -> subprocess.CompletedProcess:  # fmt: skip
    """Run ``alexnet-deploy ARGS`` as its console script does (signal handlers installed)."""
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout,
                          env=env(fault, how, **extra), cwd=REPO, check=False)  # fmt: skip


def one_sentence(result, code: int, expected: str) -> str:
    """The run ended with ``code`` and one ``error: ...`` sentence holding ``expected``, no traceback."""
    text = (result.stderr if hasattr(result, "returncode") else result.output).strip()
    got = result.returncode if hasattr(result, "returncode") else result.exit_code
    assert got == code, f"exit {got}, wanted {code}: {text[-3000:]}"
    assert "Traceback" not in text, text[-3000:]
    last = text.splitlines()[-1]
    assert last.startswith("error: ") and expected in last, text[-3000:]
    assert sum(line.startswith("error: ") for line in text.splitlines()) == 1, text[-3000:]
    return last


def seed_user_files(folder: Path) -> dict[str, str]:
    """Put :data:`USER_FILES` into ``folder`` (the dot-folder old enough for any age rule); return their snapshot."""
    for name, data in USER_FILES.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    old = 1_500_000_000
    os.utime(folder / ".photos.2019.d", (old, old))
    return snapshot(folder, USER_FILES)


def snapshot(folder: Path, names=None) -> dict[str, str]:
    """sha256 of every file under ``folder`` (or of ``names`` only), by relative path; links by their target."""
    out = {}
    paths = [folder / n for n in names] if names is not None else sorted(folder.rglob("*"))
    for p in paths:
        rel = str(p.relative_to(folder))
        if p.is_symlink():
            out[rel] = f"-> {os.readlink(p)}"
        elif p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
        elif not p.exists():
            out[rel] = "missing"
    return out


def ours(folder: Path) -> list[str]:
    """Our temporary names and lock files left in ``folder`` (what a finished or cleaned-up run must not leave)."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir()
                  if parse_temp_name(p.name) or p.name.endswith(".lock") or p.name == FOLDER_LOCK)  # fmt: skip


def checkpoint(path: Path, classes: list[str], seed: int = 0) -> Path:
    """A small training checkpoint (width 0.25, 64 px) of ``classes``."""
    torch.manual_seed(seed)
    model = alexnet_paper(width=0.25, num_classes=len(classes), init="kaiming")
    save_checkpoint(path, {"model": model.state_dict(),
                           "arch": {"name": "alexnet_paper", "num_classes": len(classes), "width": 0.25, "columns": 2},
                           "classes": classes, "preprocessing": Preprocessing.for_crop(64).to_dict()})  # fmt: skip
    return path


# -- a full disk and a read-only folder, for real ----------------------------------------------------------------
@functools.cache
def _unshare() -> list[str] | None:
    """The ``unshare`` command that gives a private mount namespace here, or None."""
    if shutil.which("unshare") is None:
        return None
    for cmd in (["unshare", "--mount"], ["unshare", "--user", "--map-root-user", "--mount"]):
        probe = subprocess.run([*cmd, "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt 2>/dev/null || "
                                "mount -t tmpfs -o size=1m tmpfs /tmp"], capture_output=True, check=False)  # fmt: skip
        if probe.returncode == 0:
            return cmd
    return None


CONFINED = "namespace" if _unshare() else "stand-in"


def confined(kind: str, folder: Path, *args: str, size: str = "3m", timeout: float = 300,
             stand_in: str = "before-rename") -> tuple:  # fmt: skip
    """Run ``alexnet-deploy ARGS`` with ``folder`` full (``kind="full"``: a tmpfs of ``size`` holding a copy of
    ``folder``'s files) or read-only (``kind="readonly"``).

    Returns:
        (the completed process, ``{relative path: sha256}`` of ``folder`` as the command left it).
    """
    cmd = _unshare()
    if cmd is None:
        return _stand_in(kind, folder, *args, timeout=timeout, fault=stand_in)
    seed = folder.with_name(folder.name + ".seed")
    shutil.copytree(folder, seed, symlinks=True)
    listing = folder.with_name(folder.name + ".after")
    mount = (f"mount -t tmpfs -o size={size} tmpfs {shlex.quote(str(folder))} && "
             f"cp -a {shlex.quote(str(seed))}/. {shlex.quote(str(folder))}/" if kind == "full" else
             f"mount --bind {shlex.quote(str(folder))} {shlex.quote(str(folder))} && "
             f"mount -o remount,bind,ro {shlex.quote(str(folder))}")  # fmt: skip
    script = (f"set -e; {mount}; set +e; {shlex.quote(sys.executable)} -c {shlex.quote(CODE)} \"$@\"; rc=$?; "
              f"cd {shlex.quote(str(folder))} && find . -mindepth 1 -type f -exec sha256sum {{}} + "
              f"> {shlex.quote(str(listing))}; exit $rc")  # fmt: skip
    result = subprocess.run([*cmd, "sh", "-c", script, "sh", *args], capture_output=True, text=True, timeout=timeout,
                            env=env(), cwd=REPO, check=False)  # fmt: skip
    after = {}
    for line in listing.read_text().splitlines() if listing.is_file() else []:
        digest, rel = line.split(maxsplit=1)
        after[rel.removeprefix("./")] = digest
    shutil.rmtree(seed)
    listing.unlink(missing_ok=True)
    return result, after


def _stand_in(kind: str, folder: Path, *args: str, timeout: float, fault: str) -> tuple:
    if kind == "full":
        result = cli(*args, fault=fault, how="ENOSPC", timeout=timeout)
        return result, snapshot(folder)
    os.chmod(folder, 0o555)
    try:
        result = cli(*args, timeout=timeout)
    finally:
        os.chmod(folder, 0o755)
    return result, snapshot(folder)


def readonly_cause() -> str:
    """What a read-only folder's sentence names here: a read-only mount, or the permission chmod took away."""
    return "the file system is read-only" if _unshare() else "permission denied"
