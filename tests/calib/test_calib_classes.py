"""Calibration folders whose classes are not the model's: foreign classes are refused, a subset is renumbered to
the model's labels (so the held-out scores are right) with a warning, and unreadable images are counted."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from image_faults import photos, truncate
from quant_models import trained_onnx

from alexnet_deploy.backends.onnxruntime import OnnxRuntimeRunner
from alexnet_deploy.core.accuracy import metrics, run_logits
from alexnet_deploy.core.data import Preprocessing, class_names
from calib import calibrate
from calib.reader import load_calibration_data, model_labels
from calib.request import CalibrationRequest

PRE = Preprocessing.for_crop(64)


@pytest.fixture(scope="session")
def fp32_onnx(tiny20, tmp_path_factory, request):
    return trained_onnx(tiny20, tmp_path_factory.mktemp("qmodel"), request.config.cache.mkdir("alexnet-deploy-quant"))


@pytest.fixture
def late_classes(tiny20, tmp_path):
    """Classes 15..19 of tiny20's 20, 12 training photos each: their folder labels 0..4 are not the model's."""
    src = tiny20 / "train"
    dst = tmp_path / "five" / "train"
    for folder in sorted(p for p in src.iterdir() if p.is_dir())[15:20]:
        (dst / folder.name).mkdir(parents=True)
        for photo in sorted(folder.iterdir())[:12]:
            (dst / folder.name / photo.name).write_bytes(photo.read_bytes())
    (tmp_path / "five" / "classes.tsv").write_bytes((tiny20 / "classes.tsv").read_bytes())
    return tmp_path / "five"


def test_a_subset_of_the_classes_is_renumbered_to_the_models_labels_with_a_warning(tiny20, late_classes, caplog):
    model = class_names(tiny20 / "train")
    with caplog.at_level(logging.WARNING, logger="calib.reader"):
        data = load_calibration_data(
            CalibrationRequest(data=late_classes, num_images=40, holdout_images=20), PRE, model
        )
    assert sorted(set(data.calibration.targets.tolist())) == [15, 16, 17, 18, 19]
    assert sorted(set(data.holdout.targets.tolist())) == [15, 16, 17, 18, 19]
    assert "cover 5 of the model's 20 classes" in caplog.text
    d = data.describe()
    assert d["classes_covered"] == 5 and d["model_classes"] == 20 and d["unreadable_skipped"] == 0
    data.conform_to(model)  # idempotent: labels are not shifted twice
    assert sorted(set(data.calibration.targets.tolist())) == [15, 16, 17, 18, 19]
    # The folder's own labels, as ImageFolder numbers them, would have been wrong.
    plain = load_calibration_data(CalibrationRequest(data=late_classes, num_images=40, holdout_images=20), PRE)
    assert sorted(set(plain.calibration.targets.tolist())) == [0, 1, 2, 3, 4]


def test_foreign_classes_calibrate_without_labels_and_say_so(tiny20, imagenette10, caplog):
    # Calibration needs no labels: a foreign folder still calibrates, but no held-out top-1 is scored against
    # labels that are not the model's (the choice among methods then uses top-1 agreement with FP32 only).
    model = class_names(tiny20 / "train")
    with caplog.at_level(logging.WARNING, logger="calib.reader"):
        data = load_calibration_data(CalibrationRequest(data=imagenette10, num_images=8, holdout_images=8), PRE, model)
    assert "10 of the 10 class folders in" in caplog.text and "are not among the model's 20 classes" in caplog.text
    assert "held-out top-1/top-5 cannot be scored" in caplog.text
    assert not data.labels_known and (data.calibration.targets == -1).all() and (data.holdout.targets == -1).all()


def test_a_model_without_class_names_is_matched_by_count_only(tiny20, late_classes):
    root = late_classes / "train"
    folders = sorted(p.name for p in root.iterdir())
    assert model_labels(root, folders, [str(i) for i in range(5)]) == [0, 1, 2, 3, 4]
    assert model_labels(root, folders, [str(i) for i in range(20)]) is None  # 5 folders, 20 classes: no labels


def test_held_out_scores_of_a_subset_folder_use_the_models_labels(fp32_onnx, late_classes, caplog):
    with caplog.at_level(logging.WARNING, logger="calib.reader"):
        result = calibrate(
            fp32_onnx,
            CalibrationRequest.for_target(
                "onnxruntime", data=late_classes, method="minmax", num_images=40, holdout_images=20, use_cache=False
            ),
        )
    assert "cover 5 of the model's 20 classes" in caplog.text
    assert result.data["classes_covered"] == 5 and result.data["model_classes"] == 20
    # The FP32 model's top-1 on the same held-out images, with the model's labels and with the folder's.
    data = load_calibration_data(CalibrationRequest(data=late_classes, num_images=40, holdout_images=20), PRE)
    with OnnxRuntimeRunner(fp32_onnx) as runner:
        logits = run_logits(runner, data.holdout)
    right = metrics(logits, data.holdout.targets + 15)["top1"]
    wrong = metrics(logits, data.holdout.targets)["top1"]
    assert right > wrong + 10.0  # the demo model knows classes 17-19 fairly well; the folder's labels lie
    for cand in result.trials:
        # Each candidate is scored against the FP32 reference computed with the model's labels.
        assert cand.holdout["top1"] - cand.holdout["top1_delta"] == pytest.approx(right, abs=1e-9)


def test_unreadable_calibration_images_are_counted(tiny20, late_classes):
    files = photos(late_classes / "train")
    truncate(files[3])
    truncate(files[20])
    data = load_calibration_data(CalibrationRequest(data=late_classes, num_images=60, holdout_images=0), PRE)
    assert len(data.calibration) == 58
    d = data.describe()
    assert d["unreadable_skipped"] == 2 and sorted(d["unreadable_examples"]) == sorted([files[3].name, files[20].name])
    assert np.all(np.bincount(data.calibration.targets) >= 11)
