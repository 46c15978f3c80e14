"""Accuracy of any artifact on an ImageFolder, its agreement with an FP32 reference, and the accuracy gate.

Images, metrics and the gate live in :mod:`alexnet_deploy.core.images` and :mod:`alexnet_deploy.core.accuracy`;
running a file and judging it is :func:`alexnet_deploy.backends.verification.verify_file`; :func:`evaluate` is the
``verify`` command's job: it loads the folder for an artifact (checkpoint, ONNX, plan), verifies the reference and
the artifact on the same images, and reports.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from alexnet_deploy.core.accuracy import EvalRequest, GateResult
from alexnet_deploy.core.errors import DataError, GateError
from alexnet_deploy.core.images import ClassCoverage, ProgressFn, describe_skipped, load_eval_images

log = logging.getLogger(__name__)


@dataclass
class EvalReport:
    """One artifact's accuracy on one folder, optionally against a reference artifact."""

    artifact: str
    runner: str
    precision: str
    data: str
    classes: list[str]
    accuracy: dict[str, Any]
    reference: dict[str, Any] | None = None  # artifact, runner, and compare()'s figures
    gate: GateResult | None = None
    logits: np.ndarray | None = field(default=None, repr=False)
    skipped: list[str] = field(default_factory=list)  # unreadable files of the data, not evaluated
    coverage: ClassCoverage | None = None  # how many of the model's classes the data holds (a subset: fewer)

    @property
    def top1(self) -> float:
        return self.accuracy["top1"]

    @property
    def top5(self) -> float:
        return self.accuracy["top5"]

    def present(self, values: list[Any]) -> dict[str, Any]:
        """``values`` (one per class) keyed by class, for the classes the data holds only."""
        return {c: v for c, v in zip(self.classes, values, strict=True) if v is not None}

    def to_dict(self) -> dict[str, Any]:
        d = {
            "artifact": self.artifact,
            "runner": self.runner,
            "precision": self.precision,
            "data": self.data,
            "num_images": self.accuracy["num_images"],
            **describe_skipped(self.skipped),
            "top1": self.top1,
            "top5": self.top5,
            **(self.coverage.to_dict() if self.coverage else {}),
            "per_class_top1": self.present(self.accuracy["per_class_top1"]),
        }
        if self.reference is not None:
            ref = dict(self.reference)
            ref["per_class_top1_delta"] = self.present(ref["per_class_top1_delta"])
            d["reference"] = ref
        if self.gate is not None:
            d["gate"] = self.gate.to_dict()
        return d


def evaluate(
    artifact: str | Path,
    data: str | Path,
    request: EvalRequest | None = None,
    reference: str | Path | None = None,
    progress: ProgressFn | None = None,
) -> EvalReport:
    """Top-1/top-5 (and per class) of an artifact on an ImageFolder, and, with a reference, top-1 agreement with
    it, the deltas and the gate's verdict.

    Args:
        artifact: checkpoint (.pt), ONNX (.onnx) or TensorRT plan (.plan); its manifest gives classes and
            preprocessing.
        data: an ImageFolder, ImageNet's flat val folder with a label file, or a root with ``train/`` and
            ``val/`` (``val/`` is used); it may hold a subset of the artifact's classes (scored on all logits).
        request: the gate, batch size, threads and image limit (:class:`EvalRequest` defaults).
        reference: the FP32 artifact to compare with (e.g. the FP32 ONNX).

    Returns:
        :class:`EvalReport`; its ``gate`` is set whenever a reference is compared.

    Raises:
        DataError: the data's classes are not the artifact's (or the reference's), or it holds no images.
        ArtifactError / MissingBackendError: the artifact cannot be run here.
    """
    from alexnet_deploy.backends import describe_artifact
    from alexnet_deploy.backends.verification import verify_file

    request = request or EvalRequest()
    info = describe_artifact(artifact)
    preprocessing = info.require_preprocessing()
    names = info.manifest.class_names if info.manifest else []
    images = load_eval_images(
        data, info.classes, preprocessing, limit=request.limit, progress=progress, model_names=names
    )
    ref = None
    if reference is not None:
        ref_info = describe_artifact(reference)
        if ref_info.preprocessing != preprocessing or len(ref_info.classes) != len(info.classes):
            raise DataError(f"{reference} does not take the same inputs or classes as {artifact}.")
        ref = verify_file(ref_info, images, request=request, progress=progress)
    found = verify_file(info, images, ref.logits if ref else None, request, progress=progress)
    report = EvalReport(
        artifact=str(artifact),
        runner=found.runner,
        precision=info.precision,
        data=str(images.root),
        classes=list(info.classes),
        accuracy=found.metrics,
        logits=found.logits,
        skipped=list(images.skipped),
        gate=found.gate,
        coverage=images.coverage,
    )
    if ref is not None:
        report.reference = {"artifact": str(reference), "runner": ref.runner, **found.comparison}
    return report


def require_pass(report: EvalReport) -> None:
    """Raise :class:`GateError` when the report's gate failed."""
    if report.gate is not None and not report.gate.passed:
        raise GateError(f"{Path(report.artifact).name} failed the accuracy gate: {report.gate.reason}.")
