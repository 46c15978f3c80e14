"""Checkpoints: our training checkpoints and torchvision's plain AlexNet state dicts.

Our checkpoint is a dict::

    {"format": "alexnet-deploy-checkpoint", "format_version": 1,
     "model": state_dict, "arch": {"name", "num_classes", "width", "columns"},
     "classes": [...], "preprocessing": {...}, "config": {...},
     "optimizer": ..., "scheduler": ..., "epoch": int, "rng": {...}, "metrics": {...}}

Everything is loaded with ``torch.load(..., weights_only=True)``: only tensors and plain containers. A torchvision
state dict with 1000 outputs is an ImageNet-1k classifier: its classes are ImageNet-1k's wnids, in index order.
A TorchScript archive or a whole pickled ``nn.Module`` is refused with a sentence that says what it is and what
to bring instead.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from alexnet_deploy.core.data import Preprocessing
from alexnet_deploy.core.errors import CheckpointError
from alexnet_deploy.core.files import atomic_path
from alexnet_deploy.core.imagenet import IMAGENET1K_SIZE, imagenet1k
from alexnet_deploy.core.models import build_model
from alexnet_deploy.core.paths import require_file

CHECKPOINT_FORMAT = "alexnet-deploy-checkpoint"
CHECKPOINT_VERSION = 1
CHECKPOINT_SUFFIXES = (".pt", ".pth")
_REFUSED_GLOBAL = re.compile(r"unsupported global:?\s+(?:GLOBAL\s+)?([\w.]+)", re.IGNORECASE)
_SIZE_MISMATCH = re.compile(
    r"size mismatch for (\S+): copying a param with shape torch\.Size\((\[[^\]]*\])\) from checkpoint, "
    r"the shape in current model is torch\.Size\((\[[^\]]*\])\)"
)
_KEYS = re.compile(r"(Missing|Unexpected) key\(s\) in state_dict: (.*)")
# A refused global that names a model class: torch.nn.modules.*, *.models.* (torchvision's, timm's), *Net, *Model.
_MODULE_CLASS = re.compile(r"(^|\.)(nn\.modules|models?)\.|\.\w*(Net|Model)$")
_TORCHVISION_KEYS = {"features.0.weight", "features.3.weight", "classifier.1.weight", "classifier.6.weight"}


@dataclass
class LoadedModel:
    """A model rebuilt from a checkpoint, with what is known about it."""

    model: nn.Module
    arch: dict[str, Any]
    classes: list[str]
    preprocessing: Preprocessing
    source: str  # "alexnet-deploy" or "torchvision"
    checkpoint: dict[str, Any] = field(default_factory=dict, repr=False)


def save_checkpoint(path: str | Path, checkpoint: dict[str, Any]) -> None:
    """Write a checkpoint dict atomically (temporary file, then rename)."""
    checkpoint = {"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION, **checkpoint}
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)


def read_checkpoint(path: str | Path, mmap: bool = False) -> dict[str, Any]:
    """Load a checkpoint file safely (``weights_only=True``); ``mmap`` maps the tensors instead of reading them.

    Raises:
        CheckpointError: missing, truncated, corrupt, or holding more than tensors and plain containers.
    """
    path = require_file(path, CheckpointError, "Checkpoint", CHECKPOINT_SUFFIXES)
    _refuse_torchscript(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        # weights_only refuses any GLOBAL outside its allow-list (torch < 2.6: "Unsupported global: GLOBAL x",
        # torch >= 2.6: "unsupported GLOBAL x whose module x is blocked"): the file asks to import a callable,
        # which is how a pickle runs code. Nothing was executed; say so rather than call the file corrupt.
        found = _REFUSED_GLOBAL.search(str(exc))
        if found and _MODULE_CLASS.search(found.group(1)):
            raise CheckpointError(
                f"{path} is a whole pickled model ({found.group(1)}, written by torch.save(model)), which runs code "
                "when loaded, so it was not loaded; save its weights instead with "
                "torch.save(model.state_dict(), 'alexnet.pth') and pass that file."
            ) from None
        if found:
            raise CheckpointError(
                f"{path} holds code or objects other than tensors ({found.group(1)}), so it was not loaded "
                "(checkpoints are read with weights_only=True, which runs nothing)."
            ) from None
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint (corrupt pickle data).") from None
    except Exception as exc:  # noqa: BLE001 - torch.load fails on corrupt bytes with many unrelated types
        # (struct.error, KeyError, zipfile.BadZipFile, RuntimeError, EOFError, ...): all mean "not a checkpoint".
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({first_line[:160]}).") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a checkpoint or state dict.")
    return obj


def _refuse_torchscript(path: Path) -> None:
    """A TorchScript archive (``torch.jit.save``: a zip holding ``constants.pkl`` and ``code/``) is a program, not
    weights: say what it is and what to bring instead, before torch.load dispatches it to torch.jit.load.

    Raises:
        CheckpointError: ``path`` is a TorchScript archive.
    """
    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return  # torch.load gives its own sentence for a damaged archive
    if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
        raise CheckpointError(
            f"{path} is a TorchScript archive (torch.jit.save), a compiled program rather than weights, so it was "
            "not loaded; pass the model's state dict (torch.save(model.state_dict(), 'alexnet.pth')), or export "
            "the model to ONNX yourself and bring it in with 'alexnet-deploy describe MODEL.onnx'."
        )


def describe_state_dict_error(exc: BaseException, limit: int = 2) -> str:
    """The tensors and shapes a ``load_state_dict`` error names, shortened to one clause.

    torch's message starts with "Error(s) in loading state_dict for AlexNet:", which says nothing; the lines
    after it name each tensor. The first ``limit`` problems are kept (``"classifier.6.weight is [10, 512] in
    the checkpoint but [20, 512] in the model"``), and the rest counted.
    """
    problems: list[str] = []
    for line in str(exc).splitlines()[1:]:
        line = line.strip()
        if m := _SIZE_MISMATCH.search(line):
            problems.append(f"{m.group(1)} is {m.group(2)} in the checkpoint but {m.group(3)} in the model")
        elif m := _KEYS.search(line):
            keys = [k.strip().strip('"') for k in m.group(2).rstrip(". ").split(",") if k.strip()]
            more = f" and {len(keys) - 2} more" if len(keys) > 2 else ""
            where = "missing from the checkpoint" if m.group(1) == "Missing" else "not in the model"
            problems.append(f"{', '.join(keys[:2])}{more} {'is' if len(keys) == 1 else 'are'} {where}")
        elif line:
            problems.append(line.rstrip("."))
    if not problems:
        text = str(exc).strip()
        return text.splitlines()[0].rstrip(".:") if text else type(exc).__name__
    rest = len(problems) - limit
    return "; ".join(problems[:limit]) + (f" (and {rest} more mismatch{'es' if rest > 1 else ''})" if rest > 0 else "")


def _infer_torchvision_arch(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    num_classes = int(state["classifier.6.weight"].shape[0])
    width = state["features.0.weight"].shape[0] / 64
    return {"name": "alexnet", "num_classes": num_classes, "width": width, "columns": 1}


@dataclass
class CheckpointInfo:
    """What a checkpoint says about its model, read without building it."""

    arch: dict[str, Any]
    classes: list[str]
    preprocessing: Preprocessing
    source: str  # "alexnet-deploy" or "torchvision"

    @property
    def num_classes(self) -> int:
        return int(self.arch.get("num_classes", 1000))


def _check_facts(obj: dict[str, Any], state: Any, arch: Any, classes: Any, path: Path) -> None:
    """Refuse a checkpoint whose description is present but malformed, or at odds with its own weights: the same
    schema as every sidecar (:meth:`Manifest.problem`), and the final layer's width against the class count."""
    from alexnet_deploy.core.manifest import Manifest

    if not isinstance(arch, dict) or not isinstance(classes, list):
        raise CheckpointError(
            f"{path} describes itself inconsistently: its arch must be a mapping and its classes a list."
        )
    raw_pre = obj.get("preprocessing") or {}
    problem = Manifest(kind="checkpoint", model=arch, classes=classes, preprocessing=raw_pre).problem()
    if problem:
        raise CheckpointError(f"{path} describes itself inconsistently: {problem}.")
    final = state.get("classifier.6.weight") if isinstance(state, dict) else None
    count = arch.get("num_classes") or len(classes)
    if getattr(final, "ndim", 0) == 2 and count and final.shape[0] != count:
        raise CheckpointError(
            f"{path} says it predicts {count} classes, but its final layer gives {final.shape[0]} logits."
        )


def _describe(obj: dict[str, Any], path: Path, expected_classes: int | None) -> tuple[dict, CheckpointInfo]:
    """The state dict and the facts of a checkpoint read by :func:`read_checkpoint`."""
    if obj.get("format") == CHECKPOINT_FORMAT:
        state, arch, classes = obj.get("model"), obj.get("arch") or {}, obj.get("classes") or []
        _check_facts(obj, state, arch, classes, path)
        arch, classes = dict(arch), list(classes)
        pre = Preprocessing.from_dict(obj["preprocessing"]) if obj.get("preprocessing") else Preprocessing()
        source = "alexnet-deploy"
    elif _TORCHVISION_KEYS <= set(obj):
        state, arch, classes, pre, source = obj, _infer_torchvision_arch(obj), [], Preprocessing(), "torchvision"
        if arch["num_classes"] == IMAGENET1K_SIZE:  # torchvision's classifiers are ImageNet-1k's, in its order
            classes = list(imagenet1k().ids)
    else:
        keys = ", ".join(sorted(map(str, obj))[:4])
        raise CheckpointError(
            f"{path} is neither an alexnet-deploy checkpoint nor a torchvision AlexNet state dict (keys: {keys}...)."
        )
    if not isinstance(state, dict) or "name" not in arch:
        raise CheckpointError(f"{path} is an alexnet-deploy checkpoint without model weights or architecture.")
    info = CheckpointInfo(arch, classes, pre, source)
    if expected_classes is not None and info.num_classes != expected_classes:
        raise CheckpointError(f"{path} predicts {info.num_classes} classes, but {expected_classes} were expected.")
    if not info.classes:
        info.classes = [str(i) for i in range(info.num_classes)]
    return state, info


def checkpoint_info(path: str | Path) -> CheckpointInfo:
    """Architecture, classes and preprocessing of a checkpoint, without building the model (the weights are
    memory-mapped, not read).

    Raises:
        CheckpointError: unreadable, or not an AlexNet checkpoint.
    """
    path = Path(path)
    # Only the zip format (every torch.save since 1.6) can be memory-mapped.
    return _describe(read_checkpoint(path, mmap=zipfile.is_zipfile(path)), path, None)[1]


def load_model(path: str | Path, expected_classes: int | None = None) -> LoadedModel:
    """Rebuild the model a checkpoint holds: ours (by its ``format`` key) or a torchvision AlexNet state dict.

    Args:
        path: the checkpoint file.
        expected_classes: if given, refuse a checkpoint with another class count.

    Raises:
        CheckpointError: unreadable, of another architecture, or of another class count.
    """
    path = Path(path)
    obj = read_checkpoint(path)
    state, info = _describe(obj, path, expected_classes)
    arch, num_classes = info.arch, info.num_classes
    model = build_model(
        arch["name"], num_classes=num_classes, width=float(arch.get("width", 1.0)), columns=int(arch.get("columns", 2))
    )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = describe_state_dict_error(exc)
        raise CheckpointError(f"{path} does not fit the {arch['name']} architecture: {detail}.") from None
    model.eval()
    return LoadedModel(
        model=model, arch=arch, classes=info.classes, preprocessing=info.preprocessing, source=info.source,
        checkpoint=obj,
    )  # fmt: skip
