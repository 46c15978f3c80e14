"""A small AlexNet trained for a few seconds on fixture-tiny-imagenet-20 and exported to ONNX, shared by the
calibration, build, verify and sensitivity tests (trained once per test session).

A trained model matters: on random weights every calibration, broken or not, sits at chance accuracy and the
accuracy gate has nothing to catch.
"""

from __future__ import annotations

import hashlib
import inspect
from pathlib import Path

import torch

from alexnet_deploy.core.data import ImageFolderDataset, Preprocessing, class_names, eval_transform
from alexnet_deploy.core.models import alexnet_paper

IMAGE_SIZE = 64
PREPROCESSING = Preprocessing.for_crop(IMAGE_SIZE)
EPOCHS = 16
_CACHE: dict[str, Path] = {}


def _train(tiny20: Path, epochs: int = EPOCHS) -> torch.nn.Module:
    torch.manual_seed(0)
    data = ImageFolderDataset(tiny20 / "train", transform=eval_transform(PREPROCESSING))
    x = torch.stack([data[i][0] for i in range(len(data))])
    y = torch.tensor(data.targets)
    model = alexnet_paper(width=0.25, num_classes=20, init="kaiming", dropout=0.3)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 50):
            idx = perm[i : i + 50]
            xb = x[idx]
            flip = torch.rand(len(idx)) < 0.5
            xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
            loss = torch.nn.functional.cross_entropy(model(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def trained_onnx(tiny20: Path, directory: Path, weights_cache: Path | None = None) -> Path:
    """The FP32 ONNX (with its sidecar) of a width-0.25 paper AlexNet trained on tiny20 at 64 px.

    ``weights_cache`` (pytest's cache folder) keeps the trained weights between runs: training is the slow part.
    """
    key = str(tiny20)
    if key not in _CACHE:
        from export import ExportRequest, ModelDescription, export_model

        recipe = hashlib.sha256(inspect.getsource(_train).encode()).hexdigest()[:12]
        name = f"tiny20-paper-w025-e{EPOCHS}-{recipe}-torch{torch.__version__}.pt"
        cached = Path(weights_cache) / name if weights_cache else None
        if cached is not None and cached.is_file():
            model = alexnet_paper(width=0.25, num_classes=20, init="kaiming", dropout=0.3)
            model.load_state_dict(torch.load(cached, weights_only=True))
            model.eval()
        else:
            model = _train(tiny20)
            if cached is not None:
                torch.save(model.state_dict(), cached)
        out = Path(directory) / "tiny20.fp32.onnx"
        export_model(
            model,
            out,
            ExportRequest(image_size=IMAGE_SIZE, parity_samples=8),
            ModelDescription(
                classes=class_names(tiny20 / "train"),
                preprocessing=PREPROCESSING,
                arch={"name": "alexnet_paper", "num_classes": 20, "width": 0.25, "columns": 2},
            ),
        )
        _CACHE[key] = out
    return _CACHE[key]
