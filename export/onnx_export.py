"""Checkpoint -> ONNX (FP32 or FP16) with the dynamo exporter, a native LRN, checks, parity and a sidecar.

The graph has one input ``images`` ``[batch, 3, H, W]`` float32 (dynamic batch) and one output ``logits``
``[batch, classes]`` float32, at every precision. Each export validates the graph (``onnx.checker``, strict
shape inference), checks its structure (one ``LRN`` node per LRN layer, no ``Dropout``, the Conv ``group``
attributes of the model), runs the parity check against PyTorch in ONNX Runtime, and only then writes the
ONNX and its sidecar atomically. Anything that fails leaves no file.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn

from alexnet_deploy import __version__
from alexnet_deploy.core.checkpoint import LoadedModel
from alexnet_deploy.core.data import Preprocessing
from alexnet_deploy.core.errors import ArtifactError, ConfigError
from alexnet_deploy.core.files import output_lock
from alexnet_deploy.core.imagenet import display_names, is_imagenet1k
from alexnet_deploy.core.manifest import Manifest
from export.artifact import (
    INPUT_NAME,
    OUTPUT_NAME,
    ExportResult,
    check_output_path,
    set_metadata,
    summarize_graph,
    validate_model,
    write_onnx,
)
from export.fp16 import fp16_facts, to_fp16
from export.lrn import LRN_TRANSLATION, count_lrn_layers, native_lrn
from export.parity import DEFAULT_SAMPLES, check_parity, parity_inputs, reference_logits
from export.request import DEFAULT_OPSET, LRN_FORMS, PRECISIONS, ExportRequest, ModelDescription
from export.source import load_source

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_OPSET",
    "LRN_FORMS",
    "PRECISIONS",
    "ExportRequest",
    "ModelDescription",
    "build_onnx",
    "export_model",
    "export_onnx",
    "manifest_for",
]

_MIN_OPSET = 17


Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


# The exporter and its optimizer log each pass at INFO, print progress lines, and log a failed opset conversion
# as a warning with a traceback: chatter that would drown the CLI's output, and every outcome that matters is
# checked and reported by build_onnx itself. Raised to ERROR for the duration of an export only.
_CHATTY_LOGGERS = ("onnxscript", "onnx_ir", "torch.onnx")


@contextlib.contextmanager
def _quiet_exporter():
    loggers = [logging.getLogger(name) for name in _CHATTY_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(lg.getEffectiveLevel(), logging.ERROR))
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _scaled_preprocessing(pre: Preprocessing, image_size: int) -> Preprocessing:
    """``pre`` at another crop size, keeping its resize/crop ratio (224/256 -> 112/128)."""
    if pre.crop == image_size:
        return pre
    return Preprocessing(round(image_size * pre.resize / pre.crop), image_size, pre.mean, pre.std)


def _expected_conv_groups(model: nn.Module) -> list[int]:
    return [m.groups for m in model.modules() if isinstance(m, nn.Conv2d)]


def _dry_run(model: nn.Module, image_size: int) -> int:
    """Run one image through the model; return its class count. A size the network cannot take is refused."""
    try:
        with torch.no_grad():
            out = model(torch.zeros(1, 3, image_size, image_size))
    except RuntimeError as exc:
        detail = str(exc).strip().splitlines()[0][:160]
        raise ConfigError(f"The model cannot take {image_size} px inputs ({detail}).") from None
    if out.ndim != 2:
        raise ConfigError(f"The model returns a tensor of shape {tuple(out.shape)}, not (batch, classes) logits.")
    return int(out.shape[1])


def build_onnx(
    model: nn.Module,
    image_size: int,
    *,
    opset: int = DEFAULT_OPSET,
    native_lrn_op: bool = True,
) -> onnx.ModelProto:
    """Export ``model`` (in eval mode) to an in-memory FP32 ONNX graph, validated, with named I/O.

    Args:
        model: the network; its ``nn.LocalResponseNorm`` layers become native ``LRN`` nodes.
        image_size: input height and width (the batch dimension is dynamic).
        opset: the ONNX opset (17 or newer; the exporter itself works in 18 and converts down).
        native_lrn_op: False keeps the exporter's own decomposition of LRN (the benchmark's baseline).

    Raises:
        ConfigError: the opset is too old or the model cannot take ``image_size`` inputs.
        ArtifactError: the exporter fails, cannot reach the requested opset, or the graph is invalid.
    """
    if opset < _MIN_OPSET:
        raise ConfigError(f"Opset {opset} is too old for this exporter; use {_MIN_OPSET} or newer.")
    was_training = model.training
    model.eval()  # dropout disappears from the graph only in eval mode
    try:
        _dry_run(model, image_size)
        example = torch.randn(2, 3, image_size, image_size)  # batch 2: torch.export specialises sizes 0 and 1
        batch = torch.export.Dim("batch", min=1)
        swap = native_lrn(model) if native_lrn_op else contextlib.nullcontext(0)
        with swap, _quiet_exporter():
            try:
                program = torch.onnx.export(
                    model,
                    (example,),
                    dynamo=True,
                    input_names=[INPUT_NAME],
                    output_names=[OUTPUT_NAME],
                    dynamic_shapes=({0: batch},),
                    opset_version=opset,
                    custom_translation_table=LRN_TRANSLATION if native_lrn_op else None,
                    optimize=True,
                    verbose=False,
                )
            except Exception as exc:  # noqa: BLE001 - the exporter raises many unrelated types
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise ArtifactError(f"torch.onnx.export failed: {first[:200]}") from None
    finally:
        model.train(was_training)
    proto = program.model_proto
    got = summarize_graph(proto).opset
    if got != opset:
        raise ArtifactError(f"The exporter could not produce opset {opset} (it emitted {got}); ask for {got}.")
    return validate_model(proto)


def _check_structure(graph, model: nn.Module, precision: str, lrn: str = "native") -> None:
    """Refuse a graph that lost the network's structure: LRN count, Dropout, Conv groups, I/O types."""
    lrn_layers = count_lrn_layers(model) if lrn == "native" else 0
    if graph.lrn_nodes != lrn_layers:
        raise ArtifactError(f"The graph has {graph.lrn_nodes} LRN nodes for the model's {lrn_layers} LRN layers.")
    if graph.op_counts.get("Dropout"):
        raise ArtifactError("The graph still holds Dropout nodes; the model was not exported in eval mode.")
    expected_groups = _expected_conv_groups(model)
    if graph.conv_groups != expected_groups:
        raise ArtifactError(f"The graph's Conv groups {graph.conv_groups} differ from the model's {expected_groups}.")
    for name, info in (*graph.inputs.items(), *graph.outputs.items()):
        if info["dtype"] != "float32" or info["shape"][0] != -1:
            raise ArtifactError(f"Graph tensor '{name}' is {info['dtype']} {info['shape']}, not float32 [batch, ...].")
    wrong = set(graph.initializer_dtypes) - {"float16" if precision == "fp16" else "float32"}
    if wrong:
        raise ArtifactError(f"The {precision} graph has {', '.join(sorted(wrong))} weights.")


def manifest_for(
    *,
    arch: dict[str, Any],
    classes: list[str],
    preprocessing: Preprocessing,
    image_size: int,
    precision: str,
    source: dict[str, Any],
    graph,
) -> Manifest:
    """The sidecar of an exported ONNX (accuracy, gate and extra filled in by the caller)."""
    return Manifest(
        kind="onnx",
        model=dict(arch),
        classes=list(classes),
        class_names=display_names(classes) if is_imagenet1k(classes) else [],
        input={"name": INPUT_NAME, "shape": [-1, 3, image_size, image_size], "dtype": "float32"},
        output={"name": OUTPUT_NAME, "shape": [-1, len(classes)], "dtype": "float32"},
        preprocessing=preprocessing.to_dict(),
        precision=precision,
        source=dict(source),
        extra={
            "exporter": f"torch.onnx dynamo (torch {torch.__version__}), alexnet-deploy {__version__}",
            "graph": graph.to_dict(),
        },
    )


def export_model(
    model: nn.Module,
    out_path: str | Path,
    request: ExportRequest | None = None,
    description: ModelDescription | None = None,
    progress: Progress | None = None,
) -> ExportResult:
    """Export an in-memory model to ONNX with its sidecar, after the parity check passes.

    Args:
        model: the network (its train/eval mode is restored afterwards).
        out_path: the ONNX file to write (its sidecar goes to ``out_path + ".json"``).
        request: :class:`ExportRequest` (``image_size`` is needed unless the description's preprocessing crops).
        description: :class:`ModelDescription`: classes, preprocessing, model entry and source of the sidecar.
        progress: called with a short description of each step.

    Returns:
        :class:`ExportResult`.

    Raises:
        ConfigError: a bad precision, opset, image size or class list.
        ArtifactError: the output cannot be written, or the graph fails validation or its structure checks.
        GateError: the parity check failed (nothing is written).
    """
    request, description = request or ExportRequest(), description or ModelDescription()
    image_size = request.image_size or (description.preprocessing.crop if description.preprocessing else None)
    if image_size is None:
        raise ConfigError("Give the export an image size (or the model's preprocessing).")
    step, precision, lrn, opset = progress or _quiet, request.precision, request.lrn, request.opset
    out = check_output_path(out_path)
    with output_lock(out):  # a second export to the same file fails now, not after minutes of work
        num_classes = _dry_run(model, image_size)
        classes = list(description.classes) if description.classes else [str(i) for i in range(num_classes)]
        if len(classes) != num_classes:
            raise ConfigError(f"{len(classes)} class names were given for a model with {num_classes} outputs.")
        pre = _scaled_preprocessing(description.preprocessing or Preprocessing.for_crop(image_size), image_size)
        arch = dict(description.arch or {"name": type(model).__name__})
        arch.setdefault("num_classes", num_classes)

        step(f"Exporting {arch['name']} to ONNX (opset {opset}, {image_size} px)")
        proto = build_onnx(model, image_size, opset=opset, native_lrn_op=lrn == "native")
        _check_structure(summarize_graph(proto), model, "fp32", lrn)

        samples = request.parity_samples or DEFAULT_SAMPLES[precision]
        inputs, described = parity_inputs(samples, image_size, eval_data=request.parity_data, preprocessing=pre)
        step(f"Checking parity with PyTorch on {len(inputs)} {described}")
        expected = reference_logits(model, inputs)
        n32 = len(inputs) if precision == "fp32" else min(len(inputs), DEFAULT_SAMPLES["fp32"])
        fp32_parity = check_parity(proto.SerializeToString(), expected[:n32], inputs[:n32], "fp32", described)
        fp32_parity.raise_if_failed()
        parity, extra_parity = fp32_parity, {}
        fp16_info: dict[str, Any] = {}
        if precision == "fp16":
            step("Converting to FP16 and checking it")
            proto = validate_model(to_fp16(proto, request.fp16_block_list))
            _check_structure(summarize_graph(proto), model, "fp16", lrn)
            parity = check_parity(proto.SerializeToString(), expected, inputs, "fp16", described)
            parity.raise_if_failed()
            extra_parity = {"fp32_graph": fp32_parity.to_dict()}
            fp16_info = fp16_facts(proto, request.fp16_block_list)

        graph = summarize_graph(proto)
        manifest = manifest_for(
            arch=arch,
            classes=classes,
            preprocessing=pre,
            image_size=image_size,
            precision=precision,
            source=description.source or {"path": None, "sha256": None, "format": "in-memory"},
            graph=graph,
        )
        manifest.accuracy = {"parity": parity.to_dict(), **extra_parity}
        manifest.gate = {"parity": parity.gate}
        manifest.extra["lrn"] = lrn if count_lrn_layers(model) else "none"
        if fp16_info:
            manifest.extra["fp16"] = fp16_info
        _store_metadata(proto, manifest)
        step(f"Writing {out}")
        write_onnx(proto, out, manifest)
        log.debug("Wrote %s (%s, %s).", out, precision, parity.describe())
        return ExportResult(path=out, manifest=manifest, parity=parity, graph=graph, extra_parity=extra_parity)


def _store_metadata(proto: onnx.ModelProto, manifest: Manifest) -> None:
    set_metadata(
        proto,
        {
            "model": manifest.model,
            "classes": manifest.classes,
            "preprocessing": manifest.preprocessing,
            "precision": manifest.precision,
            "input": manifest.input,
            "output": manifest.output,
            "source": manifest.source,
            "parity": manifest.accuracy.get("parity", {}),
            "exporter": manifest.extra.get("exporter", ""),
        },
    )


def export_onnx(
    source: str | Path | LoadedModel,
    out_path: str | Path,
    request: ExportRequest | None = None,
    source_info: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> ExportResult:
    """Export a checkpoint (ours or a torchvision AlexNet state dict) or a loaded model to ONNX.

    Args:
        source: the checkpoint file, or a :class:`~alexnet_deploy.core.checkpoint.LoadedModel`.
        out_path: the ONNX file to write; the sidecar goes beside it.
        request: :class:`ExportRequest` (its ``image_size`` defaults to the checkpoint's crop, 224 for
            torchvision's weights; ``expected_*`` refuse another model).
        source_info: the sidecar's source entry when ``source`` is a LoadedModel (path, sha256, format).
        progress: called with a short description of each step.

    Returns:
        :class:`ExportResult` (path, manifest, parity figures, graph summary).

    Raises:
        CheckpointError: the checkpoint is missing, corrupt, foreign, or not the expected model.
        ConfigError, ArtifactError, GateError: as :func:`export_model`.
    """
    request = request or ExportRequest()
    check_output_path(out_path)  # before loading 250 MB of weights
    loaded, info = load_source(source, expected_classes=request.expected_classes, expected_model=request.expected_model)
    if source_info:
        info = {**info, **source_info}
    arch = {k: loaded.arch[k] for k in ("name", "num_classes", "width", "columns") if k in loaded.arch}
    description = ModelDescription(tuple(loaded.classes), loaded.preprocessing, arch, info)
    size = request.image_size or loaded.preprocessing.crop
    return export_model(loaded.model, out_path, replace(request, image_size=size), description, progress)
