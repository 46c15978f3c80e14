"""Small ImageFolders copied from the fixture photos into tmp_path, with real faults: truncated JPEGs (which pass
PIL's ``verify()`` and fail only when decoded), files of garbage bytes named .JPEG, and empty class folders."""

from __future__ import annotations

import shutil
from pathlib import Path


def copy_folder(src: Path, dst: Path, classes: int | None = None, per_class: int | None = None) -> Path:
    """Copy the first ``classes`` class folders of an ImageFolder, ``per_class`` photos each (None: all)."""
    folders = sorted(p for p in src.iterdir() if p.is_dir())[:classes]
    for folder in folders:
        (dst / folder.name).mkdir(parents=True, exist_ok=True)
        for photo in sorted(folder.iterdir())[:per_class]:
            shutil.copyfile(photo, dst / folder.name / photo.name)
    for name in ("classes.txt", "classes.tsv"):
        for candidate in (src / name, src.parent / name):
            if candidate.is_file():
                shutil.copyfile(candidate, dst / name)
                break
    return dst


def truncate(photo: Path, keep: float = 0.4) -> Path:
    """Cut a JPEG to ``keep`` of its bytes: the header survives (so ``Image.verify()`` passes), the scan does not."""
    data = photo.read_bytes()
    photo.write_bytes(data[: int(len(data) * keep)])
    return photo


def garble(photo: Path) -> Path:
    """Overwrite a photo with bytes that are no image at all (the name still ends in .JPEG)."""
    photo.write_bytes(b"\x00 this is not a JPEG " * 20)
    return photo


def photos(folder: Path) -> list[Path]:
    """Every photo of an ImageFolder, in ImageFolder's order (class folder, then file name)."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in (".jpeg", ".jpg", ".png"))
