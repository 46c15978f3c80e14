"""Calibration images: a stratified, seeded selection from an ImageFolder, decoded through exactly the eval
preset of the model's manifest, served by a data reader (``get_next()`` gives ``{input_name: batch}``, ``None``
when exhausted; ``rewind()`` starts again), which is onnxruntime's ``CalibrationDataReader`` protocol.

:func:`load_calibration_data` also sets aside a held-out part of the same folder (disjoint from the calibration
images, also stratified) on which ``--calib-method auto`` compares the methods: the evaluation set never chooses.

The held-out scores compare predictions with the folder's labels, so the folder's classes are matched to the
model's (:meth:`CalibrationData.conform_to`, by folder name or by ``classes.tsv`` name): a folder with a class the
model does not know is refused; one with only some of the model's classes is accepted with a warning, its
labels renumbered to the model's, so that the scores are right for the classes it has.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from alexnet_deploy.core.data import ImageFolderDataset, Preprocessing, class_names, split_dir, stratified_indices
from alexnet_deploy.core.errors import DataError
from alexnet_deploy.core.images import PreparedImages, ProgressFn, describe_skipped, prepare_images
from calib.methods import DEFAULT_NUM_IMAGES, DEFAULT_SEED

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CalibrationSplit:
    """Indices into the folder's samples: the calibration images and the disjoint held-out images."""

    calibration: list[int]
    holdout: list[int]


def split_calibration(
    targets: Sequence[int], num_images: int, holdout_images: int = 0, seed: int = DEFAULT_SEED
) -> CalibrationSplit:
    """Choose ``num_images`` calibration images and ``holdout_images`` others, both stratified over classes.

    When the folder is too small for both, the held-out part gets at most a quarter of it and calibration the
    rest, so a small folder still calibrates and still compares.

    Raises:
        DataError: fewer than one image to calibrate with.
    """
    total = len(targets)
    if num_images < 1:
        raise DataError(f"The number of calibration images must be positive, got {num_images}.")
    holdout_n = min(holdout_images, total // 4) if holdout_images > 0 else 0
    calib_n = min(num_images, total - holdout_n)
    if calib_n < 1:
        raise DataError("The calibration folder holds no image to calibrate with.")
    calibration = stratified_indices(targets, calib_n, seed)
    taken = set(calibration)
    rest = [i for i in range(total) if i not in taken]
    picked = stratified_indices([targets[i] for i in rest], holdout_n, seed + 1) if holdout_n else []
    holdout = [rest[j] for j in picked]
    if calib_n < num_images:
        log.warning(
            "The calibration folder has %d images; calibrating with %d (asked for %d).", total, calib_n, num_images
        )
    return CalibrationSplit(calibration, holdout)


class ImageReader:
    """onnxruntime's data-reader protocol over prepared images: batches of float32 NCHW under ``input_name``."""

    def __init__(self, images: PreparedImages, input_name: str, batch_size: int = 32) -> None:
        self.images, self.input_name, self.batch_size = images, input_name, batch_size
        self._next = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next batch, or ``None`` when every image was served."""
        if self._next >= len(self.images):
            return None
        start = self._next
        self._next += self.batch_size
        return {self.input_name: self.images.batch(start, start + self.batch_size)}

    def rewind(self) -> None:
        """Start again from the first image."""
        self._next = 0

    def __len__(self) -> int:
        """The number of batches."""
        return -(-len(self.images) // self.batch_size)

    def __iter__(self):
        self.rewind()
        while (item := self.get_next()) is not None:
            yield item


def model_labels(root: Path, folder_classes: Sequence[str], model_classes: Sequence[str]) -> list[int]:
    """For each class folder of ``root`` (in label order), the model's label of that class.

    A folder matches a model class by its name (a wnid) or by its ``classes.tsv`` name. A model that records no
    class names (``"0"``, ``"1"``...) can only be matched by count: the folders are taken in order.

    Raises:
        DataError: a folder names a class the model does not know, or the model records no class names and the
            folder has another number of classes (the labels would then be guessed).
    """
    folders, model = list(folder_classes), list(model_classes)
    if model == [str(i) for i in range(len(model))]:
        if len(folders) != len(model):
            raise DataError(
                f"{root} has {len(folders)} class folders and the model records no class names (only its "
                f"{len(model)} classes), so the calibration scores cannot use the right labels."
            )
        log.warning("The model records no class names; %s is matched by its class count only.", root)
        return list(range(len(folders)))
    names = class_names(root)
    index = {c: i for i, c in enumerate(model)}
    labels = [index.get(f, index.get(n)) for f, n in zip(folders, names, strict=True)]
    unknown = [f for f, label in zip(folders, labels, strict=True) if label is None]
    if unknown:
        raise DataError(
            f"{len(unknown)} of the {len(folders)} class folders in {root} (first {unknown[:2]}) are not among the "
            f"model's {len(model)} classes (first {model[:2]}); calibrate with images of the model's classes."
        )
    return labels


@dataclass
class CalibrationData:
    """The decoded calibration and held-out images of one folder, and the hash that identifies them."""

    root: Path
    calibration: PreparedImages
    holdout: PreparedImages | None
    seed: int
    model_classes: list[str] | None = None  # set by conform_to: the labels are then the model's

    def conform_to(self, model_classes: Sequence[str]) -> None:
        """Renumber the labels to the model's classes (idempotent); warn when only some classes are present.

        Raises:
            DataError: see :func:`model_labels`.
        """
        model_classes = list(model_classes)
        if self.model_classes == model_classes:
            return
        if self.model_classes is not None:
            raise DataError(f"The calibration images of {self.root} were already matched to another model.")
        mapping = np.asarray(model_labels(self.root, self.calibration.classes, model_classes), dtype=np.int64)
        parts = [p for p in (self.calibration, self.holdout) if p is not None]
        for part in parts:
            part.targets = mapping[part.targets]
        self.model_classes = model_classes
        covered = len(set().union(*(set(p.targets.tolist()) for p in parts)))
        if covered < len(model_classes):
            log.warning(
                "The calibration images of %s cover %d of the model's %d classes; held-out scores are over those "
                "classes only.",
                self.root,
                covered,
                len(model_classes),
            )

    @property
    def fingerprint(self) -> str:
        """sha256 of the calibration selection (files, sizes, labels) and its preprocessing: the cache key's part."""
        return self.calibration.fingerprint

    def reader(self, input_name: str, batch_size: int = 32) -> ImageReader:
        """A fresh reader over the calibration images."""
        return ImageReader(self.calibration, input_name, batch_size)

    def describe(self) -> dict:
        """What the sidecar records about the calibration data."""
        parts = [p for p in (self.calibration, self.holdout) if p is not None]
        skipped = sorted({s for p in parts for s in p.skipped})
        d = {
            "folder": str(self.root),
            "num_images": len(self.calibration),
            "holdout_images": len(self.holdout) if self.holdout is not None else 0,
            "seed": self.seed,
            "data_sha256": self.fingerprint,
            "selection": "stratified over classes",
            **describe_skipped(skipped),
        }
        if self.model_classes is not None:
            d["classes_covered"] = len(set().union(*(set(p.targets.tolist()) for p in parts)))
            d["model_classes"] = len(self.model_classes)
        return d


def load_calibration_data(
    data: str | Path,
    preprocessing: Preprocessing,
    *,
    num_images: int = DEFAULT_NUM_IMAGES,
    holdout_images: int = 0,
    seed: int = DEFAULT_SEED,
    progress: ProgressFn | None = None,
    classes: Sequence[str] | None = None,
) -> CalibrationData:
    """Select and decode calibration images from ``data`` (``data/train`` when it has the train/val layout).

    Args:
        preprocessing: the model's, from its manifest: calibration sees exactly what inference will.
        num_images: calibration images (default 512), stratified over classes with a fixed seed.
        holdout_images: further images set aside to compare calibration methods (0: none).
        classes: the model's classes (its manifest's): the folder is matched to them before anything is
            decoded (:meth:`CalibrationData.conform_to`); None leaves that to :func:`calib.pipeline.calibrate`.

    Raises:
        DataError: the folder is missing, has no class subfolders, holds no readable image, or has classes the
            model does not know.
    """
    root = split_dir(data, "train")
    dataset = ImageFolderDataset(root)
    if classes is not None:
        model_labels(root, dataset.classes, classes)  # refuse foreign classes before the slow decoding
    split = split_calibration(dataset.targets, num_images, holdout_images, seed)
    calibration = prepare_images(
        dataset, preprocessing, split.calibration, progress, task="Decoding calibration images"
    )
    holdout = None
    if split.holdout:
        holdout = prepare_images(dataset, preprocessing, split.holdout, progress, task="Decoding held-out images")
    data = CalibrationData(root, calibration, holdout, seed)
    if classes is not None:
        data.conform_to(classes)
    return data
