"""The JSON sidecar every artifact carries, and atomic file writes.

An artifact ``model.onnx`` has its manifest in ``model.onnx.json`` (``best.pt`` -> ``best.pt.json``,
``model.plan`` -> ``model.plan.json``). The manifest makes the artifact self-describing: the model and its
classes, input/output, preprocessing, precision, calibration, measured accuracy with the gate, the source
artifact's sha256, and the versions (and, for plans, the GPU) that produced it.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
import platform
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from alexnet_deploy.core.errors import ArtifactError

MANIFEST_VERSION = 1
TRACKED_PACKAGES = ("alexnet-deploy", "torch", "torchvision", "onnx", "onnxruntime", "onnxruntime-gpu", "tensorrt")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``, on failure delete it.

    Readers never see a half-written file, and a failed write leaves nothing behind.

    Raises:
        ArtifactError: the destination folder cannot be written.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise ArtifactError(f"Cannot write to {path.parent}: {exc.strerror or exc}.") from None
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp makes owner-only files; an artifact is meant to be shared (an inference server, another
    # account), so it gets the mode any new file gets under the umask.
    tmp_path.chmod(0o666 & ~_umask())
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    write_bytes_atomic(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


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


def library_versions() -> dict[str, str]:
    """Versions of the packages that shape an artifact (those installed), read without importing them."""
    versions = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    return versions


def sidecar_path(artifact: str | Path) -> Path:
    """The manifest path of an artifact: the artifact's name plus ``.json``."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".json")


@dataclass
class Manifest:
    """What an artifact is and how it was made; see the module docstring."""

    kind: str  # "checkpoint" | "onnx" | "plan" | "ort"
    model: dict[str, Any] = field(default_factory=dict)  # name, width, columns, num_classes
    classes: list[str] = field(default_factory=list)
    input: dict[str, Any] = field(default_factory=dict)  # name, shape (batch as -1), dtype
    output: dict[str, Any] = field(default_factory=dict)
    preprocessing: dict[str, Any] = field(default_factory=dict)
    precision: str = "fp32"
    calibration: dict[str, Any] = field(default_factory=dict)
    accuracy: dict[str, Any] = field(default_factory=dict)
    gate: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)  # path, sha256
    sha256: str = ""  # of the artifact itself
    versions: dict[str, str] = field(default_factory=library_versions)
    engine: dict[str, Any] = field(default_factory=dict)  # plans: tensorrt version, gpu, profile, io
    extra: dict[str, Any] = field(default_factory=dict)
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    manifest_version: int = MANIFEST_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Manifest:
        known = {f.name for f in fields(cls)}
        if "kind" not in d:
            raise ArtifactError("The manifest has no 'kind' field.")
        return cls(**{k: v for k, v in d.items() if k in known})

    @property
    def num_classes(self) -> int:
        return int(self.model.get("num_classes") or len(self.classes))


def save_manifest(artifact: str | Path, manifest: Manifest) -> Path:
    """Write ``manifest`` beside ``artifact`` (filling in the artifact's sha256) atomically; return its path."""
    if Path(artifact).is_file():
        manifest.sha256 = sha256_file(artifact)
    path = sidecar_path(artifact)
    write_json_atomic(path, manifest.to_dict())
    return path


def load_manifest(artifact: str | Path, required: bool = True) -> Manifest | None:
    """Read an artifact's sidecar.

    Raises:
        ArtifactError: the sidecar is required but missing, or it is not a valid manifest.
    """
    path = sidecar_path(artifact)
    if not path.is_file():
        if required:
            raise ArtifactError(f"{artifact} has no manifest ({path.name} is missing).")
        return None
    try:
        return Manifest.from_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"The manifest {path} is not valid: {exc}.") from None
