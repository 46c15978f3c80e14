"""``alexnet-deploy bench``: latency and throughput of artifacts, side by side, with ratios and a picture."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from alexnet_deploy.cli._common import console, handle_errors
from alexnet_deploy.core.errors import ConfigError


@handle_errors
def bench_command(
    artifacts: Annotated[
        list[str],
        typer.Argument(
            help="Artifacts: a .pt checkpoint (torch), an .onnx model (onnxruntime), a .plan (TensorRT) or an .ovblob "
            "(OpenVINO); PATH@fp16 or PATH@compile for torch variants of a checkpoint; triton://HOST:PORT/MODEL (or "
            "grpc://HOST:PORT/MODEL) for a model served by Triton, timed beside the artifacts given with it.",
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
    concurrency: Annotated[
        str, typer.Option(help="Request streams kept in flight at once (threads); a sweep as 1,2,4,8,16.")
    ] = "1",
    protocol: Annotated[
        str | None, typer.Option(help="http or grpc for triton:// models (default: http; grpc:// says grpc).")
    ] = None,
    compare: Annotated[bool, typer.Option(help="Add the PyTorch eager FP32 baseline and print ratios.")] = False,
    baseline: Annotated[
        str | None,
        typer.Option(
            help="Label or artifact the ratios divide by, or 'none' (default: torch eager fp32; with a served "
            "model, the in-process runner of the artifact given beside it).",
            show_default=False,
        ),
    ] = None,
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

    A served model (triton://HOST:PORT/MODEL) is measured like an artifact, over HTTP or gRPC, with the server's
    own queue and compute times per request and the batch its dynamic batcher formed; given with the artifact it
    serves, the ratio against that artifact's in-process runner is the server's overhead. --concurrency 1,2,4,8
    sweeps the request streams, and the plot then shows throughput against p99 latency.
    """
    import sys

    from alexnet_deploy import bench as lib
    from alexnet_deploy.bench import served
    from alexnet_deploy.core.values import parse_batch_sizes

    if duration_s is not None and iterations is not None:
        raise ConfigError("Give --duration-s or --iterations, not both.")
    config = lib.BenchConfig(
        batch_sizes=parse_batch_sizes(batch),
        warmup_s=warmup_s,
        duration_s=5.0 if duration_s is None else duration_s,
        iterations=iterations,
        concurrency=parse_batch_sizes(concurrency, flag="--concurrency"),
        rounds=rounds,
    )
    if plot is not None and plot.suffix.lower() != ".png":
        raise ConfigError(f"--plot writes a PNG; give a file name ending in .png, not {plot.name}.")
    endpoints = [served.parse_endpoint(a, protocol) for a in artifacts if served.is_endpoint(a)]
    specs = [lib.parse_spec(a) for a in artifacts if not served.is_endpoint(a)]
    default_base = lib.TORCH_BASELINE if not endpoints or compare else "none"
    targets, base = (
        lib.build_targets(specs, device=device, threads=threads, compare=compare, torch_compile=torch_compile,
                          baseline=baseline or default_base) if specs else ([], None)
    )  # fmt: skip
    if endpoints:
        targets, base = served.add_served(targets, base, endpoints, workers=max(config.concurrency),
                                          baseline=baseline, compare=compare)  # fmt: skip
    used_threads = next((t.runner.threads for t in targets if getattr(t.runner, "threads", None)), threads)
    peak = lib.measure_ceiling(device, used_threads) if ceiling else None
    report = _run_with_progress(targets, config, base, peak)
    report.command = " ".join(["alexnet-deploy", *sys.argv[1:]]) if sys.argv else "alexnet-deploy bench"
    _show_and_save(report, json_path, plot)


def _show_and_save(report, json_path: Path | None, plot: Path | None) -> None:
    """The table and any contention warning on the console; the JSON and the plot where asked for."""
    from alexnet_deploy.bench import save_plot

    console.print(render_table(report))
    warning = contention_warning(report)
    if warning:
        console.print(warning, style="bold red", highlight=False)
    if json_path:
        report.save_json(json_path)
        console.print(f"JSON: {json_path}")
    if plot:
        save_plot(report, plot)
        console.print(f"plot: {plot}")


def _run_with_progress(targets, config, baseline, ceiling):
    """Run the benchmark under a progress bar (one step per target, batch size and round)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from alexnet_deploy.bench import run_benchmark
    from alexnet_deploy.core.text import console_text

    total = len(targets) * len(config.batch_sizes) * len(config.concurrency) * config.rounds
    with Progress(
        TextColumn("{task.description}", markup=False), BarColumn(), TimeElapsedColumn(), console=console,
        transient=True,
    ) as bar:  # fmt: skip
        task = bar.add_task("bench", total=total)
        return run_benchmark(
            targets, config, baseline=baseline, ceiling=ceiling,
            progress=lambda text: bar.update(task, advance=1, description=console_text(text)),  # labels name files
        )  # fmt: skip


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
    levels = report.config.concurrency
    sweep = len(levels) > 1
    title = f"Latency (ms) and throughput, concurrency {', '.join(map(str, levels))}"
    table = Table(title=title)
    server = any(m.server is not None for m in report.measurements)
    cols = ["target", "batch", *(["conc."] if sweep else []), "min", "mean", "median", "p90", "p99", "img/s"]
    if server:
        cols += ["srv queue", "srv compute", "srv batch"]
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
    order = [t["label"] for t in report.targets]
    for m in sorted(report.measurements, key=lambda m: (m.batch, m.concurrency, order.index(m.label))):
        lat = m.latency
        row = [m.label, str(m.batch), *([str(m.concurrency)] if sweep else [])]
        row += [f"{v * 1e3:.2f}" for v in (lat.min, lat.mean, lat.median, lat.p90, lat.p99)]
        row.append(f"{m.throughput:.1f}")
        if server:
            s = m.server
            row += [f"{s.queue_ms:.2f}", f"{s.compute_ms:.2f}", f"{s.batch:.1f}"] if s else ["", "", ""]
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
    if server:
        notes.append("srv: the server's own ms per request, queued and computing (its statistics extension), and "
                     "the images per execution its batcher formed")  # fmt: skip
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
