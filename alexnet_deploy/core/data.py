"""Presets (defined once, reused by training, calibration, verification and prediction) and data loading.

* ``Preprocessing``: resize of the shorter side, centre crop, mean and std. It is stored in every artifact's
  manifest so that preprocessing never drifts from the weights.
* ``eval_transform``: resize, centre crop, normalise (the paper's and torchvision's evaluation).
* ``train_transform``: the paper's augmentation: the central square of the resized image, a random crop of it,
  a horizontal flip, and PCA colour augmentation with ImageNet's eigenvectors (sigma 0.1).
* ``ImageFolderDataset``: torchvision's ImageFolder that skips corrupt or non-image files with a warning
  naming each one, and counts them, instead of crashing.
* ``make_synthetic_imagefolder``: a deterministic synthetic set written as an ImageFolder, for offline demos.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import random
import re
import stat
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision import datasets
from torchvision.transforms import v2

from alexnet_deploy.core.errors import DataError
from alexnet_deploy.core.text import label_line

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Eigen-decomposition of ImageNet's RGB covariance (pixel values in [0, 1]), as used by the paper's
# "fancy PCA" colour augmentation (values from fb.resnet.torch).
IMAGENET_PCA_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_PCA_EIGVEC = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
SYNTHETIC_MARK = "synthetic"


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes the network's input tensor: resize shorter side, centre crop, normalise."""

    resize: int = 256
    crop: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Preprocessing:
        return cls(resize=int(d["resize"]), crop=int(d["crop"]), mean=tuple(d["mean"]), std=tuple(d["std"]))

    @classmethod
    def for_crop(cls, crop: int) -> Preprocessing:
        """The paper's 256/224 ratio applied to another crop size (e.g. 112 -> resize 128)."""
        return cls(resize=int(round(crop * 256 / 224)), crop=crop)


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


MAX_IMAGE_PIXELS = 1024**3 // 4 // 3
"""The largest image decoded: 89,478,485 pixels (about 9459 x 9459), Pillow's own decompression-bomb threshold.
Decoded as RGB it takes 256 MiB; a larger file (a 20000 x 20000 PNG compresses to a few kB) is refused with a
sentence before its pixels are decoded, instead of exhausting memory."""

_FILE_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a folder"))  # fmt: skip
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")
_WITH_ALPHA = ("RGBA", "LA", "PA", "RGBa", "La")
TRANSPARENT_BACKGROUND = (255, 255, 255)
"""Transparent pixels are composited on white, as a viewer shows them on a white page."""


def _kind(mode: int) -> str | None:
    """What a non-regular file is (``"a FIFO"``...), or ``None`` for a regular file."""
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in _FILE_KINDS if test(mode)), "not a regular file")


@contextlib.contextmanager
def _open_regular(path: str | Path) -> Iterator:
    """Open ``path`` for reading only if it is a regular file: a FIFO would block the open (and the command)
    forever, a device could stream without end. Checked before opening and again on the open descriptor, which
    is opened non-blocking so that even a FIFO swapped in between cannot hang.

    Raises:
        DataError: missing, a folder, or not a regular file.
    """
    try:
        kind = _kind(os.stat(path).st_mode)
        if kind is None:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
            kind = _kind(os.fstat(fd).st_mode)
            if kind is not None:
                os.close(fd)
    except FileNotFoundError:
        raise DataError(f"Image not found: {path} (or it is a link to nothing).") from None
    except PermissionError:
        raise DataError(f"Cannot read image {path}: permission denied.") from None
    except OSError as exc:
        raise DataError(f"Cannot read image {path}: {exc.strerror or exc}.") from None
    if kind == "a folder":
        raise DataError(f"{path} is a folder, not an image file.")
    if kind is not None:
        raise DataError(f"{path} is {kind}, not an image file; only regular files are read.")
    with os.fdopen(fd, "rb") as fh:
        yield fh


def _too_large(path: str | Path, pixels: int | None, size: tuple[int, int] | None = None) -> DataError:
    what = f"{size[0]}x{size[1]} ({pixels / 1e6:.1f} megapixels)" if size else "larger than Pillow can safely open"
    return DataError(
        f"Image {path} is too large: {what}; the limit is {MAX_IMAGE_PIXELS:,} pixels (about 9459x9459, 256 MiB "
        "decoded), so that one image cannot exhaust memory. Shrink it first."
    )


@contextlib.contextmanager
def _open_image(path: str | Path) -> Iterator[Image.Image]:
    """Open an image file lazily (header only), refusing non-regular files and images over the pixel limit."""
    with _open_regular(path) as fh, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused below with a sentence
        try:
            img = Image.open(fh)
        except Image.DecompressionBombError as exc:
            found = re.search(r"\((\d+) pixels\)", str(exc))
            raise _too_large(path, int(found.group(1)) if found else None) from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            raise DataError(f"Cannot read image {path}: {exc}.") from None
        with img:
            pixels = img.size[0] * img.size[1]
            if pixels > MAX_IMAGE_PIXELS:
                raise _too_large(path, pixels, img.size)
            yield img


def to_rgb(img: Image.Image, path: str | Path = "the image") -> Image.Image:
    """Convert a decoded image of any mode Pillow opens to 8-bit RGB, faithfully, or refuse it.

    * 16-bit grey (``I;16*``, and ``I`` holding 0..65535 as Pillow gives 16-bit PGM/PNG) is scaled by its true
      range (65535 -> 255), not clipped: Pillow's ``convert("RGB")`` turns every value above 255 into white.
    * Transparency (RGBA, LA, PA, P with a transparent colour) is composited on :data:`TRANSPARENT_BACKGROUND`.
    * CMYK, YCbCr, LAB, HSV, 1-bit and palette images use Pillow's conversion.

    Raises:
        DataError: 32-bit float pixels (mode ``F``: their range is not defined, so no scaling is faithful),
            ``I`` values outside 0..65535, or a mode Pillow cannot convert to RGB.
    """
    mode = img.mode
    if mode in _SIXTEEN_BIT or mode == "I":
        grey = np.asarray(img)
        if mode == "I" and grey.size and (int(grey.min()) < 0 or int(grey.max()) > 65535):
            raise DataError(
                f"Image {path} has 32-bit integer pixels from {int(grey.min())} to {int(grey.max())}, outside the "
                "16-bit range 0..65535 that can be scaled faithfully; convert it to 8 or 16 bits first."
            )
        grey8 = ((grey.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
        return Image.fromarray(grey8, "L").convert("RGB")
    if mode == "F":
        raise DataError(
            f"Image {path} has 32-bit floating-point pixels (mode F), whose range is not defined, so they cannot be "
            "turned into 8-bit colour faithfully; convert it to an 8-bit image first."
        )
    if mode == "P" and "transparency" in img.info:
        img, mode = img.convert("RGBA"), "RGBA"
    if mode in _WITH_ALPHA:
        rgba = img.convert("RGBA")
        if rgba.getchannel("A").getextrema()[0] == 255:  # fully opaque: nothing to composite
            return rgba.convert("RGB")
        background = Image.new("RGBA", rgba.size, (*TRANSPARENT_BACKGROUND, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    try:
        return img.convert("RGB")
    except ValueError as exc:
        raise DataError(f"Image {path} has mode {mode}, which cannot be converted to RGB: {exc}.") from None


def load_rgb(path: str | Path) -> Image.Image:
    """Open an image file as 8-bit RGB (:func:`to_rgb`).

    Raises:
        DataError: the file is missing, not a regular file (a FIFO never blocks the caller), larger than
            :data:`MAX_IMAGE_PIXELS`, truncated, not an image, or of a mode that cannot be converted faithfully.
    """
    with _open_image(path) as img:
        try:
            img.load()
        except (OSError, ValueError, SyntaxError) as exc:
            raise DataError(f"Cannot read image {path}: {exc}.") from None
        return to_rgb(img, path)


def image_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot be used as an image, without decoding its pixels (``None``: it looks usable).

    Checks that it is a regular file, that Pillow recognises it, that it is within :data:`MAX_IMAGE_PIXELS` and
    of a mode :func:`to_rgb` takes, and that its structure is intact (``verify``). A truncated JPEG passes and
    fails only when decoded; :func:`load_rgb` says so then.
    """
    try:
        with _open_image(path) as img:
            if img.mode == "F":
                to_rgb(img, path)  # raises its sentence
            img.verify()
    except DataError as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - any failure of verify() means the file is unusable
        return f"Cannot read image {path}: {exc}."
    return None


def _file_id(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


@dataclass
class FolderWalk:
    """What :func:`walk_class_folders` found: samples, and everything it left out or counted once."""

    samples: list[tuple[str, int]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # files left out: not images, unreadable, not regular
    links_not_followed: list[str] = field(default_factory=list)  # folder links that lead back (loops) or across
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (path, the path it was first counted as)


def walk_class_folders(
    root: str | Path, classes: Sequence[str], accept: Callable[[str], str | None] | None = None
) -> FolderWalk:
    """Every image file under ``root/<class>/`` (at any depth, following links), each real file counted once.

    Links are followed (a class folder may be a link to where the images live), but a folder is read at most
    once: a link back to a folder already on the way (``ln -s . loop``) or to another class's folder is not
    followed, with one warning naming it; a file reached a second time (through a link, or a hard link) is
    counted once, under the first path met in sorted order. Non-image names, broken links and non-regular files
    (FIFOs, devices) are left out without being opened; ``accept(path)`` may give a reason to leave out others.

    Returns:
        :class:`FolderWalk`, samples in ImageFolder's order (sorted folder path, then file name).

    Raises:
        DataError: a folder cannot be listed.
    """
    root = Path(root)
    walk = FolderWalk()
    try:
        seen_dirs = {_file_id(os.stat(root)): str(root)}
        class_dirs: dict[tuple[int, int], str] = {}
        for c in classes:  # two class folders that are one folder: the first (sorted) reads it
            class_dirs.setdefault(_file_id(os.stat(root / c)), c)
    except OSError as exc:
        raise DataError(f"Cannot read image folder {root}: {exc.strerror or exc}.") from None
    seen_files: dict[tuple[int, int], str] = {}
    for index, name in enumerate(classes):
        folders: list[tuple[str, list[str]]] = []
        pending = [root / name]
        while pending:
            folder = pending.pop()
            try:
                folder_id = _file_id(os.stat(folder))
                if folder_id in seen_dirs or (folder_id in class_dirs and class_dirs[folder_id] != name):
                    first = seen_dirs.get(folder_id) or str(root / class_dirs[folder_id])
                    walk.links_not_followed.append(str(folder))
                    log.warning("Not following the folder link %s: it leads to %s, which is read once (a loop or "
                                "a second way in); its images are counted there.", folder, first)  # fmt: skip
                    continue
                seen_dirs[folder_id] = str(folder)
                with os.scandir(folder) as entries:
                    listing = sorted(entries, key=lambda e: e.name)
            except OSError as exc:
                raise DataError(f"Cannot read image folder {folder}: {exc.strerror or exc}.") from None
            subfolders = [Path(e.path) for e in listing if _is_dir(e)]
            pending.extend(reversed(subfolders))
            folders.append((str(folder), [e.path for e in listing if not _is_dir(e)]))
        for _, files in sorted(folders):
            for path in files:
                problem = _file_problem(path, seen_files, walk)
                if problem is None and accept is not None:
                    problem = accept(path)
                if problem == "":
                    continue  # counted once already
                if problem is not None:
                    walk.skipped.append(path)
                    log.warning("%s Skipping it.", problem)
                    continue
                walk.samples.append((path, index))
    if walk.duplicates:
        path, first = walk.duplicates[0]
        log.warning("%d file(s) were reached a second time through links and counted once (first: %s is %s).",
                    len(walk.duplicates), path, first)  # fmt: skip
    return walk


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()  # follows links
    except OSError:
        return False


def _file_problem(path: str, seen: dict[tuple[int, int], str], walk: FolderWalk) -> str | None:
    """Why ``path`` is left out (``""``: it is a file already counted), without opening it; ``None``: keep it."""
    if not path.lower().endswith(IMAGE_EXTENSIONS):
        return f"{path} does not end in an image extension ({', '.join(IMAGE_EXTENSIONS)})."
    try:
        st = os.stat(path)
    except OSError:
        return f"{path} is a link to nothing, or cannot be read."
    if (kind := _kind(st.st_mode)) is not None:
        return f"{path} is {kind}, not an image file; only regular files are read."
    file_id = _file_id(st)
    if file_id in seen:
        walk.duplicates.append((path, seen[file_id]))
        return ""
    seen[file_id] = path
    return None


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
            d.mkdir(parents=True, exist_ok=True)
            for k in range(per_class):
                _synthetic_image(c, num_classes, size, rng).save(d / f"{k:04d}.png")
    (root / "classes.txt").write_text("\n".join(names) + "\n")
    stamp.write_text(params)
    return root


def is_synthetic(root: str | Path) -> bool:
    """True when ``root`` (or its parent) is a set made by :func:`make_synthetic_imagefolder`."""
    root = Path(root)
    return (root / ".synthetic.json").is_file() or (root.parent / ".synthetic.json").is_file()
