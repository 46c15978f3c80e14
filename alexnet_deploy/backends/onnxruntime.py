"""The ONNX Runtime backend: its build step (the "engine"), its runner and the session options both use.

The engine: the deployable ONNX (FP32, FP16 graph or INT8 Q/DQ) with a sidecar saying which
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

import numpy as np

from alexnet_deploy.backends.base import Runner
from alexnet_deploy.core.errors import ArtifactError, MissingBackendError
from alexnet_deploy.core.manifest import atomic_path

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


def session_options(threads: int | None = None, optimized_model_path: str | Path | None = None):
    """ONNX Runtime session options used everywhere: full graph optimisation, sequential execution,
    ``threads`` intra-op threads (``None``: ONNX Runtime's default, one per physical core)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    if optimized_model_path:
        opts.optimized_model_filepath = str(optimized_model_path)
    return opts


class OnnxRuntimeRunner(Runner):
    """Runs an ONNX file (or serialized model bytes) with ONNX Runtime.

    The model must have one image input of rank 4 with 3 channels and one logits output of rank 2; anything
    else is refused with one sentence when the runner activates.

    Args:
        model: path to a ``.onnx`` file, or its bytes.
        providers: execution providers in order of preference (default: CPU).
        threads: intra-op threads.
    """

    backend = "onnxruntime"

    def __init__(
        self,
        model: str | Path | bytes,
        providers: list[str] | None = None,
        threads: int | None = None,
        precision: str = "fp32",
        name: str | None = None,
    ) -> None:
        super().__init__(name or f"onnxruntime {precision}", precision)
        self.model = model
        self.providers = providers or ["CPUExecutionProvider"]
        self.threads = threads
        self.session = None
        self.input_name = ""
        self.output_name = ""

    def activate_impl(self) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise MissingBackendError("onnxruntime is not installed (pip install onnxruntime).") from None
        missing = [p for p in self.providers if p not in ort.get_available_providers()]
        if missing:
            raise MissingBackendError(
                f"ONNX Runtime here lacks {', '.join(missing)} (available: {', '.join(ort.get_available_providers())})."
            )
        source = self.model if isinstance(self.model, bytes) else str(self.model)
        if not isinstance(self.model, bytes) and not Path(self.model).is_file():
            raise ArtifactError(f"ONNX model not found: {self.model}.")
        try:
            self.session = ort.InferenceSession(source, session_options(self.threads), providers=self.providers)
        except Exception as exc:  # noqa: BLE001 - ORT raises many private exception types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ArtifactError(f"ONNX Runtime cannot load the model: {first[:200]}.") from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4 or inputs[0].shape[1] not in (3, "3"):
            shapes = ", ".join(f"{i.name}{list(i.shape)}" for i in inputs)
            raise ArtifactError(f"The ONNX model must take one N x 3 x H x W image input; it takes {shapes}.")
        if len(outputs) != 1 or len(outputs[0].shape) != 2:
            shapes = ", ".join(f"{o.name}{list(o.shape)}" for o in outputs)
            raise ArtifactError(f"The ONNX model must give one N x classes logits output; it gives {shapes}.")
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        self.input_shape = list(inputs[0].shape)

    def infer_impl(self, images: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: images})[0]

    def deactivate_impl(self) -> None:
        self.session = None
