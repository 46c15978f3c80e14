from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from alexnet_deploy.backends.onnxruntime import OnnxRuntimeRunner
from alexnet_deploy.core.checkpoint import load_model
from alexnet_deploy.core.errors import ConfigError
from alexnet_deploy.core.files import sha256_file
from alexnet_deploy.core.manifest import load_manifest
from alexnet_deploy.core.models import alexnet_paper
from export import ExportRequest, build_onnx, export_onnx, read_metadata
from export.lrn import count_lrn_layers, native_lrn


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def test_paper_network_has_one_native_lrn_per_layer_no_dropout_and_its_groups(paper_fp32, paper_checkpoint):
    model = onnx.load(str(paper_fp32.path))
    ops = [n.op_type for n in model.graph.node]
    loaded = load_model(paper_checkpoint)
    assert ops.count("LRN") == count_lrn_layers(loaded.model) == 2
    assert "Dropout" not in ops
    # What the exporter's own decomposition of LRN would leave behind.
    assert not {"Pow", "Div", "AveragePool", "Pad", "Squeeze"} & set(ops)
    for node in (n for n in model.graph.node if n.op_type == "LRN"):
        assert _attrs(node) == pytest.approx({"size": 5, "alpha": 5e-4, "beta": 0.75, "bias": 2.0})
    groups = [_attrs(n).get("group", 1) for n in model.graph.node if n.op_type == "Conv"]
    assert groups == [1, 2, 1, 2, 2]
    assert paper_fp32.graph.conv_groups == groups


def test_dynamic_batch_runs_batch_1_and_7_and_matches_torch(paper_fp32, paper_checkpoint):
    model = onnx.load(str(paper_fp32.path), load_external_data=False)
    (inp,), (out,) = model.graph.input, model.graph.output
    assert (inp.name, out.name) == ("images", "logits")
    assert inp.type.tensor_type.shape.dim[0].dim_param and not inp.type.tensor_type.shape.dim[0].dim_value
    session = OnnxRuntimeRunner(paper_fp32.path)
    session.activate()
    torch_model = load_model(paper_checkpoint).model
    for batch in (1, 7):
        x = torch.randn(batch, 3, 112, 112, generator=torch.Generator().manual_seed(batch))
        got = session.infer(x.numpy())
        with torch.no_grad():
            want = torch_model(x).numpy()
        assert got.shape == (batch, 10) and got.dtype == np.float32
        assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


def test_parity_figures_on_real_images_are_in_the_sidecar(paper_fp32, tiny20):
    parity = paper_fp32.parity
    assert parity.passed and parity.samples == 64 and str(tiny20) in parity.inputs
    assert parity.max_rel_error <= 1e-4 and parity.top1_agreement == 1.0
    manifest = load_manifest(paper_fp32.path)
    assert manifest.accuracy["parity"]["max_rel_error"] == pytest.approx(parity.max_rel_error)
    assert manifest.gate == {"parity": {"max_rel_error": 1e-4}}


def test_sidecar_and_metadata_describe_the_model(paper_fp32, paper_checkpoint):
    manifest = load_manifest(paper_fp32.path)
    assert manifest.kind == "onnx" and manifest.precision == "fp32"
    assert manifest.model == {"name": "alexnet_paper", "num_classes": 10, "width": 0.25, "columns": 2}
    assert manifest.classes == [f"class-{i}" for i in range(10)]
    assert manifest.input == {"name": "images", "shape": [-1, 3, 112, 112], "dtype": "float32"}
    assert manifest.output == {"name": "logits", "shape": [-1, 10], "dtype": "float32"}
    assert manifest.preprocessing["crop"] == 112 and manifest.preprocessing["resize"] == 128
    assert manifest.source["sha256"] == sha256_file(paper_checkpoint)
    assert manifest.source["format"] == "alexnet-deploy"
    assert manifest.sha256 == sha256_file(paper_fp32.path)
    assert manifest.extra["graph"]["opset"] == 18 and manifest.extra["lrn"] == "native"
    meta = read_metadata(paper_fp32.path)
    for key in ("model", "classes", "preprocessing", "precision", "input", "output", "source"):
        assert meta[key] == json.loads(json.dumps(getattr(manifest, key))), key
    assert meta["parity"]["max_rel_error"] == pytest.approx(paper_fp32.parity.max_rel_error)
    # Only the ONNX and its sidecar: no temporary file left beside them.
    assert sorted(p.name for p in paper_fp32.path.parent.iterdir()) == ["paper.fp32.onnx", "paper.fp32.onnx.json"]


def test_torchvision_state_dict_exports_without_lrn_or_groups(alexnet_state_dict, tmp_path):
    result = export_onnx(alexnet_state_dict, tmp_path / "tv.onnx", ExportRequest(image_size=112, parity_samples=16))
    ops = result.graph.op_counts
    assert "LRN" not in ops and "Dropout" not in ops and ops["Conv"] == 5 and ops["Gemm"] == 3
    assert result.graph.conv_groups == [1] * 5
    assert result.manifest.model["name"] == "alexnet" and result.manifest.output["shape"] == [-1, 5]
    assert result.manifest.source["format"] == "torchvision" and result.parity.max_rel_error <= 1e-4
    assert result.manifest.input["shape"] == [-1, 3, 112, 112]


def test_default_exporter_decomposes_lrn_which_the_translation_avoids():
    model = alexnet_paper(width=0.25, num_classes=4)
    decomposed = build_onnx(model, 112, native_lrn_op=False)
    ops = [n.op_type for n in decomposed.graph.node]
    assert "LRN" not in ops and {"Pow", "Div"} <= set(ops)
    # The swap is undone afterwards: the model keeps torch's LocalResponseNorm.
    with native_lrn(model) as swapped:
        assert swapped == 2
    assert sum(isinstance(m, torch.nn.LocalResponseNorm) for m in model.modules()) == 2


def test_decomposed_lrn_form_for_onnxruntime_cpu(paper_checkpoint, tmp_path):
    result = export_onnx(paper_checkpoint, tmp_path / "dec.onnx", ExportRequest(lrn="decomposed", parity_samples=8))
    assert "LRN" not in result.graph.op_counts and result.graph.op_counts.get("Pow") == 2
    assert result.graph.conv_groups == [1, 2, 1, 2, 2] and "Dropout" not in result.graph.op_counts
    assert result.manifest.extra["lrn"] == "decomposed" and result.parity.max_rel_error <= 1e-4
    with pytest.raises(ConfigError, match="Unknown LRN form"):
        export_onnx(paper_checkpoint, tmp_path / "x.onnx", ExportRequest(lrn="fused"))


def test_too_small_images_and_old_opsets_are_refused():
    model = alexnet_paper(width=0.25, num_classes=4)
    with pytest.raises(ConfigError, match="cannot take 40 px inputs"):
        build_onnx(model, 40)
    with pytest.raises(ConfigError, match="Opset 16 is too old"):
        build_onnx(model, 112, opset=16)
