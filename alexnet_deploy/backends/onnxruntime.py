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

from alexnet_deploy.backends.base import BackendStatus, Runner, cli_option, shared_option
from alexnet_deploy.core.errors import ArtifactError, MissingBackendError
from alexnet_deploy.core.files import atomic_path
from alexnet_deploy.core.paths import require_file

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

    providers: tuple[str, ...] | None = cli_option(
        None,
        "--ort-providers",
        "ONNX Runtime providers, comma-separated (default: CUDA if installed, then CPU).",
        type=str | None,
        parse=lambda text: tuple(p.strip() for p in text.split(",") if p.strip()) or None if text else None,
    )
    optimize: bool = cli_option(
        False, "--ort-optimize", "ONNX Runtime: write its optimised graph (tied to its version)."
    )
    threads: int | None = shared_option(None, "threads")


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
        if isinstance(self.input_shape[0], int) and self.input_shape[0] > 0:
            self.fixed_batch = self.input_shape[0]  # a graph exported for one batch size takes only that one

    def infer_impl(self, images: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: images})[0]

    def deactivate_impl(self) -> None:
        self.session = None


@dataclass(frozen=True)
class GraphFacts:
    """What an ONNX file's graph says about itself, read without running it."""

    input_name: str
    input_shape: tuple[int, int, int]  # C, H, W; -1 for a dynamic size
    output_name: str
    num_logits: int  # -1 when dynamic
    precision: str  # int8 (Q/DQ or integer ops), fp16 (FP16 weights) or fp32
    batch: int = -1  # the input's batch size when the graph fixes it, else -1


_INT8_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "MatMulInteger", "ConvInteger"}


def onnx_graph_facts(path: str | Path) -> GraphFacts:
    """The image input, logits output and precision of an ONNX file.

    Raises:
        ArtifactError: the file is not readable ONNX, or it does not take one N x 3 x H x W input and give one
            N x classes output.
    """
    import onnx

    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError and friends
        raise ArtifactError(f"{path.name} is not a readable ONNX model ({type(exc).__name__}).") from None
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]

    def dims(value) -> list[int]:
        return [d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim]

    if len(inputs) != 1 or len(dims(inputs[0])) != 4 or dims(inputs[0])[1] != 3:
        shapes = ", ".join(f"{i.name}{dims(i)}" for i in inputs) or "nothing"
        raise ArtifactError(f"{path.name} must take one N x 3 x H x W image input; it takes {shapes}.")
    outputs = list(model.graph.output)
    if len(outputs) != 1 or len(dims(outputs[0])) != 2:
        shapes = ", ".join(f"{o.name}{dims(o)}" for o in outputs) or "nothing"
        raise ArtifactError(f"{path.name} must give one N x classes logits output; it gives {shapes}.")
    ops = {n.op_type for n in model.graph.node}
    if ops & _INT8_OPS:
        precision = "int8"
    elif any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer):
        precision = "fp16"
    else:
        precision = "fp32"
    c, h, w = dims(inputs[0])[1:]
    batch = dims(inputs[0])[0]
    return GraphFacts(inputs[0].name, (c, h, w), outputs[0].name, dims(outputs[0])[1], precision, batch)


#: The registry's names for this backend's build step and options.
compile_engine = build_onnxruntime_engine


def status() -> BackendStatus:
    """ONNX Runtime builds (copies or pre-optimises the ONNX) and runs anywhere it is installed."""
    try:
        providers = available_providers()
    except MissingBackendError as exc:
        return BackendStatus("onnxruntime", False, reason=str(exc).rstrip("."))
    import onnxruntime as ort

    return BackendStatus(
        "onnxruntime", True, ort.__version__, True, True, ", ".join(providers), {"providers": providers}
    )


def open_runner(artifact, *, device: str = "cpu", threads=None, precision=None, compile: bool = False):
    """A runner for an ONNX :class:`~alexnet_deploy.backends.Artifact`: the providers its sidecar was verified
    with where they exist here, CUDA first for ``device="cuda"``, else the CPU."""
    if device.startswith("cuda"):
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    else:
        recorded = [p for p in artifact.engine.get("providers", []) if p != "CUDAExecutionProvider"]
        providers = recorded or ["CPUExecutionProvider"]
    runner = OnnxRuntimeRunner(artifact.path, providers=providers, threads=threads, precision=artifact.precision)
    runner.fixed_batch = artifact.fixed_batch
    return runner
