"""``fit(cfg)``: a whole training run, from data to ``best.pt``, ``last.pt``, ``metrics.jsonl`` and curves.

Every random choice of an epoch is derived from (seed, epoch, rank), and the model, optimizer and schedule
state are checkpointed after every epoch, so a run killed after epoch k and resumed from ``last.pt`` reproduces
the uninterrupted run bit for bit on the CPU.

Files written into ``cfg.output`` (by rank 0):

* ``last.pt`` / ``best.pt`` (highest val top-1) with their manifests ``last.pt.json`` / ``best.pt.json``;
* ``config.json``: the resolved configuration; ``metrics.jsonl``: one line per epoch; ``curves.png``;
* ``summary.json``: best epoch and accuracy (and the 10-crop test of ``best.pt`` when asked), wall time, and
  ``status``: ``running`` from the start of a run (so a folder never shows a previous run's summary as this
  one's), ``interrupted`` after Ctrl-C, SIGTERM or an error, ``finished`` at the end. A run killed with
  ``kill -9`` leaves ``running`` with its dead ``pid``.

The run holds the folder's output lock (:func:`~alexnet_deploy.core.files.output_lock`, rank 0): a second
``train`` into the same folder fails at once with a sentence instead of mixing two runs' files.

The best epoch reported (``summary.json``, :attr:`FitResult.best`, the CLI's last line) is read back from
``best.pt`` itself, and a resume first repairs a ``best.pt`` that a kill left behind
(:func:`~train.checkpointing.restore_best`), so the record is true after a kill at any moment. Resuming a
checkpoint already past ``epochs`` is refused; one exactly at ``epochs`` trains nothing and only brings the
folder's files up to date (so rerunning a finished resume command is harmless). Resuming with more ``epochs``
than the checkpoint's run had extends its schedule, as the user evidently means: warm-up + cosine is re-planned
over the new length (:class:`~train.schedule.WarmupCosineSchedule`, said in a message), the plateau schedule goes
on from its last learning rate; a ``max_minutes`` budget still counts the time already spent.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from alexnet_deploy.core.checkpoint import describe_state_dict_error
from alexnet_deploy.core.errors import CheckpointError, ConfigError, DataError
from alexnet_deploy.core.files import output_lock, refuse_symlink, write_bytes_atomic, write_json_atomic
from alexnet_deploy.core.limits import check_batch_memory
from alexnet_deploy.core.manifest import load_manifest, save_manifest
from train.checkpointing import (
    copy_checkpoint,
    epoch_accuracy,
    get_rng_state,
    kill_point,
    load_resume_checkpoint,
    read_best,
    restore_best,
    save_training_checkpoint,
    set_rng_state,
)
from train.columns import TwoColumnAlexNet
from train.config import TrainConfig
from train.data import epoch_seed
from train.distributed import DistContext, barrier, init_distributed, shutdown
from train.engine import (
    Budget,
    Data,
    PlacedModel,
    StepInfo,
    build_dataloaders,
    build_model,
    build_optimizer,
    evaluate,
    place_model,
    train_one_epoch,
)
from train.plot import plot_curves
from train.schedule import build_schedule

log = logging.getLogger(__name__)

__all__ = ["RUN_FILES", "FitResult", "Hooks", "fit"]

#: Every file a run writes into its folder.
RUN_FILES = ("config.json", "summary.json", "metrics.jsonl", "curves.png", "last.pt", "last.pt.json", "best.pt",
             "best.pt.json")  # fmt: skip


class Hooks:
    """Callbacks a front end (the CLI's progress bars) implements; every method is optional."""

    def on_message(self, text: str) -> None:
        log.info("%s", text)  # without a front end, messages (a repaired best.pt, a spent budget) are logged

    def on_load_progress(self, split: str, done: int, total: int) -> None: ...

    def on_epoch_start(self, epoch: int, epochs: int, steps: int) -> None: ...

    def on_step(self, info: StepInfo) -> None: ...

    def on_epoch_end(self, record: dict[str, Any]) -> None: ...


@dataclass
class FitResult:
    """What a run produced."""

    config: TrainConfig
    output: Path
    history: list[dict[str, Any]]
    best: dict[str, Any]  # what best.pt holds, read back from it ({} when there is none)
    wall_seconds: float
    ten_crop: dict[str, float] | None = None
    placed: PlacedModel | None = field(default=None, repr=False)
    best_checkpoint: Path | None = None  # best.pt, when it exists
    epochs_trained: int = 0  # by this call (a resume counts only its own)

    def summary(self) -> dict[str, Any]:
        """What ``train --json`` prints."""
        return {
            "output": str(self.output),
            "best": self.best,
            "checkpoint": str(self.best_checkpoint) if self.best_checkpoint else None,
            "ten_crop": self.ten_crop,
            "epochs_run": len(self.history),
            "epochs_trained_now": self.epochs_trained,
            "wall_seconds": round(self.wall_seconds, 1),
        }


def _checkpoint(
    placed: PlacedModel, optimizer, schedule, cfg: TrainConfig, data: Data, epoch: int, metrics: dict
) -> dict[str, Any]:
    return {
        "model": placed.grouped_state_dict(),
        "arch": {"name": cfg.model, "num_classes": len(data.classes), "width": cfg.width, "columns": cfg.columns},
        "classes": list(data.names),
        "class_folders": list(data.classes),
        "preprocessing": cfg.preprocessing.to_dict(),
        "config": cfg.to_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": schedule.state_dict(),
        "epoch": epoch,
        "rng": get_rng_state(),
        "metrics": metrics,
        # Which layout the optimizer state belongs to: resuming needs the same --devices layout.
        "layout": "two-column" if isinstance(placed.core, TwoColumnAlexNet) else "single",
    }


def _write_run_files(out: Path, history: list[dict], cfg: TrainConfig) -> None:
    write_bytes_atomic(out / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history).encode())
    plot_curves(history, out / "curves.png", title=f"{cfg.model} width {cfg.width:g}, {cfg.preset} preset")


def fit(
    cfg: TrainConfig,
    *,
    resume: str | Path | dict[str, Any] | None = None,
    resume_path: str | Path | None = None,
    hooks: Hooks | None = None,
) -> FitResult:
    """Train ``cfg`` (from scratch, or from ``resume``'s state) and write the run's files.

    Args:
        cfg: the resolved configuration.
        resume: a ``last.pt`` (or ``best.pt``) to continue from, or its contents as read by
            :func:`~train.checkpointing.load_resume_checkpoint`; training restarts at its epoch + 1.
        resume_path: the file ``resume`` (a dict) was read from: its ``best.pt`` is looked for beside it.
        hooks: progress callbacks.

    Raises:
        ConfigError: the resumed checkpoint is already past ``cfg.epochs``.
        AlexNetDeployError: bad data, configuration or checkpoint (one-sentence messages).
    """
    wall_start = time.monotonic()
    hooks = hooks or Hooks()
    ctx = init_distributed(cfg.device_list)
    try:
        with output_lock(cfg.output, folder=True) if ctx.is_main else contextlib.nullcontext():
            return _fit(cfg, ctx, resume, resume_path, hooks, wall_start)
    finally:
        shutdown(ctx)


@dataclass
class _Run:
    """The state one run carries from its start (or resume) through its epochs to its finish."""

    cfg: TrainConfig
    ctx: DistContext
    hooks: Hooks
    data: Data
    placed: PlacedModel
    optimizer: Any
    schedule: Any
    out: Path
    wall_start: float
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=dict)
    start_epoch: int = 1
    elapsed_before: float = 0.0
    budget: Budget | None = None
    stopped: bool = False
    best_on_disk: dict[str, Any] = field(default_factory=dict)  # what this run has put in best.pt
    summary_written: bool = False  # summary.json is this run's (so an interruption may say so there)

    def elapsed(self) -> float:
        return self.elapsed_before + time.monotonic() - self.wall_start


def _fit(cfg: TrainConfig, ctx: DistContext, resume, resume_path, hooks: Hooks, wall_start: float) -> FitResult:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if isinstance(resume, dict):
        state, resume = resume, resume_path or "the checkpoint"
    else:
        state = load_resume_checkpoint(resume) if resume else None
        resume_path = resume
    if state is not None and int(state["epoch"]) > cfg.epochs:
        raise ConfigError(
            f"{resume} was saved after epoch {state['epoch']}, past the {cfg.epochs} epoch(s) this run asks for, "
            f"so there is nothing to train; ask for more than {state['epoch']} epochs to continue it."
        )
    run = _start(cfg, ctx, hooks, state, resume, resume_path, wall_start)
    try:
        if ctx.is_main:
            _open_folder(run, state, resume_path)
        for epoch in range(run.start_epoch, cfg.epochs + 1):
            if _epoch(run, epoch):
                run.stopped = epoch < cfg.epochs
                break
        return _finish(run)
    except BaseException:  # Ctrl-C, SIGTERM, an error: the summary must not call this run finished
        if ctx.is_main and run.summary_written:
            with contextlib.suppress(Exception):
                write_json_atomic(run.out / "summary.json", _progress_summary(run, "interrupted"))
        raise


def _open_folder(run: _Run, state: dict[str, Any] | None, resume_path) -> None:
    """Make the run folder this run's: ``summary.json`` says it is running (before anything else is replaced), the
    configuration, and on a resume a ``best.pt`` repaired to the epoch the checkpoint names."""
    for name in RUN_FILES:  # refused before anything is written, not after an epoch of training
        refuse_symlink(run.out / name, "file")
    write_json_atomic(run.out / "summary.json", _progress_summary(run, "running"))
    run.summary_written = True
    write_json_atomic(run.out / "config.json", run.cfg.to_dict())
    if state is not None:
        run.best, repaired = restore_best(run.out, state, run.cfg, resume_path)
        run.best_on_disk = dict(run.best)
        if repaired:
            run.hooks.on_message(repaired)


def _progress_summary(run: _Run, status: str) -> dict[str, Any]:
    """``summary.json`` of a run that has not finished: what it has written so far, and who is writing."""
    best_file = run.out / "best.pt"
    return {
        "status": status, "pid": os.getpid(), "best": run.best_on_disk,
        "last": run.history[-1] if run.history else None, "epochs_run": len(run.history),
        "epochs_trained_now": len(run.history) - (run.start_epoch - 1), "wall_seconds": run.elapsed(),
        "checkpoint": str(best_file) if run.best_on_disk else None,
    }  # fmt: skip


def _start(cfg, ctx, hooks, state, resume, resume_path, wall_start) -> _Run:
    """Data, model, optimizer and schedule; with ``state``, everything a checkpoint restores."""
    load_start = time.monotonic()
    per_rank = max(1, cfg.batch_size // max(1, ctx.world_size))
    check_batch_memory(per_rank, (3, cfg.image_size, cfg.image_size), "A batch_size of", training=True)
    data = build_dataloaders(cfg, ctx, on_progress=hooks.on_load_progress)
    skipped = f", {len(data.skipped)} unreadable image(s) skipped" if data.skipped else ""
    hooks.on_message(
        f"data: {len(data.classes)} classes, {len(data.train)} training steps of {cfg.batch_size} per epoch "
        f"(loaded in {time.monotonic() - load_start:.0f} s{skipped})"
    )
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    model = build_model(cfg, len(data.classes))
    if state is not None:
        if state.get("class_folders", data.classes) != data.classes:
            raise DataError(f"{cfg.data} holds other classes than the checkpoint {resume} was trained on.")
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as exc:
            detail = describe_state_dict_error(exc)
            raise CheckpointError(f"{resume} does not fit this configuration's model: {detail}.") from None
    placed = place_model(model, cfg, ctx)
    optimizer = build_optimizer(cfg, placed.module)
    run = _Run(cfg, ctx, hooks, data, placed, optimizer, build_schedule(cfg, optimizer, len(data.train)),
               Path(cfg.output), wall_start)  # fmt: skip
    if state is not None:
        _restore(run, state, resume)
    if cfg.max_minutes:
        run.budget = Budget(cfg.max_minutes * 60, start=wall_start - run.elapsed_before, reserve=30.0)
    return run


def _restore(run: _Run, state: dict[str, Any], resume) -> None:
    """Optimizer, schedule, RNG, history and best of a checkpoint, after checking its layout."""
    layout = "two-column" if len(run.ctx.devices) == 2 else "single"
    if state.get("layout", "single") != layout:
        raise CheckpointError(f"{resume} was trained {state.get('layout')}; resume it with the same --devices.")
    run.optimizer.load_state_dict(state["optimizer"])
    run.schedule.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    metrics = state["metrics"]
    run.history, run.best = list(metrics.get("history", [])), dict(metrics.get("best", {}))
    run.start_epoch, run.elapsed_before = int(state["epoch"]) + 1, float(metrics.get("elapsed_seconds", 0.0))
    run.hooks.on_message(f"resumed from {resume} after epoch {state['epoch']}")
    if (planned := getattr(run.schedule, "replanned_from", None)) is not None:
        run.hooks.on_message(
            f"the warm-up + cosine schedule of {resume} was planned for {planned} steps; it is re-planned over this "
            f"run's {run.schedule.total_steps} ({run.cfg.epochs} epochs), as if planned for them from the start: "
            f"lr {run.schedule.lr:.4g} now, not the finished schedule's final lr"
        )
    if run.start_epoch > run.cfg.epochs:
        run.hooks.on_message(f"{resume} already holds all {run.cfg.epochs} epochs: nothing to train")


def _epoch(run: _Run, epoch: int) -> bool:
    """Train and evaluate one epoch, checkpoint it (rank 0); return whether the run stops here."""
    cfg, ctx, budget = run.cfg, run.ctx, run.budget
    torch.manual_seed(epoch_seed(cfg.seed, epoch, ctx.rank))  # dropout and any other draw this epoch
    run.hooks.on_epoch_start(epoch, cfg.epochs, len(run.data.train))
    tr = train_one_epoch(
        run.placed, run.data.train, run.optimizer, run.schedule, epoch=epoch, ctx=ctx,
        label_smoothing=cfg.label_smoothing, budget=budget, time_schedule=cfg.time_schedule,
        log_every=cfg.log_every, on_step=run.hooks.on_step,
    )  # fmt: skip
    ev = evaluate(run.placed, run.data.val, ctx)
    if budget is not None:  # keep time for a last evaluation and the checkpoint writes
        budget.reserve = 3 * ev["seconds"] + 15.0 + (12 * ev["seconds"] if cfg.ten_crop else 0.0)
    lr_used = run.schedule.lr
    run.schedule.step_epoch(1.0 - ev["top1"])
    record = {
        "epoch": epoch, "train_loss": tr["loss"], "train_top1": tr["top1"], "train_top5": tr["top5"],
        "val_loss": ev["loss"], "val_top1": ev["top1"], "val_top5": ev["top5"], "lr": lr_used,
        "img_per_s": tr["img_per_s"], "train_seconds": tr["seconds"], "eval_seconds": ev["seconds"],
        "elapsed_seconds": run.elapsed(), "partial_epoch": bool(tr["stopped"]),
    }  # fmt: skip
    run.history.append(record)
    is_best = not run.best or ev["top1"] > run.best["val_top1"]
    if is_best:
        run.best = {"epoch": epoch, "val_top1": ev["top1"], "val_top5": ev["top5"], "val_loss": ev["loss"]}
    if ctx.is_main:
        metrics = {"history": run.history, "best": run.best, "elapsed_seconds": record["elapsed_seconds"],
                   "last": record}  # fmt: skip
        ckpt = _checkpoint(run.placed, run.optimizer, run.schedule, cfg, run.data, epoch, metrics)
        save_training_checkpoint(run.out / "last.pt", ckpt, cfg, epoch_accuracy(record, ev["images"]))
        if is_best:
            kill_point("between-last-and-best", epoch)  # tests: a crash here is repaired by restore_best
            copy_checkpoint(run.out / "last.pt", run.out / "best.pt")
            run.best_on_disk = dict(run.best)
        _write_run_files(run.out, run.history, cfg)
    barrier(ctx)
    run.hooks.on_epoch_end(record)
    finished = getattr(run.schedule, "finished", False) and cfg.time_schedule
    return bool(tr["stopped"] or (budget is not None and budget.fraction() >= 1.0) or finished)


def _finish(run: _Run) -> FitResult:
    """The 10-crop test, ``summary.json`` and the result, all naming what ``best.pt`` really holds."""
    cfg, ctx, out, history = run.cfg, run.ctx, run.out, run.history
    if run.stopped:
        run.hooks.on_message(
            f"stopped after epoch {history[-1]['epoch']}: the {cfg.max_minutes:g}-minute budget is spent"
        )
    if ctx.is_main and run.start_epoch > cfg.epochs and history:
        _write_run_files(out, history, cfg)  # a resume into another folder that trained nothing still gets them
    barrier(ctx)
    best_file = out / "best.pt"
    on_disk = read_best(best_file)  # the record names what is on disk, whatever was counted in memory
    if on_disk is not None and on_disk != run.best:
        log.warning("best.pt holds epoch %s, not the best epoch %s in memory.", on_disk["epoch"], run.best.get("epoch"))
    ten = _ten_crop(cfg, ctx, run.placed, run.data, out, run.hooks) if cfg.ten_crop and history else None
    wall = run.elapsed()
    trained = len(history) - (run.start_epoch - 1)
    if ctx.is_main and history:
        summary = {
            "status": "finished", "best": on_disk or {}, "last": history[-1], "ten_crop_best": ten,
            "wall_seconds": wall, "epochs_run": len(history), "epochs_trained_now": trained,
            "stopped_by_budget": run.stopped,
            "checkpoint": str(best_file) if on_disk else None, "preprocessing": cfg.preprocessing.to_dict(),
        }  # fmt: skip
        write_json_atomic(out / "summary.json", summary)
    return FitResult(
        config=cfg, output=out, history=history, best=on_disk or {}, wall_seconds=wall, ten_crop=ten,
        placed=run.placed, best_checkpoint=best_file if on_disk else None, epochs_trained=trained,
    )  # fmt: skip


def _ten_crop(cfg: TrainConfig, ctx: DistContext, placed: PlacedModel, data: Data, out: Path, hooks: Hooks):
    """Evaluate best.pt with the paper's 10-crop test and record it in best.pt's manifest."""
    from alexnet_deploy.core.checkpoint import read_checkpoint

    barrier(ctx)
    best_state = read_checkpoint(out / "best.pt")["model"]
    placed.load_grouped_state_dict(best_state)
    ev = evaluate(placed, data.val_loader(ten_crop=True), ctx)
    hooks.on_message(f"10-crop test of best.pt: top-1 {ev['top1']:.2%}, top-5 {ev['top5']:.2%}")
    if ctx.is_main:
        manifest = load_manifest(out / "best.pt")
        manifest.accuracy["ten_crop"] = {"top1": ev["top1"], "top5": ev["top5"], "images": int(ev["images"])}
        save_manifest(out / "best.pt", manifest)
    return {"top1": ev["top1"], "top5": ev["top5"], "images": ev["images"]}
