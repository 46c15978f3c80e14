from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from quant_models import trained_onnx

from calib import calibrate, describe_qdq, quantizable_layers, write_qdq
from calib.qdq import ONNXRUNTIME_FORM, TENSORRT_FORM, tensors_to_calibrate
from calib.request import CalibrationRequest


@pytest.fixture(scope="session")
def fp32_onnx(tiny20, tmp_path_factory, request):
    return trained_onnx(tiny20, tmp_path_factory.mktemp("qmodel"), request.config.cache.mkdir("alexnet-deploy-quant"))


@pytest.fixture(scope="module")
def minmax(fp32_onnx, tiny20, tmp_path_factory):
    out = tmp_path_factory.mktemp("qdq") / "model.int8.qdq.onnx"
    return calibrate(fp32_onnx, CalibrationRequest(data=tiny20, method="minmax", num_images=64, use_cache=False), out)


def _dq_inputs(model: onnx.ModelProto):
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return [(n, [inits.get(x) for x in n.input]) for n in model.graph.node if n.op_type == "DequantizeLinear"]


def test_layers_are_labelled_like_the_paper(fp32_onnx):
    layers = quantizable_layers(fp32_onnx)
    assert [x.label for x in layers] == ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"]
    assert [x.op_type for x in layers] == ["Conv"] * 5 + ["Gemm"] * 3
    assert tensors_to_calibrate(fp32_onnx, TENSORRT_FORM) == {x.activation for x in layers}


def test_tensorrt_form_follows_the_explicit_quantization_rules(minmax, fp32_onnx):
    path = minmax.path
    model = onnx.load(str(path))
    info = describe_qdq(model)
    assert info["quantized"] == ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"]
    assert info["float"] == []
    fp32 = onnx.load(str(fp32_onnx))
    out_channels = {x.label: numpy_helper.to_array(i).shape[0] for x in quantizable_layers(fp32)
                    for i in fp32.graph.initializer if i.name == x.weight}  # fmt: skip
    amax = minmax.ranges.amax()
    for layer in info["layers"]:
        act, w = layer["activation"], layer["weight"]
        # activations: one scale per tensor, symmetric int8, zero-point 0, scale = amax / 127
        assert act["dtype"] == "int8" and act["num_scales"] == 1 and act["zero_point_max_abs"] == 0
        tensor = next(x.activation for x in quantizable_layers(fp32) if x.label == layer["label"])
        assert act["scale"] == pytest.approx(amax[tensor] / 127, rel=1e-5)
        # weights: int8 constants, one scale per output channel along axis 0, zero-point 0
        assert w["dtype"] == "int8" and w["constant_input"] and w["axis"] == 0 and w["zero_point_max_abs"] == 0
        assert w["num_scales"] == out_channels[layer["label"]]
        # biases stay float; outputs are not quantized (Conv+bias+ReLU fuse; logits stay float)
        assert layer["bias"] == "float" and not layer["output_quantized"]
    # Nothing else is quantized: no int32 bias DQ, no uint8, no Q/DQ around LRN, pooling or the logits.
    for node, (src, _scale, zero) in _dq_inputs(model):
        assert zero is None or zero.dtype == np.int8, node.name
        assert src is None or src.dtype == np.int8, node.name
    assert info["op_counts"]["QuantizeLinear"] == 8 and info["op_counts"]["DequantizeLinear"] == 16
    consumers = {i for n in model.graph.node if n.op_type in ("LRN", "MaxPool") for i in n.input}
    producers = {n.output[0]: n.op_type for n in model.graph.node}
    assert all(producers.get(t) != "DequantizeLinear" for t in consumers)
    assert model.graph.output[0].name == "logits" and producers["logits"] == "Gemm"
    assert json.loads(next(p.value for p in model.metadata_props if p.key == "precision")) == "int8"


def test_sidecar_describes_the_calibration(minmax):
    sidecar = json.loads(minmax.path.with_name(minmax.path.name + ".json").read_text())
    assert sidecar["precision"] == "int8" and len(sidecar["classes"]) == 20
    cal = sidecar["calibration"]
    assert cal["method"] == "minmax" and cal["form"] == "tensorrt" and cal["bias"] == "float"
    assert cal["data"]["num_images"] == 64 and cal["data"]["folder"].endswith("train")
    assert sidecar["source"]["sha256"] and sidecar["preprocessing"]["crop"] == 64


def test_excluded_layers_stay_float(minmax, fp32_onnx, tmp_path):
    conv1 = quantizable_layers(fp32_onnx)[0]
    out = write_qdq(fp32_onnx, tmp_path / "x.onnx", minmax.ranges, TENSORRT_FORM, exclude=[conv1.node])
    info = describe_qdq(out)
    assert info["float"] == ["conv1"] and "conv2" in info["quantized"]
    only = write_qdq(fp32_onnx, tmp_path / "y.onnx", minmax.ranges, TENSORRT_FORM, only=[conv1.node])
    assert describe_qdq(only)["quantized"] == ["conv1"]


def test_onnxruntime_form_uses_uint8_activations_and_int32_biases(fp32_onnx, tiny20, tmp_path):
    result = calibrate(
        fp32_onnx,
        CalibrationRequest.for_target(
            "onnxruntime", data=tiny20, method="minmax", num_images=32, holdout_images=40, use_cache=False
        ),
    )
    out = write_qdq(fp32_onnx, tmp_path / "ort.onnx", result.ranges, ONNXRUNTIME_FORM)
    info = describe_qdq(out)
    assert {x["activation"]["dtype"] for x in info["layers"]} == {"uint8"}
    assert {x["bias"] for x in info["layers"]} == {"int32"}
    assert {t.form for t in result.trials} == {"tensorrt", "onnxruntime"}
    assert sum(c["chosen"] for c in result.to_dict()["candidates"]) == 1
