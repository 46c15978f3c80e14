"""benchmarks/claims/runs._sweep: the learning-rate grid widens until the chosen lr is bracketed (no training)."""

from __future__ import annotations

import math

import pytest
import torch
from claims import runs as paper_claims
from claims.runs import ClaimOptions
from claims.trainer import ClaimData

from alexnet_deploy.core.errors import ConfigError
from train.data import MemoryImageSet


class _FakeTrial:
    """A Trial whose training error after the sweep is a function of its lr alone; NaN above ``diverge``."""

    best_lr = 0.001
    diverge = math.inf
    runs: list[float] = []

    def __init__(self, name, cfg, data, *, chunk_steps, total_chunks, evaluate=True):
        self.name, self.cfg, self.history = name, cfg, []

    def run(self, chunks=None, stop=None, on_record=None):
        _FakeTrial.runs.append(self.cfg.lr)
        if self.cfg.lr >= self.diverge:
            raise ConfigError("The loss became NaN.")
        error = 30.0 + 10.0 * abs(math.log10(self.cfg.lr / self.best_lr))
        self.history.append({"train_error": error, "epochs": 2.0})
        return self.history


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.setattr(paper_claims, "Trial", _FakeTrial)
    _FakeTrial.runs = []
    _FakeTrial.diverge = math.inf
    empty = MemoryImageSet(torch.zeros((1, 3, 32, 32), dtype=torch.uint8), torch.zeros(1, dtype=torch.int64), ["a"])
    return ClaimData(train=empty, val=empty, probe=empty)


def _sweep(data, **opts):
    options = ClaimOptions(data="unused", **opts)
    return paper_claims._sweep("relu", "convnet4", options, data, (1, 10), None)


def test_an_interior_best_stops_at_the_grid(fake):
    _FakeTrial.best_lr = 0.01
    winner, rec = _sweep(fake, lrs=(0.003, 0.01, 0.03))
    assert winner.cfg.lr == 0.01 and rec["chosen_lr"] == 0.01
    assert rec["extended"] == [] and rec["bracketed"] and _FakeTrial.runs == [0.003, 0.01, 0.03]


def test_a_best_on_the_low_edge_steps_below_it_until_bracketed(fake):
    _FakeTrial.best_lr = 0.001
    winner, rec = _sweep(fake, lrs=(0.003, 0.01, 0.03))
    assert rec["extended"] == [0.0009, 0.00027] and rec["chosen_lr"] == 0.0009
    assert rec["bracketed"] and winner.cfg.lr == 0.0009
    assert set(rec["train_error_after_sweep"]) == {"0.00027", "0.0009", "0.003", "0.01", "0.03"}


def test_the_number_of_extensions_is_capped_and_reported_unbracketed(fake):
    _FakeTrial.best_lr = 1e-6
    _, rec = _sweep(fake, lrs=(0.003, 0.01, 0.03), sweep_extensions=1)
    assert rec["extended"] == [0.0009] and rec["chosen_lr"] == 0.0009 and not rec["bracketed"]


def test_a_best_on_the_high_edge_steps_up_and_a_divergence_brackets_it(fake):
    _FakeTrial.best_lr, _FakeTrial.diverge = 1.0, 0.09
    _, rec = _sweep(fake, lrs=(0.003, 0.01, 0.03))
    assert rec["extended"] == [0.1] and rec["diverged"] == [0.1]
    assert rec["chosen_lr"] == 0.03 and rec["bracketed"]


def test_every_lr_diverging_is_one_sentence(fake):
    _FakeTrial.diverge = 0.0
    with pytest.raises(ConfigError, match="Every learning rate of the relu sweep diverged"):
        _sweep(fake, lrs=(0.01, 0.03))
