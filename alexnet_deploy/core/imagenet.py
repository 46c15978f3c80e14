"""The ImageNet-1k label space, once: the 1000 WordNet ids in class-index order, with names for display.

Every ImageNet-1k checkpoint (torchvision's, timm's, the ONNX Model Zoo's) numbers its 1000 outputs in the
order of the *sorted* WordNet ids (``n01440764`` tench is 0). That list, the display names torchvision publishes
with its weights and the WordNet lemmas are shipped as ``imagenet1k.tsv`` beside this module (its header says
where it came from); nothing is downloaded at run time.

A model whose classes are these 1000 wnids is an ImageNet-1k model: data folders are matched to it by wnid (or
by a name from ``classes.tsv``), and its predictions are shown with the display names.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from alexnet_deploy.core.errors import ConfigError

__all__ = [
    "IMAGENET1K",
    "IMAGENET1K_SIZE",
    "LabelSpace",
    "display_names",
    "imagenet1k",
    "is_imagenet1k",
    "read_classes_file",
]

IMAGENET1K = "imagenet1k"  # the name `--classes imagenet1k` and sidecars use for this label space
IMAGENET1K_SIZE = 1000
_TABLE = Path(__file__).with_name("imagenet1k.tsv")


@dataclass(frozen=True)
class LabelSpace:
    """Class ids in index order, each with a display name and the other names it is known by."""

    ids: tuple[str, ...]
    names: tuple[str, ...]
    aliases: tuple[tuple[str, ...], ...]  # WordNet lemmas (e.g. ``goldfish, Carassius auratus``), per class

    def __len__(self) -> int:
        return len(self.ids)

    @functools.cached_property
    def index(self) -> dict[str, int]:
        """Every id, display name and lemma (lower-cased for names) to its class index; ambiguous names left out."""
        found: dict[str, int] = {}
        ambiguous: set[str] = set()
        for i, (wnid, name, lemmas) in enumerate(zip(self.ids, self.names, self.aliases, strict=True)):
            for key in {name.lower(), ", ".join(lemmas).lower(), *(lemma.lower() for lemma in lemmas)}:
                if key in found and found[key] != i:
                    ambiguous.add(key)
                found.setdefault(key, i)
            found[wnid] = i
        for key in ambiguous:
            found.pop(key, None)
        return found

    def lookup(self, key: str) -> int | None:
        """The class index of a wnid, a display name or a lemma (case-insensitive names); ``None`` if unknown."""
        key = key.strip()
        return self.index.get(key, self.index.get(key.lower()))


@functools.lru_cache(maxsize=1)
def imagenet1k() -> LabelSpace:
    """The ImageNet-1k label space read from the shipped table (1000 sorted wnids, names, lemmas)."""
    ids, names, aliases = [], [], []
    for line in _TABLE.read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        wnid, name, lemmas = line.split("\t")
        ids.append(wnid)
        names.append(name)
        aliases.append(tuple(x.strip() for x in lemmas.split(",") if x.strip()))
    return LabelSpace(tuple(ids), tuple(names), tuple(aliases))


def is_imagenet1k(classes: Sequence[str]) -> bool:
    """True when ``classes`` are exactly ImageNet-1k's 1000 wnids in class-index order."""
    return len(classes) == IMAGENET1K_SIZE and tuple(classes) == imagenet1k().ids


def display_names(classes: Sequence[str], recorded: Sequence[str] | None = None) -> list[str]:
    """Names to show for ``classes``: the ``recorded`` ones (a sidecar's ``class_names``) where given, else the
    ImageNet-1k display name of each wnid, else the class id itself."""
    if recorded and len(recorded) == len(classes):
        return list(recorded)
    space = imagenet1k()
    where = {w: i for i, w in enumerate(space.ids)}
    return [space.names[where[c]] if c in where else c for c in classes]


def read_classes_file(spec: str | Path) -> tuple[list[str], list[str]]:
    """Class ids and display names from ``--classes``: ``imagenet1k``, or a text file with one class per line
    (``id``, or ``id<TAB>name``; blank lines and ``#`` comments ignored), in the model's output order.

    Raises:
        ConfigError: the file is missing, empty, names a class twice, or holds unprintable characters.
    """
    if str(spec).strip().lower() == IMAGENET1K:
        space = imagenet1k()
        return list(space.ids), list(space.names)
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(f"The classes file {path} does not exist (give a file with one class per line, or "
                          f"{IMAGENET1K}).")  # fmt: skip
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Cannot read the classes file {path}: {exc}.") from None
    ids, names = [], []
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cid, _, name = line.partition("\t")
        ids.append(cid.strip())
        names.append(name.strip() or cid.strip())
    if not ids:
        raise ConfigError(f"The classes file {path} names no class.")
    if bad := next((c for c in ids + names if not c.isprintable()), None):
        raise ConfigError(f"The classes file {path} holds a class with unprintable characters ({bad!r}).")
    if len(set(ids)) != len(ids):
        twice = next(c for c in ids if ids.count(c) > 1)
        raise ConfigError(f"The classes file {path} names the class {twice!r} twice.")
    return ids, names
