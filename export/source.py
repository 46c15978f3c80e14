"""Where an export's weights come from: our checkpoint, a torchvision AlexNet state dict, an in-memory
:class:`~alexnet_deploy.core.checkpoint.LoadedModel`, or (with network access) torchvision's pretrained entry."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from alexnet_deploy.core.checkpoint import LoadedModel, load_model
from alexnet_deploy.core.data import Preprocessing
from alexnet_deploy.core.errors import CheckpointError, ConfigError
from alexnet_deploy.core.files import sha256_file
from alexnet_deploy.core.imagenet import imagenet1k

__all__ = ["load_source", "load_torchvision_weights"]

_DOWNLOAD_TIMEOUT_S = 30


def load_source(
    source: str | Path | LoadedModel,
    *,
    expected_classes: int | None = None,
    expected_model: str | None = None,
) -> tuple[LoadedModel, dict[str, Any]]:
    """Rebuild the model to export and describe where it came from.

    Args:
        source: a checkpoint file (ours or a torchvision AlexNet state dict) or an already loaded model.
        expected_classes: refuse a model with another class count.
        expected_model: refuse a model of another architecture (``alexnet`` / ``alexnet_paper``).

    Returns:
        The loaded model and the sidecar's ``source`` entry (path, sha256, format).

    Raises:
        CheckpointError: unreadable, foreign, or not the expected architecture / class count.
    """
    if isinstance(source, LoadedModel):
        loaded, info = source, {"path": None, "sha256": None, "format": source.source}
    else:
        path = Path(source)
        loaded = load_model(path, expected_classes=expected_classes)
        info = {"path": str(path.resolve()), "sha256": sha256_file(path), "format": loaded.source}
    num_classes = int(loaded.arch.get("num_classes", len(loaded.classes)))
    if expected_classes is not None and num_classes != expected_classes:
        raise CheckpointError(f"The model predicts {num_classes} classes, but {expected_classes} were expected.")
    name = loaded.arch.get("name")
    if expected_model is not None and name != expected_model:
        raise CheckpointError(f"The checkpoint holds the {name} model, but {expected_model} was expected.")
    return loaded, info


def load_torchvision_weights(name: str = "IMAGENET1K_V1") -> tuple[LoadedModel, dict[str, Any]]:
    """Fetch torchvision's pretrained AlexNet weights (network access needed once; then torch hub's cache).

    The file is downloaded with its published hash checked and loaded like any checkpoint (weights only),
    with the ImageNet class names and the eval transform that torchvision publishes with it.

    Raises:
        ConfigError: torchvision has no AlexNet weights of that name.
        CheckpointError: the download failed (no network access, most often).
    """
    import torch
    from torchvision.models import AlexNet_Weights

    try:
        weights = AlexNet_Weights[name]
    except KeyError:
        choices = ", ".join(w.name for w in AlexNet_Weights)
        raise ConfigError(f"torchvision has no AlexNet weights named '{name}'; choose one of: {choices}.") from None
    filename = Path(urlparse(weights.url).path).name
    path = Path(torch.hub.get_dir()) / "checkpoints" / filename
    if not path.is_file():
        match = torch.hub.HASH_REGEX.search(filename)
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(_DOWNLOAD_TIMEOUT_S)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(weights.url, str(path), match.group(1) if match else None, progress=False)
        except Exception as exc:  # noqa: BLE001 - URLError, timeouts, hash mismatch: all mean "not fetched"
            # nothing to remove: torch downloads to a temporary file of its own, moved to ``path`` only once verified
            raise CheckpointError(
                f"Cannot download torchvision's AlexNet {name} weights from {weights.url} "
                f"(network access is needed the first time: {type(exc).__name__})."
            ) from None
        finally:
            socket.setdefaulttimeout(previous)
    loaded = load_model(path)
    transform = weights.transforms()
    # ImageNet-1k's wnids in index order; the categories torchvision publishes are their display names, in the
    # same order (the sidecar carries them: see export.onnx_export.manifest_for).
    loaded.classes = list(imagenet1k().ids)
    loaded.preprocessing = Preprocessing(
        resize=int(transform.resize_size[0]),
        crop=int(transform.crop_size[0]),
        mean=tuple(transform.mean),
        std=tuple(transform.std),
    )
    loaded.source = f"torchvision:{name}"
    return loaded, {"path": str(path), "sha256": sha256_file(path), "format": loaded.source, "url": weights.url}
