"""The paper's plateau rule and the warm-up + cosine schedule."""

from __future__ import annotations

import math

import pytest
import torch

from train.schedule import PlateauSchedule, WarmupCosineSchedule


def _opt(lr=0.01):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr, momentum=0.9)


def test_plateau_divides_by_ten_when_val_error_stops_improving_at_most_three_times():
    opt = _opt()
    sched = PlateauSchedule(opt, 0.01, factor=0.1, patience=2, max_drops=3)
    errors = [0.9, 0.8, 0.7, 0.71, 0.72, 0.6, 0.6, 0.65, 0.5, 0.55, 0.56] + [0.56] * 20
    lrs = []
    for e in errors:
        sched.step_epoch(e)
        lrs.append(opt.param_groups[0]["lr"])
    # drops after epochs 5 (0.71, 0.72 no better than 0.7), 8 (0.6, 0.65 after 0.6), 11, then never again
    expected = [0.01] * 4 + [1e-3] * 3 + [1e-4] * 3 + [1e-5] * 21
    assert lrs == pytest.approx(expected, rel=1e-9)
    assert sched.drops == 3
    assert len({round(v, 12) for v in lrs}) == 4


def test_plateau_state_round_trips():
    a = PlateauSchedule(_opt(), 0.01, patience=1)
    for e in (0.5, 0.6):
        a.step_epoch(e)
    opt = _opt()
    b = PlateauSchedule(opt, 0.01, patience=1)
    b.load_state_dict(a.state_dict())
    assert (b.lr, b.best, b.drops) == (a.lr, 0.5, 1) and opt.param_groups[0]["lr"] == pytest.approx(1e-3)


def test_warmup_then_cosine_to_the_final_lr():
    opt = _opt()
    sched = WarmupCosineSchedule(opt, peak_lr=0.1, total_steps=100, warmup_steps=10, final_lr=0.0)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(100):
        sched.step_batch()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[0] == pytest.approx(0.1 / 11) and lrs[:10] == sorted(lrs[:10])
    assert max(lrs) == pytest.approx(0.1) and lrs[-1] == pytest.approx(0.0, abs=1e-12)
    assert lrs[55] == pytest.approx(0.05 * (1 + math.cos(math.pi * 0.5)), rel=1e-6)  # halfway through the decay


def test_time_fraction_ends_the_schedule_early():
    opt = _opt()
    sched = WarmupCosineSchedule(opt, peak_lr=0.1, total_steps=1000, warmup_steps=0)
    sched.step_batch(time_fraction=0.5)
    assert sched.lr == pytest.approx(0.05) and not sched.finished
    sched.step_batch(time_fraction=1.0)
    assert sched.lr == pytest.approx(0.0, abs=1e-12) and sched.finished
