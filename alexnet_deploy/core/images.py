"""Images decoded once for evaluation and calibration: the eval preset's geometry applied and kept as uint8.

* :func:`prepare_images` decodes a folder once through the artifact's eval preset and keeps the resized,
  centre-cropped pixels as uint8 (4x smaller than float32); :meth:`PreparedImages.batches` applies the rest of
  the very same preset (to float, normalise) per batch, so every runner sees bit-identical inputs.
* An unreadable image is skipped, never replaced by another, and listed in ``skipped``: the reports say how many.
* :func:`load_eval_images` checks a folder's classes against the model's before decoding it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.transforms import v2

from alexnet_deploy.core.data import ImageFolderDataset, Preprocessing, class_names, eval_transform, split_dir
from alexnet_deploy.core.errors import DataError
from alexnet_deploy.core.limits import check_decoded_memory

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
    a warning, not replaced by its neighbour, so no image is counted twice; it is listed in ``skipped``, with every
    file the dataset's walk already left out, also when only a subset (``indices``) is decoded: a report of a
    subset counts every skipped file it met.

    Returns:
        :class:`PreparedImages`, whose ``fingerprint`` identifies the exact selection and preprocessing.

    Raises:
        DataError: not one image of the selection could be decoded.
    """
    from alexnet_deploy.core.data import folder_fingerprint
    from alexnet_deploy.core.files import sha256_text

    geometry, _ = _split_preset(preprocessing)
    chosen = list(range(len(dataset.samples))) if indices is None else list(indices)
    crop = preprocessing.crop
    check_decoded_memory(len(chosen), (3, crop, crop), f"Decoding {dataset.root}",
                         "choose fewer (--limit, --num-images, --eval-limit)")  # fmt: skip
    pixels = np.empty((len(chosen), 3, crop, crop), dtype=np.uint8)
    targets = np.empty(len(chosen), dtype=np.int64)
    kept: list[int] = []
    skipped = list(getattr(dataset, "skipped", []))
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
    from alexnet_deploy.core.data import stratified_indices

    root = split_dir(data, split)
    dataset = ImageFolderDataset(root)
    check_classes(root, dataset.classes, classes)
    indices = None if limit is None else stratified_indices(dataset.targets, limit, seed)
    return prepare_images(dataset, preprocessing, indices, progress, task=f"Decoding {root.name}")
