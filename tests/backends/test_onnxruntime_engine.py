from __future__ import annotations

import numpy as np
import onnx
import pytest

from alexnet_deploy.backends.onnxruntime import (
    OnnxRuntimeBuildOptions,
    OnnxRuntimeRunner,
    build_onnxruntime_engine,
    choose_providers,
)
from alexnet_deploy.core.errors import MissingBackendError


def _small(path) -> None:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["images", "w", "b"], ["c"]),
            helper.make_node("Relu", ["c"], ["r"]),
            helper.make_node("GlobalAveragePool", ["r"], ["g"]),
            helper.make_node("Flatten", ["g"], ["f"]),
            helper.make_node("Gemm", ["f", "fw", "fb"], ["logits"], transB=1),
        ],
        "small",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 5])],
        [
            numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w"),
            numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b"),
            numpy_helper.from_array(rng.standard_normal((5, 4)).astype(np.float32), "fw"),
            numpy_helper.from_array(rng.standard_normal(5).astype(np.float32), "fb"),
        ],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_default_engine_is_the_deployable_onnx_byte_for_byte(tmp_path):
    src, out = tmp_path / "m.onnx", tmp_path / "e.onnx"
    _small(src)
    facts = build_onnxruntime_engine(src, out)
    assert out.read_bytes() == src.read_bytes()
    assert facts["backend"] == "onnxruntime" and facts["providers"][-1] == "CPUExecutionProvider"


def test_optimised_engine_computes_the_same_logits(tmp_path):
    src, out = tmp_path / "m.onnx", tmp_path / "e.onnx"
    _small(src)
    facts = build_onnxruntime_engine(src, out, OnnxRuntimeBuildOptions(optimize=True))
    assert "offline" in facts["graph"] and out.read_bytes() != src.read_bytes()
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)
    with OnnxRuntimeRunner(src) as a, OnnxRuntimeRunner(out) as b:
        np.testing.assert_allclose(a.infer(x), b.infer(x), rtol=1e-5, atol=1e-5)


def test_missing_provider_is_one_sentence():
    with pytest.raises(MissingBackendError, match="ONNX Runtime here lacks NoSuchExecutionProvider"):
        choose_providers(("NoSuchExecutionProvider",))
    assert choose_providers(None)[-1] == "CPUExecutionProvider"
