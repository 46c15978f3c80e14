"""Checking that a path names the file a command needs, with a message that says what is wrong with it.

A folder passed where a file is expected (``runs/demo`` instead of ``runs/demo/best.pt``) is the commonest
slip; "not found" would send the user looking for a file that is right there, so the message says it is a
folder and names the candidates inside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from alexnet_deploy.core.errors import AlexNetDeployError

__all__ = ["require_file"]


def require_file(
    path: str | Path,
    error: type[AlexNetDeployError],
    what: str,
    suffixes: Sequence[str],
) -> Path:
    """Return ``path`` when it is a file; otherwise raise ``error`` with one sentence saying why not.

    Args:
        path: the path given by the user.
        error: the exception class to raise (``CheckpointError``, ``ArtifactError``, ...).
        what: what was expected, capitalised as the start of a sentence: ``"Checkpoint"``, ``"ONNX model"``.
        suffixes: the file endings of ``what`` (``(".pt", ".pth")``), to name candidates inside a folder.

    Raises:
        error: ``path`` is a folder or does not exist.
    """
    path = Path(path)
    if path.is_file():
        return path
    if path.is_dir():
        wanted = tuple(s.lower() for s in suffixes)
        try:
            inside = sorted(p.name for p in path.iterdir() if p.is_file() and p.name.lower().endswith(wanted))
        except OSError:
            inside = []
        expected = " or ".join(f"a {s} file" for s in suffixes)
        if inside:
            shown = ", ".join(inside[:3]) + (f" and {len(inside) - 3} more" if len(inside) > 3 else "")
            hint = f"pass one of the files inside it ({shown})"
        else:
            hint = f"pass {expected} (it holds none)"
        noun = what if what[:2].isupper() else what[0].lower() + what[1:]
        article = "an" if noun[0].lower() in "aeiou" else "a"
        raise error(f"{path} is a folder, not {article} {noun}: {hint}.")
    raise error(f"{what} not found: {path}.")
