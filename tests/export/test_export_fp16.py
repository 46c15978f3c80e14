from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from alexnet_deploy.backends.onnxruntime import OnnxRuntimeRunner
from alexnet_deploy.core.errors import ArtifactError
from alexnet_deploy.core.files import sha256_file
from alexnet_deploy.core.manifest import load_manifest
from export import convert_fp16, ort_cpu_fp16_kernels

FLOAT, FLOAT16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16


def _elem(v: onnx.ValueInfoProto) -> int:
    return v.type.tensor_type.elem_type


@pytest.mark.slow  # builds the session's FP16 export (~5-9 s on 2 shared cores)
def test_fp16_graph_has_fp16_weights_and_fp32_inputs_outputs(paper_fp16):
    model = onnx.load(str(paper_fp16.path))
    float_inits = [i for i in model.graph.initializer if i.data_type in (FLOAT, FLOAT16)]
    assert float_inits and all(i.data_type == FLOAT16 for i in float_inits)
    assert [_elem(v) for v in model.graph.input] == [FLOAT]
    assert [_elem(v) for v in model.graph.output] == [FLOAT]
    # Casts only at the edges: images -> fp16 first, fp16 -> logits last.
    casts = [n for n in model.graph.node if n.op_type == "Cast"]
    assert len(casts) == 2 and casts[0].input[0] == "images" and casts[1].output[0] == "logits"
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("LRN") == 2 and "Dropout" not in ops
    assert paper_fp16.graph.initializer_dtypes == {"float16": len(float_inits)}


def test_fp16_runs_in_onnxruntime_with_fp32_io_and_meets_its_gate(paper_fp16, paper_fp32):
    x = torch.randn(3, 3, 112, 112, generator=torch.Generator().manual_seed(3)).numpy()
    with OnnxRuntimeRunner(paper_fp16.path) as fp16, OnnxRuntimeRunner(paper_fp32.path) as fp32:
        got, ref = fp16.infer(x), fp32.infer(x)
    assert got.dtype == np.float32 and got.shape == (3, 10)
    assert np.abs(got - ref).max() < 1e-2 * np.abs(ref).max()  # FP16 weights: close, not identical
    assert not np.array_equal(got, ref)
    manifest = load_manifest(paper_fp16.path)
    assert manifest.precision == "fp16" and manifest.gate == {"parity": {"top1_agreement": 0.99}}
    # FP16 defaults to 1,024 samples: every one of the fixture's 200 validation images.
    assert manifest.accuracy["parity"]["top1_agreement"] >= 0.99 and paper_fp16.parity.samples == 200
    # The intermediate FP32 graph was held to the FP32 gate on the first 64 of those images.
    assert manifest.accuracy["fp32_graph"]["max_rel_error"] <= 1e-4
    assert manifest.accuracy["fp32_graph"]["samples"] == 64


def test_sidecar_names_the_ops_onnxruntime_cpu_computes_in_fp32(paper_fp16):
    fp16 = load_manifest(paper_fp16.path).extra["fp16"]
    kernels = ort_cpu_fp16_kernels(onnx.load(str(paper_fp16.path)))
    assert set(kernels) >= {"Conv", "LRN", "Gemm", "MaxPool", "Relu"}
    assert fp16["ort_cpu_ops_computed_in_fp32"] == [op for op, has in kernels.items() if not has]
    assert fp16["block_list"] == [] and "onnxconverter-common" in fp16["converter"]


def test_convert_fp16_from_an_fp32_file(paper_fp32, tmp_path):
    result = convert_fp16(paper_fp32.path, tmp_path / "converted.onnx", parity_samples=16)
    manifest = load_manifest(result.path)
    assert manifest.precision == "fp16" and manifest.classes == paper_fp32.manifest.classes
    assert manifest.source == {
        "path": str(paper_fp32.path.resolve()),
        "sha256": sha256_file(paper_fp32.path),
        "format": "onnx-fp32",
    }
    assert result.parity.top1_agreement >= 0.99 and result.parity.reference == "the FP32 ONNX"
    assert set(result.graph.initializer_dtypes) == {"float16"}


def test_convert_fp16_refuses_an_fp16_input(paper_fp16, tmp_path):
    with pytest.raises(ArtifactError, match="not an FP32 ONNX export"):
        convert_fp16(paper_fp16.path, tmp_path / "twice.onnx")
    assert list(tmp_path.iterdir()) == []
