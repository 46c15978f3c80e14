"""DDP on gloo: two CPU processes end with identical weights, equal to one process fed the same global batch."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from alexnet_deploy.core.data import make_synthetic_imagefolder
from train.config import TrainConfig, resolve_config
from train.distributed import DistContext, all_reduce_sum, init_distributed
from train.engine import build_model
from train.loop import fit


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, cfg: dict, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    result = fit(TrainConfig.from_dict(cfg))
    torch.save(result.placed.grouped_state_dict(), os.path.join(out, f"rank{rank}.pt"))


def _config(data, output) -> TrainConfig:
    # No dropout and no random augmentation: each sample's input and gradient do not depend on its rank.
    return resolve_config(
        "paper",
        overrides={
            "data": str(data),
            "output": str(output),
            "loader": "memory",
            "augment": "none",
            "dropout": 0.0,
            "width": 0.125,
            "image_size": 64,
            "resize": 64,
            "epochs": 2,
            "batch_size": 16,
            "lr": 0.02,
            "init": "kaiming",
            "log_every": 1,
        },
    )


@pytest.mark.slow
def test_two_gloo_ranks_match_each_other_and_a_single_process(tmp_path):
    data = make_synthetic_imagefolder(tmp_path / "data", num_classes=4, train_per_class=16, val_per_class=4, size=64)
    ddp_out = tmp_path / "ddp"
    ddp_out.mkdir()
    cfg = _config(data, ddp_out)
    mp.start_processes(_worker, args=(2, _free_port(), cfg.to_dict(), str(ddp_out)), nprocs=2, start_method="spawn")
    rank0 = torch.load(ddp_out / "rank0.pt", weights_only=True)
    rank1 = torch.load(ddp_out / "rank1.pt", weights_only=True)
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0), "DDP replicas diverged"

    single = fit(_config(data, tmp_path / "single")).placed.grouped_state_dict()
    for k, v in single.items():
        torch.testing.assert_close(rank0[k], v, rtol=1e-4, atol=2e-6, msg=k)
    torch.manual_seed(cfg.seed)
    initial = build_model(cfg, 4).state_dict()
    assert sum(not torch.allclose(initial[k], single[k]) for k in single) == len(single)  # every tensor trained
    # Rank 0 wrote the run's files; the metrics cover the global batch (64 images per epoch over 2 ranks).
    lines = (ddp_out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 and (ddp_out / "last.pt").is_file()


def test_single_process_context_needs_no_process_group(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ctx = init_distributed(["cpu"])
    assert not ctx.distributed and ctx.is_main and ctx.devices == [torch.device("cpu")]
    assert all_reduce_sum([1.0, 2.0], DistContext()) == [1.0, 2.0]
