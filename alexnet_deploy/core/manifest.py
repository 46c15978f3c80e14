"""The JSON sidecar every artifact carries, written and read as one unit with its artifact.

An artifact ``model.onnx`` has its manifest in ``model.onnx.json`` (``best.pt`` -> ``best.pt.json``,
``model.plan`` -> ``model.plan.json``). The manifest makes the artifact self-describing: the model and its
classes, input/output, preprocessing, precision, calibration, measured accuracy with the gate, the source
artifact's sha256, and the versions (and, for plans, the GPU) that produced it.

The pair is one unit. :func:`place_artifact` renames the finished artifact into place first and its sidecar
last, with the sidecar's ``sha256`` taken from the bytes that were written; :func:`load_manifest` compares that
sha256 with the file beside it. So a reader sees a consistent pair or refuses with one sentence, whatever
happened between the two renames (a ``kill -9``, a second writer). Loading also checks the sidecar's fields
against a schema, so a malformed sidecar is one sentence, not a traceback deep in a runner.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import math
import platform
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from alexnet_deploy.core.errors import ArtifactError
from alexnet_deploy.core.files import (
    atomic_path,
    fault_point,
    refuse_symlink,
    replace_durably,
    sha256_file,
    write_json_atomic,
)
from alexnet_deploy.core.text import console_text, control_characters
from alexnet_deploy.core.vocab import Precision

MANIFEST_VERSION = 1
"""The sidecar schema this release writes, and the newest it reads: a sidecar from a newer writer may mean
something this release would misread, so it is refused with both versions named."""
PREPROCESSING_KEYS = ("resize", "crop", "mean", "std")
"""The preprocessing this release applies. Any other key there (``channel_order``, ``interpolation``) would change
how images must be prepared, so a sidecar carrying one is refused rather than run with the wrong inputs."""
TRACKED_PACKAGES = (
    "alexnet-deploy", "torch", "torchvision", "onnx", "onnxruntime", "onnxruntime-gpu", "openvino", "tensorrt",
    "tensorrt_rtx",
)  # fmt: skip


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

    kind: str  # "checkpoint" | "onnx" | "plan" | "ovblob" (an OpenVINO compiled blob)
    model: dict[str, Any] = field(default_factory=dict)  # name, width, columns, num_classes
    classes: list[str] = field(default_factory=list)  # class ids in output order (ImageNet-1k: WordNet ids)
    class_names: list[str] = field(default_factory=list)  # names for display, where they differ from the ids
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
    engine: dict[str, Any] = field(default_factory=dict)  # plans: tensorrt version, gpu...; blobs: openvino, cpu
    extra: dict[str, Any] = field(default_factory=dict)
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    manifest_version: int = MANIFEST_VERSION
    # Top-level keys this release does not know, kept as they were so that a round trip does not drop them.
    other_fields: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        others = d.pop("other_fields")
        return {**{k: v for k, v in others.items() if k not in d}, **d}

    @classmethod
    def from_dict(cls, d: Any, where: str = "The manifest") -> Manifest:
        """A manifest from its JSON, checked against the schema.

        Raises:
            ArtifactError: one sentence naming the first malformed field.
        """
        if not isinstance(d, dict):
            raise ArtifactError(f"{where} is not a JSON object.")
        if "kind" not in d:
            raise ArtifactError(f"{where} has no 'kind' field.")
        version = d.get("manifest_version", MANIFEST_VERSION)
        if not _is_int(version):
            raise ArtifactError(f"{where} is not valid: manifest_version must be a positive integer, not {version!r}.")
        if version > MANIFEST_VERSION:
            raise ArtifactError(
                f"{where} was written by a newer alexnet-deploy (manifest version {version}); this release "
                f"({_release()}) reads manifest version {MANIFEST_VERSION} and older, and a newer sidecar may mean "
                "something it would misread: upgrade alexnet-deploy to use this artifact."
            )
        known = {f.name for f in fields(cls)} - {"other_fields"}
        others = {k: v for k, v in d.items() if k not in known}
        manifest = cls(**{k: v for k, v in d.items() if k in known}, other_fields=others)
        problem = manifest.problem()
        if problem:
            raise ArtifactError(f"{where} is not valid: {problem}.")
        return manifest

    def problem(self) -> str | None:
        """The first way this manifest breaks the schema, in words, or ``None``."""
        return _schema_problem(self)

    @property
    def num_classes(self) -> int:
        return int(self.model.get("num_classes") or len(self.classes))

    @property
    def display_names(self) -> list[str]:
        """A name to show for each class: the recorded ones, else ImageNet-1k's for wnids, else the ids."""
        from alexnet_deploy.core.imagenet import display_names

        return display_names(self.classes, self.class_names)


def _release() -> str:
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        return importlib.metadata.version("alexnet-deploy")
    return "this checkout"


KINDS = ("checkpoint", "onnx", "plan", "ovblob")
_DICT_FIELDS = ("model", "input", "output", "preprocessing", "calibration", "accuracy", "gate", "source", "engine")


def _is_int(x: Any, low: int = 1) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= low


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _schema_problem(m: Manifest) -> str | None:  # noqa: C901 - one flat list of rules reads best
    if m.kind not in KINDS:
        return f"kind is {m.kind!r}, not one of {', '.join(KINDS)}"
    for name in _DICT_FIELDS:
        if not isinstance(getattr(m, name), dict):
            return f"{name} must be an object, not {type(getattr(m, name)).__name__}"
    if not isinstance(m.classes, list) or not all(isinstance(c, str) for c in m.classes):
        return "classes must be a list of names"
    if bad := next((c for c in m.classes if control_characters(c)), None):
        return (f"the class name {console_text(repr(bad))} holds {', '.join(control_characters(bad))} (a class name "
                "must be one line of text)")  # fmt: skip
    if m.precision not in {p.value for p in Precision}:
        return f"precision is {m.precision!r}, not one of {', '.join(p.value for p in Precision)}"
    if not isinstance(m.sha256, str) or (m.sha256 and len(m.sha256) != 64):
        return "sha256 must be 64 hex digits"
    model = m.model
    if "num_classes" in model and not _is_int(model["num_classes"]):
        return f"model.num_classes must be a positive integer, not {model['num_classes']!r}"
    if "width" in model and not (_is_number(model["width"]) and model["width"] > 0):
        return f"model.width must be a positive number, not {model['width']!r}"
    if "name" in model and not isinstance(model["name"], str):
        return "model.name must be a string"
    if "name" in model and control_characters(model["name"]):
        return f"model.name {console_text(repr(model['name']))} holds control characters (it must be one line)"
    if m.classes and "num_classes" in model and len(m.classes) != model["num_classes"]:
        return f"it lists {len(m.classes)} classes but model.num_classes is {model['num_classes']}"
    if len(set(m.classes)) != len(m.classes):
        return "classes has duplicate names"
    if not isinstance(m.class_names, list) or not all(isinstance(c, str) for c in m.class_names):
        return "class_names must be a list of names"
    if m.class_names and len(m.class_names) != len(m.classes):
        return f"it has {len(m.class_names)} class_names for {len(m.classes)} classes"
    for side in ("input", "output"):
        io = getattr(m, side)
        if "name" in io and not isinstance(io["name"], str):
            return f"{side}.name must be a string"
        if "name" in io and control_characters(io["name"]):
            return f"{side}.name {console_text(repr(io['name']))} holds control characters (it must be one line)"
        shape = io.get("shape")
        if shape is not None and not (isinstance(shape, list) and all(_is_int(d, -1) and d != 0 for d in shape)):
            return f"{side}.shape must be a list of positive sizes (-1 for a dynamic one), not {shape!r}"
    pre = m.preprocessing
    if unknown := sorted(set(pre) - set(PREPROCESSING_KEYS)):
        return (f"preprocessing has {', '.join(console_text(repr(k)) for k in unknown)}, which this release does "
                f"not apply (it knows {', '.join(PREPROCESSING_KEYS)}); running it anyway would prepare the images "
                "differently from what the sidecar asks")  # fmt: skip
    if pre:
        for key in ("resize", "crop"):
            if not _is_int(pre.get(key)):
                return f"preprocessing.{key} must be a positive integer, not {pre.get(key)!r}"
        if pre["crop"] > pre["resize"]:
            return f"preprocessing.crop ({pre['crop']}) is larger than its resize ({pre['resize']})"
        for key in ("mean", "std"):
            v = pre.get(key)
            if not (isinstance(v, list) and len(v) == 3 and all(_is_number(x) for x in v)):
                return f"preprocessing.{key} must be three numbers, not {v!r}"
        if any(x <= 0 for x in pre["std"]):
            return f"preprocessing.std must be positive, not {pre['std']!r}"
    shape = m.input.get("shape")
    if pre and shape and len(shape) == 4 and any(d > 0 and d != pre["crop"] for d in shape[2:]):
        return f"input.shape {shape} does not match preprocessing.crop {pre['crop']}"
    out = m.output.get("shape")
    if out and len(out) == 2 and out[1] > 0 and m.classes and out[1] != len(m.classes):
        return f"output.shape {out} gives {out[1]} logits for {len(m.classes)} classes"
    status = m.gate.get("status")
    if status is not None and status not in ("passed", "failed"):
        return f"gate.status is {status!r}, not passed or failed"
    return None


def write_manifest(artifact: str | Path, manifest: Manifest, sha256: str) -> Path:
    """Write ``manifest`` as the sidecar of ``artifact``, whose bytes hash to ``sha256``; return the sidecar's path.

    The sidecar is stamped with this release's :data:`MANIFEST_VERSION`: it is this release that wrote it (a
    newer one never gets here, :meth:`Manifest.from_dict` refuses it).
    """
    manifest.sha256 = sha256
    manifest.manifest_version = MANIFEST_VERSION
    path = sidecar_path(artifact)
    write_json_atomic(path, manifest.to_dict())
    return path


def refuse_linked_pair(artifact: str | Path) -> Path:
    """Refuse an output whose artifact or sidecar is a symbolic link (we never write through one), before any work.

    Raises:
        ArtifactError: either is a symbolic link.
    """
    refuse_symlink(sidecar_path(artifact), "sidecar")
    return refuse_symlink(artifact)


def place_artifact(staged: str | Path, artifact: str | Path, manifest: Manifest) -> Manifest:
    """Move a finished file into place as ``artifact``, then write its sidecar: the pair as one unit.

    The sha256 is taken from ``staged`` before the rename (the bytes that were written, not whatever sits at the
    final path by then), the artifact is renamed first (synced) and the sidecar last, so an interruption between
    the two leaves a pair that :func:`load_manifest` refuses, never one that describes another file.
    """
    staged, artifact = Path(staged), Path(artifact)
    sha = sha256_file(staged)
    refuse_linked_pair(artifact)  # refused now, not after the artifact is in place
    fault_point("before-rename", artifact)
    replace_durably(staged, artifact)
    fault_point("between-renames", artifact)
    write_manifest(artifact, manifest, sha)
    return manifest


def write_artifact(artifact: str | Path, write: Callable[[Path], None], manifest: Manifest) -> Manifest:
    """Write ``artifact`` with ``write(tmp_path)`` and then its sidecar, as :func:`place_artifact` does."""
    refuse_linked_pair(artifact)  # refused now, not after the artifact is in place
    with atomic_path(artifact) as tmp:
        write(tmp)
        sha = sha256_file(tmp)
    fault_point("between-renames", artifact)
    write_manifest(artifact, manifest, sha)
    return manifest


def save_manifest(artifact: str | Path, manifest: Manifest) -> Path:
    """Write the sidecar of an artifact already in place (its sha256 read from the file); return its path.

    For a file that only this run writes (a training run's folder); a file that other runs may write too goes
    through :func:`place_artifact` or :func:`write_artifact`.
    """
    artifact = Path(artifact)
    return write_manifest(artifact, manifest, sha256_file(artifact) if artifact.is_file() else "")


_VERIFIED: dict[tuple, str] = {}  # (path, inode, size, mtime_ns) -> sha256, so a file is hashed once per process


def _file_sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _VERIFIED:
        _VERIFIED[key] = sha256_file(path)
    return _VERIFIED[key]


def load_manifest(artifact: str | Path, required: bool = True, verify: bool = True) -> Manifest | None:
    """Read an artifact's sidecar, check it against the schema and (``verify``) against the artifact's bytes.

    Raises:
        ArtifactError: the sidecar is required but missing; it is not valid JSON or breaks the schema; or its
            sha256 is not the artifact's (an interrupted or concurrent write left a sidecar of another file).
    """
    artifact = Path(artifact)
    path = sidecar_path(artifact)
    if not path.is_file():
        if required:
            raise ArtifactError(f"{artifact} has no manifest ({path.name} is missing).")
        return None
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"The manifest {path} is not valid JSON: {exc}.") from None
    manifest = Manifest.from_dict(data, where=f"The manifest {path}")
    if verify and artifact.is_file():
        if not manifest.sha256:
            raise ArtifactError(
                f"The manifest {path} records no sha256, so it cannot be matched to {artifact.name}; "
                "write the artifact again with alexnet-deploy."
            )
        if _file_sha256(artifact) != manifest.sha256:
            raise ArtifactError(
                f"The sidecar {path.name} does not describe {artifact.name} (their sha256 differ): an interrupted or "
                "concurrent write left them apart; write the artifact again."
            )
    return manifest


def artifact_file(path: str | Path) -> Path:
    """``path`` as an existing artifact file.

    Raises:
        ArtifactError: it does not exist, or it is a folder (the sentence names the artifacts inside it).
    """
    from alexnet_deploy.core.paths import require_file

    return require_file(path, ArtifactError, "Artifact", (".pt", ".pth", ".onnx", ".plan", ".ovblob"))
