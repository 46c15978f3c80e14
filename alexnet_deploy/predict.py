"""Top-k predictions for image files from any artifact, with the preprocessing its manifest records
(:func:`alexnet_deploy.backends.describe_artifact` says what the artifact is)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from alexnet_deploy.backends import Artifact, Runner
from alexnet_deploy.core.data import eval_transform, load_rgb
from alexnet_deploy.core.errors import DataError


@dataclass
class Prediction:
    """One image's result: the top-k (class index, name, probability), or the error that stopped it."""

    path: str
    top: list[tuple[int, str, float]] = field(default_factory=list)
    error: str = ""
    ids: list[str] = field(default_factory=list)  # the class id of each top entry (a wnid for ImageNet-1k)

    def to_dict(self) -> dict:
        if self.error:
            return {"path": self.path, "error": self.error}
        ids = self.ids or [n for _, n, _ in self.top]
        return {"path": self.path, "top": [{"index": i, "class": n, "id": c, "probability": p}
                                           for (i, n, p), c in zip(self.top, ids, strict=True)]}  # fmt: skip


def class_labels(info: Artifact) -> list[str]:
    """The names to show for an artifact's classes: those its sidecar records, ImageNet-1k's display names for
    an ImageNet-1k model (a torchvision state dict), else the class ids."""
    from alexnet_deploy.core.imagenet import display_names, is_imagenet1k

    if info.manifest is not None and info.manifest.class_names:
        return info.manifest.display_names
    return display_names(info.classes) if is_imagenet1k(info.classes) else list(info.classes)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, numerically stable."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def predict_files(
    runner: Runner,
    info: Artifact,
    paths: Sequence[str | Path],
    top_k: int = 5,
    batch_size: int = 16,
) -> list[Prediction]:
    """Classify image files with an active runner; an unreadable file gets its own error, the rest still run.

    Returns:
        One :class:`Prediction` per path, in the order given.
    """
    transform = eval_transform(info.require_preprocessing())
    results = [Prediction(str(p)) for p in paths]
    ok: list[int] = []
    tensors = []
    for i, p in enumerate(paths):
        try:
            tensors.append(transform(load_rgb(p)).numpy())
            ok.append(i)
        except DataError as exc:
            results[i].error = str(exc)
    k = min(top_k, len(info.classes))
    names = class_labels(info)
    for start in range(0, len(ok), batch_size):
        idx = ok[start : start + batch_size]
        probs = softmax(runner.infer(np.stack(tensors[start : start + batch_size])).astype(np.float64))
        for row, i in zip(probs, idx, strict=True):
            order = np.argsort(-row)[:k]
            results[i].top = [(int(c), names[c], float(row[c])) for c in order]
            results[i].ids = [info.classes[c] for c in order]
    return results
