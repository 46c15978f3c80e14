from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from quant_models import trained_onnx
from typer.testing import CliRunner

from alexnet_deploy.cli.main import app
from alexnet_deploy.core.accuracy import Gate, compare, metrics
from alexnet_deploy.core.data import ImageFolderDataset, eval_transform, stratified_indices
from alexnet_deploy.core.errors import DataError, GateError
from alexnet_deploy.core.images import load_eval_images
from alexnet_deploy.verify import evaluate, require_pass

runner = CliRunner()


@pytest.fixture(scope="session")
def fp32_onnx(tiny20, tmp_path_factory, request):
    return trained_onnx(tiny20, tmp_path_factory.mktemp("qmodel"), request.config.cache.mkdir("alexnet-deploy-quant"))


def test_metrics_and_compare_on_known_logits():
    targets = np.array([0, 1, 2, 2])
    a = np.eye(3, dtype=np.float32)[[0, 1, 1, 2]]  # right, right, wrong (top-1), right
    b = np.eye(3, dtype=np.float32)[[0, 0, 1, 2]]  # right, wrong, wrong, right
    m = metrics(a, targets)
    assert m["top1"] == 75.0 and m["top5"] == 100.0 and m["per_class_top1"] == [100.0, 100.0, 50.0]
    c = compare(b, a, targets)
    assert c["agreement_top1"] == 75.0 and c["top1_delta"] == -25.0 and c["per_class_top1_delta"] == [0.0, -100.0, 0.0]
    assert metrics(a, targets, num_classes=4)["per_class_top1"][3] is None


def test_gate_allows_exactly_the_configured_drop():
    gate = Gate(max_top1_drop=0.5, max_top5_drop=0.5)
    assert gate.check({"top1_delta": -0.5, "top5_delta": 0.3}).passed
    failed = gate.check({"top1_delta": -0.6, "top5_delta": -2.0})
    assert not failed.passed and failed.top1_drop == pytest.approx(0.6)
    assert "top-1 fell 0.60 points" in failed.reason and "top-5 fell 2.00 points" in failed.reason


def test_prepared_images_equal_the_eval_preset(fp32_onnx, tiny20):
    from alexnet_deploy.backends import describe_artifact

    info = describe_artifact(fp32_onnx)
    images = load_eval_images(tiny20, info.classes, info.preprocessing, limit=20)
    assert len(images) == 20 and images.root == tiny20 / "val" and images.pixels.dtype == np.uint8
    ds = ImageFolderDataset(tiny20 / "val", transform=eval_transform(info.preprocessing))
    idx = stratified_indices(ds.targets, 20, 0)[:3]
    np.testing.assert_array_equal(images.batch(0, 3), np.stack([ds[i][0].numpy() for i in idx]))
    assert images.targets[:3].tolist() == [ds.targets[i] for i in idx]


def test_evaluate_against_itself_agrees_fully(fp32_onnx, tiny20):
    report = evaluate(fp32_onnx, tiny20, reference=fp32_onnx)
    assert report.accuracy["num_images"] == 200 and report.reference["agreement_top1"] == 100.0
    assert report.gate.passed and report.top1 == report.reference["reference_top1"] > 5.0  # above chance (5%)
    require_pass(report)
    report.gate = dataclasses.replace(report.gate, passed=False, reason="top-1 fell")
    with pytest.raises(GateError, match="failed the accuracy gate"):
        require_pass(report)


def test_eval_classes_must_match_the_model(fp32_onnx, imagenette10):
    with pytest.raises(DataError, match="do not match the model's 20 classes"):
        evaluate(fp32_onnx, imagenette10)


def test_cli_json(fp32_onnx, tiny20):
    result = runner.invoke(app, ["verify", str(fp32_onnx), "--data", str(tiny20), "--reference", str(fp32_onnx),
                                 "--limit", "40", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    d = json.loads(result.stdout)
    assert d["num_images"] == 40 and d["precision"] == "fp32" and len(d["per_class_top1"]) == 20
    assert d["reference"]["agreement_top1"] == 100.0 and d["gate"]["passed"] is True
    assert set(d["reference"]["per_class_top1_delta"]) == set(d["per_class_top1"])


def test_cli_table_and_class_mismatch(fp32_onnx, tiny20, imagenette10):
    ok = runner.invoke(app, ["verify", str(fp32_onnx), "--data", str(tiny20), "--limit", "20"])
    assert ok.exit_code == 0 and "top-1 %" in ok.output
    bad = runner.invoke(app, ["verify", str(fp32_onnx), "--data", str(imagenette10)])
    assert bad.exit_code == 1
    assert bad.output.strip().startswith("error: The classes in") and len(bad.output.strip().splitlines()) == 1


def test_unreadable_eval_images_are_skipped_and_counted_not_replaced(fp32_onnx, tiny20, tmp_path):
    from image_faults import copy_folder, garble, photos, truncate

    clean = copy_folder(tiny20 / "val", tmp_path / "clean" / "val", per_class=3)
    faulty = copy_folder(tiny20 / "val", tmp_path / "faulty" / "val", per_class=3)
    files = photos(faulty)
    bad = [truncate(files[0]), truncate(files[31]), garble(files[59])]  # two pass verify(), one does not
    report = evaluate(fp32_onnx, faulty.parent)
    assert report.accuracy["num_images"] == 57 and len(report.logits) == 57
    assert sorted(report.skipped) == sorted(str(p) for p in bad)
    d = report.to_dict()
    assert d["num_images"] == 57 and d["unreadable_skipped"] == 3
    assert sorted(d["unreadable_examples"]) == sorted(p.name for p in bad)
    # The 57 images evaluated are the 57 readable ones, each once: no neighbour stands in for a bad file.
    reference = evaluate(fp32_onnx, clean.parent)
    keep = [i for i in range(60) if i not in (0, 31, 59)]
    np.testing.assert_array_equal(report.logits, reference.logits[keep])
    assert reference.to_dict()["unreadable_skipped"] == 0

    table = runner.invoke(app, ["verify", str(fp32_onnx), "--data", str(faulty.parent)], env={"COLUMNS": "300"})
    assert table.exit_code == 0, table.output
    assert "57 images evaluated; 3 unreadable skipped (" in table.stdout
    as_json = runner.invoke(app, ["verify", str(fp32_onnx), "--data", str(faulty.parent), "--json"])
    assert json.loads(as_json.stdout)["unreadable_skipped"] == 3


def test_a_selection_without_one_readable_image_is_one_sentence(fp32_onnx, tiny20, tmp_path):
    from image_faults import copy_folder, photos, truncate

    data = copy_folder(tiny20 / "val", tmp_path / "d" / "val", per_class=1)
    for p in photos(data):
        truncate(p)
    with pytest.raises(DataError, match=r"None of the images chosen from .* could be read \(20 unreadable\)"):
        evaluate(fp32_onnx, data.parent)
