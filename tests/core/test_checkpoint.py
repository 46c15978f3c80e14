from __future__ import annotations

import fractions
import os

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


class _RunsAShellCommand:
    """A pickle payload: unpickling it with plain pickle calls ``os.system(command)``."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        import os

        return (os.system, (self.command,))


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_a_malicious_pickle_is_named_as_code_and_never_executed(tmp_path, zip_format):
    marker = tmp_path / "executed"
    path = tmp_path / "evil.pt"
    torch.save({"model": _RunsAShellCommand(f"touch {marker}")}, path, _use_new_zipfile_serialization=zip_format)
    for read in (load_model, checkpoint_info):
        with pytest.raises(CheckpointError) as info:
            read(path)
        message = str(info.value)
        assert "holds code or objects other than tensors" in message and f"{os.system.__module__}.system" in message
        assert "was not loaded" in message and "corrupt" not in message
    assert not marker.exists(), "the pickle's os.system call ran"
    # The payload is live: an unsafe load runs it (a harmless touch), so the assertion above can fail.
    live = tmp_path / "live.pt"
    torch.save({"model": _RunsAShellCommand(f"touch {tmp_path / 'ran'}")}, live)
    torch.load(live, weights_only=False)
    assert (tmp_path / "ran").exists()


def test_the_cli_reports_a_malicious_checkpoint_in_one_sentence(tmp_path):
    from typer.testing import CliRunner

    from alexnet_deploy.cli.main import app

    marker = tmp_path / "executed"
    path = tmp_path / "evil.pt"
    torch.save({"model": _RunsAShellCommand(f"touch {marker}")}, path)
    result = CliRunner().invoke(app, ["predict", str(path), str(tmp_path / "x.jpg")])
    assert result.exit_code == 1 and not marker.exists()
    assert result.stderr.strip().splitlines() == [
        f"error: {path} holds code or objects other than tensors ({os.system.__module__}.system), so it was not loaded "
        "(checkpoints are read with weights_only=True, which runs nothing)."
    ]


def test_a_state_dict_mismatch_names_the_tensors_and_shapes(tmp_path):
    path = tmp_path / "ck.pt"
    state = alexnet_paper(width=0.25, num_classes=5).state_dict()
    state["extra.weight"] = state.pop("features.0.weight")
    state["classifier.4.weight"], state["classifier.4.bias"] = torch.zeros(3, 3), torch.zeros(3)  # wrong shapes
    save_checkpoint(
        path, {"model": state, "arch": {"name": "alexnet_paper", "num_classes": 5, "width": 0.25, "columns": 2}}
    )
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    message = str(info.value)
    assert "Error(s) in loading" not in message and "\n" not in message
    assert "features.0.weight is missing from the checkpoint" in message
    assert "extra.weight is not in the model" in message
    assert "(and 2 more mismatches)" in message  # classifier.4 weight and bias: [3, ...] vs the model's
    assert message.endswith(".") and message.count(". ") == 0


def test_describe_state_dict_error_gives_shapes():
    from alexnet_deploy.core.checkpoint import describe_state_dict_error

    model = alexnet_paper(width=0.25, num_classes=5)
    wrong = alexnet_paper(width=0.25, num_classes=3).state_dict()
    with pytest.raises(RuntimeError) as info:
        model.load_state_dict(wrong)
    text = describe_state_dict_error(info.value, limit=1)
    weight = wrong["classifier.6.weight"].shape[1]
    assert text == (
        f"classifier.6.weight is [3, {weight}] in the checkpoint but [5, {weight}] in the model (and 1 more mismatch)"
    )


def test_a_folder_given_as_a_checkpoint_says_it_is_a_folder(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(CheckpointError, match=r"is a folder, not a checkpoint: pass a \.pt file or a \.pth"):
        load_model(run)
    save_checkpoint(run / "best.pt", {"model": {}, "arch": {}})
    (run / "last.pt").write_bytes(b"x")
    with pytest.raises(CheckpointError) as info:
        checkpoint_info(run)
    expected = f"{run} is a folder, not a checkpoint: pass one of the files inside it (best.pt, last.pt)."
    assert str(info.value) == expected


def test_a_1000_class_torchvision_state_dict_carries_imagenet_wnids(tmp_path):
    from alexnet_deploy.core.imagenet import imagenet1k

    path = tmp_path / "tv1000.pth"
    torch.save(torchvision.models.alexnet(weights=None, num_classes=1000).state_dict(), path)
    info = checkpoint_info(path)
    assert info.source == "torchvision" and info.classes == list(imagenet1k().ids)
    assert info.classes[:2] == ["n01440764", "n01443537"]


def test_torchscript_and_pickled_modules_say_what_they_are_and_what_to_bring(tmp_path, recwarn):
    from typer.testing import CliRunner

    from alexnet_deploy.cli.main import app

    net = torch.nn.Sequential(torch.nn.Linear(2, 2))
    scripted = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(net), scripted)
    pickled = tmp_path / "whole.pt"
    torch.save(torchvision.models.alexnet(weights=None, num_classes=3), pickled)
    recwarn.clear()
    for path, expected in [
        (scripted, f"error: {scripted} is a TorchScript archive (torch.jit.save), a compiled program rather than "
                   "weights, so it was not loaded; pass the model's state dict (torch.save(model.state_dict(), "
                   "'alexnet.pth')), or export the model to ONNX yourself and bring it in with 'alexnet-deploy "
                   "describe MODEL.onnx'."),
        (pickled, f"error: {pickled} is a whole pickled model (torchvision.models.alexnet.AlexNet, written by "
                  "torch.save(model)), which runs code when loaded, so it was not loaded; save its weights instead "
                  "with torch.save(model.state_dict(), 'alexnet.pth') and pass that file."),
    ]:  # fmt: skip
        result = CliRunner().invoke(app, ["export", str(path), "-o", str(tmp_path / "m.onnx")])
        assert result.exit_code == 1 and result.stderr.strip().splitlines() == [expected]
    assert not [w for w in recwarn if "TorchScript" in str(w.message)]  # torch's own warning is not shown
    assert not (tmp_path / "m.onnx").exists()
