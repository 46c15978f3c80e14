"""``alexnet-deploy verify``: top-1/top-5 of any artifact on an ImageFolder, optionally against an FP32 one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from alexnet_deploy.cli._common import console, handle_errors, print_json, styled
from alexnet_deploy.core.accuracy import EvalRequest

D = EvalRequest()  # the defaults, defined once


def report_table(report):
    """Accuracy table of an :class:`~alexnet_deploy.verify.EvalReport`, with the reference and gate if any."""
    from rich.table import Table

    cov = report.coverage
    held = f" ({cov.describe()} of the model, scored on all its logits)" if cov and cov.subset else ""
    table = Table(
        title=f"{Path(report.artifact).name} on {report.accuracy['num_images']} images of {report.data}{held}"
    )
    for col in ("", "top-1 %", "top-5 %", "top-1 agreement %"):
        table.add_column(col, justify="left" if not col else "right")
    ref = report.reference
    if ref:
        table.add_row(f"reference {Path(ref['artifact']).name}", f"{ref['reference_top1']:.2f}",
                      f"{ref['reference_top5']:.2f}", "100.00")  # fmt: skip
        table.add_row(
            f"{report.runner}",
            f"{report.top1:.2f} ({ref['top1_delta']:+.2f})",
            f"{report.top5:.2f} ({ref['top5_delta']:+.2f})",
            f"{ref['agreement_top1']:.2f}",
        )
        from rich.text import Text

        g = report.gate
        verdict = [styled("passed", "bold green")] if g.passed else [styled("FAILED", "bold red"), f" ({g.reason})"]
        table.caption = Text.assemble(
            f"gate (at most {g.max_top1_drop:g} / {g.max_top5_drop:g} points lost): ", *verdict
        )
    else:
        table.add_row(report.runner, f"{report.top1:.2f}", f"{report.top5:.2f}", "-")
    return table


def skipped_line(evaluated: int, skipped: list[str]) -> str:
    """ "200 images evaluated; 3 unreadable skipped (a.JPEG, b.JPEG, c.JPEG)": the count behind the figures."""
    from alexnet_deploy.core.images import describe_skipped

    d = describe_skipped(skipped)
    more = ", ..." if d["unreadable_skipped"] > len(d["unreadable_examples"]) else ""
    return (
        f"{evaluated} images evaluated; {d['unreadable_skipped']} unreadable skipped "
        f"({', '.join(d['unreadable_examples'])}{more})"
    )


def worst_classes(report, n: int = 5) -> str:
    """The classes whose top-1 fell most against the reference, as one line."""
    deltas = [(d, name) for name, d in report.present(report.reference["per_class_top1_delta"]).items() if d < 0]
    worst = sorted(deltas)[:n]
    return ", ".join(f"{name} {d:+.1f}" for d, name in worst) or "none"


@handle_errors
def verify_command(
    artifact: Annotated[Path, typer.Argument(help="Checkpoint, ONNX, TensorRT plan or OpenVINO blob (.ovblob).")],
    data: Annotated[Path, typer.Option("--data", help="An ImageFolder, or a root whose val/ is used.")],
    reference: Annotated[
        Path | None, typer.Option("--reference", help="FP32 artifact to compare with (agreement, deltas, gate).")
    ] = None,
    max_top1_drop: Annotated[
        float, typer.Option(help="Gate: most top-1 points lost vs the reference.")
    ] = D.gate.max_top1_drop,
    max_top5_drop: Annotated[
        float, typer.Option(help="Gate: most top-5 points lost vs the reference.")
    ] = D.gate.max_top5_drop,
    limit: Annotated[int | None, typer.Option(min=1, help="Evaluate on this many images (stratified).")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per inference call.")] = D.batch_size,
    threads: Annotated[int | None, typer.Option(help="CPU threads for the backend.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Measure top-1/top-5 of any artifact on an image folder.

    With --reference also top-1 agreement with it, per-class deltas and the accuracy gate (exit 1 on failure)."""
    from alexnet_deploy.cli._progress import progress_bars
    from alexnet_deploy.core.accuracy import EvalRequest, Gate
    from alexnet_deploy.verify import evaluate, require_pass

    request = EvalRequest(Gate(max_top1_drop, max_top5_drop), batch_size, threads, limit)
    with progress_bars(not as_json) as progress:
        report = evaluate(artifact, data, request, reference, progress)
    if as_json:
        print_json(report.to_dict())
    else:
        console.print(report_table(report))
        if report.skipped:
            console.print(skipped_line(report.accuracy["num_images"], report.skipped), highlight=False)
        if report.reference:
            console.print(f"Largest per-class top-1 drops: {worst_classes(report)}", highlight=False)
    require_pass(report)
