"""The folder walk of an ImageFolder: every image file under ``root/<class>/``, each real file counted once.

Links are followed, but each folder is read once: a link loop (``ln -s . loop``) once made a class appear ~40
times and every count and accuracy wrong. Pillow is not imported here; files are judged by name and ``stat``,
and a caller's ``accept`` may look inside them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from alexnet_deploy.core.decode import IMAGE_EXTENSIONS, file_kind
from alexnet_deploy.core.errors import DataError

log = logging.getLogger(__name__)


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
    if (kind := file_kind(st.st_mode)) is not None:
        return f"{path} is {kind}, not an image file; only regular files are read."
    file_id = _file_id(st)
    if file_id in seen:
        walk.duplicates.append((path, seen[file_id]))
        return ""
    seen[file_id] = path
    return None
