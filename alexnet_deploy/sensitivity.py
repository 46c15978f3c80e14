"""Which layers INT8 hurts: quantize one weighted layer at a time (same ranges, same Q/DQ form) and measure
top-1 agreement with FP32. The ranking drives the build's fallback (leave the most sensitive layers in float
until the gate passes) and ``alexnet-deploy sensitivity`` (a table and a bar chart).
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from alexnet_deploy.core.accuracy import compare, run_logits
from alexnet_deploy.core.images import PreparedImages, ProgressFn
from calib.methods import DEFAULT_NUM_IMAGES

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
    ranges,
    form,
    images: PreparedImages,
    reference_logits: np.ndarray,
    *,
    progress: ProgressFn | None = None,
) -> list[LayerSensitivity]:
    """Quantize each weighted layer alone and rank them, most harmful first.

    Args:
        fp32_path: the FP32 ONNX.
        ranges: :class:`calib.Ranges` to quantize with.
        form: :class:`calib.qdq.QdqForm` (the tensorrt form for TensorRT builds).
        images: the images to measure on; ``reference_logits`` are FP32's on them.

    Returns:
        One entry per layer, sorted by agreement (lowest first), then by the logit error (largest first).
    """
    from alexnet_deploy.backends.onnxruntime import OnnxRuntimeRunner
    from calib.qdq import quantizable_layers, write_qdq

    layers = quantizable_layers(fp32_path)
    results = []
    with tempfile.TemporaryDirectory(prefix="alexnet-deploy-sensitivity-") as work:
        for i, layer in enumerate(layers):
            path = Path(work) / f"{layer.label}.onnx"
            write_qdq(fp32_path, path, ranges, form, only=[layer.node])
            with OnnxRuntimeRunner(path) as runner:
                logits = run_logits(runner, images, 64)
            c = compare(logits, reference_logits, images.targets)
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


def _attempt_summary(float_layers: list[str], cand) -> dict[str, Any]:
    return {
        "float_layers": float_layers,
        "top1": cand.metrics["top1"],
        "top5": cand.metrics["top5"],
        "agreement_top1": cand.comparison["agreement_top1"],
        "passed": cand.gate.passed,
    }


def fallback(cand, inputs, calibration, options, progress: ProgressFn | None = None) -> None:
    """Leave the most sensitive layers of a build candidate in float, one more at a time, until it passes the gate.

    The layers are ranked on held-out *calibration* images (never the evaluation set); each attempt rewrites the
    candidate's Q/DQ ONNX, recompiles and re-verifies it. ``cand`` is updated in place and ``cand.fallback``
    records the ranking and every attempt.
    """
    from alexnet_deploy.selection import compile_candidate, verify_candidate
    from calib.pipeline import fp32_logits, write_calibrated

    src, data = inputs.source, inputs.data
    rank_images = data.holdout if data.holdout is not None and len(data.holdout) else data.calibration
    ranking = rank_layers(
        src.path, calibration.ranges, calibration.form, rank_images, fp32_logits(src, rank_images), progress=progress
    )
    tried = [_attempt_summary([], cand)]
    for k in range(1, min(options.max_fallback_layers, len(ranking)) + 1):
        excluded = ranking[:k]
        log.warning("The gate failed; leaving %s in float.", ", ".join(r.label for r in excluded))
        write_calibrated(src, calibration, cand.deployable, exclude=[r.node for r in excluded])
        compile_candidate(cand, src.manifest, options.precision, options.engine_options)
        verify_candidate(cand, inputs.images, inputs.reference, options.gate, options.batch_size, options.threads,
                         progress)  # fmt: skip
        tried.append(_attempt_summary([r.label for r in excluded], cand))
        if cand.gate.passed:
            break
    cand.fallback = {
        "ranked_on": f"{len(rank_images)} held-out calibration images (not the evaluation set)",
        "ranking": [r.to_dict() for r in ranking],
        "attempts": tried,
        "float_layers": tried[-1]["float_layers"],
        "float_nodes": list(calibration.excluded),
        "max_layers": options.max_fallback_layers,
    }


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
    calib_data: str | Path,
    eval_data: str | Path,
    *,
    method: str = "minmax",
    target: str = "tensorrt",
    num_images: int = DEFAULT_NUM_IMAGES,
    limit: int | None = 1000,
    plot: str | Path | None = None,
    cache_dir: str | Path | None = None,
    progress: ProgressFn | None = None,
) -> SensitivityReport:
    """Calibrate an FP32 ONNX (one method), then rank its layers by the harm of quantizing each alone, measured
    on ``eval_data`` (its ``val/`` split; at most ``limit`` images, stratified).

    Raises:
        DataError: empty calibration folder, or evaluation classes that are not the model's.
        ArtifactError: the model is not a calibratable FP32 ONNX.
    """
    from alexnet_deploy.core.images import load_eval_images
    from calib.pipeline import calibrate, fp32_logits, open_source_model

    source = open_source_model(model)
    images = load_eval_images(eval_data, source.manifest.classes, source.preprocessing, limit=limit, progress=progress)
    result = calibrate(
        source.path,
        calib_data,
        None,
        target=target,
        method=method,
        num_images=num_images,
        cache_dir=cache_dir,
        progress=progress,
    )
    form = result.form
    reference = fp32_logits(source, images)
    ranking = rank_layers(source.path, result.ranges, form, images, reference, progress=progress)
    report = SensitivityReport(str(model), result.method.value, form.name, str(images.root), len(images), ranking)
    if plot:
        report.plot = str(plot_sensitivity(ranking, plot, f"INT8 sensitivity of {Path(model).name} ({method})"))
    return report
