"""Fixtures of the input-trust suites: a small ImageFolder copied from the fixture photos and a small exported
model of its classes (helpers in ``trust_helpers.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from trust_helpers import CLASSES, PER_CLASS


@pytest.fixture(scope="session")
def small_data(tiny20, tmp_path_factory) -> Path:
    """A root whose ``val/`` holds 4 classes x 5 photos of fixture-tiny-imagenet-20 (never modified: copy it)."""
    from image_faults import copy_folder

    root = tmp_path_factory.mktemp("small-data")
    copy_folder(tiny20 / "val", root / "val", classes=CLASSES, per_class=PER_CLASS)
    return root


@pytest.fixture(scope="session")
def small_onnx(small_data, tmp_path_factory) -> Path:
    """An untrained width-0.125 paper AlexNet at 64 px for the small set's 4 classes, exported with its sidecar
    (counts, names and refusals need no trained weights)."""
    import torch

    from alexnet_deploy.core.data import Preprocessing
    from alexnet_deploy.core.models import alexnet_paper
    from export import ExportRequest, ModelDescription, export_model

    torch.manual_seed(0)
    model = alexnet_paper(width=0.125, num_classes=CLASSES, init="kaiming").eval()
    classes = sorted(p.name for p in (small_data / "val").iterdir() if p.is_dir())
    out = tmp_path_factory.mktemp("small-onnx") / "small.fp32.onnx"
    arch = {"name": "alexnet_paper", "num_classes": CLASSES, "width": 0.125, "columns": 2}
    description = ModelDescription(classes=classes, preprocessing=Preprocessing.for_crop(64), arch=arch)
    export_model(model, out, ExportRequest(image_size=64, parity_samples=4), description)
    return out
