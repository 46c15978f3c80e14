"""The FP16 graph: onnxconverter-common's float16 converter, with FP32 inputs and outputs kept.

The converter rewrites every float initializer and activation to float16 and puts one ``Cast`` after the
``images`` input and one before the ``logits`` output, so callers feed and read the same FP32 tensors. TensorRT's
strongly typed builder then runs the graph in FP16 as written.

ONNX Runtime's CPU execution provider has FP16 kernels for only a few ops (on x86 none of Conv, LRN, MaxPool,
Gemm, Relu): for the others it inserts casts itself and computes in FP32. The graph therefore still runs on
any CPU, and no op has to be kept in FP32 through the converter's block list, but a parity figure measured on
the CPU reflects FP16 weights, not FP16 arithmetic. :func:`ort_cpu_fp16_kernels` says which ops those are;
the export records it in the sidecar.
"""

from __future__ import annotations

import functools
import logging
import warnings
from importlib.metadata import version
from pathlib import Path
from typing import Any

import onnx

from alexnet_deploy.backends.onnxruntime import OnnxRuntimeRunner
from alexnet_deploy.core.data import Preprocessing
from alexnet_deploy.core.errors import ArtifactError
from alexnet_deploy.core.files import output_lock, sha256_file
from alexnet_deploy.core.manifest import Manifest, library_versions, load_manifest
from export.artifact import (
    ExportResult,
    check_output_path,
    load_onnx,
    set_metadata,
    summarize_graph,
    validate_model,
    write_onnx,
)
from export.parity import DEFAULT_SAMPLES, check_parity, parity_inputs
from export.request import DEFAULT_BLOCK_LIST

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_BLOCK_LIST", "convert_fp16", "fp16_facts", "ort_cpu_fp16_kernels", "to_fp16"]


def to_fp16(model: onnx.ModelProto, block_list: tuple[str, ...] | list[str] = DEFAULT_BLOCK_LIST) -> onnx.ModelProto:
    """Convert an FP32 graph to FP16, keeping FP32 graph inputs and outputs (casts at the edges).

    Args:
        model: the FP32 model (not modified).
        block_list: op types to keep in FP32 (the converter surrounds them with casts).

    Raises:
        ArtifactError: the model is already FP16 or the converter fails.
    """
    from onnxconverter_common import float16

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            converted = float16.convert_float_to_float16(
                model, keep_io_types=True, op_block_list=list(block_list), disable_shape_infer=False
            )
    except ValueError as exc:
        raise ArtifactError(f"The FP16 conversion failed: {str(exc).strip().splitlines()[0]}") from None
    clamped = [str(w.message) for w in caught if "truncated" in str(w.message)]
    if clamped:
        # Weights below 1e-7 in magnitude become +-1e-7 (FP16's subnormal range): harmless, but say how many.
        log.debug("FP16 conversion clamped values in %d tensors (e.g. %s).", len(clamped), clamped[0])
    return converted


@functools.lru_cache(maxsize=1)
def _cpu_fp16_kernels() -> frozenset[tuple[str, str, int, int]]:
    from onnxruntime.capi import _pybind_state as ort_c

    found = set()
    for k in ort_c.get_all_opkernel_def():
        if k.provider != "CPUExecutionProvider":
            continue
        if any("tensor(float16)" in types for types in k.type_constraints.values()):
            found.add((k.domain or "", k.op_name, int(k.version_range[0]), int(k.version_range[1])))
    return frozenset(found)


def ort_cpu_fp16_kernels(model: onnx.ModelProto) -> dict[str, bool]:
    """For each op type in ``model`` (Casts aside), whether ONNX Runtime's CPU EP has an FP16 kernel for it.

    Ops without one still run: ONNX Runtime casts them to FP32 and back.
    """
    opsets = {o.domain or "": o.version for o in model.opset_import}
    kernels = _cpu_fp16_kernels()
    result = {}
    for node in model.graph.node:
        if node.op_type == "Cast" or node.op_type in result:
            continue
        domain = node.domain or ""
        version = opsets.get(domain, 0)
        result[node.op_type] = any(
            d == domain and name == node.op_type and lo <= version <= hi for d, name, lo, hi in kernels
        )
    return dict(sorted(result.items()))


def convert_fp16(
    fp32_onnx_path: str | Path,
    out_path: str | Path,
    *,
    block_list: tuple[str, ...] | list[str] = DEFAULT_BLOCK_LIST,
    eval_data: str | Path | None = None,
    parity_samples: int | None = None,
) -> ExportResult:
    """Make the FP16 graph of an FP32 export (ours, with its sidecar) and check it against that FP32 graph.

    The parity reference is the FP32 ONNX in ONNX Runtime (itself checked against PyTorch when it was
    exported): FP16 top-1 agreement must reach 99%. The result has its own sidecar (precision ``fp16``, source
    = the FP32 file and its sha256) and metadata; a failed check writes nothing.

    Args:
        fp32_onnx_path: an FP32 ONNX written by :func:`export.export_onnx` / :func:`export.export_model`.
        out_path: where to write the FP16 ONNX.
        block_list: op types to keep in FP32.
        eval_data: images for the parity check (else seeded random inputs).
        parity_samples: how many (default 1,024: see :data:`export.parity.DEFAULT_SAMPLES`).

    Returns:
        :class:`~export.artifact.ExportResult`.

    Raises:
        ArtifactError: the input is missing, not ONNX, not FP32, or has no manifest.
        GateError: the parity check failed.
    """
    src = Path(fp32_onnx_path)
    out = check_output_path(out_path)
    with output_lock(out):
        fp32 = load_onnx(src)
        meta = load_manifest(src)
        if meta.kind != "onnx" or meta.precision != "fp32":
            raise ArtifactError(f"{src} is a {meta.precision} {meta.kind} artifact, not an FP32 ONNX export.")
        proto = validate_model(to_fp16(fp32, block_list))
        graph = summarize_graph(proto)
        if set(graph.initializer_dtypes) != {"float16"}:
            raise ArtifactError(f"The FP16 graph still holds {graph.initializer_dtypes} weights.")

        pre = Preprocessing.from_dict(meta.preprocessing) if meta.preprocessing else None
        inputs, described = parity_inputs(
            parity_samples or DEFAULT_SAMPLES["fp16"],
            int(meta.input["shape"][-1]),
            eval_data=eval_data,
            preprocessing=pre,
        )
        with OnnxRuntimeRunner(src) as fp32:
            parity = check_parity(
                proto.SerializeToString(),
                lambda x: fp32.infer(x.numpy()),
                inputs,
                "fp16",
                described,
                reference_name="the FP32 ONNX",
            )
        parity.raise_if_failed()

        manifest = Manifest.from_dict(meta.to_dict())
        manifest.precision, manifest.versions = "fp16", library_versions()
        manifest.source = {"path": str(src.resolve()), "sha256": sha256_file(src), "format": "onnx-fp32"}
        manifest.accuracy = {"parity": parity.to_dict()}
        manifest.gate = {"parity": parity.gate}
        manifest.extra = {**meta.extra, "graph": graph.to_dict(), "fp16": fp16_facts(proto, tuple(block_list))}
        set_metadata(proto, {"precision": "fp16", "source": manifest.source, "parity": parity.to_dict()})
        write_onnx(proto, out, manifest)
        return ExportResult(path=out, manifest=manifest, parity=parity, graph=graph)


def fp16_facts(proto: onnx.ModelProto, block_list: tuple[str, ...]) -> dict[str, Any]:
    """The sidecar's ``extra.fp16`` entry: converter, block list, and the ops ONNX Runtime's CPU EP upcasts."""
    upcast = [op for op, has in ort_cpu_fp16_kernels(proto).items() if not has]
    return {
        "converter": f"onnxconverter-common {version('onnxconverter-common')} float16 (keep_io_types)",
        "block_list": list(block_list),
        "ort_cpu_ops_computed_in_fp32": upcast,
        "note": (
            "ONNX Runtime's CPU EP has no FP16 kernel for "
            + (", ".join(upcast) if upcast else "none of the ops")
            + "; it casts those to FP32, so CPU parity reflects FP16 weights, not FP16 arithmetic."
        ),
    }
