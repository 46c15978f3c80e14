"""``alexnet-deploy info``: per-layer shapes, parameters and multiply-adds of a model."""

from __future__ import annotations

from typing import Annotated

import typer

from alexnet_deploy.cli._common import console, handle_errors, print_json


@handle_errors
def info_command(
    model: Annotated[str, typer.Argument(help="Model name: alexnet or alexnet_paper.")],
    columns: Annotated[int, typer.Option(help="alexnet_paper: 2 = the paper's two-GPU split, 1 = ungrouped.")] = 2,
    width: Annotated[float, typer.Option(help="Width multiplier on every channel count.")] = 1.0,
    num_classes: Annotated[int, typer.Option(help="Number of output classes.")] = 1000,
    image_size: Annotated[int, typer.Option(help="Input height and width in pixels.")] = 224,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Show each layer's output shape, parameters and multiply-adds, the totals, and the conv/FC shares."""
    from rich.table import Table

    from alexnet_deploy.core.models import build_model, profile_model

    net = build_model(model, num_classes=num_classes, width=width, columns=columns)
    prof = profile_model(net, image_size=image_size, name=model)
    if as_json:
        print_json(prof.to_dict())
        return
    table = Table(title=f"{model} at {image_size} px (width {width:g}, {num_classes} classes)")
    for col in ("layer", "type", "output", "params", "mult-adds"):
        table.add_column(col, justify="left" if col in ("layer", "type") else "right")
    for layer in prof.layers:
        table.add_row(
            layer.name,
            layer.kind,
            "x".join(map(str, layer.output_shape)),
            f"{layer.params:,}" if layer.params else "",
            f"{layer.macs:,}" if layer.macs else "",
        )
    table.add_section()
    table.add_row("total", "", "", f"{prof.params:,}", f"{prof.macs:,}")
    console.print(table)
    conv_p, conv_m = prof.share("Conv2d")
    fc_p, fc_m = prof.share("Linear")
    console.print(
        f"{prof.params / 1e6:.2f} M parameters, {prof.macs / 1e9:.3f} G multiply-adds per image. "
        f"Convolutions: {conv_p:.1%} of parameters, {conv_m:.1%} of multiply-adds; "
        f"fully-connected: {fc_p:.1%} / {fc_m:.1%}."
    )
