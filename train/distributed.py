"""Scale-out on ``torch.distributed``: torchrun environment, device choice, DDP wrapping, metric all-reduce.

Launch with torchrun (it sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``)::

    torchrun --nproc-per-node 2 $(which alexnet-deploy) train DATA --preset paper

NCCL is used when every device of a rank is a GPU, gloo otherwise (CPU processes, or a two-column model that
spans a GPU and the CPU). Without those variables the run is a single process and nothing is initialised.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn

from alexnet_deploy.core.errors import ConfigError, MissingBackendError

__all__ = ["DistContext", "all_reduce_max", "all_reduce_sum", "init_distributed", "resolve_devices", "shutdown"]


@dataclass
class DistContext:
    """Where this process stands: its rank among ``world_size``, its device(s) and the backend (or none)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = ""
    devices: list[torch.device] = field(default_factory=lambda: [torch.device("cpu")])

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints, logs and plots."""
        return self.rank == 0

    @property
    def reduce_device(self) -> torch.device:
        """Collectives run on the GPU under NCCL and on the CPU under gloo."""
        return self.devices[0] if self.backend == "nccl" else torch.device("cpu")


def resolve_devices(spec: list[str], local_rank: int = 0) -> list[torch.device]:
    """Turn ``--devices`` into torch devices, checking that each exists on this machine.

    An empty spec picks ``cuda:<local_rank>`` when a GPU is present, else the CPU; a bare ``cuda`` means
    ``cuda:<local_rank>``.

    Raises:
        ConfigError: more than two devices or an unparsable name.
        MissingBackendError: a CUDA device that this machine does not have.
    """
    if not spec:
        spec = [f"cuda:{local_rank}"] if torch.cuda.is_available() else ["cpu"]
    if len(spec) > 2:
        raise ConfigError(f"--devices takes one device or two (the paper's two columns), got {len(spec)}.")
    devices = []
    for name in spec:
        try:
            device = torch.device(f"cuda:{local_rank}" if name == "cuda" else name)
        except RuntimeError:
            raise ConfigError(f"'{name}' is not a torch device name (e.g. cpu, cuda:0).") from None
        if device.type == "cuda":
            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            index = device.index if device.index is not None else 0
            if index >= count:
                raise MissingBackendError(f"{name} is not available here ({count} CUDA device(s) found).")
        elif device.type != "cpu":
            raise ConfigError(f"Device '{name}' is not supported; use cpu or cuda:N.")
        devices.append(device)
    return devices


def init_distributed(spec: list[str]) -> DistContext:
    """Read torchrun's environment and join the process group when there is more than one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    devices = resolve_devices(spec, local_rank)
    if world <= 1:
        return DistContext(devices=devices)
    backend = "nccl" if all(d.type == "cuda" for d in devices) else "gloo"
    if devices[0].type == "cuda":
        torch.cuda.set_device(devices[0])
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistContext(rank=rank, world_size=world, local_rank=local_rank, backend=backend, devices=devices)


def wrap_ddp(model: nn.Module, ctx: DistContext) -> nn.Module:
    """Wrap in DistributedDataParallel when distributed (a two-device model is wrapped without device_ids)."""
    if not ctx.distributed:
        return model
    single_gpu = len(ctx.devices) == 1 and ctx.devices[0].type == "cuda"
    return nn.parallel.DistributedDataParallel(model, device_ids=[ctx.devices[0]] if single_gpu else None)


def all_reduce_sum(values: list[float], ctx: DistContext) -> list[float]:
    """Sum a list of numbers over all ranks (identity in a single process)."""
    if not ctx.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=ctx.reduce_device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def all_reduce_max(value: float, ctx: DistContext) -> float:
    """The largest ``value`` over all ranks: ranks agree on time-driven decisions (lr, stopping)."""
    if not ctx.distributed:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=ctx.reduce_device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def barrier(ctx: DistContext) -> None:
    """Wait for every rank (e.g. until rank 0 has written a checkpoint)."""
    if ctx.distributed:
        dist.barrier()


def shutdown(ctx: DistContext) -> None:
    """Leave the process group, if this process joined one."""
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()
