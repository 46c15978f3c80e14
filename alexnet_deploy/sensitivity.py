"""Which layers INT8 hurts: quantize one weighted layer at a time (same ranges, same Q/DQ form) and measure
top-1 agreement with FP32. The ranking drives the build's fallback step (:mod:`alexnet_deploy.build` leaves the
most sensitive layers in float until the gate passes) and ``alexnet-deploy sensitivity`` (a table and a bar chart).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from alexnet_deploy.core.images import PreparedImages, ProgressFn
from alexnet_deploy.requests import SensitivityRequest

log = logging.getLogger(__name__)


@dataclass
class LayerSensitivity:
    """How the model fares with only this layer quantized."""

    node: str
    label: str
    op_type: str
    agreement_top1: float  # percent of images whose top-1 matches FP32
    top1_delta: float  # points, vs FP32
    top5_delta: float
    max_abs_logit_diff: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def rank_layers(
    fp32_path: str | Path,
    calibration,
    images: PreparedImages,
    reference_logits: np.ndarray,
    progress: ProgressFn | None = None,
) -> list[LayerSensitivity]:
    """Quantize each weighted layer alone and rank them, most harmful first.

    Args:
        fp32_path: the FP32 ONNX.
        calibration: the :class:`calib.pipeline.CalibrationResult` whose ranges and Q/DQ form to quantize with.
        images: the images to measure on; ``reference_logits`` are FP32's on them.

    Returns:
        One entry per layer, sorted by agreement (lowest first), then by the logit error (largest first).
    """
    from alexnet_deploy.backends.verification import verify_file
    from alexnet_deploy.core.files import scratch_dir
    from calib.qdq import quantizable_layers, write_qdq

    layers = quantizable_layers(fp32_path)
    results = []
    with scratch_dir("alexnet-deploy-sensitivity-") as work:
        for i, layer in enumerate(layers):
            path = Path(work) / f"{layer.label}.onnx"
            write_qdq(fp32_path, path, calibration.ranges, calibration.form, only=[layer.node])
            c = verify_file(path, images, reference_logits).comparison
            results.append(
                LayerSensitivity(
                    layer.node,
                    layer.label,
                    layer.op_type,
                    c["agreement_top1"],
                    c["top1_delta"],
                    c["top5_delta"],
                    c["max_abs_logit_diff"],
                )
            )
            if progress:
                progress("Measuring layer sensitivity", i + 1, len(layers))
    return sorted(results, key=lambda r: (r.agreement_top1, -r.max_abs_logit_diff))


def plot_sensitivity(ranking: list[LayerSensitivity], path: str | Path, title: str = "") -> Path:
    """Save a bar chart (PNG) of each layer's top-1 disagreement with FP32 when quantized alone, in graph order."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from alexnet_deploy.core.files import atomic_path

    order = sorted(ranking, key=lambda r: _layer_order(r.label))
    labels = [r.label for r in order]
    values = [100.0 - r.agreement_top1 for r in order]
    worst = max(values) if values else 0.0
    fig, ax = plt.subplots(figsize=(max(4.0, 0.7 * len(labels) + 1.5), 3.2), dpi=120)
    colors = ["#c0392b" if v == worst and v > 0 else "#2c7fb8" for v in values]
    ax.bar(labels, values, color=colors)
    ax.set_ylabel("top-1 disagreement with FP32 (%)")
    ax.set_title(title or "INT8 sensitivity: one layer quantized at a time")
    for x, v in enumerate(values):
        ax.text(x, v, f"{v:.1f}", ha="center", va="bottom", fontsize=8)
    ax.set_ylim(0, max(1.0, worst * 1.2))
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def _layer_order(label: str) -> tuple[int, str]:
    digits = "".join(ch for ch in label if ch.isdigit())
    return (int(digits) if digits else 0, label)


@dataclass
class SensitivityReport:
    """The ranking with what it was measured on."""

    model: str
    method: str
    form: str
    images: str
    num_images: int
    ranking: list[LayerSensitivity]
    plot: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ranking"] = [r.to_dict() for r in self.ranking]
        return d


def sensitivity(
    model: str | Path,
    eval_data: str | Path,
    request: SensitivityRequest | None = None,
    plot: str | Path | None = None,
    progress: ProgressFn | None = None,
) -> SensitivityReport:
    """Calibrate an FP32 ONNX (one method), then rank its layers by the harm of quantizing each alone, measured
    on ``eval_data`` (its ``val/`` split; at most ``request.limit`` images, stratified); ``plot``: a bar chart.

    Raises:
        DataError: empty calibration folder, or evaluation classes that are not the model's.
        ArtifactError: the model is not a calibratable FP32 ONNX.
    """
    from alexnet_deploy.backends.verification import verify_file
    from alexnet_deploy.core.images import load_eval_images
    from calib.pipeline import calibrate, open_source_model

    request = request or SensitivityRequest()
    source = open_source_model(model)
    images = load_eval_images(
        eval_data, source.manifest.classes, source.preprocessing, limit=request.limit, progress=progress
    )
    result = calibrate(source, request.calibration, progress=progress)
    reference = verify_file(source.path, images).logits
    ranking = rank_layers(source.path, result, images, reference, progress)
    method = result.method.value
    report = SensitivityReport(str(model), method, result.form.name, str(images.root), len(images), ranking)
    if plot:
        report.plot = str(plot_sensitivity(ranking, plot, f"INT8 sensitivity of {Path(model).name} ({method})"))
    return report
