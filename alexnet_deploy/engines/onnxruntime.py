"""The ONNX Runtime "engine": the deployable ONNX (FP32, FP16 graph or INT8 Q/DQ) with a sidecar saying which
execution providers it was built and verified for.

By default the engine is the deployable ONNX itself, byte for byte: portable to any ONNX Runtime (and to
TensorRT), and ONNX Runtime applies its graph optimisations (Q/DQ fusion into QLinearConv, constant folding,
layout changes) when a session is created, in well under a second for AlexNet. ``optimize=True`` instead writes
the graph ONNX Runtime produced (``SessionOptions.optimized_model_filepath``, at the *extended* level so no
CPU-specific layout is baked in): it skips that work at load, but it is tied to this ONNX Runtime version and
uses its contrib operators. Either way the file written is the file that is verified.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alexnet_deploy.errors import ArtifactError, MissingBackendError
from alexnet_deploy.manifest import atomic_path

log = logging.getLogger(__name__)

# The default order: CUDA (onnxruntime-gpu), then the CPU. The TensorRT EP is used only when asked for: it needs
# TensorRT's libraries, which onnxruntime-gpu lists as available even where they are missing, and a real
# TensorRT engine is what the tensorrt backend builds.
PREFERRED_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")


@dataclass(frozen=True)
class OnnxRuntimeBuildOptions:
    """How the ONNX Runtime engine is made.

    Attributes:
        providers: execution providers, preferred first (``None``: the best available here, CPU last).
        optimize: write ONNX Runtime's optimised graph instead of the deployable ONNX.
        threads: intra-op threads used when optimising.
    """

    providers: tuple[str, ...] | None = None
    optimize: bool = False
    threads: int | None = None


def available_providers() -> list[str]:
    """The execution providers of the installed ONNX Runtime (CPU only for the plain ``onnxruntime`` wheel)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise MissingBackendError("onnxruntime is not installed (pip install onnxruntime).") from None
    return list(ort.get_available_providers())


def choose_providers(requested: tuple[str, ...] | None = None) -> list[str]:
    """The providers to use: ``requested`` (each must be available), else the preferred ones available here.

    Raises:
        MissingBackendError: a requested provider is not available.
    """
    available = available_providers()
    if requested:
        missing = [p for p in requested if p not in available]
        if missing:
            raise MissingBackendError(
                f"ONNX Runtime here lacks {', '.join(missing)} (available: {', '.join(available)})."
            )
        return list(requested)
    return [p for p in PREFERRED_PROVIDERS if p in available] or ["CPUExecutionProvider"]


def build_onnxruntime_engine(
    onnx_path: str | Path, out_path: str | Path, options: OnnxRuntimeBuildOptions | None = None
) -> dict[str, Any]:
    """Write the ONNX Runtime engine for ``onnx_path`` to ``out_path`` (atomically; no sidecar).

    Returns:
        The engine facts for the sidecar's ``engine`` field: backend, onnxruntime version, providers, and
        whether the graph was pre-optimised.

    Raises:
        ArtifactError: ONNX Runtime cannot load the model, or the file cannot be written.
        MissingBackendError: onnxruntime or a requested provider is missing.
    """
    import onnxruntime as ort

    from alexnet_deploy.runners.onnxruntime_runner import session_options

    options = options or OnnxRuntimeBuildOptions()
    providers = choose_providers(options.providers)
    onnx_path, out_path = Path(onnx_path), Path(out_path)
    with atomic_path(out_path) as tmp:
        if options.optimize:
            opts = session_options(options.threads, optimized_model_path=tmp)
            # Extended, not all: level 99 adds layout transforms specific to this CPU's instruction set.
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
            try:
                ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
            except Exception as exc:  # noqa: BLE001 - ORT raises many private exception types
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise ArtifactError(f"ONNX Runtime cannot optimise {onnx_path.name}: {first[:200]}.") from None
            if not tmp.is_file() or tmp.stat().st_size == 0:
                raise ArtifactError(f"ONNX Runtime wrote no optimised model for {onnx_path.name}.")
        else:
            shutil.copyfile(onnx_path, tmp)
    return {
        "backend": "onnxruntime",
        "onnxruntime_version": ort.__version__,
        "providers": providers,
        "graph": "optimised offline (ORT_ENABLE_EXTENDED)"
        if options.optimize
        else "deployable ONNX; optimised at load",
    }
