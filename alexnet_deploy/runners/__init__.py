"""One Runner per backend (torch, onnxruntime, tensorrt), and :func:`runner_for` to pick one for an artifact.

Heavy backends are imported only by the module that needs them: TensorRT is never imported unless a plan is run.
"""

from __future__ import annotations

from pathlib import Path

from alexnet_deploy.errors import ArtifactError, ConfigError
from alexnet_deploy.paths import require_file
from alexnet_deploy.runners.base import Runner

__all__ = ["Runner", "artifact_kind", "runner_for"]

_KINDS = {".pt": "checkpoint", ".pth": "checkpoint", ".onnx": "onnx", ".plan": "plan", ".engine": "plan"}


def artifact_kind(path: str | Path) -> str:
    """``"checkpoint"``, ``"onnx"`` or ``"plan"`` from the file's suffix.

    Raises:
        ArtifactError: the file is missing, a folder, or of an unknown kind.
    """
    path = require_file(path, ArtifactError, "Artifact", tuple(_KINDS))
    try:
        return _KINDS[path.suffix.lower()]
    except KeyError:
        raise ArtifactError(
            f"Cannot tell what {path.name} is: expected a .pt/.pth checkpoint, an .onnx model or a .plan engine."
        ) from None


def runner_for(
    path: str | Path,
    backend: str | None = None,
    *,
    device: str = "cpu",
    threads: int | None = None,
    precision: str | None = None,
    compile: bool = False,
) -> Runner:
    """Build the runner for an artifact: checkpoints run in torch, ONNX files in ONNX Runtime, plans in TensorRT.

    Args:
        path: the artifact.
        backend: override (``"torch"``, ``"onnxruntime"``, ``"tensorrt"``); must fit the artifact's kind.
        device: for torch runs.
        threads: intra-op threads for CPU backends.
        precision: for torch runs (``"fp32"``/``"fp16"``); ONNX and plans carry their own.
        compile: for torch runs, use ``torch.compile``.

    Raises:
        ArtifactError / ConfigError: unknown artifact, or a backend that cannot run it.
    """
    from alexnet_deploy.manifest import load_manifest

    kind = artifact_kind(path)
    allowed = {"checkpoint": ("torch",), "onnx": ("onnxruntime",), "plan": ("tensorrt",)}[kind]
    backend = backend or allowed[0]
    if backend not in allowed:
        raise ConfigError(f"The {backend} backend cannot run {Path(path).name} (a {kind} file); use {allowed[0]}.")
    manifest = load_manifest(path, required=False)
    if kind == "checkpoint":
        from alexnet_deploy.checkpoint import load_model
        from alexnet_deploy.runners.torch_runner import TorchRunner

        loaded = load_model(path)
        return TorchRunner(loaded.model, device=device, precision=precision or "fp32", compile=compile, threads=threads)
    if kind == "onnx":
        from alexnet_deploy.runners.onnxruntime_runner import OnnxRuntimeRunner

        return OnnxRuntimeRunner(path, threads=threads, precision=manifest.precision if manifest else "fp32")
    from alexnet_deploy.runners.tensorrt_runner import TensorRTRunner

    return TensorRTRunner(path)
