"""``alexnet-deploy bench``: latency and throughput of artifacts, side by side, with ratios and a picture."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from alexnet_deploy.cli._common import console, handle_errors
from alexnet_deploy.core.errors import ConfigError


def parse_batches(text: str) -> tuple[int, ...]:
    """``"1,8,32"`` -> ``(1, 8, 32)``.

    Raises:
        ConfigError: not a comma-separated list of positive integers.
    """
    try:
        batches = tuple(int(b) for b in text.split(",") if b.strip())
    except ValueError:
        batches = ()
    if not batches or any(b < 1 for b in batches):
        raise ConfigError(f"--batch takes positive integers separated by commas (e.g. 1,8,32), not '{text}'.")
    return batches


@handle_errors
def bench(
    artifacts: Annotated[
        list[str],
        typer.Argument(
            help="Artifacts: a .pt checkpoint (torch), an .onnx model (onnxruntime) or a .plan (TensorRT); "
            "PATH@fp16 or PATH@compile for torch variants of a checkpoint.",
            show_default=False,
        ),
    ],
    batch: Annotated[str, typer.Option(help="Batch sizes, comma-separated.")] = "1,8,32",
    warmup_s: Annotated[float, typer.Option(help="Warm-up seconds per artifact and batch size.")] = 1.0,
    duration_s: Annotated[
        float | None, typer.Option(help="Timed seconds per artifact and batch size (default 5).", show_default=False)
    ] = None,
    iterations: Annotated[int | None, typer.Option(help="Timed calls per artifact and batch size.")] = None,
    threads: Annotated[
        int | None, typer.Option(help="Intra-op threads for every CPU backend (default: torch's thread count).")
    ] = None,
    concurrency: Annotated[int, typer.Option(help="Request streams kept in flight at once (threads).")] = 1,
    compare: Annotated[bool, typer.Option(help="Add the PyTorch eager FP32 baseline and print ratios.")] = False,
    baseline: Annotated[
        str, typer.Option(help="Label or artifact the ratios divide by, or 'none'.")
    ] = "torch eager fp32",
    torch_compile: Annotated[bool, typer.Option(help="Add a torch.compile baseline (CUDA: with CUDA graphs).")] = False,
    device: Annotated[
        str, typer.Option(help="cpu or cuda[:N] (torch and ONNX Runtime runs; plans need cuda).")
    ] = "cpu",
    rounds: Annotated[int, typer.Option(help="Interleaving rounds: chunks per artifact and batch size.")] = 3,
    ceiling: Annotated[bool, typer.Option(help="Measure the compute ceiling (a torch.mm probe, ~1 s).")] = True,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the results as JSON to this file.")] = None,
    plot: Annotated[Path | None, typer.Option(help="Write a PNG of latency and throughput to this file.")] = None,
) -> None:
    """Measure latency (min/mean/median/p90/p99) and throughput of each artifact at each batch size.

    Several artifacts (or --compare) are measured interleaved in one run, with ratios against the baseline
    (default: PyTorch eager FP32). On a GPU, latency includes the host<->device copies and a second column
    shows the model alone (CUDA events). The other processes' CPU use while timing is measured too: figures
    taken while they kept more than 0.1 core busy are marked unreliable (a '!' and a warning line).
    """
    import sys

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from alexnet_deploy import bench as lib
    from alexnet_deploy.core.text import console_text

    if duration_s is not None and iterations is not None:
        raise ConfigError("Give --duration-s or --iterations, not both.")
    config = lib.BenchConfig(
        batch_sizes=parse_batches(batch),
        warmup_s=warmup_s,
        duration_s=5.0 if duration_s is None else duration_s,
        iterations=iterations,
        concurrency=concurrency,
        rounds=rounds,
    )
    if plot is not None and plot.suffix.lower() != ".png":
        raise ConfigError(f"--plot writes a PNG; give a file name ending in .png, not {plot.name}.")
    specs = [lib.parse_spec(a) for a in artifacts]
    targets, base = lib.build_targets(
        specs, device=device, threads=threads, compare=compare, torch_compile=torch_compile, baseline=baseline
    )
    used_threads = next((t.runner.threads for t in targets if getattr(t.runner, "threads", None)), threads)
    peak = lib.measure_ceiling(device, used_threads) if ceiling else None
    total = len(targets) * len(config.batch_sizes) * config.rounds
    with Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("bench", total=total)

        def progress(text: str) -> None:
            bar.update(task, advance=1, description=console_text(text))  # labels name files

        report = lib.run_benchmark(targets, config, baseline=base, ceiling=peak, progress=progress)
    report.command = " ".join(["alexnet-deploy", *sys.argv[1:]]) if sys.argv else "alexnet-deploy bench"
    console.print(render_table(report))
    warning = contention_warning(report)
    if warning:
        console.print(warning, style="bold red", highlight=False)
    if json_path:
        report.save_json(json_path)
        console.print(f"JSON: {json_path}")
    if plot:
        lib.save_plot(report, plot)
        console.print(f"plot: {plot}")


def contention_warning(report) -> str | None:
    """A warning line when some figures were taken while other processes used the CPU, else None."""
    flagged = [m for m in report.measurements if m.reliable is False]
    if not flagged:
        return None
    c = report.contention
    return (
        f"WARNING: {len(flagged)} of {len(report.measurements)} measurements were taken under contention "
        f"(marked !): other processes used {c.others_cpu_cores:.2f} of {c.cores} cores on average "
        f"(threshold {c.threshold_cores:g}); these figures are not reliable, rerun them on a quiet machine."
    )


def render_table(report):
    """A rich table of every measurement, with the run's conditions in the caption."""
    from rich.table import Table

    gpu = any(t["device"].startswith("cuda") for t in report.targets)
    title = f"Latency (ms) and throughput, concurrency {report.config.concurrency}"
    table = Table(title=title)
    cols = ["target", "batch", "min", "mean", "median", "p90", "p99", "img/s"]
    if gpu:
        cols.append("median w/o copies")
    if report.ceiling:
        cols.append("of ceiling")
    if report.baseline:
        cols += ["x latency", "x img/s"]
    measured = any(m.contention is not None for m in report.measurements)
    if measured:
        cols.append("others' cores")
    for c in cols:
        table.add_column(c, justify="left" if c == "target" else "right", no_wrap=c == "target")
    for m in sorted(report.measurements, key=lambda m: (m.batch, [t["label"] for t in report.targets].index(m.label))):
        lat = m.latency
        row = [m.label, str(m.batch)] + [f"{v * 1e3:.2f}" for v in (lat.min, lat.mean, lat.median, lat.p90, lat.p99)]
        row.append(f"{m.throughput:.1f}")
        if gpu:
            row.append(f"{m.compute_latency.median * 1e3:.3f}" if m.compute_latency else "")
        if report.ceiling:
            row.append(f"{m.fraction_of_ceiling:.0%}" if m.fraction_of_ceiling is not None else "")
        if report.baseline:
            row += [
                f"{m.speedup_latency:.2f}" if m.speedup_latency else "",
                f"{m.speedup_throughput:.2f}" if m.speedup_throughput else "",
            ]
        if measured:
            c = m.contention
            row.append("" if c is None else f"{c.others_cpu_cores:.2f}" + (" !" if not c.reliable else ""))
        table.add_row(*row)
    threads = sorted({str(t["threads"]) for t in report.targets if t["threads"]})
    notes = [f"threads: {', '.join(threads)}"] if threads else []
    if report.ceiling:
        gf = ", ".join(f"{k} {v:g} GFLOP/s" for k, v in report.ceiling["gflops"].items())
        notes.append(f"ceiling: {gf} ({report.ceiling['probe']})")
    if gpu:
        notes.append("GPU latency includes host<->device copies; 'w/o copies' is the model alone (CUDA events)")
    if report.baseline:
        notes.append(f"ratios vs {report.baseline} (> 1 is faster)")
    load = report.machine.get("load_average")
    if load:
        notes.append(f"load average before: {load[0]}")
    if report.contention is not None:
        limit = report.contention.threshold_cores
        notes.append(f"others' cores: other processes' average CPU use while timing (! above {limit:g})")
    elif not measured:
        notes.append("other processes' CPU use not measured (no /proc/stat)")
    table.caption = "; ".join(notes)
    return table
