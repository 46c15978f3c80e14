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

    def to_dict(self) -> dict:
        if self.error:
            return {"path": self.path, "error": self.error}
        return {"path": self.path, "top": [{"index": i, "class": n, "probability": p} for i, n, p in self.top]}


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
    for start in range(0, len(ok), batch_size):
        idx = ok[start : start + batch_size]
        probs = softmax(runner.infer(np.stack(tensors[start : start + batch_size])).astype(np.float64))
        for row, i in zip(probs, idx, strict=True):
            order = np.argsort(-row)[:k]
            results[i].top = [(int(c), info.classes[c], float(row[c])) for c in order]
    return results
