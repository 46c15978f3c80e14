"""Bring in an ONNX classifier that alexnet-deploy did not export: check its graph, then write its sidecar.

``alexnet-deploy describe MODEL.onnx --classes imagenet1k|FILE --resize 256 --crop 224`` is this module's
:func:`describe_onnx`. The graph must be an image classifier: one float image input in NCHW (3 channels), one
``N x classes`` logits output whose width is the number of classes. What it finds otherwise (NHWC, several
inputs or outputs, a feature map instead of logits) is refused with a sentence that names it. A graph exported
for one batch size (a plain ``torch.onnx.export(model, torch.randn(1, 3, 224, 224), ...)``) is accepted and its
sidecar records that batch: every command then runs it at that batch (batch 1 loops over the images).

The sidecar is written beside the file through :mod:`alexnet_deploy.core.manifest` (atomically, under the output
lock). A model that keeps its weights in external data files would leave them behind wherever the engines, Triton
or a copy take the ``.onnx`` alone, so it is written as one self-contained file to ``--output`` instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from alexnet_deploy import __version__
from alexnet_deploy.core.data import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from alexnet_deploy.core.errors import ArtifactError, ConfigError
from alexnet_deploy.core.files import output_lock, sha256_file
from alexnet_deploy.core.imagenet import read_classes_file
from alexnet_deploy.core.manifest import Manifest, save_manifest, sidecar_path, write_artifact
from alexnet_deploy.core.paths import require_file

__all__ = ["DescribeResult", "describe_onnx"]

log = logging.getLogger(__name__)

_DTYPES = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16"}


@dataclass(frozen=True)
class DescribeResult:
    """What :func:`describe_onnx` wrote: the model file, its sidecar's manifest, and notes for the user."""

    path: Path
    manifest: Manifest
    notes: tuple[str, ...]


def _dims(value: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in value.type.tensor_type.shape.dim]


def _show(value: onnx.ValueInfoProto) -> str:
    """``name 1x3x224x224 float32``; a name with unprintable characters shown quoted and escaped."""
    elem = value.type.tensor_type.elem_type
    dtype = _DTYPES.get(elem, onnx.TensorProto.DataType.Name(elem).lower())
    name = value.name if value.name.isprintable() else repr(value.name)
    return f"{name} {'x'.join(str(d) for d in _dims(value))} {dtype}"


def _check_input(name: str, model: onnx.ModelProto, crop: int) -> tuple[onnx.ValueInfoProto, int]:
    """The image input and its batch (-1: dynamic), or an ArtifactError saying what was found instead."""
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        found = ", ".join(_show(i) for i in inputs) or "none"
        raise ArtifactError(f"{name} takes {len(inputs)} inputs ({found}); an image classifier takes one image input.")
    image = inputs[0]
    dims, shown = _dims(image), _show(image)
    if len(dims) != 4:
        raise ArtifactError(f"{name}'s input is {shown}, not an N x 3 x H x W image batch.")
    if dims[1] != 3 and dims[3] == 3:
        raise ArtifactError(f"{name}'s input is {shown}: channels last (NHWC); alexnet-deploy runs NCHW models "
                            "(N x 3 x H x W): export the model with its channels first.")  # fmt: skip
    if dims[1] != 3:
        raise ArtifactError(f"{name}'s input is {shown}, not an N x 3 x H x W image batch (3 colour channels).")
    if image.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise ArtifactError(f"{name}'s input is {shown}; images go in as float32.")
    if any(isinstance(d, int) and d != crop for d in dims[2:]):
        raise ArtifactError(f"{name} takes {dims[2]} x {dims[3]} images, but --crop is {crop}.")
    return image, dims[0] if isinstance(dims[0], int) and dims[0] > 0 else -1


def _check_output(name: str, model: onnx.ModelProto, num_classes: int) -> onnx.ValueInfoProto:
    outputs = list(model.graph.output)
    if len(outputs) != 1:
        found = ", ".join(_show(o) for o in outputs)
        raise ArtifactError(f"{name} gives {len(outputs)} outputs ({found}); an image classifier gives one "
                            "N x classes logits output: export the logits alone.")  # fmt: skip
    dims = _dims(outputs[0])
    if len(dims) != 2:
        raise ArtifactError(f"{name}'s output is {_show(outputs[0])}, not N x classes logits: it does not look like "
                            "a classifier (a feature map or embedding?).")  # fmt: skip
    if isinstance(dims[1], int) and dims[1] > 0 and dims[1] != num_classes:
        raise ArtifactError(f"{name} gives {dims[1]} logits, but {num_classes} classes were named.")
    return outputs[0]


def _probe(path: Path, batch: int, crop: int) -> np.ndarray:
    """Run one batch of zeros through ONNX Runtime: the graph really loads and gives its logits."""
    from alexnet_deploy.backends.onnxruntime import OnnxRuntimeRunner

    with OnnxRuntimeRunner(path, threads=None, name="describe probe") as runner:
        return np.asarray(runner.infer(np.zeros((max(batch, 1), 3, crop, crop), np.float32)))


def describe_onnx(
    model_path: str | Path,
    classes: str | Path,
    preprocessing: Preprocessing,
    *,
    output: str | Path | None = None,
    force: bool = False,
) -> DescribeResult:
    """Check a foreign ONNX classifier and write its sidecar (or, with ``output``, a self-contained copy and
    its sidecar).

    Args:
        model_path: the ONNX file.
        classes: ``"imagenet1k"``, or a file with one class id (``id<TAB>name``) per line in output order.
        preprocessing: resize, crop, mean and std the model was trained with.
        output: write the model (weights folded in) and its sidecar here instead of beside ``model_path``.
        force: replace a sidecar that is already there.

    Returns:
        :class:`DescribeResult`.

    Raises:
        ArtifactError: not ONNX, not an NCHW image classifier, logits of another width, external weights without
            ``output``, or a sidecar already there (without ``force``).
        ConfigError: the classes file is missing, empty or names a class twice.
    """
    src = require_file(model_path, ArtifactError, "ONNX model", (".onnx",))
    if src.suffix.lower() != ".onnx":
        raise ArtifactError(f"{src.name} is not an .onnx file; describe takes ONNX models.")
    ids, names = read_classes_file(classes)
    try:
        header = onnx.load(str(src), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError and friends
        raise ArtifactError(f"{src.name} is not a readable ONNX model ({type(exc).__name__}).") from None
    image, batch = _check_input(src.name, header, preprocessing.crop)
    logits = _check_output(src.name, header, len(ids))
    external = sorted({e.value for t in header.graph.initializer for e in t.external_data if e.key == "location"})
    if output is not None and Path(output).resolve() == src.resolve():
        output = None  # the file itself: only its sidecar is written
    dest = Path(output) if output is not None else src
    if dest.suffix.lower() != ".onnx":
        raise ConfigError(f"The output {dest.name} must end in .onnx.")
    if external and output is None:
        raise ArtifactError(
            f"{src.name} keeps its weights in {len(external)} external file(s) ({', '.join(external[:2])}), which "
            "engines, Triton and copies of the .onnx would leave behind; write a self-contained copy with "
            f"--output {src.with_suffix('').name}.single.onnx."
        )
    if sidecar_path(dest).exists() and not force:
        raise ArtifactError(f"{dest.name} already has a sidecar ({sidecar_path(dest).name}); pass --force to "
                            "replace it.")  # fmt: skip
    found = _probe(src, batch, preprocessing.crop)
    if found.ndim != 2 or found.shape[1] != len(ids):
        raise ArtifactError(f"{src.name} gives logits of shape {list(found.shape)}, not N x {len(ids)}.")
    from alexnet_deploy.backends.onnxruntime import onnx_graph_facts

    manifest = Manifest(
        kind="onnx",
        model={"num_classes": len(ids), "format": "foreign onnx"},
        classes=ids,
        class_names=names if names != ids else [],
        input={"name": image.name, "shape": [batch, 3, preprocessing.crop, preprocessing.crop], "dtype": "float32"},
        output={"name": logits.name, "shape": [batch, len(ids)], "dtype": "float32"},
        preprocessing=preprocessing.to_dict(),
        precision=onnx_graph_facts(src).precision,
        source={"path": str(src.resolve()), "sha256": sha256_file(src), "format": "foreign onnx"},
        extra={"described": _described(src, external, batch)},
    )
    with output_lock(dest):
        if output is None:
            save_manifest(dest, manifest)
        else:
            full = onnx.load(str(src))  # the external weights folded in
            write_artifact(dest, lambda tmp: onnx.save(full, str(tmp)), manifest)
    return DescribeResult(dest, manifest, tuple(_notes(dest, batch, external, src)))


def _described(src: Path, external: list[str], batch: int) -> dict[str, Any]:
    return {
        "by": f"alexnet-deploy {__version__} describe",
        "from": src.name,
        "external_data_folded": bool(external),
        "fixed_batch": batch if batch > 0 else None,
    }


def _notes(dest: Path, batch: int, external: list[str], src: Path) -> list[str]:
    notes = []
    if external:
        notes.append(f"{src.name}'s external weights were folded into {dest.name}.")
    if batch > 0:
        notes.append(
            f"{dest.name} has a fixed batch of {batch}: every command runs it at batch {batch} (bench and build "
            "measure that batch only); re-export it with a dynamic batch axis to use others."
        )
    return notes


def preprocessing_from(resize: int, crop: int, mean: tuple[float, ...] | None, std: tuple[float, ...] | None):
    """The :class:`Preprocessing` of describe's flags (ImageNet's mean and std by default).

    Raises:
        ConfigError: crop larger than resize, mean/std not three numbers, or a std that is not positive.
    """
    mean = tuple(mean) if mean else IMAGENET_MEAN
    std = tuple(std) if std else IMAGENET_STD
    if resize < 1 or crop < 1 or crop > resize:
        raise ConfigError(f"--crop ({crop}) must be positive and at most --resize ({resize}).")
    if len(mean) != 3 or len(std) != 3 or any(s <= 0 for s in std):
        raise ConfigError("--mean and --std take three numbers each (R, G, B), and std must be positive.")
    return Preprocessing(resize=resize, crop=crop, mean=mean, std=std)  # type: ignore[arg-type]
