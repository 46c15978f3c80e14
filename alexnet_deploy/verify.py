"""Accuracy of any artifact on an ImageFolder, its agreement with an FP32 reference, and the accuracy gate.

* :func:`prepare_images` decodes a folder once through the artifact's eval preset and keeps the resized,
  centre-cropped pixels as uint8 (4x smaller than float32); :meth:`PreparedImages.batches` applies the rest of
  the very same preset (to float, normalise) per batch, so every runner sees bit-identical inputs. An unreadable
  image is skipped, never replaced by another, and listed in ``skipped``: the reports say how many were.
* :func:`run_logits` runs a :class:`~alexnet_deploy.runners.Runner` over prepared images.
* :func:`metrics` gives top-1/top-5/per-class accuracy; :func:`compare` adds top-1 agreement with a reference
  and the per-class deltas.
* :class:`Gate` is the accuracy gate: by default top-1 and top-5 may each drop at most 0.5 point.
* :func:`evaluate` ties these together for an artifact path (checkpoint, ONNX, plan) or an active runner.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.transforms import v2

from alexnet_deploy.data import ImageFolderDataset, Preprocessing, class_names, eval_transform, split_dir
from alexnet_deploy.errors import DataError, GateError
from alexnet_deploy.runners import Runner

log = logging.getLogger(__name__)

#: progress(task, done, total): called as work advances; the CLI turns it into a rich progress bar.
ProgressFn = Callable[[str, int, int], None]


def _split_preset(pre: Preprocessing) -> tuple[v2.Compose, v2.Compose]:
    """The eval preset cut in two: geometry on uint8 images (cacheable), then to-float and normalise."""
    steps = eval_transform(pre).transforms
    # eval_transform is ToImage, Resize, CenterCrop | ToDtype, Normalize: the first three keep uint8 pixels.
    return v2.Compose(steps[:3]), v2.Compose(steps[3:])


@dataclass
class PreparedImages:
    """Images decoded once: uint8 pixels after resize and centre crop, labels, and how to finish preprocessing."""

    pixels: np.ndarray  # (N, 3, crop, crop) uint8
    targets: np.ndarray  # (N,) int64
    preprocessing: Preprocessing
    classes: list[str]  # the folder names, in label order
    root: Path
    fingerprint: str = ""
    skipped: list[str] = field(default_factory=list)  # unreadable files of the selection, left out

    def __len__(self) -> int:
        return len(self.targets)

    def batch(self, start: int, stop: int) -> np.ndarray:
        """Float32 NCHW input for images ``start:stop``: exactly what the eval preset gives, image by image."""
        _, tail = _split_preset(self.preprocessing)
        return tail(torch.from_numpy(self.pixels[start:stop])).numpy()

    def batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(images, targets)`` batches in order."""
        for start in range(0, len(self), batch_size):
            yield self.batch(start, start + batch_size), self.targets[start : start + batch_size]

    def subset(self, indices: Sequence[int]) -> PreparedImages:
        """The images at ``indices`` (positions in this set)."""
        idx = np.asarray(indices, dtype=np.int64)
        return PreparedImages(
            self.pixels[idx], self.targets[idx], self.preprocessing, self.classes, self.root, skipped=self.skipped
        )


def describe_skipped(paths: Sequence[str], shown: int = 3) -> dict[str, Any]:
    """``{"unreadable_skipped": K, "unreadable_examples": [the first few file names]}`` for reports and JSON."""
    return {"unreadable_skipped": len(paths), "unreadable_examples": [Path(p).name for p in paths[:shown]]}


def prepare_images(
    dataset: ImageFolderDataset,
    preprocessing: Preprocessing,
    indices: Sequence[int] | None = None,
    progress: ProgressFn | None = None,
    task: str = "Decoding images",
) -> PreparedImages:
    """Decode ``dataset`` (or the samples at ``indices``) through the geometric part of the eval preset.

    An image that cannot be decoded (a truncated JPEG passes the dataset's check and fails here) is left out with
    a warning, not replaced by its neighbour, so no image is counted twice; it is listed in ``skipped``, with the
    files the dataset already left out when the whole folder is prepared.

    Returns:
        :class:`PreparedImages`, whose ``fingerprint`` identifies the exact selection and preprocessing.

    Raises:
        DataError: not one image of the selection could be decoded.
    """
    from alexnet_deploy.data import folder_fingerprint
    from alexnet_deploy.manifest import sha256_text

    geometry, _ = _split_preset(preprocessing)
    chosen = list(range(len(dataset.samples))) if indices is None else list(indices)
    crop = preprocessing.crop
    pixels = np.empty((len(chosen), 3, crop, crop), dtype=np.uint8)
    targets = np.empty(len(chosen), dtype=np.int64)
    kept: list[int] = []
    skipped = list(getattr(dataset, "skipped", [])) if indices is None else []
    for k, i in enumerate(chosen):
        path, label = dataset.samples[i]
        try:
            img = geometry(dataset.loader(path))
        except DataError as exc:
            log.warning("%s Skipping it.", exc)
            skipped.append(str(path))
            continue
        pixels[len(kept)] = img.numpy()
        targets[len(kept)] = label
        kept.append(i)
        if progress and (k % 64 == 63 or k == len(chosen) - 1):
            progress(task, k + 1, len(chosen))
    if not kept:
        raise DataError(f"None of the images chosen from {dataset.root} could be read ({len(skipped)} unreadable).")
    if skipped:
        log.warning("Skipped %d unreadable image(s) in %s.", len(skipped), dataset.root)
    n = len(kept)
    fingerprint = sha256_text(folder_fingerprint(dataset, kept), repr(sorted(preprocessing.to_dict().items())))
    return PreparedImages(
        pixels[:n] if n < len(chosen) else pixels,
        targets[:n],
        preprocessing,
        list(dataset.classes),
        Path(dataset.root),
        fingerprint,
        skipped,
    )


def check_classes(root: Path, folder_classes: Sequence[str], model_classes: Sequence[str]) -> None:
    """Refuse data whose classes are not the model's (by folder name or by human-readable name, in order).

    A model that only knows its class count (e.g. a torchvision state dict: names ``"0"``, ``"1"``...) accepts
    any folder with that many classes.

    Raises:
        DataError: the classes differ.
    """
    model_classes = list(model_classes)
    if list(folder_classes) == model_classes or class_names(root) == model_classes:
        return
    if model_classes == [str(i) for i in range(len(model_classes))] and len(folder_classes) == len(model_classes):
        log.warning("The model records no class names; %s is matched by its class count only.", root)
        return
    raise DataError(
        f"The classes in {root} ({len(folder_classes)} folders, first {list(folder_classes)[:2]}) do not match "
        f"the model's {len(model_classes)} classes (first {model_classes[:2]})."
    )


def load_eval_images(
    data: str | Path,
    classes: Sequence[str],
    preprocessing: Preprocessing,
    *,
    split: str = "val",
    limit: int | None = None,
    seed: int = 0,
    progress: ProgressFn | None = None,
) -> PreparedImages:
    """Decode an evaluation folder (``data/val`` when ``data`` has the train/val layout) for a model.

    Args:
        limit: evaluate on this many images, stratified over classes (``None``: all).

    Raises:
        DataError: the folder is missing, empty, or its classes are not the model's.
    """
    from alexnet_deploy.data import stratified_indices

    root = split_dir(data, split)
    dataset = ImageFolderDataset(root)
    check_classes(root, dataset.classes, classes)
    indices = None if limit is None else stratified_indices(dataset.targets, limit, seed)
    return prepare_images(dataset, preprocessing, indices, progress, task=f"Decoding {root.name}")


def run_logits(
    runner: Runner, images: PreparedImages, batch_size: int = 64, progress: ProgressFn | None = None, task: str = ""
) -> np.ndarray:
    """Logits (N, classes) of an active runner on prepared images, in batches no larger than the runner takes."""
    if runner.max_batch:
        batch_size = min(batch_size, runner.max_batch)
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


@dataclass
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

    @property
    def top1(self) -> float:
        return self.accuracy["top1"]

    @property
    def top5(self) -> float:
        return self.accuracy["top5"]

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
            "per_class_top1": dict(zip(self.classes, self.accuracy["per_class_top1"], strict=True)),
        }
        if self.reference is not None:
            ref = dict(self.reference)
            ref["per_class_top1_delta"] = dict(zip(self.classes, ref["per_class_top1_delta"], strict=True))
            d["reference"] = ref
        if self.gate is not None:
            d["gate"] = self.gate.to_dict()
        return d


def evaluate(
    artifact: str | Path,
    data: str | Path,
    *,
    reference: str | Path | None = None,
    gate: Gate | None = None,
    images: PreparedImages | None = None,
    reference_logits: np.ndarray | None = None,
    batch_size: int = 64,
    threads: int | None = None,
    limit: int | None = None,
    progress: ProgressFn | None = None,
) -> EvalReport:
    """Top-1/top-5 (and per class) of an artifact on an ImageFolder, and, with a reference, top-1 agreement with
    it, the deltas and the gate's verdict.

    Args:
        artifact: checkpoint (.pt), ONNX (.onnx) or TensorRT plan (.plan); its manifest gives classes and
            preprocessing.
        data: an ImageFolder, or a root with ``train/`` and ``val/`` (``val/`` is used).
        reference: the FP32 artifact to compare with (e.g. the FP32 ONNX).
        gate: judge the comparison (default :class:`Gate` when a reference is given).
        images: already prepared images (skip decoding; must use the artifact's preprocessing).
        reference_logits: the reference's logits on ``images`` (skip running the reference).
        limit: evaluate on this many images, stratified over classes.

    Returns:
        :class:`EvalReport`; its ``gate`` is set whenever a reference is compared.

    Raises:
        DataError: the data's classes are not the artifact's, or it holds no images.
        ArtifactError / MissingBackendError: the artifact cannot be run here.
    """
    from alexnet_deploy.predict import artifact_info
    from alexnet_deploy.runners import runner_for

    info = artifact_info(artifact)
    if images is None:
        images = load_eval_images(data, info.classes, info.preprocessing, limit=limit, progress=progress)
    elif images.preprocessing != info.preprocessing:
        raise DataError(f"The prepared images were made with other preprocessing than {Path(artifact).name} needs.")
    with runner_for(artifact, threads=threads) as runner:
        logits = run_logits(runner, images, batch_size, progress, task=f"Running {Path(artifact).name}")
        name = runner.name
    report = EvalReport(
        artifact=str(artifact),
        runner=name,
        precision=info.precision,
        data=str(images.root),
        classes=list(info.classes),
        accuracy=metrics(logits, images.targets, len(info.classes)),
        logits=logits,
        skipped=list(images.skipped),
    )
    if reference is not None or reference_logits is not None:
        ref_name = str(reference) if reference is not None else "reference logits"
        ref_runner = ""
        if reference_logits is None:
            ref_info = artifact_info(reference)
            if ref_info.preprocessing != info.preprocessing or len(ref_info.classes) != len(info.classes):
                raise DataError(f"{reference} does not take the same inputs or classes as {artifact}.")
            with runner_for(reference, threads=threads) as ref:
                reference_logits = run_logits(ref, images, batch_size, progress, task=f"Running {Path(reference).name}")
                ref_runner = ref.name
        report.reference = {
            "artifact": ref_name,
            "runner": ref_runner,
            **compare(logits, reference_logits, images.targets),
        }
        report.gate = (gate or Gate()).check(report.reference)
    return report


def require_pass(report: EvalReport) -> None:
    """Raise :class:`GateError` when the report's gate failed."""
    if report.gate is not None and not report.gate.passed:
        raise GateError(f"{Path(report.artifact).name} failed the accuracy gate: {report.gate.reason}.")
