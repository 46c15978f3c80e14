"""Training throughput: our training step (through our data path) against a bare loop on the same model.

"ours" is ``train.engine.train_one_epoch`` fed by the run's own loader (decoding/augmentation, metric
accumulation and the schedule included). "bare" is ``zero_grad / forward / loss / backward / step`` on one
pre-made batch of the same shape, so it measures the model alone. The two are interleaved (``--repeats``
rounds of ``--steps`` steps each) and the medians and their ratio are printed; the data path is not the
bottleneck when the ratio is at least 0.9.

    .venv/bin/python benchmarks/train_throughput.py                      # demo preset, memory loader
    .venv/bin/python benchmarks/train_throughput.py --set loader=folder --set workers=2
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from alexnet_deploy.core.manifest import library_versions
from train.config import parse_overrides, resolve_config
from train.distributed import DistContext, resolve_devices
from train.engine import build_dataloaders, build_model, build_optimizer, place_model, train_one_epoch
from train.schedule import ConstantSchedule


class _Take:
    """The first ``n`` batches of a loader, keeping its interface (``set_epoch``, ``len``)."""

    def __init__(self, loader, n: int) -> None:
        self.loader, self.n = loader, n

    def set_epoch(self, epoch: int) -> None:
        self.loader.set_epoch(epoch)

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        return itertools.islice(iter(self.loader), self.n)


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--data", default=None, help="dataset root (default: the preset's)")
    parser.add_argument("--images", type=int, default=6400, help="training images to load (memory path)")
    parser.add_argument("--steps", type=int, default=15, help="steps per timed round")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--set", dest="sets", action="append", default=[], help="NAME=VALUE recipe override")
    parser.add_argument("--json", action="store_true", help="print one JSON record")
    args = parser.parse_args()

    overrides = parse_overrides(args.sets)
    if args.data:
        overrides["data"] = args.data
    overrides.setdefault("max_train_images", args.images)
    overrides.setdefault("max_val_images", 100)
    cfg = resolve_config(args.preset, overrides=overrides)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    ctx = DistContext(devices=resolve_devices(cfg.device_list))
    data = build_dataloaders(cfg, ctx)
    torch.manual_seed(cfg.seed)
    placed = place_model(build_model(cfg, len(data.classes)), cfg, ctx)
    optimizer = build_optimizer(cfg, placed.module)
    schedule = ConstantSchedule(optimizer, cfg.lr)
    batch = cfg.batch_size
    x = torch.randn(batch, 3, cfg.image_size, cfg.image_size, device=placed.input_device)
    if cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, len(data.classes), (batch,), device=placed.output_device)
    sync = torch.cuda.synchronize if placed.input_device.type == "cuda" else (lambda: None)

    def bare(steps: int) -> float:
        placed.module.train()
        sync()
        start = time.perf_counter()
        for _ in range(steps):
            loss = F.cross_entropy(placed.module(x), y, label_smoothing=cfg.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        sync()
        return steps * batch / (time.perf_counter() - start)

    epoch = itertools.count(1)

    def ours(steps: int) -> float:
        sync()
        start = time.perf_counter()
        stats = train_one_epoch(
            placed,
            _Take(data.train, steps),
            optimizer,
            schedule,
            epoch=next(epoch),
            label_smoothing=cfg.label_smoothing,
            log_every=10**9,
        )
        sync()
        return stats["images"] / (time.perf_counter() - start)

    load_before = os.getloadavg()[0]
    bare(args.warmup)
    ours(args.warmup)
    rounds_ours, rounds_bare = [], []
    for _ in range(args.repeats):
        rounds_ours.append(ours(args.steps))
        rounds_bare.append(bare(args.steps))
    o, b = statistics.median(rounds_ours), statistics.median(rounds_bare)
    record = {
        "preset": cfg.preset,
        "model": cfg.model,
        "width": cfg.width,
        "image_size": cfg.image_size,
        "batch": batch,
        "loader": cfg.loader,
        "augment": cfg.augment,
        "workers": cfg.workers,
        "device": str(placed.input_device),
        "threads": torch.get_num_threads(),
        "ours_img_per_s": round(o, 1),
        "bare_img_per_s": round(b, 1),
        "ratio": round(o / b, 3),
        "rounds_ours": [round(v, 1) for v in rounds_ours],
        "rounds_bare": [round(v, 1) for v in rounds_bare],
        "load_average_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "versions": library_versions(),
    }
    if args.json:
        print(json.dumps(record))
        return
    print(
        f"{cfg.model} width {cfg.width:g} at {cfg.image_size} px, batch {batch}, {cfg.loader} loader "
        f"({cfg.augment} augmentation), {placed.input_device}, {torch.get_num_threads()} threads"
    )
    print(f"  ours (train_one_epoch + loader): {o:8.1f} img/s   rounds {record['rounds_ours']}")
    print(f"  bare forward/backward/step:      {b:8.1f} img/s   rounds {record['rounds_bare']}")
    print(f"  ratio ours / bare: {o / b:.3f}   (load average before/after {record['load_average_before_after']})")
    print(
        f"  {record['cpu']}, {record['cores']} cores; " + ", ".join(f"{k} {v}" for k, v in record["versions"].items())
    )


if __name__ == "__main__":
    main()
