"""Weight refinement (calib/refine.py): learned rounding reproduced bit for bit by the Q/DQ writer, the
per-channel scales unchanged, bias correction removing the mean shift it measured, and the choice among
refinements recorded like the methods."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from quant_models import trained_onnx

from alexnet_deploy.core.errors import ConfigError
from alexnet_deploy.core.vocab import Refinement
from calib import calibrate
from calib.methods import compute_ranges
from calib.pipeline import open_source_model
from calib.qdq import POOLED_FORM, TENSORRT_FORM, quantizable_layers, tensors_to_calibrate, write_qdq
from calib.reader import load_calibration_data
from calib.refine import RefineOptions, refine
from calib.request import CalibrationRequest

FAST = RefineOptions(iterations=40, max_images=64)


@pytest.fixture(scope="session")
def fp32_onnx(tiny20, tmp_path_factory, request):
    return trained_onnx(tiny20, tmp_path_factory.mktemp("qmodel"), request.config.cache.mkdir("alexnet-deploy-quant"))


@pytest.fixture(scope="module")
def setup(fp32_onnx, tiny20):
    source = open_source_model(fp32_onnx)
    request = CalibrationRequest(data=tiny20, num_images=64, holdout_images=0)
    data = load_calibration_data(request, source.preprocessing, source.manifest.classes)
    tensors = tensors_to_calibrate(fp32_onnx, POOLED_FORM) | tensors_to_calibrate(fp32_onnx, TENSORRT_FORM)
    ranges = compute_ranges(fp32_onnx, data.reader(source.input_name, 32), "minmax", tensors)
    return source, data, ranges


def _int8_weights(path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{float weight name: (int8 values, per-channel scales)}`` of a Q/DQ file (quantize_static's naming)."""
    model = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    out = {}
    for n in model.graph.node:
        if n.op_type == "DequantizeLinear" and n.input[0] in inits and inits[n.input[0]].dtype == np.int8:
            if inits[n.input[0]].ndim > 1:
                out[n.input[0].removesuffix("_quantized")] = (inits[n.input[0]], inits[n.input[1]])
    return out


def test_learned_rounding_is_what_the_qdq_file_holds_with_the_same_scales(setup, tmp_path):
    source, data, ranges = setup
    refined = refine(source.path, ranges, POOLED_FORM, data.calibration, source.input_name, "adaround", FAST)
    assert refined.kind is Refinement.ADAROUND and refined.seconds > 0
    plain = _int8_weights(write_qdq(source.path, tmp_path / "plain.onnx", ranges, POOLED_FORM))
    learned = _int8_weights(
        write_qdq(source.path, tmp_path / "learned.onnx", ranges, POOLED_FORM, weights=refined.weights)
    )
    layers = {la.weight: la.label for la in quantizable_layers(source.path)}
    assert set(refined.integers) == set(layers) == set(learned)
    flipped = {}
    for name, integers in refined.integers.items():
        values, scales = learned[name]
        np.testing.assert_array_equal(values, integers)  # bit for bit: the writer rounds onto the learned grid
        np.testing.assert_array_equal(scales, plain[name][1])  # each channel's max |w| kept: same scales
        flipped[layers[name]] = float((values != plain[name][0]).mean())
    records = {r["label"]: r for r in refined.layers}
    # conv1 learns (many positions per weight) and rounds some weights the other way; where it kept the learned
    # rounding, it reconstructs the FP32 output better than nearest rounding did
    assert records["conv1"]["kept_learned"] and 0 < flipped["conv1"] < 0.5
    for label, r in records.items():
        if r.get("kept_learned"):
            assert r["mse_refined"] < r["mse_nearest"], label
        else:
            assert flipped[label] == 0.0, label
    # FC layers see one sample per image: 64 images for a fan-in of 1,024 do not learn (nearest rounding), and
    # FC7's million weights are past the size where learning pays
    assert records["fc8"]["learned"] == "no: 64 samples for a fan-in of 1,024" and flipped["fc8"] == 0.0
    assert records["fc7"]["learned"] == "no: 1,048,576 weights > 1,000,000" and flipped["fc7"] == 0.0


def _layer_output(path, node_name: str, x: np.ndarray) -> np.ndarray:
    model = onnx.load(str(path))
    tensor = next(n.output[0] for n in model.graph.node if n.name == node_name)
    model.graph.output.append(helper.make_tensor_value_info(tensor, TensorProto.FLOAT, None))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), opts).run([tensor], {"images": x})[0]


def test_bias_correction_removes_the_mean_shift_it_measured(setup, tmp_path):
    source, data, ranges = setup
    refined = refine(source.path, ranges, TENSORRT_FORM, data.calibration, source.input_name, "bias", FAST)
    assert not refined.integers  # weights keep nearest rounding: only biases move
    conv1 = quantizable_layers(source.path)[0]
    bias_name = next(n.input[2] for n in onnx.load(str(source.path)).graph.node if n.name == conv1.node)
    assert set(refined.weights) >= {bias_name} and all(k.endswith("bias") for k in refined.weights)
    x = data.calibration.batch(0, 64)
    fp = _layer_output(source.path, conv1.node, x)
    before = _layer_output(write_qdq(source.path, tmp_path / "a.onnx", ranges, TENSORRT_FORM), conv1.node, x)
    after = _layer_output(
        write_qdq(source.path, tmp_path / "b.onnx", ranges, TENSORRT_FORM, weights=refined.weights), conv1.node, x
    )

    def shift(q):
        return (q - fp).transpose(1, 0, 2, 3).reshape(fp.shape[1], -1).mean(1)

    record = refined.layers[0]
    corrected, total = (int(v) for v in record["bias_channels_corrected"].split(" of "))
    original = numpy_helper.to_array(next(i for i in onnx.load(str(source.path)).graph.initializer
                                          if i.name == bias_name))  # fmt: skip
    moved = refined.weights[bias_name] != original
    assert total == fp.shape[1] and 0 < corrected == int(moved.sum())
    # the channels whose shift was significant lose it; the others are left alone
    assert np.abs(shift(after))[moved].max() < 0.05 * np.abs(shift(before))[moved].min()
    np.testing.assert_allclose(shift(after)[~moved], shift(before)[~moved], rtol=1e-4, atol=1e-7)


def test_layers_left_in_float_are_not_refined_and_the_rest_is_refined_again(setup):
    source, data, ranges = setup
    refined = refine(source.path, ranges, POOLED_FORM, data.calibration, source.input_name, "bias", FAST)
    assert refined.for_excluded([]) is refined  # computed for this case already
    conv2 = quantizable_layers(source.path)[1]
    node = next(n for n in onnx.load(str(source.path)).graph.node if n.name == conv2.node)
    again = refined.for_excluded([conv2.node])
    assert again is not refined and again.excluded == (conv2.node,) and again.kind is refined.kind
    assert node.input[2] in refined.weights and node.input[2] not in again.weights  # conv2 keeps its FP32 bias
    assert [r["label"] for r in again.layers] == [r["label"] for r in refined.layers if r["label"] != "conv2"]
    # the layers after conv2 were measured with conv2 in float now: their corrections differ
    later = [la for la in quantizable_layers(source.path)[2:]]
    bias_of = {
        n.name: n.input[2] for n in onnx.load(str(source.path)).graph.node if n.name in {la.node for la in later}
    }
    assert any(not np.array_equal(refined.weights.get(b), again.weights.get(b)) for b in bias_of.values())


def test_options_and_choices_are_checked():
    assert Refinement.parse("AdaRound+Bias") is Refinement.ADAROUND_BIAS
    with pytest.raises(ConfigError, match="Unknown weight refinement 'mse'"):
        Refinement.parse("mse")
    with pytest.raises(ConfigError, match="learned rounding needs positive"):
        RefineOptions(iterations=0)
    assert CalibrationRequest(refine="bias").refine is Refinement.BIAS
    assert CalibrationRequest(refine="auto").refinements == (Refinement.NONE, Refinement.BIAS, Refinement.ADAROUND_BIAS)
    assert CalibrationRequest(method="minmax", refine="auto").chooses  # refinements are a choice like the methods


def test_auto_scores_every_refinement_on_held_out_images_and_writes_the_chosen(fp32_onnx, tiny20, tmp_path):
    out = tmp_path / "m.int8.onnx"
    request = CalibrationRequest(data=tiny20, method="minmax", num_images=64, holdout_images=60, use_cache=False,
                                 refine="auto")  # fmt: skip
    result = calibrate(fp32_onnx, request, out)
    cands = [c for c in result.trials if c.form == "tensorrt"]
    assert [c.refine for c in cands] == ["none", "bias", "adaround+bias"]
    assert all(c.holdout and 0 < c.holdout["agreement_top1"] <= 100 and c.holdout["kl"] > 0 for c in cands)
    assert sum(c["chosen"] for c in result.to_dict()["candidates"]) == 1
    chosen = result.trial  # ranked as the methods are: the smallest KL divergence from FP32
    assert chosen.holdout["kl"] == min(c.holdout["kl"] for c in cands)
    sidecar = json.loads(out.with_name(out.name + ".json").read_text())["calibration"]
    assert sidecar["refinement"]["kind"] == chosen.refine
    assert [c["refine"] for c in sidecar["candidates"]] == ["none", "bias", "adaround+bias"]
    if result.refinement is not None and result.refinement.integers:  # the file holds what was learned
        held = _int8_weights(out)
        for name, integers in result.refinement.integers.items():
            np.testing.assert_array_equal(held[name][0], integers)


def test_the_held_out_ranking_is_the_kl_divergence_from_fp32():
    from calib.results import CalibrationTrial, softmax_kl

    ref = np.array([[2.0, 0.0], [0.0, 1.0]])
    assert softmax_kl(ref, ref) == pytest.approx(0.0, abs=1e-12)
    p = np.exp(ref) / np.exp(ref).sum(1, keepdims=True)
    q = np.full_like(p, 0.5)
    want = float((p * np.log(p / q)).sum(1).mean())
    assert softmax_kl(np.zeros_like(ref), ref) == pytest.approx(want, rel=1e-9)
    close = CalibrationTrial("minmax", "pooled", "off", 0.0, {"kl": 0.01, "agreement_top1": 97.0, "top1": 30.0})
    far = CalibrationTrial("minmax", "pooled", "off", 0.0, {"kl": 0.02, "agreement_top1": 97.5, "top1": 31.0})
    assert max([far, close], key=lambda t: t.rank) is close  # fewer flips on 1,000 images is noise; KL is not


def test_calibrate_cli_takes_refine(fp32_onnx, tiny20, tmp_path):
    from typer.testing import CliRunner

    from alexnet_deploy.cli.main import app

    out = tmp_path / "q.onnx"
    args = ["calibrate", str(fp32_onnx), "--calib-data", str(tiny20), "--method", "minmax", "--num-images", "32",
            "--holdout-images", "40", "--refine", "bias", "--no-cache", "-o", str(out), "--json"]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    # the method's plain candidate, then the refinement asked for, which is kept
    assert [(c["refine"], c["chosen"]) for c in d["candidates"]] == [("none", False), ("bias", True)]
    assert d["refinement"]["kind"] == "bias"
    assert (
        d["refinement"]["layers"][0]["label"] == "conv1" and "bias_channels_corrected" in d["refinement"]["layers"][0]
    )
    bad = CliRunner().invoke(app, [*args[:-4], "--refine", "mse", "-o", str(tmp_path / "x.onnx")])
    assert bad.exit_code != 0 and "mse" in bad.output and not (tmp_path / "x.onnx").exists()
    # the default refine (auto) is a choice: with --holdout-images 0 it is refused in one sentence naming the way out
    none = CliRunner().invoke(app, [*args[:8], "--holdout-images", "0", "-o", str(tmp_path / "y.onnx")])
    assert none.exit_code == 1 and "--holdout-images is 0" in none.output and "--refine" in none.output
    assert "Traceback" not in none.output and not (tmp_path / "y.onnx").exists()


def test_a_graph_exported_for_one_batch_size_is_run_in_that_size(fp32_onnx, tmp_path):
    """A fixed-batch graph (an ONNX from elsewhere) takes only its own batch: the refinement's tensor reads run it in
    batches of that size, the last one padded, and give what the graph with a free batch gives."""
    from calib.refine import _tensor_values

    model = onnx.load(str(fp32_onnx))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 2  # batch fixed at 2
    fixed = tmp_path / "fixed.onnx"
    onnx.save(model, str(fixed))
    name = model.graph.input[0].name
    x = np.random.default_rng(0).standard_normal((5, *[d.dim_value for d in model.graph.input[0].type.tensor_type
                                                       .shape.dim[1:]])).astype(np.float32)  # fmt: skip
    out = model.graph.output[0].name
    free = _tensor_values(fp32_onnx, out, None, name, x)
    assert free.shape[0] == 5
    np.testing.assert_allclose(_tensor_values(fixed, out, None, name, x), free, rtol=1e-4, atol=1e-5)
