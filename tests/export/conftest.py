"""Small checkpoints (width 0.25, 112 px) and their exports, made once per session for the export tests."""

from __future__ import annotations

import pytest
import torch

from alexnet_deploy.core.checkpoint import save_checkpoint
from alexnet_deploy.core.data import Preprocessing
from alexnet_deploy.core.models import alexnet, alexnet_paper

PAPER_CLASSES = [f"class-{i}" for i in range(10)]


@pytest.fixture(scope="session")
def paper_checkpoint(tmp_path_factory):
    """Our checkpoint of the paper network: width 0.25, 10 classes, 112 px preprocessing, Kaiming init."""
    torch.manual_seed(0)
    model = alexnet_paper(width=0.25, num_classes=10, init="kaiming")
    path = tmp_path_factory.mktemp("ckpt") / "paper.pt"
    save_checkpoint(
        path,
        {
            "model": model.state_dict(),
            "arch": {"name": "alexnet_paper", "num_classes": 10, "width": 0.25, "columns": 2},
            "classes": PAPER_CLASSES,
            "preprocessing": Preprocessing.for_crop(112).to_dict(),
        },
    )
    return path


@pytest.fixture(scope="session")
def alexnet_state_dict(tmp_path_factory):
    """A plain state dict in torchvision's AlexNet layout (width 0.25, 5 classes), as torch.save writes it."""
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("ckpt") / "alexnet_tv.pth"
    torch.save(alexnet(width=0.25, num_classes=5).state_dict(), path)
    return path


@pytest.fixture(scope="session")
def paper_fp32(paper_checkpoint, tiny20, tmp_path_factory):
    """The paper checkpoint exported in FP32, parity-checked on real images."""
    from export import ExportRequest, export_onnx

    return export_onnx(
        paper_checkpoint, tmp_path_factory.mktemp("onnx") / "paper.fp32.onnx", ExportRequest(parity_data=tiny20)
    )


@pytest.fixture(scope="session")
def paper_fp16(paper_checkpoint, tiny20, tmp_path_factory):
    """The paper checkpoint exported in FP16, parity-checked on real images."""
    from export import ExportRequest, export_onnx

    return export_onnx(
        paper_checkpoint,
        tmp_path_factory.mktemp("onnx") / "paper.fp16.onnx",
        ExportRequest(precision="fp16", parity_data=tiny20),
    )
