"""Training checkpoints: what a resume needs (optimizer, schedule, epoch, RNG states, config) plus the manifest.

The file format is :mod:`alexnet_deploy.core.checkpoint`'s (so ``export`` and ``verify`` read it with
``load_model``); writes are atomic and reads use ``weights_only=True``. Everything stored is a tensor or a plain
container: RNG states of Python and NumPy are converted to lists and tensors for that reason.

At a new best epoch the loop writes ``last.pt`` and then copies it to ``best.pt``: two writes, each atomic, but not
atomic together. ``last.pt`` records (``metrics["best"]["epoch"]``) which epoch ``best.pt`` must hold, so a run
killed between the writes is repaired on resume by :func:`restore_best`; and what a run reports as its best is
read back from ``best.pt`` itself by :func:`read_best`, never from memory.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import signal
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alexnet_deploy.core.checkpoint import CHECKPOINT_FORMAT, read_checkpoint, save_checkpoint
from alexnet_deploy.core.errors import CheckpointError
from alexnet_deploy.core.files import atomic_path
from alexnet_deploy.core.manifest import Manifest, load_manifest, save_manifest
from train.config import TrainConfig

log = logging.getLogger(__name__)

__all__ = [
    "KILL_POINT_ENV",
    "RESUME_KEYS",
    "copy_checkpoint",
    "get_rng_state",
    "kill_point",
    "load_resume_checkpoint",
    "read_best",
    "restore_best",
    "save_training_checkpoint",
    "set_rng_state",
]

RESUME_KEYS = ("model", "arch", "optimizer", "scheduler", "epoch", "config", "rng", "metrics")
#: Tests only: ``"<point>@<epoch>"`` (or ``"<point>"``) makes :func:`kill_point` SIGKILL this process there.
KILL_POINT_ENV = "ALEXNET_DEPLOY_TEST_KILL_AT"
_BEST_KEYS = ("epoch", "val_top1", "val_top5", "val_loss")


def kill_point(name: str, epoch: int) -> None:
    """A fault-injection point for tests: die at once (SIGKILL, no cleanup) when :data:`KILL_POINT_ENV` names it.

    The training loop calls it between the writes of one epoch, so a test can kill a real training process at
    the exact moment a crash would leave the run's files inconsistent. Unset (always, outside tests), it does
    nothing.
    """
    spec = os.environ.get(KILL_POINT_ENV)
    if spec and spec in (name, f"{name}@{epoch}"):
        os.kill(os.getpid(), signal.SIGKILL)


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
    save_manifest(path, _manifest(checkpoint, cfg, accuracy))


def epoch_accuracy(record: dict[str, Any], images: int | None = None) -> dict[str, Any]:
    """The manifest's ``accuracy`` of one epoch's metrics record (centre-crop validation)."""
    accuracy = {"top1": record["val_top1"], "top5": record["val_top5"], "split": "val"}
    if images is not None:
        accuracy["images"] = int(images)
    return accuracy | {"method": "centre crop", "epoch": record["epoch"]}


def _manifest(checkpoint: dict[str, Any], cfg: TrainConfig, accuracy: dict) -> Manifest:
    arch = checkpoint["arch"]
    pre = checkpoint["preprocessing"]
    return Manifest(
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


def _read_quietly(path: Path) -> dict[str, Any] | None:
    """A checkpoint's contents (tensors memory-mapped), or None when it is absent or unreadable."""
    if not path.is_file():
        return None
    try:
        return read_checkpoint(path, mmap=zipfile.is_zipfile(path))
    except CheckpointError as exc:
        log.warning("%s", exc)
        return None


def _best_of(obj: dict[str, Any] | None) -> dict[str, Any] | None:
    """The epoch a training checkpoint holds and its validation figures, from the checkpoint itself."""
    if not obj or not isinstance(obj.get("epoch"), int):
        return None
    last = (obj.get("metrics") or {}).get("last") or {}
    if last.get("epoch") != obj["epoch"] or any(k not in last for k in _BEST_KEYS):
        return None
    return {k: last[k] for k in _BEST_KEYS}


def read_best(path: str | Path) -> dict[str, Any] | None:
    """What ``best.pt`` really holds: ``{"epoch", "val_top1", "val_top5", "val_loss"}`` read from the file (not
    from its sidecar, which a kill can leave one write behind), or None when there is no readable ``best.pt``."""
    return _best_of(_read_quietly(Path(path)))


def restore_best(
    out: str | Path, state: dict[str, Any], cfg: TrainConfig, source: str | Path | None = None
) -> tuple[dict[str, Any], str | None]:
    """Before resuming ``state``, make ``out/best.pt`` hold the epoch that ``state`` names as the best.

    A run killed after writing ``last.pt`` at a new best but before copying it to ``best.pt`` leaves ``best.pt``
    an epoch behind; a resume into another folder (``-o NEWDIR``) finds no ``best.pt`` at all. The best epoch's
    weights are looked for in the resumed checkpoint itself (the kill case: it *is* the best epoch) and in the
    ``best.pt`` beside it. When they are nowhere, the resumed epoch becomes the best, honestly: ``best.pt`` and
    the returned best are both that epoch.

    Args:
        out: the run folder being resumed into.
        state: the resumed checkpoint's contents.
        cfg: the run's configuration (for a sidecar that has to be rewritten).
        source: the file ``state`` was read from, if known.

    Returns:
        (best, message): the best record to carry on with, and a sentence saying what was repaired (or None).
    """
    target = Path(out) / "best.pt"
    wanted = (state.get("metrics") or {}).get("best") or {}
    have = _read_quietly(target)
    have_best = _best_of(have)
    if have_best is not None and have_best["epoch"] == wanted.get("epoch"):
        _repair_sidecar(target, have, cfg)
        return have_best, None
    held = f"held epoch {have_best['epoch']}" if have_best else "was missing"
    resumed = _best_of(state)
    if resumed is not None and resumed["epoch"] == wanted.get("epoch"):
        # The kill case: the resumed checkpoint is the best epoch's own state.
        _write_from_state(target, state, cfg, source)
        return resumed, f"best.pt {held}, but the run's best is epoch {resumed['epoch']}: rewrote it from that epoch."
    if source is not None:
        beside = Path(source).parent / "best.pt"
        if beside.resolve() != target.resolve():
            found = _best_of(_read_quietly(beside))
            if found is not None and found["epoch"] == wanted.get("epoch"):
                copy_checkpoint(beside, target)
                _repair_sidecar(target, _read_quietly(target), cfg)
                return found, f"best.pt {held} in {out}: copied the best epoch {found['epoch']} from {beside}."
    if resumed is None:
        raise CheckpointError("The resumed checkpoint records no validation figures of its own epoch.")
    _write_from_state(target, state, cfg, source)
    return resumed, (
        f"best.pt {held} and the best epoch {wanted.get('epoch', '?')}'s weights are nowhere to be found, so best.pt "
        f"now holds the resumed epoch {resumed['epoch']} and the best is counted from there."
    )


def _write_from_state(target: Path, state: dict[str, Any], cfg: TrainConfig, source: str | Path | None) -> None:
    """Write ``state`` as ``target``: a copy of ``source`` when it still holds that epoch (cheap), else re-saved."""
    if source is not None and _best_of(_read_quietly(Path(source))) == _best_of(state):
        copy_checkpoint(source, target)
        _repair_sidecar(target, _read_quietly(target), cfg)
    else:
        save_training_checkpoint(target, state, cfg, epoch_accuracy(state["metrics"]["last"]))


def _repair_sidecar(path: Path, obj: dict[str, Any] | None, cfg: TrainConfig) -> None:
    """Rewrite a checkpoint's sidecar when it describes another epoch than the file (a kill between the two)."""
    if obj is None:
        return
    manifest = load_manifest(path, required=False)
    if manifest is not None and manifest.extra.get("epoch") == obj["epoch"]:
        return
    save_manifest(path, _manifest(obj, cfg, epoch_accuracy(obj["metrics"]["last"])))
