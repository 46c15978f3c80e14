"""What a calibration tried and what it kept: each Q/DQ file tried (a method, a form, a weight refinement) is a
:class:`CalibrationTrial`, scored on the held-out calibration images against the FP32 model and ranked; each form's
choice is a :class:`CalibrationResult`. The methods (:mod:`calib.pipeline`) and the refinements
(:mod:`calib.refinements`) are chosen by the same figures and the same ranking.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from alexnet_deploy.core.vocab import CalibrationMethod
from calib.methods import Ranges
from calib.qdq import QdqForm
from calib.request import RangeSettings

if TYPE_CHECKING:
    from alexnet_deploy.core.images import PreparedImages


@dataclass(frozen=True)
class CalibrationTrial:
    """One calibration tried: method, form and weight refinement, where its ranges came from, what it cost, and how
    it did on the held-out images."""

    method: str
    form: str
    cache: str  # "hit", "miss", "stale" or "off"
    seconds: float  # computing the ranges, or the refinement
    holdout: dict[str, float | None] | None = None  # kl, agreement_top1, top1, top5, top1_delta, top5_delta
    vs_minmax: dict[str, float] | None = None  # how this method's ranges compare with MinMax's
    refine: str = "none"  # the weight refinement (calib.refine): none, bias, adaround, adaround+bias

    @property
    def rank(self) -> tuple[float, float, float]:
        """Trials are chosen by the smallest mean KL divergence from FP32's softmax on the held-out images, then by
        top-1 agreement, then top-1. The KL divergence is paired and continuous: on 1,000 held-out images the
        agreement of two calibrations differs by a handful of flips (noise of +-0.5 point), where the KL divergence
        ranked them as the 5,000 evaluation images did (demo model: plain, bias-corrected and learned rounding)."""
        if self.holdout is None:  # nothing to choose between
            return 0.0, 0.0, 0.0
        h = self.holdout
        return -(h.get("kl") or 0.0), h["agreement_top1"] or 0.0, h["top1"] or 0.0

    def to_dict(self, chosen: bool = False) -> dict[str, Any]:
        keys = ("method", "form", "cache", "seconds", "holdout", "vs_minmax", "refine")
        return {k: getattr(self, k) for k in keys} | {"chosen": chosen}


SELECTION = "smallest mean KL divergence from FP32's softmax on the held-out calibration images, then top-1 agreement"


def softmax_kl(logits: np.ndarray, reference: np.ndarray) -> float:
    """Mean KL divergence of a candidate's softmax from the reference's (nats per image)."""

    def log_softmax(z: np.ndarray) -> np.ndarray:
        z = z.astype(np.float64) - z.max(1, keepdims=True)
        return z - np.log(np.exp(z).sum(1, keepdims=True))

    ref = log_softmax(reference)
    return float((np.exp(ref) * (ref - log_softmax(logits))).sum(1).mean()) if len(ref) else 0.0


def score_file(path: Path, images: PreparedImages, reference: np.ndarray) -> dict[str, float | None]:
    """A Q/DQ file's held-out figures against the FP32 logits ``reference``: the KL divergence, top-1 agreement,
    and top-1/top-5 (``None`` when the images' labels are not the model's)."""
    from alexnet_deploy.backends.verification import verify_file

    found = verify_file(path, images, reference)
    c = found.comparison
    labelled = not (images.targets < 0).all()
    return {
        "kl": softmax_kl(found.logits, reference),
        "agreement_top1": c["agreement_top1"],
        "top1_delta": c["top1_delta"] if labelled else None,
        "top5_delta": c["top5_delta"] if labelled else None,
        "top1": c["reference_top1"] + c["top1_delta"] if labelled else None,
        "top5": c["reference_top5"] + c["top5_delta"] if labelled else None,
    }


@dataclass(frozen=True)
class CalibrationResult:
    """One form's calibration: the Q/DQ file written, the method chosen, every trial, and what the file quantizes.

    ``path`` is a work file until :func:`calibrate` places it (or a build compiles it).
    """

    path: Path
    method: CalibrationMethod
    form: QdqForm
    ranges: Ranges
    settings: RangeSettings
    data: dict[str, Any]
    trials: tuple[CalibrationTrial, ...]
    excluded: tuple[str, ...] = ()
    structure: dict[str, Any] = field(default_factory=dict)
    refinement: Any = None  # calib.refine.Refined: the weights to quantize instead of the model's, or None

    @property
    def trial(self) -> CalibrationTrial:
        """The trial this result's method, form and refinement were."""
        refine = self.refinement.kind.value if self.refinement is not None else "none"
        return next(
            t for t in self.trials if (t.method, t.form, t.refine) == (self.method.value, self.form.name, refine)
        )

    def to_dict(self) -> dict[str, Any]:
        """The sidecar's ``calibration`` field."""
        mine = self.trial
        return {
            "method": self.method.value,
            "form": self.form.name,
            "options": self.settings.key(self.method),
            "data": self.data,
            "candidates": [t.to_dict(chosen=t is mine) for t in self.trials],
            "selection": SELECTION,
            "quantized_layers": self.structure.get("quantized", []),
            "float_layers": self.structure.get("float", []),
            "excluded_nodes": list(self.excluded),
            "activations": "symmetric int8, per tensor"
            if self.form.symmetric_activations
            else "asymmetric uint8, per tensor",
            "weights": "symmetric int8, per output channel",
            "bias": "int32" if self.form.quantize_bias else "float",
            "refinement": self.refinement.describe() if self.refinement is not None else {"kind": "none"},
        }
