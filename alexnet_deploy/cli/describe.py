"""``alexnet-deploy describe``: the sidecar for an ONNX classifier that alexnet-deploy did not export."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from alexnet_deploy.cli._common import console, handle_errors, print_json


@handle_errors
def describe_command(
    model: Annotated[Path, typer.Argument(help="An ONNX image classifier (NCHW input, one logits output).")],
    classes: Annotated[
        str, typer.Option(help="imagenet1k (the 1000 ImageNet classes), or a file: one class id[<TAB>name] a line.")
    ],
    resize: Annotated[int, typer.Option(help="Resize the shorter side to this many pixels.")] = 256,
    crop: Annotated[int, typer.Option(help="Then centre-crop to this square (the model's input size).")] = 224,
    mean: Annotated[str | None, typer.Option(help="R,G,B mean (default ImageNet's 0.485,0.456,0.406).")] = None,
    std: Annotated[str | None, typer.Option(help="R,G,B std (default ImageNet's 0.229,0.224,0.225).")] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write a self-contained copy (weights folded in) here.")
    ] = None,
    force: Annotated[bool, typer.Option(help="Replace a sidecar that is already there.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the sidecar as JSON.")] = False,
) -> None:
    """Check a foreign ONNX classifier's graph and write its sidecar (MODEL.onnx.json), so that calibrate, build,
    verify, bench, predict and triton take it like an exported model."""
    from export import describe_onnx, preprocessing_from

    pre = preprocessing_from(resize, crop, _floats(mean, "--mean"), _floats(std, "--std"))
    result = describe_onnx(model, classes, pre, output=output, force=force)
    m = result.manifest
    if as_json:
        print_json({"path": str(result.path), **m.to_dict()})
        return
    shape, size = m.input["shape"], f"resize {resize} / crop {crop}"
    what = f"{m.precision}, input {m.input['name']} {shape}, {len(m.classes)} classes, {size}"
    console.print(f"Wrote {result.path.name}.json for {result.path}: {what}.", highlight=False)
    for note in result.notes:
        console.print(f"Note: {note}", highlight=False)


def _floats(text: str | None, flag: str) -> tuple[float, ...] | None:
    from alexnet_deploy.core.errors import ConfigError

    if text is None:
        return None
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ConfigError(f"{flag} takes three numbers separated by commas, not {text!r}.") from None
