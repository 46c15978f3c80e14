"""Presets (defined once, reused by training, calibration, verification and prediction) and data loading.

* ``Preprocessing``: resize of the shorter side, centre crop, mean and std. It is stored in every artifact's
  manifest so that preprocessing never drifts from the weights. Defined (torch-free) in
  :mod:`alexnet_deploy.core.preprocessing` and re-exported here, with ``IMAGENET_MEAN`` / ``IMAGENET_STD``.
* ``eval_transform``: resize, centre crop, normalise (the paper's and torchvision's evaluation).
* ``train_transform``: the paper's augmentation: the central square of the resized image, a random crop of it,
  a horizontal flip, and PCA colour augmentation with ImageNet's eigenvectors (sigma 0.1).
* ``ImageFolderDataset``: torchvision's ImageFolder that skips corrupt or non-image files with a warning
  naming each one, and counts them, instead of crashing; its walk (:mod:`alexnet_deploy.core.walk`) counts each
  real file once, and its images are decoded by :mod:`alexnet_deploy.core.decode`.
* ``make_synthetic_imagefolder``: a deterministic synthetic set written as an ImageFolder, for offline demos.
"""

from __future__ import annotations

import hashlib
import io
import logging
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision import datasets
from torchvision.transforms import v2

# Decoding and the folder walk live in core.decode and core.walk; their names stay importable from here.
from alexnet_deploy.core.decode import IMAGE_EXTENSIONS, MAX_IMAGE_PIXELS, image_problem, load_rgb, to_rgb  # noqa: F401
from alexnet_deploy.core.errors import DataError
from alexnet_deploy.core.files import ensure_folder, write_bytes_atomic, write_new_file
from alexnet_deploy.core.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing  # noqa: F401 - re-exported
from alexnet_deploy.core.text import label_line
from alexnet_deploy.core.walk import FolderWalk, walk_class_folders  # noqa: F401

log = logging.getLogger(__name__)

# Eigen-decomposition of ImageNet's RGB covariance (pixel values in [0, 1]), as used by the paper's
# "fancy PCA" colour augmentation (values from fb.resnet.torch).
IMAGENET_PCA_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_PCA_EIGVEC = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)
SYNTHETIC_MARK = "synthetic"


class PCALighting(torch.nn.Module):
    """The paper's colour augmentation: add ``eigvec @ (alpha * eigval)``, ``alpha ~ N(0, sigma)``, per image.

    Applied to a float tensor in [0, 1] of shape (3, H, W), before normalisation.
    """

    def __init__(
        self,
        sigma: float = 0.1,
        eigval: Sequence[float] = IMAGENET_PCA_EIGVAL,
        eigvec: Sequence[Sequence[float]] = IMAGENET_PCA_EIGVEC,
    ) -> None:
        super().__init__()
        self.sigma = sigma
        self.register_buffer("eigval", torch.tensor(eigval, dtype=torch.float32))
        self.register_buffer("eigvec", torch.tensor(eigvec, dtype=torch.float32))

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        if self.sigma <= 0:
            return img
        alpha = torch.randn(3) * self.sigma
        shift = self.eigvec @ (alpha * self.eigval)
        return img + shift.view(3, 1, 1)


def eval_transform(pre: Preprocessing = Preprocessing()) -> v2.Compose:
    """The evaluation preset: resize the shorter side, centre crop, to float, normalise."""
    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize(pre.resize, antialias=True),
            v2.CenterCrop(pre.crop),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(pre.mean, pre.std),
        ]
    )


def train_transform(pre: Preprocessing = Preprocessing(), pca_sigma: float = 0.1) -> v2.Compose:
    """The paper's training preset: central ``resize``-square, random ``crop``, flip, PCA lighting, normalise."""
    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize(pre.resize, antialias=True),
            v2.CenterCrop(pre.resize),
            v2.RandomCrop(pre.crop),
            v2.RandomHorizontalFlip(),
            v2.ToDtype(torch.float32, scale=True),
            PCALighting(pca_sigma),
            v2.Normalize(pre.mean, pre.std),
        ]
    )


class ImageFolderDataset(datasets.ImageFolder):
    """An ImageFolder (``root/<class>/<image>``) that skips unreadable files instead of crashing, and counts each
    real file once.

    The folder walk (:func:`walk_class_folders`) follows links but reads each folder and counts each file once:
    a link loop or a second way into a folder is not followed, with a warning naming it (``links_not_followed``),
    so no image is counted twice. With ``check_files`` every file is checked when the dataset is built
    (:func:`image_problem`); a file that fails, a non-image file name and a non-regular file (a FIFO) are left
    out, named in a warning, and listed in ``skipped``. A file that passes the check but still fails to decode
    later (a truncated JPEG) is replaced by the next good sample, with a warning, so one bad file never stops a
    training epoch; with ``replace_unreadable=False`` (evaluation) it is given as ``None`` instead, for the
    loader to drop, so that no image is counted twice (:func:`alexnet_deploy.core.images.prepare_images` skips
    and counts such files the same way). A class folder without one readable image is named in a warning and
    listed in ``empty_classes``; training refuses such a folder.

    Raises:
        DataError: the folder is missing, holds no readable image, or a class folder's name holds a control
            character (a line break cannot be a class name: it would split labels.txt and every table).
    """

    def __init__(
        self, root: str | Path, transform=None, check_files: bool = True, replace_unreadable: bool = True
    ) -> None:
        root = Path(root)
        self.replace_unreadable = replace_unreadable
        if not root.is_dir():
            raise DataError(f"Image folder not found: {root}.")
        if not any(p.is_dir() for p in root.iterdir()):
            raise DataError(f"{root} has no class subfolders (expected root/<class>/<image>).")
        self.skipped: list[str] = []
        self.links_not_followed: list[str] = []
        self.check_files = check_files
        try:
            super().__init__(str(root), transform=transform, loader=load_rgb, allow_empty=True)
        except (FileNotFoundError, OSError) as exc:
            raise DataError(f"Cannot read image folder {root}: {exc}.") from None
        if not self.samples:
            raise DataError(f"{root} holds no readable image files.")
        if self.skipped:
            log.warning("Skipped %d unreadable or non-image file(s) in %s.", len(self.skipped), root)
        present = set(self.targets)
        self.empty_classes: list[str] = [c for i, c in enumerate(self.classes) if i not in present]
        if self.empty_classes:
            log.warning(
                "%d class folder(s) of %s hold no readable image: %s.",
                len(self.empty_classes),
                root,
                ", ".join(self.empty_classes[:5]) + (" ..." if len(self.empty_classes) > 5 else ""),
            )

    def find_classes(self, directory: str | Path) -> tuple[list[str], dict[str, int]]:
        """The class folders (links followed), sorted; a name with a control character is refused."""
        classes, class_to_idx = super().find_classes(directory)
        for name in classes:
            label_line(name, f"labels.txt or a report (a class folder of {directory})", DataError)
        return classes, class_to_idx

    def make_dataset(self, directory, class_to_idx, extensions=None, is_valid_file=None, allow_empty=False):
        """The samples of :func:`walk_class_folders`; what it leaves out goes to ``skipped``."""
        classes = sorted(class_to_idx, key=class_to_idx.get)
        walk = walk_class_folders(directory, classes, image_problem if self.check_files else None)
        self.skipped.extend(walk.skipped)
        self.links_not_followed.extend(walk.links_not_followed)
        return walk.samples

    def __getitem__(self, index: int):
        if not self.replace_unreadable:
            try:
                return super().__getitem__(index)
            except DataError as exc:
                log.warning("%s Skipping it.", exc)
                return None
        for offset in range(len(self.samples)):
            i = (index + offset) % len(self.samples)
            try:
                return super().__getitem__(i)
            except DataError as exc:
                log.warning("%s Using the next image instead.", exc)
        raise DataError(f"No readable image left in {self.root}.")


def class_names(root: str | Path) -> list[str]:
    """Human-readable class names for an ImageFolder: ``classes.tsv`` (wnid, name) when present, else folders."""
    root = Path(root)
    folders = sorted(p.name for p in root.iterdir() if p.is_dir())
    for candidate in (root / "classes.tsv", root.parent / "classes.tsv"):
        if candidate.is_file():
            names = {}
            for line in candidate.read_text().splitlines():
                wnid, _, name = line.partition("\t")
                names[wnid.strip()] = name.strip() or wnid.strip()
            return [names.get(f, f) for f in folders]
    return folders


def split_dir(root: str | Path, split: str) -> Path:
    """``root/split`` if the folder has ImageNet's train/val layout, else ``root`` itself."""
    root = Path(root)
    return root / split if (root / split).is_dir() else root


def folder_fingerprint(dataset: datasets.ImageFolder, indices: Sequence[int] | None = None) -> str:
    """sha256 over the relative paths, sizes and labels of the chosen samples: identifies a data selection."""
    h = hashlib.sha256()
    root = Path(dataset.root)
    chosen = range(len(dataset.samples)) if indices is None else indices
    for i in chosen:
        path, label = dataset.samples[i]
        p = Path(path)
        h.update(f"{p.relative_to(root)}|{p.stat().st_size}|{label}\n".encode())
    return h.hexdigest()


def stratified_indices(targets: Sequence[int], n: int, seed: int = 0) -> list[int]:
    """Choose ``n`` sample indices spread evenly over classes (round-robin over shuffled classes), reproducibly."""
    rng = random.Random(seed)
    by_class: dict[int, list[int]] = {}
    for i, t in enumerate(targets):
        by_class.setdefault(int(t), []).append(i)
    for idx in by_class.values():
        rng.shuffle(idx)
    queues = [by_class[c] for c in sorted(by_class)]
    chosen: list[int] = []
    depth = 0
    while len(chosen) < n and any(depth < len(q) for q in queues):
        for q in queues:
            if depth < len(q) and len(chosen) < n:
                chosen.append(q[depth])
        depth += 1
    return sorted(chosen)


def _synthetic_image(label: int, num_classes: int, size: int, rng: np.random.Generator) -> Image.Image:
    """A class-dependent pattern (hue and stripe orientation/frequency) with per-image noise and shifts."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    angle = np.pi * label / num_classes
    freq = 2 + (label % 4) * 1.5
    phase = rng.uniform(0, 2 * np.pi)
    wave = 0.5 + 0.5 * np.sin(2 * np.pi * freq * (xx * np.cos(angle) + yy * np.sin(angle)) + phase)
    hue = np.array([np.cos(angle * 2), np.cos(angle * 2 + 2.1), np.cos(angle * 2 + 4.2)], dtype=np.float32)
    colour = 0.5 + 0.35 * hue
    img = wave[..., None] * colour[None, None, :] + (1 - wave[..., None]) * (1 - colour[None, None, :])
    img += rng.normal(0, 0.08, size=img.shape).astype(np.float32)
    return Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8))


def make_synthetic_imagefolder(
    root: str | Path,
    num_classes: int = 10,
    train_per_class: int = 60,
    val_per_class: int = 20,
    size: int = 64,
    seed: int = 0,
) -> Path:
    """Write a deterministic synthetic ImageFolder (``root/train``, ``root/val``, ``classes.txt``).

    The class folders are named ``synthetic-NN`` so that every report built from it says it is synthetic.
    An existing, complete set with the same parameters is reused.

    Returns:
        ``root``.
    """
    root = Path(root)
    stamp = root / ".synthetic.json"
    params = f"{num_classes},{train_per_class},{val_per_class},{size},{seed}"
    if stamp.is_file() and stamp.read_text() == params:
        return root
    rng = np.random.default_rng(seed)
    names = [f"{SYNTHETIC_MARK}-{c:02d}" for c in range(num_classes)]
    for split, per_class in (("train", train_per_class), ("val", val_per_class)):
        for c, name in enumerate(names):
            d = root / split / name
            ensure_folder(d)
            for k in range(per_class):
                png = io.BytesIO()
                _synthetic_image(c, num_classes, size, rng).save(png, format="PNG")
                write_new_file(d / f"{k:04d}.png", png.getvalue())
    write_bytes_atomic(root / "classes.txt", ("\n".join(names) + "\n").encode())
    write_bytes_atomic(stamp, params.encode())
    return root


def is_synthetic(root: str | Path) -> bool:
    """True when ``root`` (or its parent) is a set made by :func:`make_synthetic_imagefolder`."""
    root = Path(root)
    return (root / ".synthetic.json").is_file() or (root.parent / ".synthetic.json").is_file()
