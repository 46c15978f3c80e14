"""``describe``: a foreign ONNX classifier gets a sidecar after its graph is checked; what is not an NCHW image
classifier is refused with a sentence that says what was found."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from alexnet_deploy.backends import describe_artifact, runner_for
from alexnet_deploy.cli.main import app
from alexnet_deploy.core.data import Preprocessing
from alexnet_deploy.core.errors import ArtifactError
from export import describe_onnx

runner = CliRunner()
PRE = Preprocessing(resize=40, crop=32)


def classifier(path, *, batch=1, classes=4, in_shape=None, outputs=1, out_rank=2, inputs=1, external=False):
    """A tiny classifier: GlobalAveragePool over the image, a Gemm to ``classes`` logits (fixed or dynamic batch)."""
    n = batch if batch > 0 else "N"
    shape = in_shape or [n, 3, 32, 32]
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((3, classes)).astype(np.float32), "w")
    nodes = [
        helper.make_node("GlobalAveragePool", ["image"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w"], ["logits"]),
    ]
    outs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [n, classes] + [1] * (out_rank - 2))]
    if out_rank != 2:
        nodes.append(helper.make_node("Reshape", ["logits", "rs"], ["logits4"]))
        outs = [helper.make_tensor_value_info("logits4", TensorProto.FLOAT, [n, classes, 1, 1])]
    if outputs == 2:
        nodes.append(helper.make_node("Identity", ["flat"], ["features"]))
        outs.append(helper.make_tensor_value_info("features", TensorProto.FLOAT, [n, 3]))
    ins = [helper.make_tensor_value_info("image", TensorProto.FLOAT, shape)]
    if inputs == 2:
        ins.append(helper.make_tensor_value_info("mask", TensorProto.FLOAT, [n, 1]))
    inits = [w] + ([numpy_helper.from_array(np.array([-1, classes, 1, 1], np.int64), "rs")] if out_rank != 2 else [])
    graph = helper.make_graph(nodes, "tiny", ins, outs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if external:
        onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                  location=path.name + ".data", size_threshold=0)  # fmt: skip
    else:
        onnx.save(model, str(path))
    return path


def test_a_fixed_batch_classifier_gets_a_sidecar_and_runs_at_its_batch(tmp_path):
    model = classifier(tmp_path / "tiny.onnx")
    classes = tmp_path / "classes.txt"
    classes.write_text("cat\tA cat\ndog\nfox\nowl\n")
    result = describe_onnx(model, classes, PRE)
    m = result.manifest
    assert m.classes == ["cat", "dog", "fox", "owl"] and m.class_names == ["A cat", "dog", "fox", "owl"]
    assert m.input == {"name": "image", "shape": [1, 3, 32, 32], "dtype": "float32"}
    assert m.output["shape"] == [1, 4] and m.preprocessing["resize"] == 40 and m.precision == "fp32"
    assert any("fixed batch of 1" in n for n in result.notes)
    art = describe_artifact(model)  # the sidecar is checked as every sidecar is (schema, sha256, shapes)
    assert art.fixed_batch == 1 and art.classes == m.classes
    x = np.random.default_rng(1).standard_normal((5, 3, 32, 32)).astype(np.float32)
    with runner_for(art) as r:  # five images through a batch-1 graph: five calls, same logits as one by one
        assert r.max_batch == 1
        out = r.infer(x)
        one = np.concatenate([r.infer(x[i : i + 1]) for i in range(5)])
    np.testing.assert_allclose(out, one, rtol=1e-6)
    assert out.shape == (5, 4)


def test_a_dynamic_batch_model_and_the_imagenet_classes(tmp_path):
    model = classifier(tmp_path / "dyn.onnx", batch=-1, classes=1000)
    res = runner.invoke(app, ["describe", str(model), "--classes", "imagenet1k", "--resize", "40", "--crop", "32",
                              "--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25", "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["input"]["shape"] == [-1, 3, 32, 32] and d["classes"][0] == "n01440764"
    assert d["class_names"][1] == "goldfish" and d["preprocessing"]["mean"] == [0.5, 0.5, 0.5]
    assert describe_artifact(model).fixed_batch is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"in_shape": [1, 32, 32, 3]}, "tiny.onnx's input is image 1x32x32x3 float32: channels last (NHWC)"),
        ({"outputs": 2}, "tiny.onnx gives 2 outputs (logits 1x4 float32, features 1x3 float32); an image "
                         "classifier gives one N x classes logits output"),
        ({"out_rank": 4}, "tiny.onnx's output is logits4 1x4x1x1 float32, not N x classes logits: it does not look "
                          "like a classifier"),
        ({"inputs": 2}, "tiny.onnx takes 2 inputs (image 1x3x32x32 float32, mask 1x1 float32)"),
        ({"classes": 5}, "tiny.onnx gives 5 logits, but 4 classes were named"),
        ({"in_shape": [1, 3, 64, 64]}, "tiny.onnx takes 64 x 64 images, but --crop is 32"),
    ],
)  # fmt: skip
def test_what_is_not_an_nchw_classifier_is_refused_with_what_was_found(tmp_path, kwargs, message):
    model = classifier(tmp_path / "tiny.onnx", **kwargs)
    classes = tmp_path / "c.txt"
    classes.write_text("a\nb\nc\nd\n")
    res = runner.invoke(app, ["describe", str(model), "--classes", str(classes), "--resize", "40", "--crop", "32"])
    assert res.exit_code == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {message}"), lines
    assert not (tmp_path / "tiny.onnx.json").exists()


def test_external_weights_are_folded_into_a_copy_and_a_sidecar_is_not_replaced_silently(tmp_path):
    model = classifier(tmp_path / "ext.onnx", external=True)
    with pytest.raises(ArtifactError, match=r"keeps its weights in 1 external file\(s\) \(ext.onnx.data\).*--output"):
        describe_onnx(model, _four(tmp_path), PRE)
    out = tmp_path / "single.onnx"
    result = describe_onnx(model, _four(tmp_path), PRE, output=out)
    assert result.path == out and out.is_file() and (tmp_path / "single.onnx.json").is_file()
    assert not onnx.load(str(out), load_external_data=False).graph.initializer[0].external_data
    assert describe_artifact(out).manifest.extra["described"]["external_data_folded"] is True
    with pytest.raises(ArtifactError, match="single.onnx already has a sidecar .*--force"):
        describe_onnx(model, _four(tmp_path), PRE, output=out)
    describe_onnx(model, _four(tmp_path), Preprocessing(resize=36, crop=32), output=out, force=True)
    assert describe_artifact(out).preprocessing.resize == 36


def _four(tmp_path):
    path = tmp_path / "four.txt"
    path.write_text("a\nb\nc\nd\n")
    return path


def test_bad_flags_are_one_sentence(tmp_path):
    model = classifier(tmp_path / "tiny.onnx")
    for args, message in [
        (["--classes", str(tmp_path / "none.txt")], "The classes file"),
        (["--classes", "imagenet1k", "--crop", "300"], "--crop (300) must be positive and at most --resize (256)"),
        (["--classes", "imagenet1k", "--mean", "a,b"], "--mean takes three numbers"),
    ]:
        res = runner.invoke(app, ["describe", str(model), *args])
        assert res.exit_code == 1 and res.stderr.startswith(f"error: {message}"), res.output


def test_a_fixed_batch_graph_gets_a_tensorrt_profile_of_its_one_shape(tmp_path):
    import importlib.util

    if importlib.util.find_spec("tensorrt_rtx") is None:
        pytest.skip("tensorrt_rtx is not importable (pip install 'alexnet-deploy[tensorrt-rtx]')")
    from alexnet_deploy.backends.tensorrt.rtx import RTXBuildOptions, build_rtx_plan

    model = classifier(tmp_path / "tiny.onnx")  # batch 1; the options ask for 1/4/8, which the graph cannot take
    facts = build_rtx_plan(model, tmp_path / "tiny.plan", RTXBuildOptions(min_batch=1, opt_batch=4, max_batch=8))
    assert facts["profile"]["min"] == facts["profile"]["opt"] == facts["profile"]["max"] == [1, 3, 32, 32]
    assert (tmp_path / "tiny.plan").stat().st_size > 0


def test_a_fixed_batch_of_two_pads_the_last_batch_and_drops_the_padding(tmp_path):
    model = classifier(tmp_path / "two.onnx", batch=2)
    describe_onnx(model, _four(tmp_path), PRE)
    x = np.random.default_rng(2).standard_normal((5, 3, 32, 32)).astype(np.float32)
    with runner_for(describe_artifact(model)) as r:
        assert r.max_batch == 2
        out = r.infer(x)
        alone = r.infer(np.concatenate([x[4:], np.zeros_like(x[:1])]))[:1]  # the last image, padded by hand
    assert out.shape == (5, 4)
    np.testing.assert_allclose(out[4:], alone, rtol=1e-6)
