"""``alexnet-deploy quickstart``: from nothing to a trained, exported, calibrated, verified and benchmarked AlexNet."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from alexnet_deploy.cli._common import console, echo_error, handle_errors


@handle_errors
def quickstart_command(
    data: Annotated[
        Path | None,
        typer.Option(help="ImageFolder root with train/ and val/ (e.g. tiny-imagenet-100); default: synthetic set."),
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for every artifact and the report.")] = Path(
        "alexnet-deploy-quickstart"
    ),
    checkpoint: Annotated[
        Path | None, typer.Option(help="Use this trained checkpoint instead of training one.")
    ] = None,
    train_minutes: Annotated[float, typer.Option(help="Training time budget in minutes.")] = 4.0,
    epochs: Annotated[int | None, typer.Option(help="At most this many training epochs.")] = None,
    width: Annotated[float | None, typer.Option(help="Width multiplier of the trained network.")] = None,
    image_size: Annotated[int | None, typer.Option(help="Training and inference crop size in pixels.")] = None,
    backend: Annotated[
        str, typer.Option(help="INT8 engine backend: auto (the fastest verified here) or one backend.")
    ] = "auto",
    calib_images: Annotated[int, typer.Option(help="INT8 calibration images.")] = 256,
    holdout_images: Annotated[int, typer.Option(help="Held-out calibration images for choosing the method.")] = 200,
    eval_limit: Annotated[int | None, typer.Option(help="Evaluate on at most this many validation images.")] = None,
    bench_batch: Annotated[str, typer.Option(help="Benchmark batch sizes, comma-separated.")] = "1,32",
    bench_seconds: Annotated[float, typer.Option(help="Timed seconds per engine and batch size.")] = 2.0,
    threads: Annotated[int | None, typer.Option(help="CPU threads for every backend.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild every stage even if cached.")] = False,
) -> None:
    """Train (demo preset), export FP32/FP16, calibrate and build INT8 for the best backend here, verify the
    accuracy gate, bench every precision side by side, and write report.md / report.html.

    Without --data it runs on a built-in synthetic image set and says so. Re-running reuses every stage whose
    inputs are unchanged (content hashes) unless --force. Exits 1 if the INT8 engine failed its accuracy gate.
    """
    from alexnet_deploy.cli._progress import progress_bars
    from alexnet_deploy.cli.train import progress_hooks
    from alexnet_deploy.core.values import parse_batch_sizes
    from alexnet_deploy.quickstart import QuickstartOptions, run_quickstart

    batches = parse_batch_sizes(bench_batch, flag="--bench-batch")
    overrides = {k: v for k, v in {"width": width, "image_size": image_size}.items() if v is not None}
    if image_size is not None:
        overrides["resize"] = int(round(image_size * 256 / 224))
    opts = QuickstartOptions(
        data=data, out=out, checkpoint=checkpoint, train_minutes=train_minutes, epochs=epochs,
        train_overrides=overrides, backend=backend, calib_images=calib_images, holdout_images=holdout_images,
        eval_limit=eval_limit, bench_batches=batches, bench_seconds=bench_seconds, threads=threads, force=force,
    )  # fmt: skip
    with progress_bars() as progress:
        results = run_quickstart(
            opts,
            say=lambda s: console.print(s, markup=False, highlight=False),
            train_hooks=progress_hooks(),
            progress=progress,
        )
    report = out / "report.md"
    for line in report.read_text().splitlines():  # line by line: each line's control characters escaped, not its breaks
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    console.print(f"Report: {report} and {out / 'report.html'}", highlight=False)
    if not results["gate"]["passed"]:
        echo_error(results["gate"]["reason"])
        raise typer.Exit(1)
