"""Image folders in ImageNet's standard layouts, as one dataset shape for evaluation and calibration.

* **Class folders** (``root/<class>/<image>``): ImageNet's train folder and the reorganised val folder (wnid
  folders such as ``n01440764``), Imagenette, Tiny ImageNet, any ImageFolder: :class:`ImageFolderDataset`.
* **The flat val folder** (``root/ILSVRC2012_val_00000001.JPEG`` ...) with a label file that names each image's
  wnid, in the folder or beside it (the first found of :data:`LABEL_FILES`; ``LOC_val_solution.csv`` also up to
  three folders above, as in Kaggle's ``ILSVRC/Data/CLS-LOC/val`` layout):

  - ``LOC_val_solution.csv`` (the Kaggle ImageNet layout): ``ImageId,PredictionString`` lines whose
    PredictionString starts with the wnid;
  - a "file wnid" list (``ILSVRC2012_val_00000001.JPEG n01751748`` per line, the file with or without its
    extension, separated by spaces, a tab or a comma).

  The devkit's ``ILSVRC2012_validation_ground_truth.txt`` is refused with a sentence: its numbers are the
  devkit's ILSVRC2012_IDs (meta.mat order), not class indices, and reading meta.mat needs scipy; so is a "file
  index" list, whose numbering cannot be told apart from the devkit's.

:func:`open_image_folder` picks the layout. The flat dataset numbers its classes as the wnid folders holding the
same images would (sorted wnids) and lists its samples in the same order, so both layouts give the same figures.
"""

from __future__ import annotations

import csv
import logging
import re
from pathlib import Path

from alexnet_deploy.core.data import IMAGE_EXTENSIONS, ImageFolderDataset, load_rgb
from alexnet_deploy.core.errors import DataError

__all__ = ["LABEL_FILES", "FlatLabelledDataset", "find_label_file", "open_image_folder", "read_label_file"]

log = logging.getLogger(__name__)

#: Label files looked for, in this order, in a flat image folder and then in its parent.
LABEL_FILES = (
    "LOC_val_solution.csv",
    "val_labels.txt",
    "val_labels.csv",
    "labels.txt",
    "labels.csv",
    "ILSVRC2012_validation_ground_truth.txt",
)
ACCEPTED = (
    "LOC_val_solution.csv (ImageId,PredictionString starting with the wnid) or a 'file wnid' list "
    "(ILSVRC2012_val_00000001.JPEG n01751748 per line)"
)
_WNID = re.compile(r"^n\d{8}$")


def _stem(name: str) -> str:
    name = Path(name.strip()).name
    return name.rsplit(".", 1)[0] if name.lower().endswith(IMAGE_EXTENSIONS) else name


def read_label_file(path: str | Path) -> dict[str, str]:
    """``{image stem: wnid}`` from a label file of an accepted format (see the module docstring).

    Raises:
        DataError: the file is unreadable, of the devkit's ID format, or of no accepted format (the sentence
            names the line that did not fit and the accepted formats).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"Cannot read the label file {path}: {exc}.") from None
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise DataError(f"The label file {path} is empty.")
    if all(line.strip().isdigit() for line in lines[:50]):
        raise DataError(
            f"{path.name} holds bare class numbers (the devkit's ILSVRC2012_IDs in meta.mat order, not class "
            f"indices), which cannot be matched to images safely; give {ACCEPTED} instead."
        )
    labels: dict[str, str] = {}
    if lines[0].replace(" ", "").lower().startswith("imageid,predictionstring"):
        for row in csv.reader(lines[1:]):
            wnid = row[1].split()[0] if len(row) > 1 and row[1].split() else ""
            if not _WNID.match(wnid):
                raise DataError(f"{path.name}: the row {','.join(row)[:80]!r} does not start its PredictionString "
                                "with a WordNet id (n########).")  # fmt: skip
            labels[_stem(row[0])] = wnid
        return labels
    for number, line in enumerate(lines, 1):
        parts = [p for p in re.split(r"[\s,]+", line.strip()) if p]
        if len(parts) != 2 or not _WNID.match(parts[1]):
            kind = "a 'file index' line (ambiguous: which numbering?)" if parts[-1:] and parts[-1].isdigit() else ""
            raise DataError(
                f"{path.name} line {number} ({line.strip()[:80]!r}) is not an image name and a WordNet id"
                f"{f', but {kind}' if kind else ''}; the accepted label files are {ACCEPTED}."
            )
        labels[_stem(parts[0])] = parts[1]
    return labels


def find_label_file(root: str | Path) -> Path | None:
    """The first of :data:`LABEL_FILES` in ``root`` or its parent, else ``LOC_val_solution.csv`` up to three
    folders above (Kaggle's layout keeps it beside ``ILSVRC/``, the images in ``ILSVRC/Data/CLS-LOC/val``), or
    ``None``."""
    root = Path(root).absolute()
    for folder in (root, root.parent):
        for name in LABEL_FILES:
            if (folder / name).is_file():
                return folder / name
    for folder in root.parents[1:4]:
        if (folder / LABEL_FILES[0]).is_file():
            return folder / LABEL_FILES[0]
    return None


class FlatLabelledDataset:
    """Images directly in ``root``, labelled by a label file: the shape of an ImageFolder (``samples``,
    ``targets``, ``classes`` as sorted wnids, ``loader``, ``skipped``) so that every consumer takes either.

    Images the label file does not name are left out (counted in a warning); so are label lines without an image.

    Raises:
        DataError: no image of the folder is named in the label file.
    """

    def __init__(self, root: str | Path, label_file: str | Path) -> None:
        self.root = str(root)
        self.label_file = Path(label_file)
        self.loader = load_rgb
        self.transform = None  # applied by __getitem__, as ImageFolder's is
        self.skipped: list[str] = []
        labels = read_label_file(label_file)
        images = sorted(p for p in Path(root).iterdir() if p.is_file() and p.name.lower().endswith(IMAGE_EXTENSIONS))
        named = [(p, labels[_stem(p.name)]) for p in images if _stem(p.name) in labels]
        unlabelled = len(images) - len(named)
        if not named:
            raise DataError(f"None of the {len(images)} images in {root} is named in the label file {label_file}.")
        if unlabelled:
            log.warning("%d image(s) in %s are not in %s and were left out.", unlabelled, root, self.label_file.name)
        self.classes = sorted({wnid for _, wnid in named})
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        named.sort(key=lambda pw: (pw[1], pw[0].name))  # the order the same images in wnid folders would have
        self.samples = [(str(p), self.class_to_idx[w]) for p, w in named]
        self.targets = [t for _, t in self.samples]
        self.empty_classes: list[str] = []

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        """``(image, target)``, the image through ``transform`` when one is set (ImageFolder's protocol)."""
        path, target = self.samples[index]
        image = self.loader(path)
        return (self.transform(image) if self.transform is not None else image), target


def open_image_folder(root: str | Path) -> ImageFolderDataset | FlatLabelledDataset:
    """The dataset of ``root`` in whichever standard layout it has: class folders, or flat images with a label
    file (the module docstring lists the formats).

    Raises:
        DataError: the folder is missing; flat images without a label file; or what the dataset raises.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"Image folder not found: {root}.")
    try:
        entries = list(root.iterdir())
    except OSError as exc:
        raise DataError(f"Cannot read image folder {root}: {exc.strerror or exc}.") from None
    if any(p.is_dir() for p in entries):
        return ImageFolderDataset(root)
    if not any(p.name.lower().endswith(IMAGE_EXTENSIONS) for p in entries):
        return ImageFolderDataset(root)  # its own sentence: no class subfolders
    label_file = find_label_file(root)
    if label_file is None:
        raise DataError(
            f"{root} holds images but no class subfolders and no label file; put the images in class folders "
            f"(root/<class>/<image>) or put a label file in it or beside it: {ACCEPTED}, named "
            f"{' or '.join(LABEL_FILES[:3])}."
        )
    return FlatLabelledDataset(root, label_file)
