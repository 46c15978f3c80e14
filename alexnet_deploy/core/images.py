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
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torchvision.transforms import v2

from alexnet_deploy.core.data import ImageFolderDataset, Preprocessing, class_names, eval_transform, split_dir
from alexnet_deploy.core.errors import DataError
from alexnet_deploy.core.imagenet import IMAGENET1K_SIZE
from alexnet_deploy.core.limits import check_decoded_memory

if TYPE_CHECKING:
    from alexnet_deploy.core.layouts import FlatLabelledDataset

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
    classes: list[str]  # in label order: the folder's classes, or the model's once matched to it
    root: Path
    fingerprint: str = ""
    skipped: list[str] = field(default_factory=list)  # unreadable files of the selection, left out

    def __len__(self) -> int:
        return len(self.targets)

    @property
    def coverage(self) -> ClassCoverage:
        """How many of ``classes`` these images hold."""
        return ClassCoverage(len(set(self.targets.tolist()) - {-1}), len(self.classes))

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
    dataset: ImageFolderDataset | FlatLabelledDataset,
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


def match_classes(
    root: Path, folder_classes: Sequence[str], model_classes: Sequence[str], model_names: Sequence[str] = ()
) -> list[int | None]:
    """For each class of a data folder (in its label order), the model's class index, or ``None`` when the model
    does not know it.

    A folder class matches by its name (a wnid such as ``n01440764``) or by its human-readable name from
    ``classes.tsv``, against the model's class ids, the names it records (``model_names``) and, for an
    ImageNet-1k model, every name and lemma of that label space. A model that records only its class count
    (ids ``"0"``, ``"1"``...) takes a folder with that many classes in order, with a warning.
    """
    from alexnet_deploy.core.imagenet import imagenet1k, is_imagenet1k

    folders, model = list(folder_classes), list(model_classes)
    if folders == model:
        return list(range(len(model)))
    if model == [str(i) for i in range(len(model))]:
        if len(folders) == len(model):
            log.warning("The model records no class names; %s is matched by its class count only.", root)
            return list(range(len(folders)))
        return [None] * len(folders)
    index = {c: i for i, c in enumerate(model)}
    by_name = {n.strip().lower(): i for i, n in enumerate(model_names) if n}
    space = imagenet1k() if is_imagenet1k(model) else None
    names = class_names(root) if Path(root).is_dir() else []
    if len(names) != len(folders):  # a flat folder's classes come from its label file, not from subfolders
        names = folders
    labels: list[int | None] = []
    for folder, name in zip(folders, names, strict=True):
        found = index.get(folder, index.get(name, by_name.get(name.strip().lower())))
        if found is None and space is not None:
            found = space.lookup(folder)
            found = space.lookup(name) if found is None else found
        labels.append(found)
    return labels


@dataclass(frozen=True)
class ClassCoverage:
    """Which of a model's classes a data folder holds, for reports: ``10 of 1000 classes``."""

    present: int
    total: int

    @property
    def subset(self) -> bool:
        return self.present < self.total

    def describe(self) -> str:
        return f"{self.present} of {self.total} classes"

    def to_dict(self) -> dict[str, Any]:
        return {"classes_present": self.present, "model_classes": self.total, "subset": self.subset}


def check_classes(
    root: Path, folder_classes: Sequence[str], model_classes: Sequence[str], model_names: Sequence[str] = ()
) -> list[int]:
    """The model's class index of each folder class (see :func:`match_classes`); a folder holding only some of
    the model's classes is accepted (a subset such as Imagenette against an ImageNet-1k model).

    Raises:
        DataError: a folder class is not one of the model's.
    """
    labels = match_classes(root, folder_classes, model_classes, model_names)
    unknown = [f for f, label in zip(folder_classes, labels, strict=True) if label is None]
    if unknown:
        hint = ""
        if list(model_classes) == [str(i) for i in range(IMAGENET1K_SIZE)]:
            hint = (" The model records only its class count; if it is an ImageNet-1k model, export it again (its "
                    "sidecar then names the wnids) or describe it with --classes imagenet1k.")  # fmt: skip
        raise DataError(
            f"The classes in {root} ({len(folder_classes)} folders, first {list(folder_classes)[:2]}) do not match "
            f"the model's {len(model_classes)} classes (first {list(model_classes)[:2]}): {len(unknown)} of them "
            f"({', '.join(map(repr, unknown[:3]))}{', ...' if len(unknown) > 3 else ''}) are not among them.{hint}"
        )
    return [int(label) for label in labels if label is not None]


def load_eval_images(
    data: str | Path,
    classes: Sequence[str],
    preprocessing: Preprocessing,
    *,
    split: str = "val",
    limit: int | None = None,
    seed: int = 0,
    progress: ProgressFn | None = None,
    model_names: Sequence[str] = (),
) -> PreparedImages:
    """Decode an evaluation folder (``data/val`` when ``data`` has the train/val layout) for a model.

    The folder may be in any layout :func:`~alexnet_deploy.core.layouts.open_image_folder` takes (class folders,
    or ImageNet's flat val folder with a label file) and may hold a subset of the model's classes; the targets
    are the model's class indices and ``classes`` the model's, so top-1/top-5 are over all of its logits.

    Args:
        limit: evaluate on this many images, stratified over classes (``None``: all).
        model_names: the model's recorded display names, matched against ``classes.tsv`` names.

    Raises:
        DataError: the folder is missing, empty, or holds a class the model does not know.
    """
    from alexnet_deploy.core.data import stratified_indices
    from alexnet_deploy.core.layouts import open_image_folder

    root = split_dir(data, split)
    dataset = open_image_folder(root)
    mapping = np.asarray(check_classes(root, dataset.classes, classes, model_names), dtype=np.int64)
    indices = None if limit is None else stratified_indices(dataset.targets, limit, seed)
    images = prepare_images(dataset, preprocessing, indices, progress, task=f"Decoding {root.name}")
    images.targets = mapping[images.targets]  # the model's class indices: scored on all of its logits
    images.classes = list(classes)
    return images
