"""benchmarks/lrn_forms.py: LRN rewritten as Mul -> banded 1x1 Conv -> Pow -> Div computes ONNX's LRN."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from lrn_forms import lrn_as_conv, lrn_conv_node_names  # noqa: E402


def reference_lrn(x, size, alpha, beta, bias):
    """The ONNX specification's LRN, written out: the window is floor((size-1)/2) below, ceil above."""
    lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
    c = x.shape[1]
    sq = np.stack([(x[:, max(0, i - lo) : min(c, i + hi + 1)] ** 2).sum(1) for i in range(c)], 1)
    return x / (bias + alpha / size * sq) ** beta


@pytest.mark.parametrize(("channels", "size"), [(7, 5), (6, 4), (3, 5)])
def test_rewrite_matches_native_lrn(tmp_path, channels, size):
    attrs = {"size": size, "alpha": 2e-2, "beta": 0.75, "bias": 2.0}
    graph = helper.make_graph(
        [helper.make_node("LRN", ["x"], ["y"], name="lrn", **attrs)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", channels, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", channels, 5, 5])],
    )
    src, dst = tmp_path / "lrn.onnx", tmp_path / "conv.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), src)
    assert lrn_as_conv(src, dst) == 1
    x = np.random.default_rng(0).standard_normal((2, channels, 5, 5)).astype(np.float32) * 3
    got = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, reference_lrn(x, **attrs), rtol=1e-5, atol=1e-6)
    if size % 2:  # ONNX Runtime's own LRN kernel takes odd sizes only
        native = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
        np.testing.assert_allclose(got, native, rtol=1e-5, atol=1e-6)
    ops = [n.op_type for n in onnx.load(str(dst)).graph.node]
    assert ops == ["Mul", "Conv", "Pow", "Div"]
    assert len(lrn_conv_node_names(dst)) == 4
