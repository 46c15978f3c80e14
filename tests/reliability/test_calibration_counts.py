"""The default calibration (``calibrate`` and ``build --int8``, method auto) on every shipped image folder and on
image counts that leave a short last batch: each run must end in exit code 0 with a written, consistent pair.

Before the fix, ONNX Runtime's histogram collector raised ``ValueError: ... inhomogeneous shape`` whenever the
calibration images did not split into equal batches (entropy and percentile; minmax survived).
"""

from __future__ import annotations

import pytest
from quant_models import trained_onnx
from typer.testing import CliRunner

from alexnet_deploy.cli.main import app
from alexnet_deploy.core.manifest import load_manifest

runner = CliRunner()


@pytest.fixture(scope="module")
def fp32_onnx(tiny20, tmp_path_factory, request):
    return trained_onnx(tiny20, tmp_path_factory.mktemp("qmodel"), request.config.cache.mkdir("alexnet-deploy-quant"))


@pytest.mark.slow
@pytest.mark.parametrize("count", [1, 33, 47, 450])
def test_default_calibration_succeeds_on_odd_image_counts(fp32_onnx, tiny20, tmp_path, count):
    out = tmp_path / "q.onnx"
    res = runner.invoke(
        app,
        [
            "calibrate",
            str(fp32_onnx),
            "--calib-data",
            str(tiny20),
            "--num-images",
            str(count),
            "--no-cache",
            *(["--refine", "none"] if count > 64 else []),  # refinements at odd counts: 1, 33, 47 (450 costs 30 s)
            "-o",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    m = load_manifest(out)  # the pair is consistent (sha256 checked)
    assert m.calibration["data"]["num_images"] == count
    assert {c["method"] for c in m.calibration["candidates"]} == {"minmax", "entropy", "percentile"}


def _export_for(data, directory):
    """A random-weight export (width 0.25, 64 px) whose classes are ``data``'s: calibration needs no trained model."""
    import torch

    from alexnet_deploy.core.data import Preprocessing, class_names
    from alexnet_deploy.core.models import alexnet_paper
    from export import ExportRequest, ModelDescription, export_model

    torch.manual_seed(0)
    classes = class_names(data / "train")
    model = alexnet_paper(width=0.25, num_classes=len(classes), init="kaiming")
    out = directory / "model.fp32.onnx"
    export_model(
        model,
        out,
        ExportRequest(image_size=64, parity_samples=8),
        ModelDescription(
            classes=classes,
            preprocessing=Preprocessing.for_crop(64),
            arch={"name": "alexnet_paper", "num_classes": len(classes), "width": 0.25, "columns": 2},
        ),
    )
    return out


@pytest.mark.slow
@pytest.mark.parametrize("data_set", ["fixture-imagenette-10", "tiny-imagenet-100"])
@pytest.mark.parametrize("method", ["auto", "entropy", "percentile"])
def test_every_method_calibrates_every_shipped_image_folder_with_a_short_last_batch(
    tiny20, imagenette10, tiny100, tmp_path, data_set, method
):
    data = {"fixture-imagenette-10": imagenette10, "tiny-imagenet-100": tiny100}[data_set]
    onnx = _export_for(data, tmp_path)
    out = tmp_path / "q.onnx"
    args = ["calibrate", str(onnx), "--calib-data", str(data), "--method", method, "--num-images", "47",
            "--holdout-images", "33", "--refine", "none", "--no-cache", "-o", str(out)]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert load_manifest(out).calibration["data"]["num_images"] == 47


@pytest.mark.slow
def test_default_int8_build_succeeds_on_an_odd_image_count(fp32_onnx, tiny20, tmp_path):
    out = tmp_path / "m.int8.onnx"
    res = runner.invoke(
        app,
        [
            "build",
            str(fp32_onnx),
            "--int8",
            "--calib-data",
            str(tiny20),
            "--eval-data",
            str(tiny20),
            "--num-calib-images",
            "33",
            "--holdout-images",
            "47",
            "--no-cache",
            "--max-top1-drop",
            "3",
            "--max-top5-drop",
            "3",
            "--probe-batch",
            "1",
            "-o",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    m = load_manifest(out)
    assert m.calibration["data"]["num_images"] == 33 and m.calibration["data"]["holdout_images"] == 47
    assert m.gate["status"] == "passed"
