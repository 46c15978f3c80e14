"""Run a TensorRT plan (10.x/11.x): I/O by tensor name, torch CUDA tensors as device buffers, one CUDA stream.

Before TensorRT sees the plan's bytes, its sidecar is compared with this machine (:func:`check_plan_compatible`):
a plan from another TensorRT version or for another GPU is refused with a sentence naming both sides, instead of
TensorRT's "Version tag does not match" / "incompatible device" log lines and a ``None`` engine.

Status: the TensorRT and CUDA calls were written against the TensorRT 10.x/11.x Python API documentation and have
NOT been executed against TensorRT or a GPU on any machine of this project (none has either). The names and
signatures used exist in the real ``tensorrt_bindings`` 10.16.1 and 11.4.0 (imported here against stub
libraries); the compatibility and batch checks are pure functions tested here, and the runner's control flow
(buffers, address binding, dtype conversion, timing) runs here against a stand-in engine and CPU tensors.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from alexnet_deploy.backends.base import Runner
from alexnet_deploy.core.errors import AlexNetDeployError, ArtifactError, ConfigError, MissingBackendError
from alexnet_deploy.core.manifest import load_manifest
from alexnet_deploy.core.paths import require_file
from alexnet_deploy.core.system import GPU, tensorrt_status

log = logging.getLogger(__name__)

# The sidecar's dtype names (see alexnet_deploy.backends.tensorrt.builder.DTYPE_NAMES) that torch buffers can hold.
_TORCH_DTYPES = ("float32", "float16", "bfloat16", "int8", "uint8", "int32", "int64", "bool")


def _release(version: str) -> tuple[int, ...]:
    """``"10.8.0.43"`` -> ``(10, 8, 0)``: the build number does not change the plan format."""
    parts = []
    for piece in str(version).split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def _capability(cc: str) -> tuple[int, int]:
    major, _, minor = str(cc).partition(".")
    return int(major), int(minor or 0)


def check_plan_compatible(engine_facts: dict, trt_version: str, gpus: Sequence[GPU], *, device: int = 0) -> None:
    """Refuse a plan that this machine's TensorRT or GPU cannot load, from the sidecar alone.

    Rules (after TensorRT's engine-compatibility documentation):
      * version: the same major.minor.patch; a plan built with ``version_compatible`` also loads on later
        releases of the same major version, and a 10.x one on 11.x.
      * GPU: hardware compatibility ``"none"`` needs the same GPU model (TensorRT itself only warns when the
        model differs at the same compute capability; we refuse, as its docs advise against it);
        ``"same_compute_capability"`` the same compute capability; ``"ampere_plus"`` any GPU of compute
        capability 8.0 or newer.

    Args:
        engine_facts: the sidecar's ``engine`` dict (``tensorrt_version``, ``gpu``, ``build_options``).
        trt_version: this machine's TensorRT version.
        gpus: this machine's GPUs in CUDA order; ``device`` selects the one the plan will run on.

    Raises:
        ArtifactError: incompatible (the sentence names the plan's TensorRT and GPU, and this machine's), or the
            sidecar lacks the facts to decide.
        MissingBackendError: no GPU here.
        ConfigError: ``device`` is not one of this machine's GPUs.
    """
    built_version = engine_facts.get("tensorrt_version")
    built_gpu = engine_facts.get("gpu") or {}
    built_name, built_cc = built_gpu.get("name"), built_gpu.get("compute_capability")
    if not built_version or not built_cc:
        raise ArtifactError(
            "The plan's sidecar does not record the TensorRT version and GPU that built it, so its compatibility "
            "cannot be checked; rebuild it with `alexnet-deploy build --backend tensorrt`."
        )
    if not gpus:
        raise MissingBackendError("No NVIDIA GPU was found, and a TensorRT plan needs one.")
    if not 0 <= device < len(gpus):
        raise ConfigError(f"GPU {device} does not exist here; this machine has {len(gpus)} GPU(s).")
    here = gpus[device]
    options = engine_facts.get("build_options") or {}
    hardware = options.get("hardware_compatibility", "none")

    problems = []
    built, runtime = _release(built_version), _release(trt_version)
    if options.get("version_compatible"):
        same_family = runtime[0] == built[0] or (built[0], runtime[0]) == (10, 11)
        if not (same_family and runtime >= built):
            problems.append("a version-compatible plan loads only on the same or a later release of its major version")
    elif built != runtime:
        problems.append("plans load only on the TensorRT release that built them")
    if hardware == "ampere_plus":
        if _capability(here.compute_capability) < (8, 0):
            problems.append("an Ampere-plus plan needs a GPU of compute capability 8.0 or newer")
    elif _capability(here.compute_capability) != _capability(built_cc):
        problems.append("plans load only on GPUs of the compute capability that built them")
    elif hardware == "none" and built_name and built_name != here.name:
        problems.append(
            "it was built without hardware compatibility, for that GPU model only "
            "(hardware compatibility same_compute_capability shares it)"
        )
    if problems:
        raise ArtifactError(
            f"This plan was built by TensorRT {built_version} for {built_name or 'an unnamed GPU'} "
            f"(compute {built_cc}); this machine has TensorRT {trt_version} and {here.name} "
            f"(compute {here.compute_capability}): {'; '.join(problems)}. Rebuild the plan on this machine."
        )


def check_batch(shape: Sequence[int], min_shape: Sequence[int], max_shape: Sequence[int]) -> None:
    """Refuse an input batch outside the plan's optimisation profile.

    Raises:
        ConfigError: wrong rank or image size, or a batch size outside ``[min, max]``.
    """
    shape, min_shape, max_shape = tuple(shape), tuple(min_shape), tuple(max_shape)
    if len(shape) != len(min_shape) or shape[1:] != min_shape[1:] or shape[1:] != max_shape[1:]:
        raise ConfigError(f"The plan takes images of shape N x {' x '.join(map(str, min_shape[1:]))}; got {shape}.")
    if not min_shape[0] <= shape[0] <= max_shape[0]:
        raise ConfigError(
            f"A batch of {shape[0]} is outside the plan's profile ({min_shape[0]} to {max_shape[0]}); split the "
            "batch or rebuild the plan with a wider --min-batch/--max-batch."
        )


class TensorRTRunner(Runner):
    """Runs a ``.plan`` built by :func:`alexnet_deploy.backends.tensorrt.builder.build_plan` on one GPU.

    Args:
        plan_path: the plan; its sidecar (``NAME.plan.json``) must be beside it.
        device: CUDA device index.
        include_copies: whether :attr:`inference_time` counts the host<->device copies (``True``) or only the
            engine's execution on the GPU, timed with CUDA events (``False``).
        name: label for reports.

    Attributes:
        last_device_seconds: GPU time of the last :meth:`infer`'s ``execute_async_v3`` alone (CUDA events).
    """

    backend = "tensorrt"

    def __init__(
        self, plan_path: str | Path, device: int = 0, include_copies: bool = True, name: str | None = None
    ) -> None:
        self.plan_path = Path(plan_path)
        manifest = load_manifest(self.plan_path, required=False)
        precision = manifest.precision if manifest else "fp32"
        super().__init__(name or f"tensorrt {precision}", precision)
        self.device = device
        self.include_copies = include_copies
        self.engine_facts: dict[str, Any] = dict(manifest.engine) if manifest else {}
        self.last_device_seconds: float | None = None
        self._trt: Any = None
        self._torch: Any = None

    # -- lifecycle ------------------------------------------------------------------------------------------
    def activate_impl(self) -> None:
        require_file(self.plan_path, ArtifactError, "TensorRT plan", (".plan", ".engine"))
        manifest = load_manifest(self.plan_path, required=True)
        if manifest.kind != "plan" or not manifest.engine:
            raise ArtifactError(f"{self.plan_path.name}'s sidecar does not describe a TensorRT plan.")
        self.engine_facts = dict(manifest.engine)
        status = tensorrt_status()  # child processes: the GPU probe, then tensorrt's version
        if not status["usable"]:
            raise MissingBackendError(f"TensorRT is not usable here: {status['reason']}.")
        from alexnet_deploy.backends.tensorrt.builder import make_logger, visible_gpus

        check_plan_compatible(self.engine_facts, str(status["version"]), visible_gpus(), device=self.device)
        data = self.plan_path.read_bytes()  # load_manifest checked these bytes against the sidecar's sha256

        import tensorrt as trt
        import torch

        if not torch.cuda.is_available():
            raise MissingBackendError("This torch has no CUDA support, and the TensorRT runner uses its CUDA buffers.")
        self._trt, self._torch = trt, torch
        with torch.cuda.device(self.device):
            self._logger = make_logger(trt)
            self._runtime = trt.Runtime(self._logger)
            if (self.engine_facts.get("build_options") or {}).get("version_compatible"):
                # Version-compatible plans carry the lean runtime as host code; we trust plans we built.
                self._runtime.engine_host_code_allowed = True
            self._engine = self._runtime.deserialize_cuda_engine(data)
            if self._engine is None:
                raise ArtifactError(f"TensorRT could not load {self.plan_path.name}: {self._logger.last_error()}.")
            self._context = self._engine.create_execution_context()
            if self._context is None:
                raise ArtifactError(f"TensorRT could not create an execution context: {self._logger.last_error()}.")
            self._setup_io()

    def _setup_io(self) -> None:
        trt, torch, engine = self._trt, self._torch, self._engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise ArtifactError(f"The plan must have one input and one output; it has {inputs} and {outputs}.")
        self.input_name, self.output_name = inputs[0], outputs[0]
        min_shape, _, max_shape = engine.get_tensor_profile_shape(self.input_name, 0)
        self._min_shape, self._max_shape = tuple(min_shape), tuple(max_shape)

        from alexnet_deploy.backends.tensorrt.builder import dtype_name

        dtypes = {}
        for name in (self.input_name, self.output_name):
            dtypes[name] = dtype_name(engine.get_tensor_dtype(name))
            if dtypes[name] not in _TORCH_DTYPES:
                raise ArtifactError(f"The plan's tensor {name!r} is {dtypes[name]}, which this runner cannot hold.")
        # Buffers for the largest batch, allocated once; a batch of n uses their first n rows.
        if not self._context.set_input_shape(self.input_name, self._max_shape):
            raise ArtifactError(f"TensorRT refused the profile's own maximum shape {self._max_shape}.")
        out_max = tuple(self._context.get_tensor_shape(self.output_name))
        dev = torch.device("cuda", self.device)
        self._input = torch.empty(self._max_shape, dtype=getattr(torch, dtypes[self.input_name]), device=dev)
        self._output = torch.empty(out_max, dtype=getattr(torch, dtypes[self.output_name]), device=dev)
        self._stream = torch.cuda.Stream(device=dev)
        self._events = (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))

    def deactivate_impl(self) -> None:
        # Context before engine before runtime: TensorRT requires that order of destruction.
        for attr in ("_context", "_engine", "_runtime", "_input", "_output", "_stream", "_events"):
            if hasattr(self, attr):
                delattr(self, attr)

    # -- inference ------------------------------------------------------------------------------------------
    @property
    def max_batch(self) -> int | None:
        """The profile's largest batch (from the engine once active, else from the sidecar)."""
        if self.is_active:
            return int(self._max_shape[0])
        profile_max = (self.engine_facts.get("profile") or {}).get("max")
        return int(profile_max[0]) if profile_max else None

    def _enqueue(self, batch: int) -> None:
        """Bind the first ``batch`` rows of the buffers and enqueue one execution, between two timing events."""
        inp = self._input[:batch]
        if not self._context.set_input_shape(self.input_name, tuple(inp.shape)):
            raise ConfigError(f"TensorRT refused the input shape {tuple(inp.shape)}: {self._logger.last_error()}.")
        out_shape = tuple(self._context.get_tensor_shape(self.output_name))
        out = self._output[: out_shape[0]]
        for name, tensor in ((self.input_name, inp), (self.output_name, out)):
            if not self._context.set_tensor_address(name, tensor.data_ptr()):
                raise ArtifactError(f"TensorRT refused the device address of {name!r}: {self._logger.last_error()}.")
        start, end = self._events
        start.record(self._stream)
        if not self._context.execute_async_v3(self._stream.cuda_stream):
            raise ArtifactError(f"TensorRT failed to enqueue the plan: {self._logger.last_error()}.")
        end.record(self._stream)

    def infer_impl(self, images: np.ndarray) -> np.ndarray:
        torch = self._torch
        check_batch(images.shape, self._min_shape, self._max_shape)
        batch = images.shape[0]
        with torch.cuda.device(self.device), torch.cuda.stream(self._stream):
            # copy_ converts float32 to the plan's input dtype on the way (an FP16 graph may take float16).
            self._input[:batch].copy_(torch.from_numpy(np.ascontiguousarray(images)))
            self._enqueue(batch)
            logits = self._output[:batch].float().cpu()  # on our stream, after the execution
        self._stream.synchronize()
        start, end = self._events
        self.last_device_seconds = start.elapsed_time(end) / 1e3
        return logits.numpy()

    def infer(self, images: np.ndarray) -> np.ndarray:
        """Run a batch; with ``include_copies=False`` :attr:`inference_time` is the GPU execution time alone."""
        out = super().infer(images)
        if not self.include_copies:
            self.inference_time = self.last_device_seconds
        return out

    def time_device(self, batch: int, iterations: int = 100, warmup: int = 10) -> list[float]:
        """GPU seconds of each of ``iterations`` executions at ``batch``, inputs already on the device.

        The host<->device copies are excluded (CUDA events around ``execute_async_v3`` alone); compare with
        :attr:`inference_time` of :meth:`infer` for the time including them.

        Raises:
            AlexNetDeployError: the runner is not active; ConfigError: ``batch`` outside the profile.
        """
        if not self.is_active:
            raise AlexNetDeployError(f"Runner {self.name} must be activated before timing.")
        check_batch((batch, *self._max_shape[1:]), self._min_shape, self._max_shape)
        torch = self._torch
        times = []
        with torch.cuda.device(self.device), torch.cuda.stream(self._stream):
            self._input[:batch].normal_()
            for i in range(warmup + iterations):
                self._enqueue(batch)
                if i >= warmup:
                    # Waiting per iteration keeps one event pair; the idle gap it adds is outside the events.
                    self._events[1].synchronize()
                    times.append(self._events[0].elapsed_time(self._events[1]) / 1e3)
        self._stream.synchronize()
        return times
