from __future__ import annotations

import json
import os
import stat
import urllib.error

import pytest
import torch
from typer.testing import CliRunner

from alexnet_deploy.cli.main import app
from alexnet_deploy.core.checkpoint import save_checkpoint
from alexnet_deploy.core.models import alexnet_paper

runner = CliRunner()


def _one_sentence_error(result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    err = result.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in err, err


def test_export_writes_onnx_and_sidecar_and_reports_lrn(paper_checkpoint, tmp_path):
    out = tmp_path / "m.onnx"
    result = runner.invoke(app, ["export", str(paper_checkpoint), "-o", str(out), "--parity-samples", "8"])
    assert result.exit_code == 0, result.output
    assert "2 LRN" in result.stdout and "Conv groups [1, 2, 1, 2, 2]" in result.stdout
    assert "max relative error" in result.stdout
    assert "rewrite rules" not in result.output and "constant folding" not in result.output  # exporter chatter
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.onnx.json"]
    umask = os.umask(0)
    os.umask(umask)
    for path in tmp_path.iterdir():  # shareable, not mkstemp's owner-only 0600
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_export_json_fp16(paper_checkpoint, tmp_path):
    out = tmp_path / "m16.onnx"
    args = ["export", str(paper_checkpoint), "-o", str(out), "--precision", "fp16", "--parity-samples", "8", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["precision"] == "fp16" and data["path"] == str(out) and data["input"]["name"] == "images"
    assert data["accuracy"]["parity"]["top1_agreement"] >= 0.99


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory, paper_checkpoint):
    d = tmp_path_factory.mktemp("bad")
    (d / "truncated.pt").write_bytes(paper_checkpoint.read_bytes()[:4000])
    (d / "notes.pt").write_text("not a checkpoint\n")
    torch.save({"conv1.weight": torch.zeros(2, 3, 7, 7), "fc.weight": torch.zeros(4, 2)}, d / "resnet.pth")
    wrong = alexnet_paper(width=0.25, num_classes=10).state_dict()
    save_checkpoint(d / "mislabelled.pt", {"model": wrong, "arch": {"name": "alexnet", "num_classes": 10}})
    (d / "a_file").write_text("")
    return d


@pytest.mark.parametrize(
    ("checkpoint", "extra", "fragments"),
    [
        ("missing.pt", [], ["Checkpoint not found"]),
        ("truncated.pt", [], ["truncated.pt is not a readable PyTorch checkpoint"]),
        ("notes.pt", [], ["notes.pt is not a readable PyTorch checkpoint"]),
        ("resnet.pth", [], ["neither an alexnet-deploy checkpoint nor a torchvision AlexNet"]),
        ("mislabelled.pt", [], ["does not fit the alexnet architecture"]),
        ("PAPER", ["--model", "alexnet"], ["holds the alexnet_paper model, but alexnet was expected"]),
        ("PAPER", ["--num-classes", "1000"], ["predicts 10 classes, but 1000 were expected"]),
        ("PAPER", ["--image-size", "40"], ["cannot take 40 px inputs"]),
        ("PAPER", ["--opset", "12"], ["Opset 12 is too old"]),
    ],
)
def test_bad_checkpoints_are_one_sentence_and_write_nothing(
    bad_inputs, paper_checkpoint, tmp_path, checkpoint, extra, fragments
):
    path = paper_checkpoint if checkpoint == "PAPER" else bad_inputs / checkpoint
    out = tmp_path / "out" / "m.onnx"
    result = runner.invoke(app, ["export", str(path), "-o", str(out), *extra])
    _one_sentence_error(result, *fragments)
    assert not out.exists() and not out.with_name("m.onnx.json").exists()
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_unwritable_output_paths(bad_inputs, paper_checkpoint, tmp_path):
    under_a_file = bad_inputs / "a_file" / "m.onnx"
    _one_sentence_error(runner.invoke(app, ["export", str(paper_checkpoint), "-o", str(under_a_file)]), "Cannot write")
    _one_sentence_error(runner.invoke(app, ["export", str(paper_checkpoint), "-o", str(tmp_path)]), "is a folder")
    assert list(tmp_path.iterdir()) == []


def test_checkpoint_or_weights_exactly_one(paper_checkpoint, tmp_path):
    out = str(tmp_path / "m.onnx")
    _one_sentence_error(runner.invoke(app, ["export", "-o", out]), "either a CHECKPOINT")
    both = ["export", str(paper_checkpoint), "-o", out, "--weights", "IMAGENET1K_V1"]
    _one_sentence_error(runner.invoke(app, both), "either a CHECKPOINT")


def test_weights_without_network_is_one_sentence(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))

    def offline(*_args, **_kwargs):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    out = tmp_path / "m.onnx"
    result = runner.invoke(app, ["export", "--weights", "IMAGENET1K_V1", "-o", str(out)])
    _one_sentence_error(result, "Cannot download torchvision's AlexNet IMAGENET1K_V1 weights", "network access")
    assert not out.exists()
    _one_sentence_error(
        runner.invoke(app, ["export", "--weights", "IMAGENET9K", "-o", str(out)]), "no AlexNet weights named"
    )
