"""``alexnet-deploy build``: an FP32 ONNX -> an FP16, BF16 or INT8 engine that passed the accuracy gate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from alexnet_deploy.cli._backend_options import with_backend_options
from alexnet_deploy.cli._common import console, handle_errors, print_json, styled
from alexnet_deploy.core.values import parse_batch_sizes
from alexnet_deploy.core.vocab import BackendName, CalibrationMethod, Refinement
from alexnet_deploy.requests import BuildRequest

D = BuildRequest()  # the defaults, defined once (each backend's own come from its options class)
C = D.calibration


def summary_table(result):
    """The build's accuracy table: FP32 vs the engine, agreement, the gate's verdict."""
    from rich.table import Table
    from rich.text import Text

    ok = styled("passed", "bold green") if result.passed else styled("FAILED", "bold red")
    table = Table(title=Text.assemble(f"{result.precision.upper()} build, {result.backend}: gate ", ok))
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


def speed_table(selection: dict):
    """Every candidate of the build: gate, agreement, measured images/s against FP32 on its runtime."""
    from rich.table import Table

    batches = sorted({int(b) for c in selection["candidates"] for b in c["speed"]})
    table = Table(title="Candidates (speed measured side by side here; random inputs)")
    for col in ("candidate", "gate", "agree %", *(f"b{b} img/s (fp32)" for b in batches), ""):
        table.add_column(col, justify="left" if col in ("candidate", "gate", "") else "right")
    for c in selection["candidates"]:
        label = c["backend"] + (f" ({c['form']} form)" if c["form"] else "")
        cells = []
        for b in batches:
            mine, fp32 = c["speed"].get(str(b)), c["fp32_speed"].get(str(b))
            cells.append(
                "-" if not mine else f"{mine['images_per_s']:.0f}" + (f" ({fp32['images_per_s']:.0f})" if fp32 else "")
            )
        agree = f"{c['agreement_top1']:.1f}" if c["agreement_top1"] is not None else "-"
        chosen = styled("chosen", "bold green") if label == selection["chosen"] else ""
        table.add_row(label, "passed" if c["passed"] else styled("failed", "red"), agree, *cells, chosen)
    table.caption = f"chosen: {selection['chosen']}, {selection['why']}"
    return table


def _print(result, as_json: bool) -> None:
    from alexnet_deploy.cli._common import err_console
    from alexnet_deploy.cli.calibrate import candidates_table

    if as_json:
        d = result.summary() | {"backend_reason": result.backend_reason, "gate": result.gate.to_dict()}
        d |= {"calibration": result.calibration, "fallback": result.fallback, "engine_facts": result.engine_facts}
        d |= {"verified_on": result.verified_on, "selection": result.selection, "notes": result.notes}
        print_json(d)
        return
    console.print("Backend:", styled(result.backend, "bold"), f"({result.backend_reason})", highlight=False)
    if result.calibration:
        console.print(candidates_table(result.calibration))
    if result.fallback:
        layers = ", ".join(result.fallback["float_layers"]) or "none"
        console.print(f"Fallback: left in float: {layers} (ranked on {result.fallback['ranked_on']}).")
    if (
        result.selection
        and len(result.selection["candidates"]) > 1
        or any(c["speed"] for c in result.selection.get("candidates", []))
    ):
        console.print(speed_table(result.selection))
    console.print(summary_table(result))
    console.print(f"Verified on {result.verified_on}.", highlight=False)
    for note in result.notes:
        err_console.print(styled("warning:", "bold yellow"), note, highlight=False)
    if result.path:
        console.print("Wrote", styled(result.path, "bold"), "and its sidecar.", highlight=False)
        blob = (result.engine_facts or {}).get("blob")
        if blob:
            console.print(
                f"Wrote {result.path.with_name(blob['file'])} and its sidecar: OpenVINO's compiled model, "
                f"verified itself; it loads only with OpenVINO {blob['openvino_version']} on CPUs of its instruction "
                f"set ({blob['cpu_isa'] or 'unknown'}).",
                highlight=False,
                markup=False,
            )


@handle_errors
@with_backend_options
def build_command(
    model: Annotated[Path, typer.Argument(help="FP32 ONNX model (an export, with its .json sidecar).")],
    eval_data: Annotated[
        Path, typer.Option("--eval-data", help="Images for the accuracy gate: an ImageFolder or a root with val/.")
    ],
    int8: Annotated[bool, typer.Option("--int8/--fp16", help="Precision of the engine.")] = True,
    bf16: Annotated[bool, typer.Option("--bf16", help="BF16 inference (OpenVINO, where the CPU has it).")] = False,
    calib_data: Annotated[
        Path | None, typer.Option("--calib-data", help="INT8 calibration images: an ImageFolder or a root with train/.")
    ] = None,
    backend: Annotated[
        BackendName, typer.Option(help="auto: the fastest engine that passes the gate here, measured.")
    ] = D.backend,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Engine file (default beside MODEL).")] = None,
    max_top1_drop: Annotated[
        float, typer.Option(help="Gate: most top-1 points the engine may lose.")
    ] = D.gate.max_top1_drop,
    max_top5_drop: Annotated[
        float, typer.Option(help="Gate: most top-5 points the engine may lose.")
    ] = D.gate.max_top5_drop,
    force: Annotated[
        bool, typer.Option("--force", help="Write the engine even if the gate fails (marked failed; exit code 1).")
    ] = D.force,
    calib_method: Annotated[
        CalibrationMethod, typer.Option(help="auto compares all three on held-out images.")
    ] = C.method,
    num_calib_images: Annotated[int, typer.Option(min=1, help="Calibration images.")] = C.num_images,
    holdout_images: Annotated[
        int, typer.Option(min=0, help="Held-out calibration images (choice, fallback).")
    ] = C.holdout_images,
    percentile: Annotated[
        float, typer.Option(help="Percentile of |x| kept by the percentile method.")
    ] = C.settings.percentile,
    num_bins: Annotated[
        int, typer.Option(help="Histogram bins of the entropy/percentile methods.")
    ] = C.settings.num_bins,
    refine: Annotated[
        Refinement,
        typer.Option(help="INT8 weights beyond nearest rounding: bias, adaround, adaround+bias; auto compares."),
    ] = C.refine,
    max_fallback_layers: Annotated[
        int, typer.Option(min=0, help="Most layers left in float to pass the gate (0: no fallback).")
    ] = D.max_fallback_layers,
    eval_limit: Annotated[int | None, typer.Option(min=1, help="Evaluate on this many images only.")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Recalibrate instead of reusing cached ranges.")] = False,
    probe_batch: Annotated[
        str, typer.Option(help="Batch sizes the speed probe measures (auto chooses the fastest); empty: no probe.")
    ] = ",".join(map(str, D.probe.batches)),
    threads: Annotated[int | None, typer.Option(help="CPU threads for ONNX Runtime and OpenVINO.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
    engines: dict | None = None,  # every backend's own options (the panels below), filled by with_backend_options
) -> None:
    """Build an FP16, BF16 or INT8 engine and prove its accuracy against FP32.

    Calibrates (INT8) or converts (FP16), compiles for ONNX Runtime, OpenVINO, TensorRT or TensorRT-RTX, and
    checks the engine against the FP32 model on --eval-data. With --backend auto every engine that can be
    verified here is built and checked, and the fastest that passes is kept (measured side by side). A build
    that fails the accuracy gate writes nothing and exits 1 (--force writes it, marked failed, and still exits 1)."""
    from alexnet_deploy.build import BuildGateError, build
    from alexnet_deploy.cli._progress import progress_bars
    from alexnet_deploy.core.accuracy import EvalRequest, Gate
    from alexnet_deploy.requests import BuildRequest, ProbeRequest
    from calib.request import CalibrationRequest, RangeSettings

    settings = RangeSettings(percentile=percentile, num_bins=num_bins)
    calibration = CalibrationRequest(
        data=calib_data, method=calib_method, num_images=num_calib_images, holdout_images=holdout_images,
        settings=settings, refine=refine, use_cache=not no_cache,
    )  # fmt: skip
    request = BuildRequest(
        precision="bf16" if bf16 else "int8" if int8 else "fp16", backend=backend, force=force,
        verify=EvalRequest(Gate(max_top1_drop, max_top5_drop), threads=threads, limit=eval_limit),
        calibration=calibration, engines=engines or {}, max_fallback_layers=max_fallback_layers,
        probe=ProbeRequest(parse_batch_sizes(probe_batch, flag="--probe-batch", allow_empty=True)),
    )  # fmt: skip
    try:
        with progress_bars(not as_json) as progress:
            result = build(model, eval_data, request, output, progress)
    except BuildGateError as exc:
        _print(exc.result, as_json)
        raise
    _print(result, as_json)
