"""``alexnet-deploy sensitivity``: which layers INT8 hurts most, as a table and a bar chart."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from alexnet_deploy.cli._common import console, handle_errors, print_json
from alexnet_deploy.core.vocab import CalibrationMethod, QuantTarget
from alexnet_deploy.requests import SensitivityRequest
from calib.request import CalibrationRequest

D = SensitivityRequest()  # the defaults, defined once


@handle_errors
def sensitivity_command(
    model: Annotated[Path, typer.Argument(help="FP32 ONNX model (an export, with its .json sidecar).")],
    calib_data: Annotated[Path, typer.Option("--calib-data", help="Calibration images (root with train/ or folder).")],
    eval_data: Annotated[Path, typer.Option("--eval-data", help="Images to measure on (root with val/ or folder).")],
    method: Annotated[
        CalibrationMethod, typer.Option(help="Calibration method (not auto).")
    ] = CalibrationMethod.MINMAX,
    target: Annotated[QuantTarget, typer.Option(help="Q/DQ form to measure.")] = QuantTarget.TENSORRT,
    num_images: Annotated[int, typer.Option(min=1, help="Calibration images.")] = D.calibration.num_images,
    limit: Annotated[int, typer.Option(min=1, help="Evaluation images (stratified).")] = D.limit,
    plot: Annotated[Path | None, typer.Option(help="Save a bar chart (PNG) here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Rank layers by how much INT8 hurts each one.

    Quantizes one Conv/FC layer at a time and measures top-1 agreement with FP32: the most harmful layers are
    the ones `build` leaves in float first when the gate fails."""
    from rich.table import Table

    from alexnet_deploy.cli._progress import progress_bars
    from alexnet_deploy.sensitivity import sensitivity as run_sensitivity

    calibration = CalibrationRequest.for_target(target, data=calib_data, method=method, num_images=num_images)
    with progress_bars(not as_json) as progress:
        report = run_sensitivity(model, eval_data, SensitivityRequest(calibration, limit), plot, progress)
    if as_json:
        print_json(report.to_dict())
        return
    table = Table(title=f"INT8 sensitivity ({report.method}, {report.form} form, {report.num_images} images)")
    for col in ("rank", "layer", "node", "agreement %", "top-1 Δ", "top-5 Δ", "max |Δlogit|"):
        table.add_column(col, justify="left" if col in ("layer", "node") else "right")
    for i, r in enumerate(report.ranking, 1):
        table.add_row(str(i), r.label, r.node, f"{r.agreement_top1:.2f}", f"{r.top1_delta:+.2f}",
                      f"{r.top5_delta:+.2f}", f"{r.max_abs_logit_diff:.3f}")  # fmt: skip
    console.print(table)
    if report.plot:
        console.print(f"Saved the chart to {report.plot}.", highlight=False)
