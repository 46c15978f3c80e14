"""The paper's three headline claims as experiments: recipes, runs, and the JSON each one reports.

* ``relu_tanh``: Figure 1. ``convnet4`` vs ``convnet4_tanh`` on CIFAR-10, no regularisation (no dropout, no
  weight decay, no augmentation), constant learning rate chosen per activation by a short sweep (the lowest
  running training error after ``sweep_epochs``, the grid widened until the choice is bracketed); the winner
  continues, further seeds start afresh at that lr, until each run's training error reaches ``target`` (25%)
  or the epoch cap. Reports epochs and seconds to each level and the tanh / ReLU ratio across seeds.
* ``dropout``: section 4.2. The demo-width paper network with dropout 0 vs 0.5, constant lr after a warm-up,
  each run until it converges (running training error at or below ``target``, 10%) or its cap: iterations
  to converge and to fixed levels, their ratio across seeds, and the train/val gap.
* ``pooling``: section 3.4. ``alexnet_paper`` (3x3/2) vs ``alexnet_paper_pool2`` (2x2/2), the demo recipe,
  same number of steps, several seeds: final top-1/top-5 error, paired differences, train/val gap.

Every run uses :class:`claims.trainer.Trial` (the project's training step and loaders).
"""

from __future__ import annotations

import dataclasses
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from alexnet_deploy.core.errors import ConfigError
from alexnet_deploy.core.manifest import library_versions
from claims.trainer import ClaimData, Trial, crossings, load_claim_data, spread
from train.config import TrainConfig, preset

__all__ = ["ClaimOptions", "cifar_recipe", "machine", "run_dropout", "run_pooling", "run_relu_tanh", "tiny_recipe"]

RELU_TANH_LEVELS = [75.0, 60.0, 50.0, 40.0, 35.0, 30.0, 25.0]
DROPOUT_LEVELS = [90.0, 80.0, 70.0, 60.0, 50.0, 40.0, 30.0, 20.0, 10.0, 5.0]
RELU_TANH_TARGET = 25.0  # Figure 1's level
DROPOUT_TARGET = 10.0  # "converged": running training error (dropout on, the training batches) at or below this

Report = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True)
class ClaimOptions:
    """What a claim's command line chose. ``epochs`` caps (relu-tanh) or fixes (dropout, pooling) run length."""

    data: str
    seeds: tuple[int, ...] = (0,)
    epochs: float = 10.0
    minutes: float = 0.0  # wall budget of the whole claim; 0 = none (runs stop at their epochs)
    chunks_per_epoch: float = 4  # curve points per epoch; below 1, a point every 1/x epochs
    batch_size: int = 128
    lrs: tuple[float, ...] = ()
    sweep_epochs: float = 1.0
    sweep_extensions: int = 2  # relu-tanh: how often a sweep whose best lr sits on an edge may step past it
    target: float = 0.0  # the training error (%) to reach; 0 = the claim's default (relu-tanh 25, dropout 10)
    init: str = "kaiming-zero-head"  # relu-tanh: convnet4's initialisation (see ConvNet4)
    augment: str = "paper"  # dropout: the training augmentation ("paper" or "none")
    train_images: int = 0
    val_images: int = 0
    probe_images: int = 2500
    image_size: int = 96
    width: float = 0.25
    threads: int = 2


def machine() -> dict[str, Any]:
    """CPU model, cores, load average and library versions: the record every result carries."""
    cpu = platform.processor() or "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "versions": library_versions(),
    }


def cifar_recipe(opts: ClaimOptions, model: str, lr: float, seed: int) -> TrainConfig:
    """Figure 1's recipe: 32 px CIFAR-10, no augmentation, no dropout, no weight decay, constant lr."""
    return TrainConfig(
        preset="claims-relu-tanh",
        data=opts.data,
        model=model,
        width=1.0,
        init=opts.init,
        dropout=0.0,
        image_size=32,
        resize=32,
        augment="none",
        loader="memory",
        workers=0,
        max_train_images=opts.train_images,
        max_val_images=opts.val_images,
        batch_size=opts.batch_size,
        lr=lr,
        weight_decay=0.0,
        schedule="constant",
        seed=seed,
        threads=opts.threads,
    )


def tiny_recipe(opts: ClaimOptions, **changes: Any) -> TrainConfig:
    """The demo preset at ``opts.image_size`` px (resize keeps the demo's 112/128 crop fraction)."""
    resize = int(round(opts.image_size * 128 / 112))
    base = preset("demo").replace(
        data=opts.data,
        width=opts.width,
        image_size=opts.image_size,
        resize=resize,
        batch_size=opts.batch_size,
        max_train_images=opts.train_images,
        max_val_images=opts.val_images,
        max_minutes=0.0,
        time_schedule=False,
        threads=opts.threads,
    )
    return base.replace(**changes)


def _alternate(trials: list[Trial], clock: _Clock, report: Report | None, done=None) -> None:
    """Advance the trials one chunk each in turn until each is ``done``, at its length, or the clock runs out.

    Taking turns means a wall budget that runs out cuts every variant at the same point.
    """
    active = list(trials)
    while active and not clock.expired():
        for t in list(active):
            if t.chunks_done >= t.total_chunks or (done is not None and t.history and done(t)):
                active.remove(t)
                continue
            rec = t.step_chunk()
            if report is not None:
                report(t.name, rec)


class _Clock:
    """The claim's wall budget: ``expired()`` once ``minutes`` have passed (never when 0)."""

    def __init__(self, minutes: float) -> None:
        self.start, self.minutes = time.monotonic(), minutes

    def expired(self) -> bool:
        return bool(self.minutes) and time.monotonic() - self.start >= 60 * self.minutes

    def elapsed(self) -> float:
        return time.monotonic() - self.start


def _chunking(opts: ClaimOptions, data: ClaimData) -> tuple[int, int]:
    """(steps per chunk, chunks in ``opts.epochs``) for this training set."""
    steps_per_epoch = max(1, len(data.train) // opts.batch_size)
    chunk = max(1, int(steps_per_epoch // opts.chunks_per_epoch))
    return chunk, max(1, round(opts.epochs * steps_per_epoch / chunk))


def _header(claim: str, opts: ClaimOptions, data: ClaimData, clock: _Clock) -> dict[str, Any]:
    return {
        "claim": claim,
        "options": {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(opts).items()},
        "data": {"root": opts.data, "train": len(data.train), "val": len(data.val), "probe": len(data.probe)},
        "machine_start": machine(),
        "load_seconds": clock.elapsed(),
    }


def _finish(result: dict[str, Any], clock: _Clock) -> dict[str, Any]:
    result["machine_end"] = machine()
    result["wall_seconds"] = clock.elapsed()
    result["budget_expired"] = clock.expired()
    return result


# ------------------------------------------------------------------------------------------- relu vs tanh


def _sweep(
    variant: str, model: str, opts: ClaimOptions, data: ClaimData, chunking: tuple[int, int], report: Report | None
) -> tuple[Trial, dict[str, Any]]:
    """The learning-rate sweep of one activation: a short run per lr from the same seed; the best one wins.

    The grid is ``opts.lrs`` (default 0.003 / 0.01 / 0.03). When the best lr sits on an edge of what was tried,
    the sweep steps past that edge by the grid's ratio (up to ``opts.sweep_extensions`` times), so that the
    chosen lr is bracketed by a worse one on each side rather than limited by the grid.
    """
    chunk, total = chunking
    sweep_chunks = max(1, round(opts.sweep_epochs * opts.chunks_per_epoch))
    grid = sorted(opts.lrs or (0.003, 0.01, 0.03))
    factor = grid[1] / grid[0] if len(grid) > 1 else 3.0
    tried: dict[float, Trial | None] = {}  # None: the loss became NaN

    def attempt(lr: float) -> None:
        t = Trial(
            f"{variant} lr {lr:g}",
            cifar_recipe(opts, model, lr, opts.seeds[0]),
            data,
            chunk_steps=chunk,
            total_chunks=total,
            evaluate=False,
        )
        try:
            t.run(sweep_chunks, on_record=report)
            tried[lr] = t
        except ConfigError:  # the loss became NaN: this lr is too high
            tried[lr] = None

    for lr in grid:
        attempt(lr)
    extended = []
    while True:
        ok = {lr: t for lr, t in tried.items() if t is not None}
        if not ok:
            raise ConfigError(f"Every learning rate of the {variant} sweep diverged: {', '.join(map(str, grid))}.")
        best = min(ok, key=lambda lr: ok[lr].history[-1]["train_error"])
        edge = best / factor if best == min(tried) else best * factor if best == max(tried) else None
        if edge is None or len(extended) >= opts.sweep_extensions:
            break
        extended.append(float(f"{edge:.3g}"))
        attempt(extended[-1])
    winner = ok[best]
    record = {
        "grid": grid,
        "extended": extended,
        "bracketed": best not in (min(tried), max(tried)),
        "chosen_lr": best,
        "sweep_epochs": winner.history[-1]["epochs"],
        "train_error_after_sweep": {f"{lr:g}": t.history[-1]["train_error"] for lr, t in sorted(ok.items())},
        "diverged": sorted(lr for lr, t in tried.items() if t is None),
    }
    return winner, record


def run_relu_tanh(opts: ClaimOptions, report: Report | None = None) -> dict[str, Any]:
    """Figure 1: epochs and seconds for ReLU and tanh to reach the target training error, each at its best lr.

    The sweep runs on the first seed and its winner continues; every further seed starts afresh at the chosen
    lr. All runs then take turns chunk by chunk until each reaches the target, its epoch cap or the budget.
    """
    clock = _Clock(opts.minutes)
    target = opts.target or RELU_TANH_TARGET
    levels = sorted({*RELU_TANH_LEVELS, target}, reverse=True)
    data = load_claim_data(cifar_recipe(opts, "convnet4", 0.01, opts.seeds[0]), probe_images=0)
    chunking = _chunking(opts, data)
    result = _header("relu-tanh", opts, data, clock)
    result.update(target_error=target, levels=levels, sweep={}, runs={})

    finals: dict[str, list[Trial]] = {}
    for variant, model in (("relu", "convnet4"), ("tanh", "convnet4_tanh")):
        best, result["sweep"][variant] = _sweep(variant, model, opts, data, chunking, report)
        best.name = f"{variant} seed {opts.seeds[0]}"
        finals[variant] = [best] + [
            Trial(
                f"{variant} seed {seed}",
                cifar_recipe(opts, model, best.cfg.lr, seed),
                data,
                chunk_steps=chunking[0],
                total_chunks=chunking[1],
                evaluate=False,
            )
            for seed in opts.seeds[1:]
        ]
    result["sweep_seconds"] = clock.elapsed() - result["load_seconds"]
    trials = [t for pair in zip(finals["relu"], finals["tanh"], strict=True) for t in pair]
    _alternate(trials, clock, report, done=lambda t: t.history[-1]["train_error"] <= target)
    for variant, trials in finals.items():
        result["runs"][variant] = [t.summary() for t in trials]
    result["per_seed"] = []
    for a, b in zip(result["runs"]["relu"], result["runs"]["tanh"], strict=True):
        rows = crossings(a["history"], b["history"], levels)
        result["per_seed"].append({"seed": a["seed"], "levels": rows})
    at_target = [next(r for r in s["levels"] if r["level"] == target) for s in result["per_seed"]]
    result["ratio_at_target"] = spread([r["ratio"] for r in at_target if "ratio" in r])
    result["ratio_at_target_lower_bounds"] = [r["ratio_at_least"] for r in at_target if "ratio_at_least" in r]
    result["ratio_at_target_upper_bounds"] = [r["ratio_at_most"] for r in at_target if "ratio_at_most" in r]
    for variant, side in (("relu", "a"), ("tanh", "b")):
        for unit in ("epochs", "seconds"):
            values = [r[f"{side}_{unit}"] for r in at_target if r[f"{side}_{unit}"] is not None]
            result[f"{variant}_{unit}_to_target"] = spread(values)
    return _finish(result, clock)


# ------------------------------------------------------------------------------------------------ dropout


def run_dropout(opts: ClaimOptions, report: Report | None = None, lr: float = 0.02) -> dict[str, Any]:
    """Section 4.2: iterations to converge with dropout 0 and 0.5, and the train/val gap.

    "Converged" is stated, not inferred: the running training error (dropout on, its training batches: what the
    network is trained on) at or below ``opts.target`` (default 10%). Each run stops there, so the gap at the
    end of a run is the gap at convergence. Constant lr after a 1-epoch warm-up (so no annealing schedule
    forces either run to converge), ``opts.augment`` augmentation, no label smoothing.
    """
    clock = _Clock(opts.minutes)
    lr = opts.lrs[0] if opts.lrs else lr
    target = opts.target or DROPOUT_TARGET
    levels = sorted({*DROPOUT_LEVELS, target}, reverse=True)

    def recipe(dropout: float, seed: int) -> TrainConfig:
        return tiny_recipe(
            opts,
            dropout=dropout,
            seed=seed,
            lr=lr,
            augment=opts.augment,
            label_smoothing=0.0,
            final_lr_fraction=1.0,
            warmup_epochs=1.0,
        )

    data = load_claim_data(recipe(0.0, opts.seeds[0]), probe_images=opts.probe_images)
    chunk, total = _chunking(opts, data)
    result = _header("dropout", opts, data, clock)
    result.update(levels=levels, target_error=target, lr=lr, runs={"no dropout": [], "dropout 0.5": []})
    for seed in opts.seeds:  # seed by seed, so a budget cut leaves complete pairs
        if clock.expired():
            break
        pair = {
            name: Trial(name, recipe(p, seed), data, chunk_steps=chunk, total_chunks=total)
            for name, p in (("no dropout", 0.0), ("dropout 0.5", 0.5))
        }
        _alternate(list(pair.values()), clock, report, done=lambda t: t.history[-1]["train_error"] <= target)
        for name, t in pair.items():
            result["runs"][name].append(t.summary())
    result["per_seed"] = []
    for a, b in zip(result["runs"]["no dropout"], result["runs"]["dropout 0.5"], strict=True):
        rows = crossings(a["history"], b["history"], levels)
        both = [r for r in rows if "ratio" in r]
        headline = both[-1] if both else None  # the lowest level both runs reached
        converged = next(r for r in rows if r["level"] == target)
        result["per_seed"].append({"seed": a["seed"], "levels": rows, "headline": headline, "converged": converged})
    heads = [s["headline"] for s in result["per_seed"] if s["headline"]]
    result["ratio_at_lowest_common_level"] = spread([h["ratio"] for h in heads])
    result["lowest_common_levels"] = [h["level"] for h in heads]
    conv = [s["converged"] for s in result["per_seed"]]
    result["ratio_to_converge"] = spread([c["ratio"] for c in conv if "ratio" in c])
    result["ratio_to_converge_lower_bounds"] = [c["ratio_at_least"] for c in conv if "ratio_at_least" in c]
    for name, side in (("no dropout", "a"), ("dropout 0.5", "b")):
        result.setdefault("steps_to_converge", {})[name] = spread(
            [c[f"{side}_steps"] for c in conv if c[f"{side}_steps"] is not None]
        )
    for name, runs in result["runs"].items():
        result.setdefault("final", {})[name] = _final(runs)
    return _finish(result, clock)


def _final(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("train_error", "val_top1_error", "val_top5_error", "probe_top1_error", "gap_top1")
    return {k: spread([r["last"][k] for r in runs if k in r["last"]]) for k in keys}


# ------------------------------------------------------------------------------------------------ pooling


def run_pooling(opts: ClaimOptions, report: Report | None = None) -> dict[str, Any]:
    """Section 3.4: 3x3/2 vs 2x2/2 max-pooling, the demo recipe, the same steps, several seeds."""
    clock = _Clock(opts.minutes)

    def recipe(model: str, seed: int) -> TrainConfig:
        return tiny_recipe(opts, model=model, seed=seed, warmup_epochs=min(1.0, opts.epochs / 4))

    data = load_claim_data(recipe("alexnet_paper", opts.seeds[0]), probe_images=opts.probe_images)
    chunk, total = _chunking(opts, data)
    result = _header("pooling", opts, data, clock)
    names = {"overlapping 3x3/2": "alexnet_paper", "non-overlapping 2x2/2": "alexnet_paper_pool2"}
    result["runs"] = {name: [] for name in names}
    for seed in opts.seeds:  # seed by seed, so a budget cut leaves complete pairs
        if clock.expired():
            break
        for name, model in names.items():
            t = Trial(name, recipe(model, seed), data, chunk_steps=chunk, total_chunks=total)
            t.run(on_record=report)
            result["runs"][name].append(t.summary())
    over, non = result["runs"]["overlapping 3x3/2"], result["runs"]["non-overlapping 2x2/2"]
    result["final"] = {name: _final(runs) for name, runs in result["runs"].items()}
    diffs = {"top1": [], "top5": [], "gap_top1": []}
    for a, b in zip(over, non, strict=True):  # paired by seed: 2x2/2 minus 3x3/2 (the paper: +0.4 / +0.3)
        diffs["top1"].append(b["last"]["val_top1_error"] - a["last"]["val_top1_error"])
        diffs["top5"].append(b["last"]["val_top5_error"] - a["last"]["val_top5_error"])
        diffs["gap_top1"].append(b["last"]["gap_top1"] - a["last"]["gap_top1"])
    result["paired_differences_pool2_minus_pool3"] = {k: {"values": v, **spread(v)} for k, v in diffs.items()}
    return _finish(result, clock)
