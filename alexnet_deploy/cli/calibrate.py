"""``alexnet-deploy calibrate``: an FP32 ONNX -> an INT8 Q/DQ ONNX, on any machine (no GPU needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from alexnet_deploy.cli._common import console, handle_errors, print_json, styled
from alexnet_deploy.core.vocab import CalibrationMethod, QuantTarget, Refinement
from calib.request import CalibrationRequest

CAL = CalibrationRequest()  # the defaults, defined once


def candidates_table(calibration: dict):
    """A rich table of the calibration candidates (method, form, held-out figures, ranges vs MinMax)."""
    from rich.table import Table

    table = Table(title="Calibration candidates (held-out calibration images)")
    for col in ("method", "form", "refine", "cache", "s", "agree %", "top-1", "top-5", "amax/minmax", ""):
        table.add_column(col, justify="left" if col in ("method", "form", "refine", "cache", "") else "right")
    for c in calibration["candidates"]:
        h = c.get("holdout") or {}
        vs = c.get("vs_minmax") or {}
        ratio = f"{vs['median_amax_ratio']:.2f} ({vs['clipped_tensors']}/{vs['tensors']})" if vs else "1.00"
        table.add_row(
            c["method"],
            c["form"],
            c.get("refine", "none"),
            c["cache"],
            f"{c['seconds']:.1f}",
            f"{h['agreement_top1']:.1f}" if h else "-",
            f"{h['top1']:.1f}" if h and h["top1"] is not None else "-",
            f"{h['top5']:.1f}" if h and h["top5"] is not None else "-",
            ratio,
            styled("chosen", "bold green") if c["chosen"] else "",
        )
    table.caption = (
        "agree: top-1 agreement with FP32; s: seconds (ranges, or the refinement); amax/minmax: median "
        "range vs MinMax's (tensors clipped)"
    )
    return table


@handle_errors
def calibrate_command(
    model: Annotated[Path, typer.Argument(help="FP32 ONNX model (an export, with its .json sidecar).")],
    calib_data: Annotated[
        Path, typer.Option("--calib-data", help="Calibration images: an ImageFolder, or a root whose train/ is used.")
    ],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Q/DQ ONNX to write (default: MODEL.int8.qdq.onnx).")
    ] = None,
    target: Annotated[
        QuantTarget,
        typer.Option(help="tensorrt: TensorRT's symmetric int8 form, always; onnxruntime: may use ORT's own."),
    ] = QuantTarget.TENSORRT,
    method: Annotated[
        CalibrationMethod, typer.Option(help="auto tries all three and keeps the best on held-out calibration images.")
    ] = CAL.method,
    num_images: Annotated[
        int, typer.Option(min=1, help="Calibration images, stratified over classes.")
    ] = CAL.num_images,
    holdout_images: Annotated[
        int, typer.Option(min=0, help="Held-out images for choosing a method.")
    ] = CAL.holdout_images,
    percentile: Annotated[
        float, typer.Option(help="Percentile of |x| kept by the percentile method.")
    ] = CAL.settings.percentile,
    num_bins: Annotated[
        int, typer.Option(help="Histogram bins of the entropy/percentile methods.")
    ] = CAL.settings.num_bins,
    refine: Annotated[
        Refinement,
        typer.Option(
            help="Weights beyond nearest rounding: bias correction, learned rounding (adaround); auto "
            "compares none, bias and adaround+bias on held-out images."
        ),
    ] = CAL.refine,
    seed: Annotated[int, typer.Option(help="Seed of the image selection.")] = CAL.seed,
    cache_dir: Annotated[Path | None, typer.Option(help="Range cache folder (default: MODEL.onnx.calib/).")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Recalibrate; do not read or write the cache.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Calibrate an FP32 ONNX on real images into an INT8 Q/DQ ONNX.

    The Q/DQ ONNX (symmetric int8, per-channel weights, float biases) is what `build` compiles, here or on a GPU
    machine later."""
    from alexnet_deploy.cli._progress import progress_bars
    from calib import RangeSettings
    from calib import calibrate as run_calibration

    out = output or model.with_name(model.name.removesuffix(".onnx").removesuffix(".fp32") + ".int8.qdq.onnx")
    request = CalibrationRequest.for_target(
        target, data=calib_data, method=method, num_images=num_images, holdout_images=holdout_images, seed=seed,
        settings=RangeSettings(percentile=percentile, num_bins=num_bins), refine=refine, cache_dir=cache_dir,
        use_cache=not no_cache,
    )  # fmt: skip
    with progress_bars(not as_json) as progress:
        result = run_calibration(model, request, out, progress)
    summary = result.to_dict()
    if as_json:
        print_json({"output": str(out), **summary})
        return
    console.print(candidates_table(summary))
    skipped = summary["data"].get("unreadable_skipped")
    if skipped:
        examples = ", ".join(summary["data"]["unreadable_examples"])
        console.print(f"{skipped} unreadable calibration image(s) skipped ({examples}).", highlight=False)
    console.print(
        f"Wrote {out}: {result.method.value} calibration, {result.form.name} form; "
        f"quantized {', '.join(summary['quantized_layers']) or 'nothing'}"
        + (f"; float {', '.join(summary['float_layers'])}" if summary["float_layers"] else ""),
        highlight=False,
    )
