"""What every exported ONNX file goes through: validation, structure checks, metadata, and an atomic write.

An export writes two files, ``model.onnx`` and its sidecar ``model.onnx.json``: the ONNX is renamed into place
first and the sidecar, holding the sha256 of the bytes written, last, so readers see a consistent pair or refuse.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from alexnet_deploy.core.errors import ArtifactError
from alexnet_deploy.core.files import create_temp_file, ensure_folder, remove_ours
from alexnet_deploy.core.manifest import Manifest, refuse_linked_pair, write_artifact

__all__ = [
    "INPUT_NAME",
    "OUTPUT_NAME",
    "ExportResult",
    "GraphSummary",
    "check_output_path",
    "load_onnx",
    "read_metadata",
    "summarize_graph",
    "validate_model",
    "write_onnx",
]

INPUT_NAME = "images"
OUTPUT_NAME = "logits"
# Keys of the facts stored in the ONNX metadata_props (values are JSON), so the file describes itself even
# without its sidecar.
METADATA_KEYS = ("model", "classes", "preprocessing", "precision", "input", "output", "source", "parity", "exporter")

_ELEM = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16"}


@dataclass
class GraphSummary:
    """The facts about a graph that the export checks and records."""

    opset: int
    op_counts: dict[str, int]
    conv_groups: list[int]
    lrn_nodes: int
    inputs: dict[str, dict[str, Any]]
    outputs: dict[str, dict[str, Any]]
    initializer_dtypes: dict[str, int]  # float dtype name -> how many initializers

    def to_dict(self) -> dict[str, Any]:
        return {
            "opset": self.opset,
            "op_counts": self.op_counts,
            "conv_groups": self.conv_groups,
            "lrn_nodes": self.lrn_nodes,
            "initializer_dtypes": self.initializer_dtypes,
        }


@dataclass
class ExportResult:
    """An export's outcome: the file, its manifest, and the parity figures it passed."""

    path: Path
    manifest: Manifest
    parity: Any  # export.parity.ParityResult
    graph: GraphSummary
    extra_parity: dict[str, Any] = field(default_factory=dict)  # e.g. the intermediate FP32 graph's figures


def _value_info(v: onnx.ValueInfoProto) -> dict[str, Any]:
    t = v.type.tensor_type
    shape = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
    return {"shape": shape, "dtype": _ELEM.get(t.elem_type, onnx.TensorProto.DataType.Name(t.elem_type).lower())}


def summarize_graph(model: onnx.ModelProto) -> GraphSummary:
    """Op counts, Conv group attributes, I/O shapes and dtypes, and initializer dtypes of ``model``."""
    ops = Counter(n.op_type for n in model.graph.node)
    groups = []
    for n in model.graph.node:
        if n.op_type == "Conv":
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
            groups.append(int(attrs.get("group", 1)))
    inits = Counter(
        _ELEM.get(i.data_type, onnx.TensorProto.DataType.Name(i.data_type).lower())
        for i in model.graph.initializer
        if i.data_type in _ELEM
    )
    opset = next((o.version for o in model.opset_import if (o.domain or "") in ("", "ai.onnx")), 0)
    return GraphSummary(
        opset=opset,
        op_counts=dict(sorted(ops.items())),
        conv_groups=groups,
        lrn_nodes=ops.get("LRN", 0),
        inputs={v.name: _value_info(v) for v in model.graph.input},
        outputs={v.name: _value_info(v) for v in model.graph.output},
        initializer_dtypes=dict(sorted(inits.items())),
    )


def validate_model(model: onnx.ModelProto) -> onnx.ModelProto:
    """``onnx.checker`` (full check) and strict shape inference; returns the model with inferred shapes.

    Raises:
        ArtifactError: the graph is invalid or its shapes do not infer.
    """
    try:
        onnx.checker.check_model(model, full_check=True)
        return onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ArtifactError(f"The exported graph is not valid ONNX: {first[:200]}") from None


def set_metadata(model: onnx.ModelProto, facts: dict[str, Any]) -> None:
    """Store ``facts`` (JSON-encoded) in ``model.metadata_props``, replacing entries of the same keys."""
    keep = [p for p in model.metadata_props if p.key not in facts]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for key, value in facts.items():
        model.metadata_props.add(key=key, value=json.dumps(value, sort_keys=True))


def read_metadata(model: onnx.ModelProto | str | Path) -> dict[str, Any]:
    """The facts an export stored in the ONNX ``metadata_props`` (JSON values decoded).

    Reads only the model header when given a path (external weights are not loaded).
    """
    if not isinstance(model, onnx.ModelProto):
        model = load_onnx(model, load_weights=False)
    facts = {}
    for p in model.metadata_props:
        if p.key in METADATA_KEYS:
            with contextlib.suppress(json.JSONDecodeError):
                facts[p.key] = json.loads(p.value)
    return facts


def load_onnx(path: str | Path, load_weights: bool = True) -> onnx.ModelProto:
    """Load an ONNX file.

    Raises:
        ArtifactError: missing or not a readable ONNX model.
    """
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"ONNX file not found: {path}.")
    try:
        return onnx.load(str(path), load_external_data=load_weights)
    except Exception as exc:  # noqa: BLE001 - protobuf raises its own DecodeError, among others
        raise ArtifactError(f"{path} is not a readable ONNX model ({type(exc).__name__}).") from None


def check_output_path(out_path: str | Path) -> Path:
    """Fail early, before a long export, when ``out_path`` cannot be written.

    Raises:
        ArtifactError: ``out_path`` is a folder or a symbolic link, or its folder cannot be created or written
            (the cause named: read-only, no space left, permission).
    """
    out = refuse_linked_pair(out_path)
    if out.is_dir():
        raise ArtifactError(f"The output path {out} is a folder; give a file name such as {out / 'model.onnx'}.")
    ensure_folder(out.parent, allow_link=True)
    remove_ours(create_temp_file(out))
    return out


def write_onnx(model: onnx.ModelProto, out_path: str | Path, manifest: Manifest) -> Manifest:
    """Write ``model`` and then its sidecar (:func:`~alexnet_deploy.core.manifest.write_artifact`): the pair as one
    unit, the sidecar's ``sha256`` taken from the serialized bytes.

    Raises:
        ArtifactError: the destination cannot be written, or the model exceeds protobuf's 2 GiB limit.
    """
    out = check_output_path(out_path)
    try:
        data = model.SerializeToString()
    except ValueError as exc:
        raise ArtifactError(f"The model cannot be serialized into one file: {exc}.") from None
    try:
        return write_artifact(out, lambda tmp: tmp.write_bytes(data), manifest)
    except OSError as exc:
        raise ArtifactError(f"Cannot write {out}: {exc.strerror or exc}.") from None
