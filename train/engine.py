"""The pieces of a training run: data, model placement, optimizer, one epoch of training, evaluation.

``train.loop.fit`` strings them together; each is usable on its own (the benchmark and the tests call them).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from alexnet_deploy.core.data import ImageFolderDataset, class_names, eval_transform, stratified_indices
from alexnet_deploy.core.errors import ConfigError, DataError
from alexnet_deploy.core.models import build_model as build_registered_model
from train.columns import TwoColumnAlexNet
from train.config import TrainConfig
from train.data import (
    FolderLoader,
    MemoryImageSet,
    MemoryLoader,
    TensorAugment,
    folder_transform,
    ten_crop_transform,
)
from train.distributed import DistContext, all_reduce_max, all_reduce_sum, wrap_ddp
from train.schedule import Schedule

__all__ = [
    "Budget",
    "Data",
    "PlacedModel",
    "StepInfo",
    "build_dataloaders",
    "build_model",
    "build_optimizer",
    "evaluate",
    "place_model",
    "train_one_epoch",
]


# ---------------------------------------------------------------------------------------------------- data


@dataclass
class Data:
    """Training and validation loaders plus what the checkpoint needs to know about the classes."""

    train: MemoryLoader | FolderLoader
    val: MemoryLoader | FolderLoader
    classes: list[str]  # folder names (ImageFolder label order)
    names: list[str]  # human-readable names in the same order
    train_root: Path
    val_root: Path
    make_val: Callable[[bool], MemoryLoader | FolderLoader] = field(repr=False, default=None)  # ten_crop -> loader
    skipped: list[str] = field(default_factory=list)  # unreadable image files left out (train and val)

    def val_loader(self, ten_crop: bool) -> MemoryLoader | FolderLoader:
        return self.make_val(ten_crop) if ten_crop else self.val


def _splits(root: str | Path) -> tuple[Path, Path]:
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"Dataset folder not found: {root}.")
    train, val = root / "train", root / "val"
    if not (train.is_dir() and val.is_dir()):
        raise DataError(f"{root} needs train/ and val/ subfolders, each holding one folder per class.")
    return train, val


def build_dataloaders(cfg: TrainConfig, ctx: DistContext | None = None, on_progress=None) -> Data:
    """Build the training and validation loaders of ``cfg`` for this rank.

    Args:
        cfg: the run's configuration (``data``, ``loader``, ``augment``, batch size, ...).
        ctx: this process's rank and world size; each rank gets its shard.
        on_progress: memory path only: called with (split, done, total) while decoding.

    Raises:
        DataError: the folder is missing, lacks train/ and val/, their classes differ, or a class has no
            readable training image (a network cannot learn a class it never sees).
        ConfigError: the batch size does not divide over the ranks.
    """
    ctx = ctx or DistContext()
    train_root, val_root = _splits(cfg.data)
    if cfg.batch_size % ctx.world_size:
        raise ConfigError(f"batch_size {cfg.batch_size} does not divide over {ctx.world_size} processes.")
    batch = cfg.batch_size // ctx.world_size
    pre = cfg.preprocessing
    shard = {"rank": ctx.rank, "world_size": ctx.world_size, "seed": cfg.seed}

    def progress(split):
        return (lambda done, total: on_progress(split, done, total)) if on_progress else None

    if cfg.loader == "memory":
        train_set = MemoryImageSet.from_folder(
            train_root, max_images=cfg.max_train_images, seed=cfg.seed, on_progress=progress("train")
        )
        # Stored at the eval resize, so a centre slice is exactly what the eval preset produces.
        val_set = MemoryImageSet.from_folder(
            val_root, size=pre.resize, max_images=cfg.max_val_images, seed=cfg.seed, on_progress=progress("val")
        )
        augment = TensorAugment(
            cfg.augment, pre.crop, pre.crop / pre.resize, scale=cfg.rrc_scale, pca_sigma=cfg.pca_sigma, pre=pre
        )
        train = MemoryLoader(train_set, batch, augment=augment, pre=pre, **shard)

        def make_val(ten_crop: bool) -> MemoryLoader:
            return MemoryLoader(
                val_set, max(1, batch // 10) if ten_crop else batch, pre=pre, ten_crop=ten_crop, **shard
            )

        train_classes, val_classes = train_set.classes, val_set.classes
        train_targets, skipped = train_set.targets.tolist(), train_set.skipped + val_set.skipped
    else:
        pin = any(d.type == "cuda" for d in ctx.devices)
        tf = folder_transform(cfg.augment, pre, cfg.rrc_scale, cfg.pca_sigma)
        train_ds = ImageFolderDataset(train_root, transform=tf)
        idx = stratified_indices(train_ds.targets, cfg.max_train_images, cfg.seed) if cfg.max_train_images else None
        train = FolderLoader(train_ds, batch, train=True, workers=cfg.workers, indices=idx, pin_memory=pin, **shard)
        val_ds = ImageFolderDataset(val_root, transform=eval_transform(pre), replace_unreadable=False)
        vidx = stratified_indices(val_ds.targets, cfg.max_val_images, cfg.seed) if cfg.max_val_images else None

        def make_val(ten_crop: bool) -> FolderLoader:
            ds = val_ds
            if ten_crop:
                ds = ImageFolderDataset(val_root, transform=ten_crop_transform(pre), replace_unreadable=False)
            size = max(1, batch // 10) if ten_crop else batch
            return FolderLoader(ds, size, train=False, workers=cfg.workers, indices=vidx, pin_memory=pin, **shard)

        train_classes, val_classes = train_ds.classes, val_ds.classes
        train_targets = [train_ds.targets[i] for i in idx] if idx is not None else list(train_ds.targets)
        skipped = train_ds.skipped + val_ds.skipped
    if train_classes != val_classes:
        raise DataError(f"{train_root} and {val_root} hold different class folders.")
    _refuse_empty_classes(train_root, train_classes, train_targets)
    return Data(
        train=train,
        val=make_val(False),
        classes=list(train_classes),
        names=class_names(train_root),
        train_root=train_root,
        val_root=val_root,
        make_val=make_val,
        skipped=skipped,
    )


def _refuse_empty_classes(root: Path, classes: list[str], targets: list[int]) -> None:
    """Refuse a training selection in which some class has no image: the model would be trained to never
    predict it, silently, and its accuracy on that class would be zero."""
    counts = [0] * len(classes)
    for t in targets:
        counts[t] += 1
    empty = [c for c, n in zip(classes, counts, strict=True) if n == 0]
    if empty:
        shown = ", ".join(empty[:3]) + (f" and {len(empty) - 3} more" if len(empty) > 3 else "")
        raise DataError(
            f"{root} has no readable training image of {len(empty)} of its {len(classes)} classes ({shown}); "
            "add images there or remove the empty class folders."
        )


# --------------------------------------------------------------------------------------------------- model


def build_model(cfg: TrainConfig, num_classes: int) -> nn.Module:
    """The registered model ``cfg.model`` with the recipe's width, columns, dropout and initialisation."""
    return build_registered_model(
        cfg.model, num_classes=num_classes, width=cfg.width, dropout=cfg.dropout, columns=cfg.columns, init=cfg.init
    )


@dataclass
class PlacedModel:
    """A model ready to train: ``module`` (maybe two-column, maybe DDP-wrapped) and where its ends live."""

    module: nn.Module
    input_device: torch.device
    output_device: torch.device
    channels_last: bool = False

    @property
    def core(self) -> nn.Module:
        """The model without its DDP wrapper."""
        return self.module.module if isinstance(self.module, nn.parallel.DistributedDataParallel) else self.module

    def grouped_state_dict(self) -> dict[str, torch.Tensor]:
        """Weights in the single-device model's layout, on the CPU, contiguous: what a checkpoint stores."""
        core = self.core
        state = core.grouped_state_dict() if isinstance(core, TwoColumnAlexNet) else core.state_dict()
        return {k: v.detach().cpu().contiguous() for k, v in state.items()}

    def load_grouped_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        core = self.core
        if isinstance(core, TwoColumnAlexNet):
            core.load_grouped_state_dict(state)
        else:
            core.load_state_dict(state)


def place_model(model: nn.Module, cfg: TrainConfig, ctx: DistContext) -> PlacedModel:
    """Put ``model`` on this rank's device(s): one device, or the paper's two columns on two; then DDP."""
    devices = ctx.devices
    if len(devices) == 2:
        model = TwoColumnAlexNet(model, (devices[0], devices[1]))
    else:
        model = model.to(devices[0])
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return PlacedModel(wrap_ddp(model, ctx), devices[0], devices[0], cfg.channels_last)


def build_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.SGD:
    """SGD with momentum and weight decay on every parameter, as in the paper."""
    return torch.optim.SGD(
        model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.nesterov
    )


# ------------------------------------------------------------------------------------------ train and eval


@dataclass
class Budget:
    """A wall-clock budget measured from ``start`` (``time.monotonic()``), with a reserve kept for the end."""

    seconds: float
    start: float = field(default_factory=time.monotonic)
    reserve: float = 0.0

    def fraction(self) -> float:
        usable = max(1e-9, self.seconds - self.reserve)
        return (time.monotonic() - self.start) / usable


@dataclass
class StepInfo:
    """What a progress display shows after a step."""

    epoch: int
    step: int
    steps: int
    loss: float
    lr: float
    images_per_s: float


def _topk_correct(scores: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    k = min(5, scores.shape[1])
    top = scores.topk(k, dim=1).indices
    hit = top.eq(labels.unsqueeze(1))
    return hit[:, :1].sum(), hit.sum()


def _to_input(x: torch.Tensor, placed: PlacedModel) -> torch.Tensor:
    x = x.to(placed.input_device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if placed.channels_last and x.dim() == 4 else x


def train_one_epoch(
    placed: PlacedModel,
    loader,
    optimizer: torch.optim.Optimizer,
    schedule: Schedule,
    *,
    epoch: int,
    ctx: DistContext | None = None,
    label_smoothing: float = 0.0,
    budget: Budget | None = None,
    time_schedule: bool = False,
    log_every: int = 20,
    on_step: Callable[[StepInfo], None] | None = None,
) -> dict[str, float]:
    """Train for one pass over ``loader`` (or until ``budget`` runs out).

    Returns:
        ``loss``, ``top1``, ``top5`` (training batches, all ranks), ``images``, ``seconds``, ``img_per_s``,
        ``lr`` (at the end), ``steps`` and ``stopped`` (1.0 when the budget ended the epoch early).

    Raises:
        ConfigError: the loss became NaN or infinite (the learning rate is too high for this run).
    """
    ctx = ctx or DistContext()
    model = placed.module
    model.train()
    loader.set_epoch(epoch)
    steps = len(loader)
    dev = placed.output_device
    loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
    c1 = torch.zeros((), dtype=torch.int64, device=dev)
    c5 = torch.zeros((), dtype=torch.int64, device=dev)
    seen, step, stopped = 0, 0, False
    start = time.perf_counter()
    for step, (x, y) in enumerate(loader, start=1):
        x, y = _to_input(x, placed), y.to(dev, non_blocking=True)
        logits = model(x)
        loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        fraction = 0.0
        if budget is not None:
            fraction = all_reduce_max(budget.fraction(), ctx)  # ranks must agree on lr and on stopping
        schedule.step_batch(fraction if time_schedule else 0.0)
        with torch.no_grad():
            loss_sum += loss.detach().double() * y.numel()
            a, b = _topk_correct(logits.detach(), y)
            c1 += a
            c5 += b
        seen += y.numel()
        if step % log_every == 0 or step == steps:
            value = float(loss.detach())
            if not math.isfinite(value):
                raise ConfigError(
                    f"The loss became {value} at epoch {epoch}, step {step}; "
                    f"lower the learning rate (lr={schedule.lr:g})."
                )
            if on_step is not None:
                rate = seen * ctx.world_size / max(1e-9, time.perf_counter() - start)
                on_step(StepInfo(epoch, step, steps, value, schedule.lr, rate))
        if budget is not None and fraction >= 1.0:
            stopped = step < steps
            break
    seconds = time.perf_counter() - start
    total_loss, top1, top5, n = all_reduce_sum([float(loss_sum), float(c1), float(c5), float(seen)], ctx)
    n = max(n, 1.0)
    return {
        "loss": total_loss / n,
        "top1": top1 / n,
        "top5": top5 / n,
        "images": n,
        "seconds": seconds,
        "img_per_s": n / max(seconds, 1e-9),
        "lr": schedule.lr,
        "steps": float(step),
        "stopped": float(stopped),
    }


@torch.no_grad()
def evaluate(placed: PlacedModel, loader, ctx: DistContext | None = None) -> dict[str, float]:
    """Top-1/top-5 accuracy and cross-entropy over ``loader``, summed over all ranks.

    A batch of shape ``(B, 10, 3, H, W)`` is the paper's 10-crop test: the softmax of the ten crops is averaged
    per image before ranking, and the loss is the negative log of that average.
    """
    ctx = ctx or DistContext()
    model = placed.module
    model.eval()
    dev = placed.output_device
    loss_sum, c1, c5, n = 0.0, 0, 0, 0
    start = time.perf_counter()
    for x, y in loader:
        y = y.to(dev)
        if x.dim() == 5:
            b, crops = x.shape[:2]
            logits = model(_to_input(x.flatten(0, 1), placed))
            probs = logits.float().softmax(dim=1).view(b, crops, -1).mean(dim=1)
            loss_sum += float(F.nll_loss(probs.clamp_min(1e-12).log(), y, reduction="sum"))
            scores = probs
        else:
            scores = model(_to_input(x, placed)).float()
            loss_sum += float(F.cross_entropy(scores, y, reduction="sum"))
        a, b5 = _topk_correct(scores, y)
        c1, c5, n = c1 + int(a), c5 + int(b5), n + y.numel()
    loss_sum, c1, c5, n = all_reduce_sum([loss_sum, c1, c5, n], ctx)
    n = max(n, 1.0)
    return {"loss": loss_sum / n, "top1": c1 / n, "top5": c5 / n, "images": n, "seconds": time.perf_counter() - start}
