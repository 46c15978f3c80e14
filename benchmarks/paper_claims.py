"""The paper's three headline claims, re-measured: ReLU vs tanh, dropout, overlapping pooling.

One subcommand per claim writes ``OUT/<claim>.json`` (every curve point, the recipe, machine and versions) and
``OUT/<claim>.png`` (training error against epochs, both variants on one plot). ``speed`` measures the
training throughput of every configuration first, so that budgets are planned, not guessed.

    PYTHONPATH=. python benchmarks/paper_claims.py speed
    PYTHONPATH=. python benchmarks/paper_claims.py relu-tanh --out benchmarks/results/claims   # ~18 min
    PYTHONPATH=. python benchmarks/paper_claims.py dropout --out benchmarks/results/claims     # ~31 min
    PYTHONPATH=. python benchmarks/paper_claims.py pooling --out benchmarks/results/claims     # ~15 min
    PYTHONPATH=. python benchmarks/paper_claims.py relu-tanh --quick       # seconds, on a few CIFAR images

Without options each claim runs the recipe whose results docs/BENCHMARKS.md reports (``RECIPES``: subsets,
epochs, seeds, wall budget); any option overrides its part of it.

The library is ``benchmarks/claims/runs.py`` (recipes and runs) and ``benchmarks/claims/trainer.py`` (the chunked
trainer); both reuse ``train/``'s loop.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch
from claims.runs import (
    ClaimOptions,
    cifar_recipe,
    machine,
    run_dropout,
    run_pooling,
    run_relu_tanh,
    tiny_recipe,
)
from claims.trainer import ClaimData, Trial, extract_cifar10, plot_claim

from alexnet_deploy.core.files import write_json_atomic
from train.data import MemoryImageSet
from train.engine import evaluate

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
CACHE = Path.home() / ".cache" / "alexnet-deploy"
RECIPES = {  # what docs/BENCHMARKS.md reports, sized for about 30 minutes a claim on 2 cores
    "relu-tanh": dict(
        train_images=10000,
        val_images=1000,
        epochs=40.0,
        sweep_epochs=3.0,
        lrs=(0.003, 0.01, 0.03),
        chunks_per_epoch=2,
        seeds=(0, 1, 2),
        minutes=32.0,
    ),
    "dropout": dict(
        train_images=2000,
        val_images=1000,
        probe_images=1000,
        image_size=64,
        augment="none",
        epochs=110.0,
        chunks_per_epoch=0.5,
        seeds=(0, 1, 2),
        minutes=31.0,
    ),
    "pooling": dict(seeds=(0, 1, 2), epochs=1.5, chunks_per_epoch=2, probe_images=2500, minutes=10.0),
}
QUICK = {  # a smoke run of seconds: a few images, a few steps, every code path
    "relu-tanh": dict(epochs=1.0, chunks_per_epoch=2, batch_size=50, lrs=(0.01, 0.05), sweep_epochs=0.5, val_images=20),
    "dropout": dict(epochs=1.0, chunks_per_epoch=2, batch_size=50, image_size=64, probe_images=40, val_images=40),
    "pooling": dict(epochs=0.5, chunks_per_epoch=2, batch_size=50, image_size=64, probe_images=40, val_images=40),
}


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(",") if v.strip())


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v.strip())


def _options(args: argparse.Namespace) -> ClaimOptions:
    given = {
        k: v for k, v in vars(args).items() if v is not None and k in {f.name for f in dataclasses.fields(ClaimOptions)}
    }
    if args.claim == "relu-tanh":
        per_class = 20 if args.quick else 0
        root = args.data or str(extract_cifar10(args.cifar_archive, args.cache, per_class=per_class))
    else:
        root = args.data or str(DATA / ("fixture-tiny-imagenet-20" if args.quick else "tiny-imagenet-100"))
    given["data"] = root
    given = {**(QUICK if args.quick else RECIPES)[args.claim], **given}
    return ClaimOptions(**given)


def _report(name: str, rec: dict) -> None:
    extra = ""
    if "val_top1_error" in rec:
        extra = f"  val top-1/5 err {rec['val_top1_error']:5.1f}/{rec['val_top5_error']:5.1f}"
        if "gap_top1" in rec:
            extra += f"  gap {rec['gap_top1']:+5.1f}"
    print(
        f"[{time.strftime('%H:%M:%S')}] {name:24s} ep {rec['epochs']:6.2f}  train err {rec['train_error']:5.1f}"
        f"  loss {rec['train_loss']:.3f}  lr {rec['lr']:.3g}  {rec['img_per_s']:6.0f} img/s{extra}",
        flush=True,
    )


def _plot(claim: str, result: dict, out: Path) -> Path:
    runs = {name: [r["history"] for r in rs] for name, rs in result["runs"].items()}
    titles = {
        "relu-tanh": "Figure 1: convnet4, CIFAR-10 ({n} train images), ReLU vs tanh, no regularisation",
        "dropout": "Dropout 0 vs 0.5: paper AlexNet w{w:g}, tiny-imagenet-100 ({n} train images)",
        "pooling": "Pooling 3x3/2 vs 2x2/2: paper AlexNet w{w:g}, tiny-imagenet-100 ({n} train images)",
    }
    level = result.get("target_error") if claim == "relu-tanh" else None
    title = titles[claim].format(n=f"{result['data']['train']:,}", w=result["options"]["width"])
    return plot_claim(runs, out / f"{claim}.png", title, level=level)


def _speed(args: argparse.Namespace) -> None:
    """img/s of a training chunk (after a warm-up chunk) and of evaluation, on random uint8 images."""
    torch.set_num_threads(args.threads or 2)
    opts = ClaimOptions(data="", batch_size=128, image_size=args.image_size or 96)
    configs = [
        ("convnet4 relu, 32 px", cifar_recipe(opts, "convnet4", 0.01, 0), 10, 32),
        ("convnet4 tanh, 32 px", cifar_recipe(opts, "convnet4_tanh", 0.01, 0), 10, 32),
        (
            f"alexnet_paper w0.25 dropout 0, {opts.image_size} px",
            tiny_recipe(opts, dropout=0.0, augment="paper"),
            100,
            64,
        ),
        (
            f"alexnet_paper w0.25 dropout 0.5, {opts.image_size} px",
            tiny_recipe(opts, dropout=0.5, augment="paper"),
            100,
            64,
        ),
        (f"alexnet_paper w0.25 (demo), {opts.image_size} px", tiny_recipe(opts), 100, 64),
        (
            f"alexnet_paper_pool2 w0.25 (demo), {opts.image_size} px",
            tiny_recipe(opts, model="alexnet_paper_pool2"),
            100,
            64,
        ),
    ]
    records = []
    for label, cfg, classes, side in configs:
        n = 128 * 8
        gen = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (n, 3, side, side), dtype=torch.uint8, generator=gen)
        targets = torch.randint(0, classes, (n,), generator=gen)
        train = MemoryImageSet(images, targets, [str(i) for i in range(classes)])
        resize = cfg.preprocessing.resize
        val = MemoryImageSet(
            images[:512].clone()
            if side == resize
            else torch.nn.functional.interpolate(images[:512].float(), size=resize).to(torch.uint8),
            targets[:512],
            train.classes,
        )
        data = ClaimData(train=train, val=val, probe=val)
        t = Trial(label, cfg, data, chunk_steps=args.steps, total_chunks=4)
        t.step_chunk()  # warm-up
        rates = [t.step_chunk()["img_per_s"] for _ in range(2)]
        start = time.perf_counter()
        evaluate(t.placed, t.val)
        eval_rate = len(val) / (time.perf_counter() - start)
        rec = {
            "config": label,
            "train_img_per_s": max(rates),
            "eval_img_per_s": eval_rate,
            "params": t.summary()["params"],
        }
        records.append(rec)
        print(
            f"{label:48s} train {rec['train_img_per_s']:7.0f} img/s   eval {eval_rate:7.0f} img/s   "
            f"{rec['params']:,} parameters",
            flush=True,
        )
    out = {"speed": records, "machine": machine(), "steps_per_chunk": args.steps}
    if args.out:
        write_json_atomic(Path(args.out) / "speed.json", out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("claim", choices=["relu-tanh", "dropout", "pooling", "speed", "plot"])
    parser.add_argument("--quick", action="store_true", help="a smoke run of seconds on tiny data (tests)")
    parser.add_argument("--seeds", type=_ints, default=None, help="comma-separated seeds (default 0)")
    parser.add_argument("--epochs", type=float, default=None, help="run length in epochs (relu-tanh: the cap)")
    parser.add_argument("--minutes", type=float, default=None, help="wall budget of the whole claim (0 = none)")
    parser.add_argument("--lrs", type=_floats, default=None, help="relu-tanh: the sweep; dropout: the lr")
    parser.add_argument("--sweep-epochs", type=float, default=None, help="relu-tanh: length of each sweep run")
    parser.add_argument(
        "--target", type=float, default=None, help="training error to reach, %% (relu-tanh 25, dropout: converged, 10)"
    )
    parser.add_argument("--sweep-extensions", type=int, default=None, help="relu-tanh: grid steps past an edge (2)")
    parser.add_argument(
        "--init", default=None, help="relu-tanh: kaiming-zero-head (default), kaiming or paper (see ConvNet4)"
    )
    parser.add_argument("--augment", default=None, choices=["paper", "none"], help="dropout: augmentation (paper)")
    parser.add_argument("--chunks-per-epoch", type=float, default=None, help="curve points per epoch (0.5: every 2)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--train-images", type=int, default=None, help="class-stratified training subset (0 = all)")
    parser.add_argument("--val-images", type=int, default=None, help="validation subset (0 = all)")
    parser.add_argument("--probe-images", type=int, default=None, help="training images evaluated like val")
    parser.add_argument("--image-size", type=int, default=None, help="dropout/pooling crop (default 96)")
    parser.add_argument("--width", type=float, default=None, help="dropout/pooling network width (0.25)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--steps", type=int, default=10, help="speed: steps per timed chunk")
    parser.add_argument("--data", default=None, help="dataset root (default: ../shared/data's)")
    parser.add_argument("--cifar-archive", default=str(DATA / "cifar10.tar.gz"))
    parser.add_argument("--cache", default=str(CACHE), help="where cifar10.tar.gz is extracted")
    parser.add_argument("--out", default=None, help="folder for <claim>.json and <claim>.png")
    args = parser.parse_args(argv)
    if args.claim == "speed":
        _speed(args)
        return
    if args.claim == "plot":  # redraw OUT/<claim>.png from OUT/<claim>.json for every JSON there
        out = Path(args.out or "runs/claims")
        for path in sorted(out.glob("*.json")):
            result = json.loads(path.read_text())
            if "claim" in result:
                print(f"wrote {_plot(result['claim'], result, out)}")
        return
    opts = _options(args)
    torch.set_num_threads(opts.threads)
    run = {"relu-tanh": run_relu_tanh, "dropout": run_dropout, "pooling": run_pooling}[args.claim]
    result = run(opts, report=_report)
    result["command"] = " ".join(["benchmarks/paper_claims.py", *(argv if argv is not None else sys.argv[1:])])
    out = Path(args.out or "runs/claims")
    write_json_atomic(out / f"{args.claim}.json", result)
    png = _plot(args.claim, result, out)
    print(f"wrote {out / (args.claim + '.json')} and {png} ({result['wall_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
