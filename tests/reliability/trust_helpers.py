"""What the input-trust suites share: the small set's size, private copies to damage, the CLI run as a
subprocess (for what could hang), and the checks every fault case makes: one ``error:`` sentence, the exit code,
no traceback, nothing of the user's changed."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CLASSES, PER_CLASS = 4, 5  # the small set: 20 photos of 64 px
IN_CI = os.environ.get("CI", "").lower() == "true"


def need(module: str, reason: str):
    """Import ``module``; where it is missing, skip with ``reason``, except under CI (the dev extra installs it)."""
    import importlib

    import pytest

    if IN_CI:
        return importlib.import_module(module)
    return pytest.importorskip(module, reason=reason)


def copy_data(small_data: Path, dst: Path) -> Path:
    """A private copy of the small set's root (``dst/val/<class>/...``), to damage."""
    shutil.copytree(small_data, dst, symlinks=True)
    return dst


def copy_artifact(onnx: Path, dst: Path) -> Path:
    """A private copy of an artifact and its sidecar, under the name ``dst``."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(onnx, dst)
    shutil.copyfile(onnx.with_name(onnx.name + ".json"), dst.with_name(dst.name + ".json"))
    return dst


def snapshot(*roots: Path) -> dict[str, str]:
    """Every path under ``roots`` (links not followed) and a hash of what it is: to show nothing was changed."""
    seen: dict[str, str] = {}
    for root in roots:
        for path in sorted([root, *root.rglob("*")]) if root.exists() else []:
            if path.is_symlink():
                seen[str(path)] = "link:" + os.readlink(path)
            elif path.is_file():
                seen[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
            elif path.is_dir():
                seen[str(path)] = "dir"
            else:
                seen[str(path)] = "special"
    return seen


def cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """The CLI in a child process, for what could hang (a FIFO) or exhaust memory: a timeout stops it."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    code = "from alexnet_deploy.cli.main import main; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout,
                          env=env, check=False)  # fmt: skip


def outcome(result) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of a CliRunner result or a CompletedProcess."""
    if hasattr(result, "returncode"):
        return result.returncode, result.stdout, result.stderr
    return result.exit_code, result.stdout, result.stderr


def one_sentence(result, *expected: str) -> str:
    """Assert exit code 1, no traceback, and stderr ending in one ``error:`` line that holds every ``expected``."""
    code, out, err = outcome(result)
    assert code == 1, (code, out, err)
    assert "Traceback" not in out + err, err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, err
    for text in expected:
        assert text in errors[0], (text, errors[0])
    return errors[0]
