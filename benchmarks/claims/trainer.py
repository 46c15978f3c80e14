"""Re-measuring the paper's ablations: one variant trained in chunks of steps, with curves and crossings.

The paper's three headline claims (ReLU vs tanh, dropout, overlapping pooling) compare two variants of one
recipe by how fast their *training error* falls and by where their errors end. :class:`Trial` trains one
:class:`~train.config.TrainConfig` with the project's own pieces (``build_model``, ``place_model``,
``build_optimizer``, ``build_schedule``, ``train_one_epoch``, ``evaluate``; the memory loader and its
``TensorAugment``), but in *chunks* of a fixed number of steps drawn from an endless stream of epochs, so that
a curve has points every fraction of an epoch and a run can stop as soon as it crosses a level.

``benchmarks/paper_claims.py`` is the command line; this module is the library it calls.
"""

from __future__ import annotations

import math
import statistics
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from alexnet_deploy.core.errors import DataError
from alexnet_deploy.core.files import atomic_path, ensure_folder, write_bytes_atomic, write_new_file
from train.config import TrainConfig
from train.data import MemoryImageSet, MemoryLoader, TensorAugment, epoch_seed
from train.distributed import DistContext
from train.engine import build_model, build_optimizer, evaluate, place_model, train_one_epoch
from train.schedule import build_schedule

__all__ = [
    "ClaimData",
    "Trial",
    "crossings",
    "extract_cifar10",
    "first_crossing",
    "load_claim_data",
    "plot_claim",
    "spread",
]


# ---------------------------------------------------------------------------------------------------- data


def extract_cifar10(archive: str | Path, dest: str | Path, per_class: int = 0) -> Path:
    """Extract ``cifar10/{train,val}/<class>/*.jpg`` from ``archive`` into ``dest`` once; return the set's root.

    Args:
        archive: ``cifar10.tar.gz`` (one archive, so 60,000 small files never sit in the shared folder).
        dest: a cache folder outside git (e.g. ``~/.cache/alexnet-deploy``).
        per_class: 0 extracts everything; else at most that many images per class and split (quick runs).

    Raises:
        DataError: the archive is missing or holds no ``cifar10/train`` images.
    """
    archive, dest = Path(archive), Path(dest)
    root = dest / ("cifar10" if not per_class else f"cifar10-{per_class}")
    marker = root / ".complete"
    if marker.is_file():
        return root
    if not archive.is_file():
        raise DataError(f"CIFAR-10 archive not found: {archive}.")
    counts: dict[tuple[str, str], int] = {}
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            parts = Path(member.name).parts
            if not member.isfile() or len(parts) != 4 or parts[0] != "cifar10" or parts[1] not in ("train", "val"):
                continue
            key = (parts[1], parts[2])
            if per_class and counts.get(key, 0) >= per_class:
                continue
            counts[key] = counts.get(key, 0) + 1
            target = root.joinpath(*parts[1:])
            if not target.parent.is_dir():
                ensure_folder(target.parent)
            write_new_file(target, tar.extractfile(member).read())
    if not any(split == "train" for split, _ in counts):
        raise DataError(f"{archive} holds no cifar10/train/<class>/ images.")
    write_bytes_atomic(marker, b"ok\n")
    return root


@dataclass
class ClaimData:
    """The decoded images a claim's variants share: training set, validation set, and a training probe.

    ``probe`` is a class-stratified subset of the training images (of the training subset when there is one)
    stored like ``val`` (at the eval resize),
    so that training and validation error are measured the same way (eval mode, centre crop): their
    difference is the train/val gap.
    """

    train: MemoryImageSet
    val: MemoryImageSet
    probe: MemoryImageSet

    @property
    def num_classes(self) -> int:
        return len(self.train.classes)


def load_claim_data(cfg: TrainConfig, probe_images: int = 2500) -> ClaimData:
    """Decode ``cfg.data`` once (``max_train_images`` / ``max_val_images`` subsets as configured).

    Raises:
        DataError: the folder is missing or lacks ``train/`` and ``val/``.
    """
    root = Path(cfg.data)
    if not (root / "train").is_dir() or not (root / "val").is_dir():
        raise DataError(f"{root} needs train/ and val/ subfolders, each holding one folder per class.")
    resize = cfg.preprocessing.resize
    train = MemoryImageSet.from_folder(root / "train", max_images=cfg.max_train_images, seed=cfg.seed)
    val = MemoryImageSet.from_folder(root / "val", size=resize, max_images=cfg.max_val_images, seed=cfg.seed)
    if probe_images:
        probe_n = min(probe_images, len(train))
        probe = MemoryImageSet.from_folder(
            root / "train",
            size=resize,
            max_images=probe_n,
            seed=cfg.seed + 1,
            pool_images=cfg.max_train_images,  # the training subset's own images, not others of its folder
            pool_seed=cfg.seed,
        )
    else:
        empty = torch.empty((0, 3, resize, resize), dtype=torch.uint8)
        probe = MemoryImageSet(empty, torch.empty(0, dtype=torch.int64), list(train.classes))
    if train.classes != val.classes:
        raise DataError(f"{root}/train and {root}/val hold different class folders.")
    return ClaimData(train=train, val=val, probe=probe)


class _Stream:
    """``steps`` batches at a time from an endless run of epochs of ``loader`` (what a chunk trains on)."""

    def __init__(self, loader: MemoryLoader, steps: int) -> None:
        self.loader, self.steps, self.epoch = loader, steps, 0
        self._it: Iterator | None = None

    def set_epoch(self, epoch: int) -> None:
        """train_one_epoch calls this with the chunk number; the stream keeps its own epoch count."""

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for _ in range(self.steps):
            batch = next(self._it, None) if self._it is not None else None
            if batch is None:
                self.epoch += 1
                self.loader.set_epoch(self.epoch)
                self._it = iter(self.loader)
                batch = next(self._it)
            yield batch


# --------------------------------------------------------------------------------------------------- trial


class Trial:
    """One variant of a claim, trained chunk by chunk.

    Args:
        name: the variant's label in tables and plots.
        cfg: its recipe (model, width, dropout, lr, schedule, augmentation, batch size, seed).
        data: the decoded sets (shared by the variants of a claim).
        chunk_steps: optimizer steps per chunk (one curve point).
        total_chunks: the run's length in chunks: the schedule (warm-up, cosine) spans exactly this.
        evaluate: measure val and probe error after each chunk (else only the running training error).
    """

    def __init__(
        self, name: str, cfg: TrainConfig, data: ClaimData, *, chunk_steps: int, total_chunks: int, evaluate=True
    ) -> None:
        self.name, self.cfg, self.data, self.do_eval = name, cfg, data, evaluate
        self.chunk_steps, self.total_chunks = chunk_steps, total_chunks
        pre = cfg.preprocessing
        augment = TensorAugment(
            cfg.augment, pre.crop, pre.crop / pre.resize, scale=cfg.rrc_scale, pca_sigma=cfg.pca_sigma, pre=pre
        )
        loader = MemoryLoader(data.train, cfg.batch_size, augment=augment, pre=pre, seed=cfg.seed)
        self.steps_per_epoch = len(loader)
        self.stream = _Stream(loader, chunk_steps)
        self.val = MemoryLoader(data.val, cfg.batch_size, pre=pre, seed=cfg.seed)
        self.probe = MemoryLoader(data.probe, cfg.batch_size, pre=pre, seed=cfg.seed) if len(data.probe) else None
        torch.manual_seed(cfg.seed)
        self.placed = place_model(build_model(cfg, data.num_classes), cfg, DistContext())
        self.optimizer = build_optimizer(cfg, self.placed.module)
        # The schedule counts chunks as its epochs, so warm-up (given in data epochs) is converted.
        warmup = cfg.warmup_epochs * self.steps_per_epoch / chunk_steps
        sched_cfg = cfg.replace(epochs=total_chunks, warmup_epochs=warmup)
        self.schedule = build_schedule(sched_cfg, self.optimizer, chunk_steps)
        self.history: list[dict[str, Any]] = []
        self.seconds = 0.0

    @property
    def chunks_done(self) -> int:
        return len(self.history)

    def step_chunk(self) -> dict[str, Any]:
        """Train one chunk (and evaluate); append and return its record. Errors are in percent."""
        k = self.chunks_done + 1
        torch.manual_seed(epoch_seed(self.cfg.seed, k))  # dropout draws of this chunk
        tr = train_one_epoch(
            self.placed,
            self.stream,
            self.optimizer,
            self.schedule,
            epoch=k,
            label_smoothing=self.cfg.label_smoothing,
            log_every=max(1, min(20, self.chunk_steps)),
        )
        steps = k * self.chunk_steps
        images = steps * self.cfg.batch_size
        rec: dict[str, Any] = {
            "chunk": k,
            "steps": steps,
            "images": images,
            "epochs": images / len(self.data.train),
            "train_error": 100.0 * (1.0 - tr["top1"]),  # running, on the augmented batches, dropout on
            "train_loss": tr["loss"],
            "lr": tr["lr"],
            "img_per_s": tr["img_per_s"],
        }
        self.seconds += tr["seconds"]
        if self.do_eval:
            ev = evaluate(self.placed, self.val)
            rec.update(val_top1_error=100 * (1 - ev["top1"]), val_top5_error=100 * (1 - ev["top5"]))
            rec["val_loss"] = ev["loss"]
            self.seconds += ev["seconds"]
            if self.probe is not None:
                pr = evaluate(self.placed, self.probe)
                rec.update(probe_top1_error=100 * (1 - pr["top1"]), probe_top5_error=100 * (1 - pr["top5"]))
                rec["gap_top1"] = rec["val_top1_error"] - rec["probe_top1_error"]
                self.seconds += pr["seconds"]
        rec["seconds"] = self.seconds
        self.history.append(rec)
        return rec

    def run(
        self,
        chunks: int | None = None,
        stop: Callable[[list[dict[str, Any]]], bool] | None = None,
        on_record: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> list[dict[str, Any]]:
        """Train up to ``chunks`` more chunks (default: to ``total_chunks``), stopping early when ``stop`` says so."""
        end = self.total_chunks if chunks is None else min(self.total_chunks, self.chunks_done + chunks)
        while self.chunks_done < end:
            rec = self.step_chunk()
            if on_record is not None:
                on_record(self.name, rec)
            if stop is not None and stop(self.history):
                break
        return self.history

    def summary(self) -> dict[str, Any]:
        """The recipe and the last record, for the JSON report."""
        cfg = self.cfg
        return {
            "name": self.name,
            "model": cfg.model,
            "width": cfg.width,
            "dropout": cfg.dropout,
            "lr": cfg.lr,
            "seed": cfg.seed,
            "batch_size": cfg.batch_size,
            "image_size": cfg.image_size,
            "augment": cfg.augment,
            "schedule": cfg.schedule,
            "weight_decay": cfg.weight_decay,
            "params": sum(p.numel() for p in self.placed.module.parameters()),
            "train_images": len(self.data.train),
            "steps_per_epoch": self.steps_per_epoch,
            "chunk_steps": self.chunk_steps,
            "seconds": self.seconds,
            "last": self.history[-1] if self.history else {},
            "history": self.history,
        }


# ----------------------------------------------------------------------------------------------- analysis


def first_crossing(history: list[dict[str, Any]], level: float, key: str = "train_error") -> dict[str, Any] | None:
    """The first record whose ``key`` is at or below ``level`` (percent), or None if the run never got there."""
    for rec in history:
        if rec.get(key, math.inf) <= level:
            return rec
    return None


def crossings(
    a: list[dict[str, Any]], b: list[dict[str, Any]], levels: list[float], key: str = "train_error"
) -> list[dict[str, Any]]:
    """For each level: epochs, steps and seconds each run needed to reach it, and ``b / a`` (steps) when both did.

    When only ``a`` got there, ``ratio_at_least`` is ``b``'s total length over ``a``'s crossing (a lower bound);
    when only ``b`` did, ``ratio_at_most`` is ``b``'s crossing over ``a``'s total length (an upper bound).
    """
    rows = []
    for level in levels:
        ca, cb = first_crossing(a, level, key), first_crossing(b, level, key)
        row: dict[str, Any] = {"level": level, "a_epochs": ca and ca["epochs"], "b_epochs": cb and cb["epochs"]}
        row["a_steps"], row["b_steps"] = ca and ca["steps"], cb and cb["steps"]
        row["a_seconds"], row["b_seconds"] = ca and ca.get("seconds"), cb and cb.get("seconds")
        if ca and cb:
            row["ratio"] = cb["steps"] / ca["steps"]
        elif ca and b:
            row["ratio_at_least"] = b[-1]["steps"] / ca["steps"]
        elif cb and a:
            row["ratio_at_most"] = cb["steps"] / a[-1]["steps"]
        rows.append(row)
    return rows


def spread(values: list[float]) -> dict[str, float]:
    """Mean, sample standard deviation (0 for one value), min, max and count."""
    if not values:
        return {"n": 0}
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.fmean(values), "sd": sd, "min": min(values), "max": max(values), "n": len(values)}


def plot_claim(
    runs: dict[str, list[list[dict[str, Any]]]],
    path: str | Path,
    title: str,
    level: float | None = None,
    extra: tuple[str, str] | None = ("val_top1_error", "val top-1 error"),
) -> Path:
    """Training error against epochs, every variant (each seed a line) on one plot; val error beside it.

    Args:
        runs: variant name -> list of histories (one per seed).
        level: a horizontal reference line (Figure 1's 25%).
        extra: a second panel's record key and label, drawn when the histories carry it.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    has_extra = extra is not None and any(extra[0] in h[0] for hs in runs.values() for h in hs if h)
    fig = Figure(figsize=(11 if has_extra else 6, 3.8), layout="constrained")
    axes = fig.subplots(1, 2) if has_extra else [fig.subplots(1, 1)]
    colours = ["tab:blue", "tab:red", "tab:green", "tab:orange"]
    panels = [("train_error", "training error (running, %)")] + ([extra] if has_extra else [])
    for ax, (key, label) in zip(axes, panels, strict=False):
        for colour, (name, histories) in zip(colours, runs.items(), strict=False):
            for i, h in enumerate(histories):
                pts = [(r["epochs"], r[key]) for r in h if key in r]
                if pts:
                    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
                    ax.plot(xs, ys, "-", color=colour, alpha=0.9 if i == 0 else 0.5, label=name if i == 0 else None)
        if level is not None and key == "train_error":
            ax.axhline(level, color="grey", ls="--", lw=1)
        ax.set(xlabel="epochs", ylabel=label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title, fontsize=10)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    return Path(path)
