from __future__ import annotations

import json

import pytest
from quant_models import trained_onnx
from typer.testing import CliRunner

from alexnet_deploy.backends.verification import verify_file
from alexnet_deploy.cli.main import app
from alexnet_deploy.core.images import load_eval_images
from alexnet_deploy.sensitivity import LayerSensitivity, plot_sensitivity, rank_layers
from calib import calibrate, open_source_model, quantizable_layers
from calib.request import CalibrationRequest

runner = CliRunner()


@pytest.fixture(scope="session")
def fp32_onnx(tiny20, tmp_path_factory, request):
    return trained_onnx(tiny20, tmp_path_factory.mktemp("qmodel"), request.config.cache.mkdir("alexnet-deploy-quant"))


def test_a_damaged_layer_ranks_first(fp32_onnx, tiny20):
    source = open_source_model(fp32_onnx)
    calibration = calibrate(fp32_onnx, CalibrationRequest(data=tiny20, method="minmax", num_images=64, use_cache=False))
    ranges = calibration.ranges
    conv3 = quantizable_layers(fp32_onnx)[2]
    lo, hi = ranges.values[conv3.activation]
    ranges.values[conv3.activation] = (lo * 0.02, hi * 0.02)  # conv3's input range: 50x too narrow
    images = load_eval_images(tiny20, source.manifest.classes, source.preprocessing, limit=100)
    ranking = rank_layers(fp32_onnx, calibration, images, verify_file(source.path, images).logits)
    assert len(ranking) == 8 and ranking[0].label == "conv3"
    assert ranking[0].agreement_top1 < ranking[-1].agreement_top1
    assert [r.agreement_top1 for r in ranking] == sorted(r.agreement_top1 for r in ranking)


def test_plot_is_a_png(tmp_path):
    ranking = [LayerSensitivity("n1", "conv1", "Conv", 97.0, -1.0, 0.0, 0.5),
               LayerSensitivity("n2", "fc6", "Gemm", 99.5, 0.0, 0.0, 0.1)]  # fmt: skip
    path = plot_sensitivity(ranking, tmp_path / "s.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000


def test_cli_prints_the_ranking_and_saves_the_chart(fp32_onnx, tiny20, tmp_path):
    plot = tmp_path / "sens.png"
    res = runner.invoke(app, ["sensitivity", str(fp32_onnx), "--calib-data", str(tiny20), "--eval-data", str(tiny20),
                              "--num-images", "64", "--limit", "60", "--plot", str(plot), "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["num_images"] == 60 and d["form"] == "tensorrt" and d["method"] == "minmax"
    assert sorted(r["label"] for r in d["ranking"]) == sorted(["conv1", "conv2", "conv3", "conv4", "conv5", "fc6",
                                                                "fc7", "fc8"])  # fmt: skip
    assert plot.read_bytes()[:4] == b"\x89PNG" and d["plot"] == str(plot)
