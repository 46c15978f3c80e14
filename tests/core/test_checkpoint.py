from __future__ import annotations

import fractions

import pytest
import torch
import torchvision

from alexnet_deploy.core.checkpoint import checkpoint_info, load_model, save_checkpoint
from alexnet_deploy.core.data import Preprocessing
from alexnet_deploy.core.errors import CheckpointError
from alexnet_deploy.core.models import alexnet_paper


def test_roundtrip_of_our_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = alexnet_paper(width=0.25, num_classes=5).eval()
    path = tmp_path / "ck.pt"
    save_checkpoint(
        path,
        {
            "model": model.state_dict(),
            "arch": {"name": "alexnet_paper", "num_classes": 5, "width": 0.25, "columns": 2},
            "classes": list("abcde"),
            "preprocessing": Preprocessing.for_crop(112).to_dict(),
        },
    )
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temporary file left behind
    loaded = load_model(path)
    assert loaded.source == "alexnet-deploy" and loaded.classes == list("abcde")
    assert loaded.preprocessing.crop == 112
    x = torch.randn(1, 3, 112, 112)
    with torch.no_grad():
        assert torch.equal(loaded.model(x), model(x))


def test_torchvision_state_dict_is_recognised_with_its_class_count(tmp_path):
    path = tmp_path / "tv.pth"
    torch.save(torchvision.models.alexnet(weights=None, num_classes=7).state_dict(), path)
    loaded = load_model(path)
    assert loaded.source == "torchvision" and loaded.arch["num_classes"] == 7 and len(loaded.classes) == 7
    with pytest.raises(CheckpointError, match="predicts 7 classes, but 1000"):
        load_model(path, expected_classes=1000)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not a readable PyTorch checkpoint"),
        (b"garbage that is not a zip", "not a readable PyTorch checkpoint"),
    ],
)
def test_corrupt_files_are_refused(tmp_path, content, message):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_model(path)


def test_truncated_foreign_and_missing(tmp_path):
    good = tmp_path / "tv.pth"
    torch.save(torchvision.models.alexnet(weights=None, num_classes=3).state_dict(), good)
    truncated = tmp_path / "trunc.pth"
    truncated.write_bytes(good.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="not a readable"):
        load_model(truncated)
    foreign = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, foreign)
    with pytest.raises(CheckpointError, match="neither an alexnet-deploy checkpoint"):
        load_model(foreign)
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "nope.pt")
    pickled = tmp_path / "obj.pt"
    torch.save({"x": fractions.Fraction(1, 3)}, pickled)  # not allowed by weights_only
    with pytest.raises(CheckpointError, match="objects other than tensors"):
        load_model(pickled)


def test_wrong_architecture_weights_are_refused(tmp_path):
    path = tmp_path / "ck.pt"
    save_checkpoint(
        path,
        {
            "model": alexnet_paper(width=0.25, num_classes=5).state_dict(),
            "arch": {"name": "alexnet_paper", "num_classes": 5, "width": 0.5, "columns": 2},
        },
    )
    with pytest.raises(CheckpointError, match="does not fit the alexnet_paper architecture"):
        load_model(path)


def test_checkpoint_info_describes_without_building_the_model(tmp_path):
    ours = tmp_path / "ck.pt"
    save_checkpoint(
        ours,
        {
            "model": alexnet_paper(width=0.25, num_classes=5).state_dict(),
            "arch": {"name": "alexnet_paper", "num_classes": 5, "width": 0.25, "columns": 2},
            "classes": list("abcde"),
            "preprocessing": Preprocessing.for_crop(112).to_dict(),
        },
    )
    info, loaded = checkpoint_info(ours), load_model(ours)
    assert (info.arch, info.classes, info.preprocessing, info.source) == (
        loaded.arch, loaded.classes, loaded.preprocessing, loaded.source,
    )  # fmt: skip
    tv = tmp_path / "tv.pth"
    torch.save(torchvision.models.alexnet(weights=None, num_classes=3).state_dict(), tv)
    assert checkpoint_info(tv).classes == ["0", "1", "2"] and checkpoint_info(tv).source == "torchvision"
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="not a readable"):
        checkpoint_info(bad)
