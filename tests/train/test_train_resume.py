"""Checkpoints: a run killed after an epoch and resumed from last.pt ends bit-identical to an uninterrupted run."""

from __future__ import annotations

import json

import pytest
import torch

from alexnet_deploy.core.checkpoint import load_model, read_checkpoint
from alexnet_deploy.core.errors import CheckpointError
from alexnet_deploy.core.manifest import load_manifest
from train.checkpointing import get_rng_state, load_resume_checkpoint, set_rng_state
from train.config import resolve_config
from train.loop import Hooks, fit


class _Killed(Exception):
    pass


class _KillAfter(Hooks):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, record: dict) -> None:
        if record["epoch"] == self.epoch:
            raise _Killed  # as if the process died right after the epoch's checkpoint was written


def _cfg(data, output, **extra):
    # The demo recipe (random-resized crops, PCA lighting, dropout, Nesterov, warm-up + cosine) at toy scale;
    # no time budget, which would make the schedule depend on the clock.
    return resolve_config(
        "demo",
        overrides={
            "data": str(data),
            "output": str(output),
            "width": 0.125,
            "image_size": 64,
            "resize": 72,
            "batch_size": 32,
            "epochs": 3,
            "max_train_images": 128,
            "max_val_images": 40,
            "max_minutes": 0,
            "time_schedule": False,
            "threads": 0,
            "warmup_epochs": 0.5,
            **extra,
        },
    )


@pytest.mark.slow
def test_resume_after_a_kill_reproduces_the_uninterrupted_run_bit_for_bit(tmp_path, tiny20):
    full = fit(_cfg(tiny20, tmp_path / "full"))
    with pytest.raises(_Killed):
        fit(_cfg(tiny20, tmp_path / "killed"), hooks=_KillAfter(2))
    assert read_checkpoint(tmp_path / "killed" / "last.pt")["epoch"] == 2
    resumed = fit(_cfg(tiny20, tmp_path / "killed"), resume=tmp_path / "killed" / "last.pt")
    a, b = full.placed.grouped_state_dict(), resumed.placed.grouped_state_dict()
    assert set(a) == set(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert [r["val_top1"] for r in resumed.history] == [r["val_top1"] for r in full.history]
    lines = (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2, 3]


def test_checkpoint_has_the_agreed_keys_and_loads_for_export(tmp_path, tiny20):
    result = fit(_cfg(tiny20, tmp_path, epochs=1, max_train_images=64))
    ckpt = load_resume_checkpoint(tmp_path / "last.pt")
    for key in ("model", "arch", "classes", "preprocessing", "config", "optimizer", "scheduler", "epoch", "rng"):
        assert key in ckpt, key
    assert ckpt["arch"] == {"name": "alexnet_paper", "num_classes": 20, "width": 0.125, "columns": 2}
    assert ckpt["classes"][0] != ckpt["class_folders"][0]  # human-readable names, not wnids
    loaded = load_model(tmp_path / "best.pt")
    assert loaded.preprocessing.crop == 64 and loaded.preprocessing.resize == 72 and len(loaded.classes) == 20
    x = torch.randn(2, 3, 64, 64)
    result.placed.module.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), result.placed.module(x))
    manifest = load_manifest(tmp_path / "best.pt")
    assert manifest.kind == "checkpoint" and manifest.accuracy["split"] == "val"
    assert manifest.preprocessing["crop"] == 64 and manifest.extra["departures_from_paper"]


def test_rng_states_round_trip():
    state = get_rng_state()
    first = (torch.rand(3), __import__("numpy").random.rand(2).tolist(), __import__("random").random())
    set_rng_state(state)
    again = (torch.rand(3), __import__("numpy").random.rand(2).tolist(), __import__("random").random())
    assert torch.equal(first[0], again[0]) and first[1:] == again[1:]


def test_corrupt_and_weights_only_checkpoints_cannot_be_resumed(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_resume_checkpoint(bad)
    plain = tmp_path / "plain.pt"
    torch.save({"format": "alexnet-deploy-checkpoint", "model": {}, "arch": {"name": "alexnet_paper"}}, plain)
    with pytest.raises(CheckpointError, match="cannot be resumed: it has no optimizer"):
        load_resume_checkpoint(plain)
