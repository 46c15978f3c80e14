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

from alexnet_deploy.core.data import Preprocessing, split_dir, stratified_indices
from alexnet_deploy.core.errors import ConfigError, DataError
from alexnet_deploy.core.images import PreparedImages, ProgressFn, describe_skipped, match_classes, prepare_images
from alexnet_deploy.core.layouts import open_image_folder
from calib.request import CalibrationRequest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CalibrationSplit:
    """Indices into the folder's samples: the calibration images and the disjoint held-out images."""

    calibration: list[int]
    holdout: list[int]


def split_calibration(
    targets: Sequence[int], num_images: int, holdout_images: int = 0, seed: int = 0
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
    """onnxruntime's data-reader protocol over prepared images: batches of float32 NCHW under ``input_name``.

    ``whole_batches``: serve only full batches (a graph with a fixed batch size takes no other), leaving out the
    last ``len(images) % batch_size`` images.
    """

    def __init__(
        self, images: PreparedImages, input_name: str, batch_size: int = 32, whole_batches: bool = False
    ) -> None:
        self.images, self.input_name, self.batch_size = images, input_name, batch_size
        self._end = len(images) - len(images) % batch_size if whole_batches else len(images)
        self._next = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next batch, or ``None`` when every image was served."""
        if self._next >= self._end:
            return None
        start = self._next
        self._next += self.batch_size
        return {self.input_name: self.images.batch(start, start + self.batch_size)}

    def rewind(self) -> None:
        """Start again from the first image."""
        self._next = 0

    def __len__(self) -> int:
        """The number of batches."""
        return -(-self._end // self.batch_size)

    def __iter__(self):
        self.rewind()
        while (item := self.get_next()) is not None:
            yield item


def model_labels(root: Path, folder_classes: Sequence[str], model_classes: Sequence[str]) -> list[int] | None:
    """For each class folder of ``root`` (in label order), the model's label of that class; ``None`` when the
    folders cannot be matched to the model's classes.

    A folder matches a model class as :func:`~alexnet_deploy.core.images.match_classes` says: by its name (a
    wnid) or its ``classes.tsv`` name, and for an ImageNet-1k model by any of that label space's names. A model
    that records no class names (``"0"``, ``"1"``...) is matched by count only: the folders are taken in order.
    Calibration itself needs no labels, so unmatched images still calibrate; only the held-out top-1/top-5 then
    cannot be computed (the choice among methods uses top-1 agreement with FP32, which needs none), and a warning
    says so.
    """
    folders, model = list(folder_classes), list(model_classes)
    found = match_classes(root, folders, model)
    unknown = [f for f, label in zip(folders, found, strict=True) if label is None]
    if not unknown:
        return [int(label) for label in found if label is not None]
    log.warning(
        "%d of the %d class folders in %s (first %s) are not among the model's %d classes (first %s): the images "
        "calibrate, but held-out top-1/top-5 cannot be scored; methods are chosen by top-1 agreement with FP32 only.",
        len(unknown), len(folders), root, unknown[:2], len(model), model[:2],
    )  # fmt: skip
    return None


@dataclass
class CalibrationData:
    """The decoded calibration and held-out images of one folder, and the hash that identifies them."""

    root: Path
    calibration: PreparedImages
    holdout: PreparedImages | None
    seed: int
    model_classes: list[str] | None = None  # set by conform_to: the labels are then the model's
    labels_known: bool = True  # False: the folder's classes are not the model's, held-out top-1 is not scored

    def conform_to(self, model_classes: Sequence[str]) -> None:
        """Renumber the labels to the model's classes (idempotent); warn when only some classes are present, or
        when none can be matched (the labels are then dropped: see :func:`model_labels`).

        Raises:
            DataError: the images were already matched to another model.
        """
        model_classes = list(model_classes)
        if self.model_classes == model_classes:
            return
        if self.model_classes is not None:
            raise DataError(f"The calibration images of {self.root} were already matched to another model.")
        labels = model_labels(self.root, self.calibration.classes, model_classes)
        parts = [p for p in (self.calibration, self.holdout) if p is not None]
        self.model_classes = model_classes
        if labels is None:  # unknown to the model: no label is right, so none is used (-1 matches no logit)
            for part in parts:
                part.targets = np.full_like(part.targets, -1)
            self.labels_known = False
            return
        mapping = np.asarray(labels, dtype=np.int64)
        for part in parts:
            part.targets = mapping[part.targets]
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

    def reader(self, input_name: str, batch_size: int = 32, whole_batches: bool = False) -> ImageReader:
        """A fresh reader over the calibration images (``whole_batches``: full batches only)."""
        return ImageReader(self.calibration, input_name, batch_size, whole_batches)

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
            d["model_classes"] = len(self.model_classes)
            if self.labels_known:
                d["classes_covered"] = len(set().union(*(set(p.targets.tolist()) for p in parts)))
            else:
                d["labels"] = "not the model's classes: held-out top-1/top-5 not scored, methods chosen by agreement"
        return d


def load_calibration_data(
    request: CalibrationRequest,
    preprocessing: Preprocessing,
    classes: Sequence[str] | None = None,
    holdout: bool = True,
    progress: ProgressFn | None = None,
) -> CalibrationData:
    """Select and decode the request's calibration images (``data/train`` when the folder has the train/val layout).

    Args:
        request: the folder (``request.data``), how many images, how many held out, the seed.
        preprocessing: the model's, from its manifest: calibration sees exactly what inference will.
        classes: the model's classes (its manifest's): the images' labels are matched to them
            (:meth:`CalibrationData.conform_to`); ``None`` leaves that to the caller.
        holdout: also decode the held-out images (``request.holdout_images``); a calibration with nothing to
            choose needs none.

    Raises:
        ConfigError: the request names no folder.
        DataError: the folder is missing, has no class subfolders, holds no readable image, or has classes the
            model does not know.
    """
    if request.data is None:
        raise ConfigError("Calibration needs images (--calib-data).")
    root = split_dir(request.data, "train")
    dataset = open_image_folder(root)
    held = request.holdout_images if holdout else 0
    split = split_calibration(dataset.targets, request.num_images, held, request.seed)
    calibration = prepare_images(
        dataset, preprocessing, split.calibration, progress, task="Decoding calibration images"
    )
    held_out = None
    if split.holdout:
        held_out = prepare_images(dataset, preprocessing, split.holdout, progress, task="Decoding held-out images")
    data = CalibrationData(root, calibration, held_out, request.seed)
    if classes is not None:
        data.conform_to(classes)
    return data
