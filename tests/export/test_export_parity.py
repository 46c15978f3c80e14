from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from alexnet_deploy.core.errors import ConfigError, DataError, GateError
from export import ExportRequest, compare_logits, export_model, parity_inputs


def test_compare_logits_relative_to_each_samples_largest_logit():
    ref = np.array([[10.0, -2.0, 1.0], [0.1, 0.2, 0.0]], dtype=np.float32)
    got = ref + np.array([[0.01, 0.0, 0.0], [0.0, 0.0, 0.001]], dtype=np.float32)
    figures = compare_logits(ref, got)
    assert figures["max_abs_error"] == pytest.approx(0.01, rel=1e-4)
    assert figures["max_rel_error"] == pytest.approx(0.001 / 0.2, rel=1e-3)  # the second sample dominates
    assert figures["top1_agreement"] == 1.0
    flipped = ref.copy()
    flipped[1] = [0.3, 0.2, 0.0]
    assert compare_logits(ref, flipped)["top1_agreement"] == 0.5


def test_parity_inputs_from_images_or_random(tiny20):
    images, described = parity_inputs(12, 96, eval_data=tiny20)
    assert images.shape == (12, 3, 96, 96) and str(tiny20 / "val") in described
    assert -3 < images.mean() < 3 and images.std() > 0.1  # normalised pixels, not raw 0..255
    a, described = parity_inputs(4, 64)
    b, _ = parity_inputs(4, 64)
    assert torch.equal(a, b) and "random" in described
    with pytest.raises(ConfigError, match="at least one sample"):
        parity_inputs(0, 64)


def test_parity_inputs_refuse_a_missing_folder(tmp_path):
    with pytest.raises(DataError, match="not found"):
        parity_inputs(4, 64, eval_data=tmp_path / "nowhere")


class _Noisy(nn.Module):
    """A network whose exported graph cannot reproduce its own outputs (fresh noise on every run)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.conv(x), 1), 1))
        return y + 0.1 * torch.randn_like(y)


class _Twins(nn.Module):
    """Two classes whose weights differ by less than FP16 can tell apart: FP16 rounds them to one value."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)
        with torch.no_grad():
            w = torch.tensor([0.3, -0.2, 0.5])
            self.fc.weight.copy_(torch.stack([w, w * (1 + 1e-5)]))
            self.fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean(dim=(2, 3)))


@pytest.mark.parametrize(
    ("model", "precision", "message"),
    [
        (_Noisy(), "fp32", "max relative error of the logits"),
        (_Twins(), "fp16", "agrees with PyTorch's top-1 class on only"),
    ],
)
def test_a_failed_parity_check_fails_the_export_and_writes_nothing(tmp_path, model, precision, message):
    out = tmp_path / "out" / "model.onnx"
    with pytest.raises(GateError, match=message):
        export_model(model, out, ExportRequest(image_size=16, precision=precision, parity_samples=32))
    assert list((tmp_path / "out").iterdir()) == []


def test_exports_parity_check_reads_a_flat_folder_as_its_wnid_folders(imagenette10, tmp_path):
    from imagenet_layouts import flat_copy

    from export import parity_inputs

    flat = flat_copy(imagenette10 / "val", tmp_path / "flat", per_class=2)
    folders = tmp_path / "folders"
    for wnid in sorted(p.name for p in (imagenette10 / "val").iterdir()):
        (folders / wnid).mkdir(parents=True)
        for photo in sorted((imagenette10 / "val" / wnid).iterdir())[:2]:
            (folders / wnid / photo.name).symlink_to(photo)
    a, _ = parity_inputs(6, 64, eval_data=flat)
    b, _ = parity_inputs(6, 64, eval_data=folders)
    assert a.shape == (6, 3, 64, 64) and (a == b).all()
