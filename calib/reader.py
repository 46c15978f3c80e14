"""Calibration images: a stratified, seeded selection from an ImageFolder, decoded through exactly the eval
preset of the model's manifest, served by a data reader (``get_next()`` gives ``{input_name: batch}``, ``None``
when exhausted; ``rewind()`` starts again), which is onnxruntime's ``CalibrationDataReader`` protocol.

:func:`load_calibration_data` also sets aside a held-out part of the same folder (disjoint from the calibration
images, also stratified) on which ``--calib-method auto`` compares the methods: the evaluation set never chooses.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from alexnet_deploy.core.data import ImageFolderDataset, Preprocessing, split_dir, stratified_indices
from alexnet_deploy.core.errors import DataError
from alexnet_deploy.core.images import PreparedImages, ProgressFn, prepare_images
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


@dataclass
class CalibrationData:
    """The decoded calibration and held-out images of one folder, and the hash that identifies them."""

    root: Path
    calibration: PreparedImages
    holdout: PreparedImages | None
    seed: int

    @property
    def fingerprint(self) -> str:
        """sha256 of the calibration selection (files, sizes, labels) and its preprocessing: the cache key's part."""
        return self.calibration.fingerprint

    def reader(self, input_name: str, batch_size: int = 32) -> ImageReader:
        """A fresh reader over the calibration images."""
        return ImageReader(self.calibration, input_name, batch_size)

    def describe(self) -> dict:
        """What the sidecar records about the calibration data."""
        return {
            "folder": str(self.root),
            "num_images": len(self.calibration),
            "holdout_images": len(self.holdout) if self.holdout is not None else 0,
            "seed": self.seed,
            "data_sha256": self.fingerprint,
            "selection": "stratified over classes",
        }


def load_calibration_data(
    data: str | Path,
    preprocessing: Preprocessing,
    *,
    num_images: int = DEFAULT_NUM_IMAGES,
    holdout_images: int = 0,
    seed: int = DEFAULT_SEED,
    progress: ProgressFn | None = None,
) -> CalibrationData:
    """Select and decode calibration images from ``data`` (``data/train`` when it has the train/val layout).

    Args:
        preprocessing: the model's, from its manifest: calibration sees exactly what inference will.
        num_images: calibration images (default 512), stratified over classes with a fixed seed.
        holdout_images: further images set aside to compare calibration methods (0: none).

    Raises:
        DataError: the folder is missing, has no class subfolders, or holds no readable image.
    """
    root = split_dir(data, "train")
    dataset = ImageFolderDataset(root)
    split = split_calibration(dataset.targets, num_images, holdout_images, seed)
    calibration = prepare_images(
        dataset, preprocessing, split.calibration, progress, task="Decoding calibration images"
    )
    holdout = None
    if split.holdout:
        holdout = prepare_images(dataset, preprocessing, split.holdout, progress, task="Decoding held-out images")
    return CalibrationData(root, calibration, holdout, seed)
