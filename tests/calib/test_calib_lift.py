"""The pooled Q/DQ form: pairs lifted above max-pooling and reshapes, AveragePool inputs quantized, what the
tensorrt form computes with the same ranges, and runnable by ONNX Runtime and OpenVINO."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from calib.lift import lifted_tensor
from calib.methods import CalibrationMethod, Ranges
from calib.qdq import (
    FORMS,
    POOLED_FORM,
    POOLED_U8_FORM,
    TENSORRT_FORM,
    describe_qdq,
    form_named,
    quantization_points,
    tensors_to_calibrate,
    write_qdq,
)


def pooled_net(path) -> None:
    """Conv -> Relu -> MaxPool -> Conv -> Relu -> MaxPool -> AveragePool(1x1) -> Reshape -> Gemm, plus a tensor
    read twice (r1 also feeds an Identity that goes to a second output) to show where lifting must stop."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3, "w1"),
        numpy_helper.from_array(rng.standard_normal(8).astype(np.float32) * 0.1, "b1"),
        numpy_helper.from_array(rng.standard_normal((8, 8, 3, 3)).astype(np.float32) * 0.2, "w2"),
        numpy_helper.from_array(rng.standard_normal(8).astype(np.float32) * 0.1, "b2"),
        numpy_helper.from_array(rng.standard_normal((5, 8 * 3 * 3)).astype(np.float32) * 0.2, "fw"),
        numpy_helper.from_array(np.zeros(5, np.float32), "fb"),
        numpy_helper.from_array(np.array([0, -1], dtype=np.int64), "shape"),
    ]
    nodes = [
        helper.make_node("Conv", ["images", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("MaxPool", ["r2"], ["p2"], name="pool2", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("AveragePool", ["p2"], ["a2"], name="avg", kernel_shape=[1, 1]),
        helper.make_node("Reshape", ["a2", "shape"], ["flat"], name="reshape"),
        helper.make_node("Gemm", ["flat", "fw", "fb"], ["logits"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "pooled",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, 12, 12])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 5])],
        inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def minmax_ranges(path, x: np.ndarray) -> Ranges:
    """The exact minmax range of every float tensor on ``x``."""
    model = onnx.load(str(path))
    names = [o for n in model.graph.node for o in n.output] + ["images"]
    for n in names:
        if n not in {o.name for o in model.graph.output}:
            model.graph.output.append(helper.make_tensor_value_info(n, TensorProto.FLOAT, None))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    values = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"images": x}), strict=True))
    return Ranges(CalibrationMethod.MINMAX, {k: (float(v.min()), float(v.max())) for k, v in values.items()})


@pytest.fixture()
def net(tmp_path):
    path = tmp_path / "pooled.onnx"
    pooled_net(path)
    x = np.random.default_rng(1).standard_normal((16, 3, 12, 12)).astype(np.float32)
    return path, x, minmax_ranges(path, x)


def run(path, x, exact: bool = True) -> np.ndarray:
    """Logits from ONNX Runtime; ``exact``: the graph as written (no fusion into integer kernels, whose own
    rounding of the requantization differs in the last step)."""
    opts = ort.SessionOptions()
    if exact:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]


def test_forms_table_and_the_tensors_each_form_calibrates(net):
    path, _, _ = net
    assert set(FORMS) == {"tensorrt", "onnxruntime", "pooled", "pooled-u8"} and form_named("pooled") is POOLED_FORM
    assert POOLED_FORM.activation_type == "int8" and POOLED_FORM.symmetric_activations and not POOLED_FORM.quantize_bias
    # the tensorrt form measures what the layers read; the pooled form what the ReLUs and the AveragePool make
    assert tensors_to_calibrate(path, TENSORRT_FORM) == {"images", "p1", "flat"}
    assert quantization_points(path, POOLED_FORM) == {"images": "images", "p1": "r1", "flat": "a2", "p2": "r2"}
    assert tensors_to_calibrate(path, POOLED_FORM) == {"images", "r1", "a2", "r2"}
    assert quantization_points(path, TENSORRT_FORM) == {}


def test_lifting_stops_at_a_tensor_read_twice(net, tmp_path):
    path, _, _ = net
    model = onnx.load(str(path))
    model.graph.node.append(helper.make_node("Identity", ["r1"], ["r1_copy"], name="copy"))
    model.graph.output.append(helper.make_tensor_value_info("r1_copy", TensorProto.FLOAT, None))
    assert lifted_tensor(model, "p1", POOLED_FORM.lift_through) == "p1"  # r1 has two readers: the pair stays
    assert lifted_tensor(model, "flat", POOLED_FORM.lift_through) == "a2"  # AveragePool is not lifted through


def test_pooled_pairs_sit_after_the_relu_before_the_pool_and_compute_what_the_tensorrt_form_computes(net, tmp_path):
    path, x, ranges = net
    trt = write_qdq(path, tmp_path / "trt.onnx", ranges, TENSORRT_FORM)
    pooled = write_qdq(path, tmp_path / "pooled.onnx", ranges, POOLED_FORM)
    model = onnx.load(str(pooled))
    onnx.checker.check_model(model, full_check=True)
    producer = {o: n for n in model.graph.node for o in n.output}
    q_inputs = sorted(n.input[0] for n in model.graph.node if n.op_type == "QuantizeLinear")
    assert q_inputs == ["a2", "images", "r1", "r2"]  # after the ReLUs and the AveragePool, none after a MaxPool
    assert producer[producer["p1"].input[0]].op_type == "DequantizeLinear"  # Relu -> Q -> DQ -> MaxPool -> Conv
    assert producer[producer["p2"].input[0]].op_type == "DequantizeLinear"
    assert producer[producer["a2"].input[0]].op_type == "MaxPool"  # pool2 -> AveragePool: int8 in, one pair
    assert producer[producer["flat"].input[0]].op_type == "DequantizeLinear"  # the Reshape reads int8 too
    info = describe_qdq(model)
    assert info["quantized"] == ["conv1", "conv2", "fc3"] and info["float"] == []
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "QuantizeLinear":  # symmetric int8, scale = amax / 127 of the tensor the pair sits on
            lo, hi = ranges.values[n.input[0]]
            assert inits[n.input[2]].dtype == np.int8 and int(inits[n.input[2]]) == 0
            assert float(inits[n.input[1]]) == pytest.approx(max(abs(lo), abs(hi)) / 127, rel=1e-6)
    for layer in info["layers"]:  # the activation's pair is found above the pool, with its own scale
        assert layer["activation"]["dtype"] == "int8" and layer["bias"] == "float"
    # minmax ranges: max-pooling and reshapes commute with the quantizer, so the two forms agree exactly
    np.testing.assert_array_equal(run(trt, x), run(pooled, x))
    fused = run(pooled, x, exact=False)  # ONNX Runtime's integer kernels: the same answers, nearly the same logits
    assert (fused.argmax(1) == run(trt, x).argmax(1)).mean() >= 0.9 and np.abs(fused - run(trt, x)).max() < 0.1


def test_excluded_and_only_leave_no_pair_feeding_a_float_layer(net, tmp_path):
    path, x, ranges = net
    out = write_qdq(path, tmp_path / "no-fc.onnx", ranges, POOLED_FORM, exclude=["fc"])
    model = onnx.load(str(out))
    assert describe_qdq(model)["float"] == ["fc3"]
    # nothing feeds the float fc through int8: neither its own lifted pair nor the AveragePool's
    assert sorted(n.input[0] for n in model.graph.node if n.op_type == "QuantizeLinear") == ["images", "r1"]
    only = write_qdq(path, tmp_path / "only-conv2.onnx", ranges, POOLED_FORM, only=["conv2"])
    m2 = onnx.load(str(only))
    assert describe_qdq(m2)["quantized"] == ["conv2"]
    assert [n.input[0] for n in m2.graph.node if n.op_type == "QuantizeLinear"] == ["r1"]
    assert np.abs(run(only, x) - run(path, x)).max() < 0.1


def test_missing_ranges_are_one_sentence(net, tmp_path):
    from alexnet_deploy.core.errors import ConfigError

    path, _, ranges = net
    partial = Ranges(ranges.method, {k: v for k, v in ranges.values.items() if k != "r1"})
    with pytest.raises(ConfigError, match=r"lack \['r1'\], which the pooled form quantizes"):
        write_qdq(path, tmp_path / "x.onnx", partial, POOLED_FORM)
    assert not (tmp_path / "x.onnx").exists()


def test_openvino_runs_the_pooled_form_as_onnxruntime_does(net, tmp_path):
    ov = pytest.importorskip("openvino", reason="OpenVINO is not installed")
    path, x, ranges = net
    pooled = write_qdq(path, tmp_path / "pooled.onnx", ranges, POOLED_FORM)
    compiled = ov.Core().compile_model(str(pooled), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    got = compiled(x)[0]
    want = run(pooled, x, exact=False)
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.9
    assert np.abs(got - want).max() < 0.05 * np.abs(want).max()


def test_pooled_u8_form_gives_non_negative_tensors_all_256_steps(net, tmp_path):
    path, x, ranges = net
    assert tensors_to_calibrate(path, POOLED_U8_FORM) == tensors_to_calibrate(path, POOLED_FORM)
    pooled = onnx.load(str(write_qdq(path, tmp_path / "i8.onnx", ranges, POOLED_FORM)))
    u8 = write_qdq(path, tmp_path / "u8.onnx", ranges, POOLED_U8_FORM)
    model = onnx.load(str(u8))
    onnx.checker.check_model(model, full_check=True)

    def placement(m):
        return sorted(n.input[0] for n in m.graph.node if n.op_type == "QuantizeLinear")

    assert placement(model) == placement(pooled) == ["a2", "images", "r1", "r2"]  # the same places
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "QuantizeLinear":
            lo, hi = ranges.values[n.input[0]]
            zero, scale = inits[n.input[2]], float(inits[n.input[1]])
            assert int(zero) == 0
            if lo >= 0:  # after a ReLU: uint8 with zero-point 0 and max / 255, twice the int8 form's resolution
                assert zero.dtype == np.uint8 and scale == pytest.approx(hi / 255, rel=1e-6)
            else:  # the image input can be negative: symmetric int8, as NNCF writes it (no zero-point to undo)
                assert n.input[0] == "images" and zero.dtype == np.int8
                assert scale == pytest.approx(max(-lo, hi) / 127, rel=1e-6)
    info = describe_qdq(model)
    assert info["quantized"] == ["conv1", "conv2", "fc3"]
    assert [layer["activation"]["dtype"] for layer in info["layers"]] == ["int8", "uint8", "uint8"]
    assert all(layer["weight"]["dtype"] == "int8" for layer in info["layers"])
    fp32, i8, q8 = run(path, x), run(tmp_path / "i8.onnx", x), run(u8, x)
    assert np.abs(q8 - fp32).mean() < np.abs(i8 - fp32).mean()  # finer steps, closer to FP32
