"""Triton's ``config.pbtxt``: protobuf text format written without protobuf, and checked against Triton's own
``ModelConfig`` schema (``tritonclient.grpc.model_config_pb2``, compiled from Triton's model_config.proto).

Writing needs nothing installed, so a repository can be made anywhere; validation needs tritonclient and says so
with :class:`~alexnet_deploy.core.errors.MissingBackendError` when it is missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alexnet_deploy.core.errors import ArtifactError, MissingBackendError
from alexnet_deploy.core.text import pbtxt_string

PLATFORM_FILES = {"onnxruntime_onnx": "model.onnx", "tensorrt_plan": "model.plan"}  # Triton's default file names
BACKEND_FILES = {"onnxruntime": "model.onnx", "tensorrt": "model.plan", "openvino": "model.xml", "python": "model.py"}
# The values Triton's OpenVINO backend accepts for its parameters (src/openvino.cc, ParseParameterHelper); any other
# value fails the model's load.
OPENVINO_PARAMETERS = {
    "PERFORMANCE_HINT": lambda v: v.lower() in ("latency", "throughput", "cumulative_throughput"),
    "NUM_STREAMS": lambda v: v.lower() in ("auto", "numa") or v.isdigit(),
    "INFERENCE_NUM_THREADS": str.isdigit,
    "COMPILATION_NUM_THREADS": str.isdigit,
    "HINT_BF16": lambda v: v.lower() == "yes",
}
KNOWN_PLATFORMS = {"onnxruntime_onnx", "tensorrt_plan", "pytorch_libtorch", "tensorflow_savedmodel",
                   "tensorflow_graphdef", "ensemble"}  # fmt: skip


class Ident(str):
    """An enum value, written bare in text format (``TYPE_FP32``), not quoted."""


def to_pbtxt(obj: dict[str, Any], indent: int = 0) -> str:
    """Protobuf text format of nested dicts and lists (a list of dicts as ``key [ {...}, {...} ]``)."""
    pad, lines = "  " * indent, []
    for key, value in obj.items():
        if isinstance(value, dict):
            lines.append(f"{pad}{key} {{\n{to_pbtxt(value, indent + 1)}{pad}}}\n")
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            items = ",\n".join(f"{pad}  {{\n{to_pbtxt(v, indent + 2)}{pad}  }}" for v in value)
            lines.append(f"{pad}{key} [\n{items}\n{pad}]\n")
        elif isinstance(value, list):
            lines.append(f"{pad}{key}: [ {', '.join(_scalar(v) for v in value)} ]\n")
        else:
            lines.append(f"{pad}{key}: {_scalar(value)}\n")
    return "".join(lines)


def _scalar(value: Any) -> str:
    if isinstance(value, Ident):
        return str(value)
    if isinstance(value, str):
        return pbtxt_string(value)  # a line break or quote in a name stays inside its one value
    return str(int(value))


def validate_config(text: str, model_dir: str | Path | None = None, folder_name: str | None = None):
    """Parse ``text`` into Triton's own ``ModelConfig`` and make the checks Triton makes when it loads a model.

    Args:
        text: a ``config.pbtxt``.
        model_dir: the model folder, to check that the files the config names are there.
        folder_name: the name the model folder has (or will have once renamed); default: ``model_dir``'s name.

    Returns:
        The parsed ``tritonclient.grpc.model_config_pb2.ModelConfig``.

    Raises:
        MissingBackendError: tritonclient (which carries Triton's model_config.proto, compiled) is not installed.
        ArtifactError: Triton would refuse the config.
    """
    try:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2 as pb
    except ImportError:
        raise MissingBackendError("tritonclient is not installed (pip install 'alexnet-deploy[triton]').") from None
    config = pb.ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        raise ArtifactError(f"config.pbtxt is not a valid Triton ModelConfig: {str(exc).rstrip('.')}.") from None
    model_dir = Path(model_dir) if model_dir is not None else None
    folder_name = folder_name or (model_dir.name if model_dir is not None else None)
    problems = []
    if not config.name or (folder_name is not None and config.name != folder_name):
        problems.append(f"its name {config.name!r} must be its folder's name")
    if not config.backend and config.platform not in KNOWN_PLATFORMS:
        problems.append(f"platform {config.platform!r} is none Triton knows")
    for kind, tensors in (("input", config.input), ("output", config.output)):
        problems += [f"it has no {kind}"] if not tensors else []
        for t in tensors:
            if not t.name or t.data_type == pb.TYPE_INVALID:
                problems.append(f"{kind} {t.name!r} lacks a name or data type")
            if not t.dims or any(d < 1 and d != -1 for d in t.dims):
                problems.append(f"{kind} {t.name!r} has dims {list(t.dims)} (each must be -1 or positive)")
    if config.HasField("dynamic_batching"):
        if config.max_batch_size < 1:
            problems.append("dynamic batching needs max_batch_size of at least 1")
        if bad := [b for b in config.dynamic_batching.preferred_batch_size if not 0 < b <= config.max_batch_size]:
            problems.append(f"preferred batch sizes {bad} are not within 1..{config.max_batch_size}")
    if config.platform == "tensorrt_plan" and any(g.kind == g.KIND_CPU for g in config.instance_group):
        problems.append("TensorRT plans cannot run on KIND_CPU instances")
    if config.backend == "openvino":
        if any(g.kind not in (g.KIND_CPU, g.KIND_AUTO) for g in config.instance_group):
            problems.append("Triton's OpenVINO backend runs only KIND_CPU (or KIND_AUTO) instances")
        for key, ok in OPENVINO_PARAMETERS.items():
            if key in config.parameters and not ok(config.parameters[key].string_value):
                problems.append(f"OpenVINO parameter {key} cannot be {config.parameters[key].string_value!r}")
    if model_dir is not None:
        problems += _missing_files(config, model_dir)
    if problems:
        raise ArtifactError(f"Triton would refuse {config.name or 'the model'}: {'; '.join(problems)}.")
    return config


def _missing_files(config, model_dir: Path) -> list[str]:
    """The files ``config`` names (labels, model files per version folder) that ``model_dir`` lacks."""
    problems = [f"label file {t.label_filename} is missing" for t in config.output
                if t.label_filename and not (model_dir / t.label_filename).is_file()]  # fmt: skip
    if not (versions := [p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()]):
        problems.append("it has no numbered version folder")
    default = config.default_model_filename or PLATFORM_FILES.get(config.platform, "")
    default = default or BACKEND_FILES.get(config.backend, "")
    wanted = list(config.cc_model_filenames.values()) or ([default] if default else [])
    return problems + [f"{v.name}/{f} is missing" for v in versions for f in wanted if not (v / f).is_file()]
