"""``alexnet-deploy build``: an FP32 ONNX -> an FP16 or INT8 engine that passed the accuracy gate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from alexnet_deploy.cli._common import console, handle_errors, print_json
from alexnet_deploy.core.vocab import BackendName, CalibrationMethod, HardwareCompat

TRT = "TensorRT options"


def summary_table(result):
    """The build's accuracy table: FP32 vs the engine, agreement, the gate's verdict."""
    from rich.table import Table

    ok = "[bold green]passed[/]" if result.passed else "[bold red]FAILED[/]"
    table = Table(title=f"{result.precision.upper()} build, {result.backend}: gate {ok}")
    for col in ("model", "top-1 %", "top-5 %", "top-1 agreement %"):
        table.add_column(col, justify="left" if col == "model" else "right")
    table.add_row("FP32 ONNX (reference)", f"{result.fp32['top1']:.2f}", f"{result.fp32['top5']:.2f}", "100.00")
    c = result.comparison
    table.add_row(
        f"{result.precision.upper()} engine",
        f"{result.engine['top1']:.2f} ({c['top1_delta']:+.2f})",
        f"{result.engine['top5']:.2f} ({c['top5_delta']:+.2f})",
        f"{c['agreement_top1']:.2f}",
    )
    g = result.gate
    table.caption = (
        f"{result.engine['num_images']} images of {result.eval_data}; gate: top-1 and top-5 may drop at most "
        f"{g.max_top1_drop:g} / {g.max_top5_drop:g} points" + (f" ({g.reason})" if g.reason else "")
    )
    return table


def _print(result, as_json: bool) -> None:
    from alexnet_deploy.cli.calibrate import candidates_table

    if as_json:
        d = result.summary() | {"backend_reason": result.backend_reason, "gate": result.gate.to_dict()}
        d |= {"calibration": result.calibration, "fallback": result.fallback, "engine_facts": result.engine_facts}
        print_json(d)
        return
    console.print(f"Backend: [bold]{result.backend}[/] ({result.backend_reason})", highlight=False)
    if result.calibration:
        console.print(candidates_table(result.calibration))
    if result.fallback:
        layers = ", ".join(result.fallback["float_layers"]) or "none"
        console.print(f"Fallback: left in float: {layers} (ranked on {result.fallback['ranked_on']}).")
    console.print(summary_table(result))
    if result.path:
        console.print(f"Wrote [bold]{result.path}[/] and its sidecar.", highlight=False)


@handle_errors
def build(
    model: Annotated[Path, typer.Argument(help="FP32 ONNX model (an export, with its .json sidecar).")],
    eval_data: Annotated[
        Path, typer.Option("--eval-data", help="Images for the accuracy gate: an ImageFolder or a root with val/.")
    ],
    int8: Annotated[bool, typer.Option("--int8/--fp16", help="Precision of the engine.")] = True,
    calib_data: Annotated[
        Path | None, typer.Option("--calib-data", help="INT8 calibration images: an ImageFolder or a root with train/.")
    ] = None,
    backend: Annotated[
        BackendName, typer.Option(help="auto: TensorRT if usable here, else ONNX Runtime.")
    ] = BackendName.AUTO,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Engine file (default beside MODEL).")] = None,
    max_top1_drop: Annotated[float, typer.Option(help="Gate: most top-1 points the engine may lose.")] = 0.5,
    max_top5_drop: Annotated[float, typer.Option(help="Gate: most top-5 points the engine may lose.")] = 0.5,
    force: Annotated[
        bool, typer.Option("--force", help="Write the engine even if the gate fails (marked failed; exit code 1).")
    ] = False,
    calib_method: Annotated[
        CalibrationMethod, typer.Option(help="auto compares all three on held-out images.")
    ] = CalibrationMethod.AUTO,
    num_calib_images: Annotated[int, typer.Option(min=1, help="Calibration images.")] = 512,
    holdout_images: Annotated[int, typer.Option(min=0, help="Held-out calibration images (choice, fallback).")] = 1000,
    percentile: Annotated[float, typer.Option(help="Percentile of |x| kept by the percentile method.")] = 99.99,
    num_bins: Annotated[int, typer.Option(help="Histogram bins of the entropy/percentile methods.")] = 4096,
    max_fallback_layers: Annotated[
        int, typer.Option(min=0, help="Most layers left in float to pass the gate (0: no fallback).")
    ] = 4,
    eval_limit: Annotated[int | None, typer.Option(min=1, help="Evaluate on this many images only.")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Recalibrate instead of reusing cached ranges.")] = False,
    ort_optimize: Annotated[
        bool, typer.Option("--ort-optimize", help="ONNX Runtime: write its optimised graph (tied to its version).")
    ] = False,
    ort_providers: Annotated[
        str | None,
        typer.Option(help="ONNX Runtime providers, comma-separated (default: CUDA if installed, then CPU)."),
    ] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads for ONNX Runtime.")] = None,
    min_batch: Annotated[int, typer.Option(rich_help_panel=TRT, help="Profile's smallest batch.")] = 1,
    opt_batch: Annotated[int, typer.Option(rich_help_panel=TRT, help="Batch TensorRT tunes for.")] = 8,
    max_batch: Annotated[int, typer.Option(rich_help_panel=TRT, help="Profile's largest batch.")] = 32,
    workspace_mib: Annotated[int, typer.Option(rich_help_panel=TRT, help="Builder workspace limit (MiB).")] = 1024,
    timing_cache: Annotated[Path | None, typer.Option(rich_help_panel=TRT, help="Timing cache file.")] = None,
    opt_level: Annotated[int, typer.Option(rich_help_panel=TRT, help="Builder optimisation level 0-5.")] = 3,
    hardware_compat: Annotated[
        HardwareCompat, typer.Option(rich_help_panel=TRT, help="Hardware compatibility level.")
    ] = HardwareCompat.NONE,
    version_compatible: Annotated[
        bool, typer.Option(rich_help_panel=TRT, help="Plan loadable by later TensorRT versions.")
    ] = False,
    layer_report: Annotated[Path | None, typer.Option(rich_help_panel=TRT, help="Per-layer JSON report.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Build an FP16 or INT8 engine and prove its accuracy against FP32.

    Calibrates (INT8) or converts (FP16), compiles for TensorRT or ONNX Runtime, and checks the engine against
    the FP32 model on --eval-data. A build that fails the accuracy gate writes nothing and exits 1 (--force
    writes it, marked failed in its sidecar, and still exits 1)."""
    from alexnet_deploy.backends.onnxruntime import OnnxRuntimeBuildOptions
    from alexnet_deploy.backends.tensorrt.builder import TensorRTBuildOptions
    from alexnet_deploy.build import BuildGateError
    from alexnet_deploy.build import build as run_build
    from alexnet_deploy.cli._progress import progress_bars
    from alexnet_deploy.core.accuracy import Gate
    from calib import CalibrationOptions

    trt_options = TensorRTBuildOptions(
        min_batch=min_batch,
        opt_batch=opt_batch,
        max_batch=max_batch,
        workspace_mib=workspace_mib,
        timing_cache=timing_cache,
        optimization_level=opt_level,
        hardware_compatibility=hardware_compat.value,
        version_compatible=version_compatible,
        layer_report=layer_report,
    )
    providers = tuple(p.strip() for p in ort_providers.split(",") if p.strip()) if ort_providers else None
    try:
        with progress_bars(not as_json) as progress:
            result = run_build(
                model,
                precision="int8" if int8 else "fp16",
                eval_data=eval_data,
                calib_data=calib_data,
                backend=backend.value,
                out=output,
                gate=Gate(max_top1_drop, max_top5_drop),
                force=force,
                calib_method=calib_method.value,
                num_calib_images=num_calib_images,
                holdout_images=holdout_images,
                calib_options=CalibrationOptions(percentile=percentile, num_bins=num_bins),
                use_cache=not no_cache,
                max_fallback_layers=max_fallback_layers,
                tensorrt_options=trt_options,
                ort_options=OnnxRuntimeBuildOptions(providers=providers, optimize=ort_optimize, threads=threads),
                eval_limit=eval_limit,
                threads=threads,
                progress=progress,
            )
    except BuildGateError as exc:
        _print(exc.result, as_json)
        raise
    _print(result, as_json)
