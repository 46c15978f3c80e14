"""``alexnet-deploy predict``: top-5 classes for images, from any artifact."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from alexnet_deploy.cli._common import console, echo_error, handle_errors, print_json, styled


@handle_errors
def predict_command(
    artifact: Annotated[Path, typer.Argument(help="Checkpoint, ONNX model, TensorRT plan or OpenVINO blob (.ovblob).")],
    images: Annotated[list[Path], typer.Argument(help="Image files to classify.")],
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="How many classes to show per image.")] = 5,
    threads: Annotated[int | None, typer.Option(help="CPU threads for the backend.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Print the top classes with names and probabilities for each image, using the preprocessing recorded in the
    artifact's manifest. An unreadable image gets its own error line and the rest still run; the exit code is 1
    if any image failed."""
    from alexnet_deploy.backends import describe_artifact, runner_for
    from alexnet_deploy.predict import predict_files

    info = describe_artifact(artifact)
    with runner_for(info, threads=threads) as runner:
        results = predict_files(runner, info, images, top_k=top_k)
    if as_json:
        print_json([r.to_dict() for r in results])
    else:
        for r in results:
            if r.error:
                echo_error(r.error)
                continue
            console.print(styled(r.path, "bold"), highlight=False)
            for _, name, prob in r.top:
                console.print(f"  {prob:7.2%}  {name}", highlight=False)
    if any(r.error for r in results):
        raise typer.Exit(1)
