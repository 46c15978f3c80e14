"""``alexnet-deploy train`` through Typer's CliRunner: the files it writes, and one-sentence errors."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from alexnet_deploy.cli.main import app
from alexnet_deploy.core.checkpoint import load_model

runner = CliRunner()
SMALL = [
    "--set",
    "width=0.125",
    "--set",
    "max_train_images=96",
    "--set",
    "max_val_images=40",
    "--set",
    "threads=0",
    "--set",
    "max_minutes=0",
    "--batch-size",
    "32",
    "--image-size",
    "64",
]


@pytest.mark.slow
def test_train_writes_checkpoints_metrics_curves_and_config(tmp_path, tiny20):
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", str(tiny20), "--preset", "demo", "-o", str(out), "--epochs", "2", *SMALL])
    assert result.exit_code == 0, result.output
    assert "best: epoch" in result.output and "epoch 2/2" in result.output
    for name in (
        "best.pt",
        "best.pt.json",
        "last.pt",
        "last.pt.json",
        "metrics.jsonl",
        "curves.png",
        "config.json",
        "summary.json",
    ):
        assert (out / name).is_file(), name
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert {"train_loss", "val_top1", "val_top5", "lr", "img_per_s"} <= set(records[0])
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    config = json.loads((out / "config.json").read_text())
    assert config["preset"] == "demo" and config["image_size"] == 64 and config["resize"] == 73
    loaded = load_model(out / "best.pt", expected_classes=20)
    assert loaded.preprocessing.crop == 64 and not loaded.classes[0].startswith("n0")

    # Resume for one more epoch: the recipe comes from the checkpoint, --epochs extends it.
    more = runner.invoke(app, ["train", "--resume", str(out / "last.pt"), "--epochs", "3"])
    assert more.exit_code == 0, more.output
    assert "resumed from" in more.output and len((out / "metrics.jsonl").read_text().splitlines()) == 3


def test_print_config_shows_the_resolved_layers(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("lr = 0.5\n")
    result = runner.invoke(app, ["train", "--preset", "demo", "--config", str(cfg), "--epochs", "3", "--print-config"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["lr"] == 0.5 and data["epochs"] == 3 and data["width"] == 0.25


def test_missing_data_folder_is_one_sentence(tmp_path):
    result = runner.invoke(app, ["train", str(tmp_path / "nowhere"), "-o", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert result.output.strip().startswith("error: Dataset folder not found:")
    assert len(result.output.strip().splitlines()) == 1


def test_corrupt_resume_checkpoint_is_one_sentence(tmp_path):
    bad = tmp_path / "last.pt"
    bad.write_bytes(b"\x00garbage")
    result = runner.invoke(app, ["train", "--resume", str(bad)])
    assert result.exit_code == 1
    assert "error:" in result.output and "not a readable PyTorch checkpoint" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_unknown_option_and_missing_splits(tmp_path):
    result = runner.invoke(app, ["train", "--set", "colour=red", "--print-config"])
    assert result.exit_code == 1 and "Unknown training option 'colour'" in result.output
    (tmp_path / "flat" / "cls").mkdir(parents=True)
    result = runner.invoke(app, ["train", str(tmp_path / "flat"), "-o", str(tmp_path / "o")])
    assert result.exit_code == 1 and "needs train/ and val/ subfolders" in result.output
