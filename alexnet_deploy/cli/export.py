"""``alexnet-deploy export``: a checkpoint to an ONNX file (FP32 or FP16) with its sidecar, parity-checked."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from alexnet_deploy.cli._common import console, err_console, handle_errors, print_json
from alexnet_deploy.core.errors import ConfigError
from alexnet_deploy.core.vocab import LrnForm, Precision
from export.request import DEFAULT_OPSET


@handle_errors
def export_command(
    output: Annotated[Path, typer.Option("--output", "-o", help="The ONNX file to write (its sidecar: OUTPUT.json).")],
    checkpoint: Annotated[
        Path | None,
        typer.Argument(help="Our checkpoint or a torchvision AlexNet state-dict file.", show_default=False),
    ] = None,
    precision: Annotated[
        Precision, typer.Option(help="fp32, or fp16 (FP16 weights and activations, FP32 inputs and outputs).")
    ] = Precision.FP32,
    opset: Annotated[int, typer.Option(help="ONNX opset (17 or newer).")] = DEFAULT_OPSET,
    eval_data: Annotated[
        Path | None, typer.Option(help="ImageFolder whose images feed the parity check (else random inputs).")
    ] = None,
    parity_samples: Annotated[
        int | None, typer.Option(help="How many inputs the parity check uses (default: 64 for fp32, 1024 for fp16).")
    ] = None,
    image_size: Annotated[
        int | None, typer.Option(help="Input height and width (default: the checkpoint's crop size).")
    ] = None,
    weights: Annotated[
        str | None,
        typer.Option(help="Export torchvision's pretrained AlexNet entry (e.g. IMAGENET1K_V1; needs network once)."),
    ] = None,
    num_classes: Annotated[
        int | None, typer.Option(help="Refuse a checkpoint that does not predict this many classes.")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Refuse a checkpoint of another model (alexnet or alexnet_paper).")
    ] = None,
    lrn: Annotated[
        LrnForm,
        typer.Option(
            help="native: one ONNX LRN node per layer (TensorRT, INT8); decomposed: Pow/Div/AveragePool, "
            "about twice as fast in ONNX Runtime's CPU EP."
        ),
    ] = LrnForm.NATIVE,
    as_json: Annotated[bool, typer.Option("--json", help="Print the sidecar as JSON.")] = False,
) -> None:
    """Export a checkpoint to ONNX with a dynamic batch, named I/O (images -> logits), a native LRN, and a
    parity check against PyTorch in ONNX Runtime; the sidecar (OUTPUT.json) records the figures."""
    from export import ExportRequest, export_onnx, load_torchvision_weights

    if (checkpoint is None) == (weights is None):
        raise ConfigError("Give either a CHECKPOINT file or --weights NAME, not both and not neither.")
    source, source_info = checkpoint, None
    if weights is not None:
        source, source_info = load_torchvision_weights(weights)
    request = ExportRequest(
        precision.value, opset, lrn.value, eval_data, parity_samples, image_size, expected_classes=num_classes,
        expected_model=model,
    )  # fmt: skip
    with err_console.status("Exporting") as status:
        result = export_onnx(source, output, request, source_info, status.update)
    if as_json:
        print_json({"path": str(result.path), **result.manifest.to_dict()})
        return
    graph = result.graph
    size_mb = result.path.stat().st_size / 1e6
    console.print(
        f"Wrote {result.path} ({result.manifest.precision}, opset {graph.opset}, {size_mb:.1f} MB) "
        f"and {result.path.name}.json"
    )
    console.print(
        f"Graph: {sum(graph.op_counts.values())} nodes, {graph.lrn_nodes} LRN, "
        f"Conv groups {graph.conv_groups}, input images {result.manifest.input['shape']}."
    )
    console.print(f"Parity: {result.parity.describe()} (passed).")
    if eval_data is None:
        console.print("Random inputs were used: pass --eval-data DIR to check on real images.")
    if "fp16" in result.manifest.extra:
        console.print(f"Note: {result.manifest.extra['fp16']['note']}")
