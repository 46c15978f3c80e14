"""Learning-rate schedules: the paper's divide-by-10-on-plateau, and warm-up + cosine for short runs.

Each schedule sets the learning rate of every parameter group of its optimizer, is told about every optimizer
step (``step_batch``) and every validation result (``step_epoch``), and round-trips through ``state_dict``.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from alexnet_deploy.core.errors import ConfigError

__all__ = ["ConstantSchedule", "PlateauSchedule", "Schedule", "WarmupCosineSchedule", "build_schedule"]


class Schedule:
    """Base class: holds the optimizer and the current learning rate."""

    def __init__(self, optimizer: torch.optim.Optimizer, lr: float) -> None:
        self.optimizer = optimizer
        self.lr = lr
        self._apply()

    def _apply(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr

    def step_batch(self, time_fraction: float = 0.0) -> None:
        """Called after each optimizer step; ``time_fraction`` is the share of a time budget spent."""

    def step_epoch(self, val_error: float) -> None:
        """Called after each validation with the top-1 error (a fraction)."""

    # Only the state that evolves is saved: settings come from the (possibly changed) config on resume.
    _state: tuple[str, ...] = ("lr",)

    def state_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self._state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            setattr(self, k, v)
        self._apply()


class ConstantSchedule(Schedule):
    """The learning rate never changes."""


class PlateauSchedule(Schedule):
    """The paper's rule: divide the learning rate by ``1/factor`` when the validation error stops improving.

    After ``patience`` epochs without a new best error (an improvement of more than ``threshold``), the
    learning rate is multiplied by ``factor`` (0.1) and the count restarts; this happens at most ``max_drops``
    times (the paper: three times in its run).
    """

    _state = ("lr", "best", "bad_epochs", "drops")

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        lr: float,
        factor: float = 0.1,
        patience: int = 2,
        max_drops: int = 3,
        threshold: float = 0.0,
    ) -> None:
        if not 0 < factor < 1 or patience < 1 or max_drops < 0:
            raise ConfigError("Plateau schedule needs 0 < factor < 1, patience >= 1 and max_drops >= 0.")
        self.factor, self.patience, self.max_drops, self.threshold = factor, patience, max_drops, threshold
        self.best = math.inf
        self.bad_epochs = 0
        self.drops = 0
        super().__init__(optimizer, lr)

    def step_epoch(self, val_error: float) -> None:
        if val_error < self.best - self.threshold:
            self.best, self.bad_epochs = val_error, 0
            return
        self.bad_epochs += 1
        if self.bad_epochs >= self.patience and self.drops < self.max_drops:
            self.lr *= self.factor
            self.drops += 1
            self.bad_epochs = 0
            self._apply()


class WarmupCosineSchedule(Schedule):
    """Linear warm-up over ``warmup_steps``, then cosine decay from ``peak_lr`` to ``final_lr`` at the end.

    Progress is the larger of ``steps / total_steps`` and the time fraction the caller reports, so under a
    time budget the decay ends when the budget does, however fast the machine turns out to be.

    Resumed with another length (a finished 4-epoch run resumed with ``--epochs 8``), the schedule is re-planned
    over the new total, as if it had been planned for it from the start: progress becomes ``steps / total_steps``
    and the learning rate rises back to where that longer schedule stands, instead of training on at the
    finished schedule's final learning rate (0 by default), which would leave the weights unchanged.
    """

    _state = ("lr", "steps", "progress", "warmup_end_progress", "planned_steps")

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        peak_lr: float,
        total_steps: int,
        warmup_steps: int = 0,
        final_lr: float = 0.0,
    ) -> None:
        if total_steps < 1 or warmup_steps < 0:
            raise ConfigError("Warm-up + cosine schedule needs total_steps >= 1 and warmup_steps >= 0.")
        self.peak_lr, self.total_steps, self.warmup_steps, self.final_lr = peak_lr, total_steps, warmup_steps, final_lr
        self.steps = 0
        self.progress = 0.0
        self.warmup_end_progress = 0.0 if warmup_steps == 0 else None
        self.planned_steps = total_steps  # saved, so that a resume can tell that the length changed
        self.replanned_from: int | None = None  # set by a resume that re-planned: the steps planned before
        super().__init__(optimizer, self._lr_now())

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a saved schedule; re-plan it over this run's ``total_steps`` if the saved one had another length
        (a checkpoint without ``planned_steps``, from before it was saved, counts as changed once finished)."""
        planned = state.get("planned_steps")
        super().load_state_dict({k: v for k, v in state.items() if k != "planned_steps"})
        changed = planned != self.total_steps if planned is not None else self.progress >= 1.0
        self.replanned_from = None
        if changed and self.steps < self.total_steps:
            self.replanned_from = planned or self.steps  # a finished schedule without the record ran its steps
            self.progress = self.steps / self.total_steps
            if self.warmup_end_progress is not None:
                self.warmup_end_progress = min(self.warmup_steps / self.total_steps, self.progress, 0.999)
            self.lr = self._lr_now()
            self._apply()
        self.planned_steps = self.total_steps

    def _lr_now(self) -> float:
        if self.warmup_end_progress is None:  # still warming up
            return self.peak_lr * (self.steps + 1) / (self.warmup_steps + 1)
        span = max(1e-12, 1.0 - self.warmup_end_progress)
        t = min(1.0, max(0.0, (self.progress - self.warmup_end_progress) / span))
        return self.final_lr + (self.peak_lr - self.final_lr) * 0.5 * (1.0 + math.cos(math.pi * t))

    def step_batch(self, time_fraction: float = 0.0) -> None:
        self.steps += 1
        self.progress = max(self.progress, self.steps / self.total_steps, time_fraction)
        if self.warmup_end_progress is None and self.steps >= self.warmup_steps:
            self.warmup_end_progress = min(self.progress, 0.999)
        self.lr = self._lr_now()
        self._apply()

    @property
    def finished(self) -> bool:
        return self.progress >= 1.0


def build_schedule(cfg, optimizer: torch.optim.Optimizer, steps_per_epoch: int) -> Schedule:
    """The schedule a :class:`~train.config.TrainConfig` asks for."""
    if cfg.schedule == "plateau":
        return PlateauSchedule(
            optimizer,
            cfg.lr,
            factor=cfg.plateau_factor,
            patience=cfg.plateau_patience,
            max_drops=cfg.plateau_max_drops,
        )
    if cfg.schedule == "warmup_cosine":
        return WarmupCosineSchedule(
            optimizer,
            peak_lr=cfg.lr,
            total_steps=cfg.epochs * steps_per_epoch,
            warmup_steps=int(round(cfg.warmup_epochs * steps_per_epoch)),
            final_lr=cfg.lr * cfg.final_lr_fraction,
        )
    return ConstantSchedule(optimizer, cfg.lr)
