"""Run a PyTorch model (eager or ``torch.compile``), on the CPU or a CUDA device, in FP32 or FP16."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from alexnet_deploy.backends.base import Runner
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

    def deactivate_impl(self) -> None:
        self._module = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
