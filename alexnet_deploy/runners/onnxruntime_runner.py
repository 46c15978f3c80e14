"""Run an ONNX model with ONNX Runtime (CPU execution provider, or CUDA/TensorRT EPs with onnxruntime-gpu)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from alexnet_deploy.errors import ArtifactError, MissingBackendError
from alexnet_deploy.paths import require_file
from alexnet_deploy.runners.base import Runner


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
        if not isinstance(self.model, bytes):
            require_file(self.model, ArtifactError, "ONNX model", (".onnx",))
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
