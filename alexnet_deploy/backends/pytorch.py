"""The PyTorch backend: runs checkpoints (eager or ``torch.compile``) on the CPU or a CUDA device, in FP32 or FP16.

It builds no engine: checkpoints are exported to ONNX by :mod:`export`, and the other backends build from that.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from alexnet_deploy.backends.base import BackendStatus, Runner
from alexnet_deploy.core.errors import MissingBackendError


class TorchRunner(Runner):
    """Runs an ``nn.Module``.

    Args:
        model: the network (put in eval mode here).
        device: ``"cpu"`` or ``"cuda[:N]"``.
        precision: ``"fp32"`` or ``"fp16"`` (FP16 casts the weights; inputs are cast on the way in).
        compile: wrap the model in ``torch.compile`` (``mode`` selects e.g. ``"reduce-overhead"`` for CUDA graphs).
        threads: torch intra-op threads for CPU runs (``None`` leaves torch's setting).
    """

    backend = "torch"

    def __init__(
        self,
        model: nn.Module,
        device: str = "cpu",
        precision: str = "fp32",
        compile: bool = False,
        compile_mode: str | None = None,
        threads: int | None = None,
        name: str | None = None,
    ) -> None:
        label = name or f"torch {'compile' if compile else 'eager'} {precision} ({device})"
        super().__init__(label, precision)
        self.model = model
        self.device = torch.device(device)
        self.dtype = {"fp32": torch.float32, "fp16": torch.float16}[precision]
        self.compile = compile
        self.compile_mode = compile_mode
        self.threads = threads
        self._module: nn.Module | None = None

    def activate_impl(self) -> None:
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise MissingBackendError(f"{self.device} was asked for, but torch sees no CUDA device here.")
        if self.threads:
            torch.set_num_threads(self.threads)
        module = self.model.eval().to(self.device, self.dtype)
        self._module = torch.compile(module, mode=self.compile_mode) if self.compile else module

    def infer_impl(self, images: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(images)).to(self.device, self.dtype)
        with torch.inference_mode():
            out = self._module(x)
        return out.float().cpu().numpy()

    def forward_on_device(self, x: torch.Tensor) -> torch.Tensor:
        """The active (compiled) module on a tensor already on the runner's device and dtype: no copies, so a
        GPU timer can measure the model alone."""
        if self._module is None:
            raise MissingBackendError(f"Runner {self.name} must be activated before inference.")
        with torch.inference_mode():
            return self._module(x)

    def deactivate_impl(self) -> None:
        self._module = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def status() -> BackendStatus:
    """torch runs checkpoints here, on the CPU (and CUDA where torch sees a GPU, probed in a child process)."""
    from alexnet_deploy.core.system import probe_gpus

    gpus, _ = probe_gpus()
    where = "CPU" + (f" and {len(gpus)} CUDA GPU(s)" if gpus else "")
    return BackendStatus("torch", True, torch.__version__, can_build=False, can_run=True, reason=f"runs on {where}")


def open_runner(artifact, *, device: str = "cpu", threads=None, precision=None, compile: bool = False) -> TorchRunner:
    """A runner for a checkpoint :class:`~alexnet_deploy.backends.Artifact` (its model rebuilt from the file)."""
    from alexnet_deploy.core.checkpoint import load_model

    loaded = load_model(artifact.path)
    return TorchRunner(loaded.model, device=device, precision=precision or "fp32", compile=compile, threads=threads)
