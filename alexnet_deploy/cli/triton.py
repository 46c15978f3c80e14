"""``alexnet-deploy triton``: a Triton Inference Server model repository from verified engines."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from alexnet_deploy.cli._common import console, handle_errors, print_json, styled
from alexnet_deploy.triton import InstanceKind, TritonOptions

DEFAULTS = TritonOptions()


@handle_errors
def triton_command(
    artifacts: Annotated[list[Path], typer.Argument(help="ONNX files or TensorRT plans, each with its sidecar.")],
    repo: Annotated[Path, typer.Option("--repo", help="The model repository folder (created if absent).")],
    name: Annotated[str, typer.Option(help="Model name; several ONNX files become NAME_<precision>.")] = DEFAULTS.name,
    max_batch_size: Annotated[
        int | None, typer.Option(min=1, help="Largest batch Triton forms (default: a plan's profile max, else 64).")
    ] = DEFAULTS.max_batch_size,
    preferred_batch: Annotated[
        str | None, typer.Option(help="Batch sizes the dynamic batcher aims for, e.g. 8,16 (default: none).")
    ] = None,
    max_queue_delay_us: Annotated[
        int, typer.Option(min=0, help="Microseconds a request may wait for a batch to fill.")
    ] = DEFAULTS.max_queue_delay_us,
    instances: Annotated[
        int, typer.Option(min=1, help="Model instances (per GPU with --kind gpu).")
    ] = DEFAULTS.instances,
    kind: Annotated[
        InstanceKind | None,
        typer.Option(
            help="Run instances on GPUs or CPUs (default: gpu; cpu with --python-backend).", show_default=False
        ),
    ] = None,
    version: Annotated[int, typer.Option(min=1, help="The model version folder's number.")] = DEFAULTS.version,
    force: Annotated[
        bool, typer.Option("--force", help="Serve artifacts whose accuracy gate failed; replace existing models.")
    ] = DEFAULTS.force,
    python_backend: Annotated[
        bool,
        typer.Option(
            "--python-backend",
            help="Serve through Triton's Python backend running our own runner (model.py plus a copy of the runner "
            "code; the server's Python needs numpy<2 and onnxruntime or openvino).",
        ),
    ] = DEFAULTS.python_backend,
    threads: Annotated[
        int | None, typer.Option(min=1, help="Runtime threads per instance (default: the runtime's own).")
    ] = DEFAULTS.threads,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Write a Triton model repository (config.pbtxt, labels, model file and sidecar) from verified artifacts.

    Several plans of one model for different GPUs share one model (cc_model_filenames); several ONNX files
    become one model each, NAME_<precision>. With --kind cpu an OpenVINO engine is served by Triton's OpenVINO
    backend, other ONNX files by its onnxruntime backend; --python-backend serves any ONNX file through Triton's
    Python backend and our own runner."""
    from alexnet_deploy.core.values import parse_batch_sizes
    from alexnet_deploy.triton import write_repository

    preferred = parse_batch_sizes(preferred_batch, flag="--preferred-batch", allow_empty=True)
    kind = kind or (InstanceKind.cpu if python_backend else InstanceKind.gpu)
    options = TritonOptions(name=name, max_batch_size=max_batch_size, preferred_batch=preferred, instances=instances,
                            max_queue_delay_us=max_queue_delay_us, kind=kind, version=version, force=force,
                            python_backend=python_backend, threads=threads)  # fmt: skip
    models = write_repository(artifacts, repo, options)
    if as_json:
        print_json([m.to_dict() for m in models])
        return
    for m in models:
        console.print(f"Wrote {m.path} ({m.platform}, {m.precision}, max batch {m.max_batch_size}): "
                      f"{', '.join(m.files)}", highlight=False, soft_wrap=True)  # fmt: skip
        console.print(f"  config.pbtxt {m.validation}", highlight=False, soft_wrap=True)
        if m.tensorrt_version:
            console.print(f"  needs TensorRT {m.tensorrt_version}: {m.container_hint}", highlight=False, soft_wrap=True)
        for note in m.notes:
            console.print(" ", styled("note:", "yellow"), note, highlight=False, soft_wrap=True)
    gpus = "--gpus all " if kind is InstanceKind.gpu else ""
    image = "nvcr.io/nvidia/tritonserver:<yy.mm>-py3"
    console.print(f"Serve: docker run {gpus}-p8000:8000 -v {repo.resolve()}:/models {image} tritonserver "
                  "--model-repository /models", highlight=False, soft_wrap=True)  # fmt: skip
