"""The run's record stays true after a kill -9 at the worst moment and after odd resumes.

A real training subprocess is killed (SIGKILL, through the loop's test-only kill point) between writing
``last.pt`` and copying it to ``best.pt`` at a new best; the resume must leave ``best.pt`` holding the epoch that
``summary.json`` and the console name.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from image_faults import copy_folder
from typer.testing import CliRunner

from alexnet_deploy.cli.main import app
from alexnet_deploy.core.checkpoint import read_checkpoint, save_checkpoint
from alexnet_deploy.core.manifest import load_manifest
from train.checkpointing import KILL_POINT_ENV, read_best

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner(env={"COLUMNS": "400"})  # no wrapping of the long tmp paths in messages
# 96 training photos, 40 validation photos, 1/8 width, one thread: about 2 s an epoch, bit-reproducible. With these
# settings validation top-1 rises every epoch (2.5%, 5%, 10% on the fixture), so every epoch is a new best.
SMALL = [
    "--preset", "demo", "--epochs", "3", "--batch-size", "32", "--image-size", "64",
    "--set", "width=0.125", "--set", "max_train_images=96", "--set", "max_val_images=40",
    "--set", "threads=1", "--set", "max_minutes=0",
]  # fmt: skip


def _train_killed(data: Path, out: Path, point: str) -> subprocess.CompletedProcess:
    """Run ``train`` in a child process that SIGKILLs itself at ``point`` (e.g. ``between-last-and-best@3``)."""
    env = {**os.environ, KILL_POINT_ENV: point, "PYTHONPATH": str(REPO)}
    code = "from alexnet_deploy.cli.main import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, "train", str(data), "-o", str(out), *SMALL],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def _history(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _assert_record_is_true(out: Path, console: str) -> dict:
    """best.pt, its sidecar, summary.json and the console's last line all name the same epoch and figures."""
    on_disk = read_best(out / "best.pt")
    summary = json.loads((out / "summary.json").read_text())
    assert on_disk is not None and summary["best"] == on_disk
    assert summary["checkpoint"] == str(out / "best.pt")
    record = next(r for r in _history(out) if r["epoch"] == on_disk["epoch"])
    assert (record["val_top1"], record["val_top5"]) == (on_disk["val_top1"], on_disk["val_top5"])
    assert read_checkpoint(out / "best.pt")["epoch"] == on_disk["epoch"]
    sidecar = load_manifest(out / "best.pt")
    assert sidecar.extra["epoch"] == on_disk["epoch"] and sidecar.accuracy["top1"] == on_disk["val_top1"]
    assert f"best: epoch {on_disk['epoch']}, val top-1 {on_disk['val_top1']:.2%}" in console
    assert str(out / "best.pt") in console.replace("\n", "")
    return on_disk


@pytest.mark.slow
def test_kill_between_last_and_best_at_the_final_epoch_is_repaired_by_the_resume(tmp_path, tiny20):
    out = tmp_path / "run"
    killed = _train_killed(tiny20, out, "between-last-and-best@3")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    # The lie a kill at this moment leaves: last.pt is at the new best epoch 3, best.pt still at epoch 2.
    assert read_checkpoint(out / "last.pt")["metrics"]["best"]["epoch"] == 3
    assert read_best(out / "best.pt")["epoch"] == 2
    assert json.loads((out / "summary.json").read_text())["status"] == "running"  # never "finished" after a kill

    # Rerunning the resume of a finished run trains nothing, exits 0 and repairs the record.
    resumed = runner.invoke(app, ["train", "--resume", str(out / "last.pt")])
    assert resumed.exit_code == 0, resumed.output
    assert "already holds all 3 epochs: nothing to train" in resumed.output
    assert "best.pt held epoch 2, but the run's best is epoch 3: rewrote it" in resumed.output
    best = _assert_record_is_true(out, resumed.output)
    assert best["epoch"] == 3 and [r["epoch"] for r in _history(out)] == [1, 2, 3]
    # best.pt is epoch 3's weights, not epoch 2's with a new label.
    last, fixed = read_checkpoint(out / "last.pt")["model"], read_checkpoint(out / "best.pt")["model"]
    assert all(torch.equal(last[k], fixed[k]) for k in last)


@pytest.mark.slow
def test_kill_between_last_and_best_mid_run_then_resume_keeps_a_true_record(tmp_path, tiny20):
    out = tmp_path / "run"
    killed = _train_killed(tiny20, out, "between-last-and-best@2")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert read_checkpoint(out / "last.pt")["epoch"] == 2 and read_best(out / "best.pt")["epoch"] == 1
    resumed = runner.invoke(app, ["train", "--resume", str(out / "last.pt"), "--epochs", "3"])
    assert resumed.exit_code == 0, resumed.output
    assert "best.pt held epoch 1, but the run's best is epoch 2: rewrote it" in resumed.output
    best = _assert_record_is_true(out, resumed.output)
    top1 = [r["val_top1"] for r in _history(out)]
    assert best["val_top1"] == max(top1) and best["epoch"] == 1 + top1.index(max(top1))


def _finished_run(data: Path, out: Path) -> None:
    result = runner.invoke(app, ["train", str(data), "-o", str(out), *SMALL])
    assert result.exit_code == 0, result.output


@pytest.mark.slow
def test_odd_resumes_say_what_they_do_and_never_name_a_missing_best(tmp_path, tiny20):
    run = tmp_path / "run"
    _finished_run(tiny20, run)

    # Past the asked epochs: one sentence, exit 1, and nothing written in the new folder.
    short = runner.invoke(
        app, ["train", "--resume", str(run / "last.pt"), "-o", str(tmp_path / "new"), "--epochs", "1"]
    )
    assert short.exit_code == 1
    assert short.output.strip().splitlines() == [
        f"error: {run / 'last.pt'} was saved after epoch 3, past the 1 epoch(s) this run asks for, so there is "
        "nothing to train; ask for more than 3 epochs to continue it."
    ]
    assert not (tmp_path / "new").exists()

    # Another width than the checkpoint's: the message names the first tensors that do not fit, and their shapes.
    wider = runner.invoke(app, ["train", "--resume", str(run / "last.pt"), "--epochs", "4", "--width", "0.25"])
    assert wider.exit_code == 1
    line = wider.output.strip().splitlines()[-1]
    assert line.startswith(f"error: {run / 'last.pt'} does not fit this configuration's model: features.0.weight is [")
    assert "in the checkpoint but [" in line and "Error(s) in loading" not in line

    # Into a new folder at the asked epochs: last.pt is itself the best epoch, so best.pt is written from it.
    new = tmp_path / "new"
    same = runner.invoke(app, ["train", "--resume", str(run / "last.pt"), "-o", str(new)])
    assert same.exit_code == 0, same.output
    assert "best.pt was missing, but the run's best is epoch 3: rewrote it from that epoch." in same.output
    assert _assert_record_is_true(new, same.output)["epoch"] == 3

    # A last.pt whose best is an earlier epoch: best.pt is fetched from beside it.
    state = read_checkpoint(run / "last.pt")
    history = state["metrics"]["history"]
    src = tmp_path / "src"
    save_checkpoint(src / "last.pt", {**state, "metrics": {**state["metrics"], "best": _best_record(history[1])}})
    save_checkpoint(src / "best.pt", {**state, "epoch": 2, "metrics": {**state["metrics"], "last": history[1]}})
    beside = runner.invoke(app, ["train", "--resume", str(src / "last.pt"), "-o", str(tmp_path / "beside")])
    assert beside.exit_code == 0, beside.output
    assert f"copied the best epoch 2 from {src / 'best.pt'}" in beside.output.replace("\n", "")
    assert _assert_record_is_true(tmp_path / "beside", beside.output)["epoch"] == 2

    # A lone last.pt whose best epoch (1) is nowhere: best.pt restarts, honestly, from the resumed epoch.
    lone = tmp_path / "lone"
    save_checkpoint(lone / "last.pt", {**state, "metrics": {**state["metrics"], "best": _best_record(history[0])}})
    third = runner.invoke(app, ["train", "--resume", str(lone / "last.pt"), "-o", str(tmp_path / "third")])
    assert third.exit_code == 0, third.output
    assert "the best epoch 1's weights are nowhere to be found, so best.pt now holds the resumed epoch 3" in (
        third.output.replace("\n", " ")
    )
    assert _assert_record_is_true(tmp_path / "third", third.output)["epoch"] == 3


def _best_record(record: dict) -> dict:
    return {k: record[k] for k in ("epoch", "val_top1", "val_top5", "val_loss")}


def test_a_kill_point_that_is_not_armed_does_nothing(monkeypatch):
    from train.checkpointing import kill_point

    monkeypatch.setenv(KILL_POINT_ENV, "between-last-and-best@5")
    kill_point("between-last-and-best", 4)  # another epoch: still alive
    kill_point("elsewhere", 5)
    monkeypatch.delenv(KILL_POINT_ENV)
    kill_point("between-last-and-best", 5)


def test_a_training_class_without_images_is_refused(tmp_path, tiny20):
    data = tmp_path / "data"
    copy_folder(tiny20 / "train", data / "train", classes=3, per_class=12)
    copy_folder(tiny20 / "val", data / "val", classes=3, per_class=4)
    empty = sorted(p for p in (data / "train").iterdir() if p.is_dir())[1]
    shutil.rmtree(empty)
    empty.mkdir()
    for loader in ("memory", "folder"):
        result = runner.invoke(
            app,
            ["train", str(data), "-o", str(tmp_path / "o"), "--preset", "demo", "--epochs", "1", "--batch-size", "8",
             "--image-size", "64", "--set", "width=0.125", "--set", f"loader={loader}", "--set", "workers=0"],
        )  # fmt: skip
        assert result.exit_code == 1, result.output
        lines = result.output.strip().splitlines()
        assert lines[-1] == (
            f"error: {data / 'train'} has no readable training image of 1 of its 3 classes ({empty.name}); "
            "add images there or remove the empty class folders."
        ), loader
        assert "Traceback" not in result.output
