"""Training checkpoints: what a resume needs (optimizer, schedule, epoch, RNG states, config) plus the manifest.

The file format is :mod:`alexnet_deploy.core.checkpoint`'s (so ``export`` and ``verify`` read it with
``load_model``); writes are atomic and reads use ``weights_only=True``. Everything stored is a tensor or a plain
container: RNG states of Python and NumPy are converted to lists and tensors for that reason.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alexnet_deploy.core.checkpoint import CHECKPOINT_FORMAT, read_checkpoint, save_checkpoint
from alexnet_deploy.core.errors import CheckpointError
from alexnet_deploy.core.files import atomic_path
from alexnet_deploy.core.manifest import Manifest, load_manifest, save_manifest
from train.config import TrainConfig

__all__ = [
    "RESUME_KEYS",
    "copy_checkpoint",
    "get_rng_state",
    "load_resume_checkpoint",
    "save_training_checkpoint",
    "set_rng_state",
]

RESUME_KEYS = ("model", "arch", "optimizer", "scheduler", "epoch", "config", "rng", "metrics")


def get_rng_state() -> dict[str, Any]:
    """The states of torch's (CPU and CUDA), NumPy's and Python's generators, as weights_only-loadable data."""
    np_state = np.random.get_state()
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`get_rng_state` saved (CUDA states only where the same GPUs are present)."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def save_training_checkpoint(path: str | Path, checkpoint: dict[str, Any], cfg: TrainConfig, accuracy: dict) -> None:
    """Write ``checkpoint`` atomically and its manifest sidecar (``<name>.json``) beside it."""
    save_checkpoint(path, checkpoint)
    arch = checkpoint["arch"]
    pre = checkpoint["preprocessing"]
    manifest = Manifest(
        kind="checkpoint",
        model=dict(arch),
        classes=list(checkpoint["classes"]),
        input={"name": "input", "shape": [-1, 3, pre["crop"], pre["crop"]], "dtype": "float32"},
        output={"name": "logits", "shape": [-1, arch["num_classes"]], "dtype": "float32"},
        preprocessing=dict(pre),
        precision="fp32",
        accuracy=dict(accuracy),
        source={"data": cfg.data},
        extra={
            "epoch": checkpoint["epoch"],
            "class_folders": list(checkpoint.get("class_folders", [])),
            "config": cfg.to_dict(),
            "departures_from_paper": list(cfg.departures),
        },
    )
    save_manifest(path, manifest)


def copy_checkpoint(src: str | Path, dst: str | Path) -> None:
    """Copy a checkpoint and its manifest (both atomically), e.g. last.pt -> best.pt."""
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
    manifest = load_manifest(src, required=False)
    if manifest is not None:
        save_manifest(dst, manifest)


def load_resume_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint to resume from, checking that it holds everything a resume needs.

    Raises:
        CheckpointError: unreadable, corrupt, foreign, or a weights-only checkpoint without training state.
    """
    obj = read_checkpoint(path)
    if obj.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not an alexnet-deploy training checkpoint, so there is nothing to resume.")
    missing = [k for k in RESUME_KEYS if k not in obj]
    if missing:
        raise CheckpointError(f"{path} cannot be resumed: it has no {', '.join(missing)}.")
    return obj
