"""Accuracy and agreement: logits of a runner over prepared images, top-1/top-5, comparison with a reference,
and the accuracy gate. Every stage that compares outputs (export parity, calibration, build, verify) uses these.

* :func:`run_logits` runs any active runner (``infer(batch) -> logits``, optional ``max_batch``) over prepared images.
* :func:`metrics` gives top-1/top-5/per-class accuracy; :func:`compare` adds top-1 agreement with a reference
  and the per-class deltas.
* :class:`Gate` is the accuracy gate: by default top-1 and top-5 may each drop at most 0.5 point.
* :class:`EvalRequest` says how a file is verified (gate, batch, threads, image limit) and :class:`Verification`
  is what verifying it found; :func:`judge` makes one from logits. Running a file is
  :func:`alexnet_deploy.backends.verification.verify_file`, the one place every step (verify, the build's
  candidates, calibration scoring, sensitivity) runs, compares and gates.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from alexnet_deploy.core.errors import DataError
from alexnet_deploy.core.limits import check_batch_memory, check_count, check_gate_drop

if TYPE_CHECKING:  # the gate is imported by the CLI at start-up: no torch for it
    from alexnet_deploy.core.images import PreparedImages, ProgressFn


def run_logits(
    runner: Any, images: PreparedImages, batch_size: int = 64, progress: ProgressFn | None = None, task: str = ""
) -> np.ndarray:
    """Logits (N, classes) of an active runner on prepared images, in batches no larger than the runner takes.

    Raises:
        ConfigError: the batch (as large as the images allow) would not fit in the memory available.
    """
    batch_size = check_count(batch_size, "The batch size")
    if runner.max_batch:
        batch_size = min(batch_size, runner.max_batch)
    check_batch_memory(min(batch_size, len(images)), images.pixels.shape[1:], "A batch size of")
    out = []
    done = 0
    for x, _ in images.batches(batch_size):
        out.append(np.asarray(runner.infer(x), dtype=np.float32))
        done += len(x)
        if progress:
            progress(task or f"Running {runner.name}", done, len(images))
    return np.concatenate(out) if out else np.empty((0, 0), np.float32)


def metrics(logits: np.ndarray, targets: np.ndarray, num_classes: int | None = None) -> dict[str, Any]:
    """Top-1 and top-5 accuracy in percent, and top-1 per class (percent, ``None`` for an absent class)."""
    num_classes = num_classes or logits.shape[1]
    k = min(5, logits.shape[1])
    top5 = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    pred = logits.argmax(1)
    hit1 = pred == targets
    hit5 = (top5 == targets[:, None]).any(1)
    per_class: list[float | None] = []
    for c in range(num_classes):
        mask = targets == c
        per_class.append(float(100 * hit1[mask].mean()) if mask.any() else None)
    return {
        "num_images": int(len(targets)),
        "top1": float(100 * hit1.mean()),
        "top5": float(100 * hit5.mean()),
        "per_class_top1": per_class,
    }


def compare(logits: np.ndarray, reference_logits: np.ndarray, targets: np.ndarray) -> dict[str, Any]:
    """How a candidate differs from its reference on the same images: top-1 agreement (percent), top-1/top-5
    deltas (candidate minus reference, points), per-class top-1 deltas, and the largest logit difference."""
    if logits.shape != reference_logits.shape:
        raise DataError(f"Cannot compare logits of shape {logits.shape} with a reference of {reference_logits.shape}.")
    a, r = metrics(logits, targets), metrics(reference_logits, targets)
    per_class = [
        None if x is None or y is None else x - y for x, y in zip(a["per_class_top1"], r["per_class_top1"], strict=True)
    ]
    return {
        "agreement_top1": float(100 * (logits.argmax(1) == reference_logits.argmax(1)).mean()),
        "top1_delta": a["top1"] - r["top1"],
        "top5_delta": a["top5"] - r["top5"],
        "per_class_top1_delta": per_class,
        "max_abs_logit_diff": float(np.abs(logits - reference_logits).max()) if logits.size else 0.0,
        "reference_top1": r["top1"],
        "reference_top5": r["top5"],
    }


@dataclass(frozen=True)
class Gate:
    """The accuracy gate: the candidate may lose at most this many points of top-1 and top-5 against FP32."""

    max_top1_drop: float = 0.5
    max_top5_drop: float = 0.5

    def __post_init__(self) -> None:
        """Refuse a drop that is negative (it would demand a gain), above 100 points, or not a finite number.

        Raises:
            ConfigError: with the allowed range.
        """
        object.__setattr__(
            self, "max_top1_drop", check_gate_drop(self.max_top1_drop, "The gate's top-1 drop (--max-top1-drop)")
        )
        object.__setattr__(
            self, "max_top5_drop", check_gate_drop(self.max_top5_drop, "The gate's top-5 drop (--max-top5-drop)")
        )

    def check(self, comparison: dict[str, Any]) -> GateResult:
        """Judge a :func:`compare` result."""
        top1_drop, top5_drop = -comparison["top1_delta"], -comparison["top5_delta"]
        failures = []
        if top1_drop > self.max_top1_drop + 1e-9:
            failures.append(f"top-1 fell {top1_drop:.2f} points (at most {self.max_top1_drop:g} allowed)")
        if top5_drop > self.max_top5_drop + 1e-9:
            failures.append(f"top-5 fell {top5_drop:.2f} points (at most {self.max_top5_drop:g} allowed)")
        return GateResult(
            passed=not failures,
            top1_drop=top1_drop,
            top5_drop=top5_drop,
            max_top1_drop=self.max_top1_drop,
            max_top5_drop=self.max_top5_drop,
            reason="; ".join(failures),
        )


@dataclass(frozen=True)
class GateResult:
    """The gate's verdict and the drops it judged (points; negative means the candidate did better)."""

    passed: bool
    top1_drop: float
    top5_drop: float
    max_top1_drop: float
    max_top5_drop: float
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class EvalRequest:
    """How a file is verified; every default is defined here once.

    Attributes:
        gate: the accuracy gate a comparison with a reference is judged by.
        batch_size: images per inference (capped by what the runner takes).
        threads: intra-op threads of CPU runners (``None``: the runtime's default).
        limit: verify on this many images, stratified over classes (``None``: all); used where images are loaded.
    """

    gate: Gate = field(default_factory=Gate)
    batch_size: int = 64
    threads: int | None = None
    limit: int | None = None

    def __post_init__(self) -> None:
        from alexnet_deploy.core.limits import check_count, check_threads

        check_count(self.batch_size, "The batch size")
        check_threads(self.threads)
        if self.limit is not None:
            check_count(self.limit, "The evaluation limit")


@dataclass(frozen=True)
class Verification:
    """What verifying one file found: who ran it, its accuracy, and with a reference the comparison and the gate.

    Attributes:
        runner: the runner's name (``onnxruntime (CPUExecutionProvider)``...).
        metrics: :func:`metrics` of its logits.
        comparison: :func:`compare` with the reference (``None`` without one).
        gate: the gate's verdict on the comparison (``None`` without a reference).
        logits: the logits themselves.
    """

    runner: str
    metrics: dict[str, Any]
    comparison: dict[str, Any] | None = None
    gate: GateResult | None = None
    logits: np.ndarray = field(default_factory=lambda: np.empty((0, 0), np.float32), repr=False, compare=False)

    @property
    def passed(self) -> bool:
        """Whether the gate passed (``False`` where nothing was gated)."""
        return bool(self.gate and self.gate.passed)

    @property
    def agreement(self) -> float | None:
        """Top-1 agreement with the reference, percent (``None`` without one)."""
        return self.comparison["agreement_top1"] if self.comparison else None


def judge(
    logits: np.ndarray,
    targets: np.ndarray,
    num_classes: int,
    reference_logits: np.ndarray | None,
    gate: Gate,
    runner: str = "",
) -> Verification:
    """The :class:`Verification` of logits: accuracy, and against a reference the comparison and the gate."""
    comparison = compare(logits, reference_logits, targets) if reference_logits is not None else None
    return Verification(
        runner=runner,
        metrics=metrics(logits, targets, num_classes),
        comparison=comparison,
        gate=gate.check(comparison) if comparison is not None else None,
        logits=logits,
    )
