"""Small real artifacts for the bench's CLI tests: a width-0.25 AlexNet checkpoint at 64 px and its ONNX."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from alexnet_deploy.core.checkpoint import save_checkpoint
from alexnet_deploy.core.data import Preprocessing
from alexnet_deploy.core.manifest import Manifest, save_manifest
from alexnet_deploy.core.models import build_model

ARCH = {"name": "alexnet", "num_classes": 10, "width": 0.25, "columns": 1}


@pytest.fixture(scope="session")
def small_artifacts(tmp_path_factory) -> dict[str, Path]:
    """``ckpt`` (ours, with arch and preprocessing), ``onnx`` (with a sidecar naming its source) and ``bare``
    (the same ONNX without a sidecar)."""
    root = tmp_path_factory.mktemp("bench_artifacts")
    torch.manual_seed(0)
    model = build_model("alexnet", num_classes=10, width=0.25).eval()
    ckpt = root / "small.pt"
    save_checkpoint(
        ckpt,
        {
            "model": model.state_dict(),
            "arch": ARCH,
            "classes": [f"c{i}" for i in range(10)],
            "preprocessing": Preprocessing.for_crop(64).to_dict(),
        },
    )
    onnx_path = root / "small.fp32.onnx"
    batch = torch.export.Dim("batch", min=1, max=64)
    torch.onnx.export(
        model,
        (torch.randn(2, 3, 64, 64),),
        str(onnx_path),
        input_names=["images"],
        output_names=["logits"],
        dynamic_shapes={"x": {0: batch}},
        dynamo=True,
        verbose=False,
    )
    bare = root / "bare.onnx"
    bare.write_bytes(onnx_path.read_bytes())
    save_manifest(
        onnx_path,
        Manifest(kind="onnx", model=ARCH, input={"shape": [-1, 3, 64, 64]}, source={"path": str(ckpt)}),
    )
    return {"ckpt": ckpt, "onnx": onnx_path, "bare": bare, "root": root}
