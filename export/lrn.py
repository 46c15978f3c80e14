"""Local response normalisation as one native ONNX ``LRN`` node.

``nn.LocalResponseNorm`` is written in Python out of pad / avg_pool3d / pow / div, so both ONNX exporters
decompose it into a dozen nodes. TensorRT and ONNX Runtime have native LRN kernels, and a single node is what
quantizers and graph optimizers recognise. During export each ``nn.LocalResponseNorm`` is swapped for
:class:`NativeLRN`, which calls the custom op ``alexnet_deploy::lrn``; :data:`LRN_TRANSLATION` tells the
dynamo exporter to emit that op as ``LRN(size, alpha, beta, bias)``.

torch and ONNX define LRN identically (``x / (k + alpha / size * sum(x^2 over size channels)) ^ beta``), so
the attributes map one to one, alpha included.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from onnxscript import opset18 as op
from torch import nn

__all__ = ["LRN_TRANSLATION", "NativeLRN", "count_lrn_layers", "native_lrn"]


@torch.library.custom_op("alexnet_deploy::lrn", mutates_args=())
def lrn(x: torch.Tensor, size: int, alpha: float, beta: float, k: float) -> torch.Tensor:
    """LRN computed by torch itself, so the swapped model gives exactly the original's outputs."""
    return nn.functional.local_response_norm(x, size, alpha=alpha, beta=beta, k=k)


@lrn.register_fake
def _lrn_fake(x: torch.Tensor, size: int, alpha: float, beta: float, k: float) -> torch.Tensor:
    return torch.empty_like(x)


def _lrn_to_onnx(x, size: int, alpha: float, beta: float, k: float):
    # LRN has been unchanged since opset 13, so the opset-18 builder serves every opset we export to.
    return op.LRN(x, size=size, alpha=alpha, beta=beta, bias=k)


LRN_TRANSLATION = {torch.ops.alexnet_deploy.lrn.default: _lrn_to_onnx}


class NativeLRN(nn.Module):
    """Drop-in replacement of an ``nn.LocalResponseNorm`` that exports as one ONNX ``LRN`` node."""

    def __init__(self, size: int, alpha: float, beta: float, k: float) -> None:
        super().__init__()
        self.size, self.alpha, self.beta, self.k = int(size), float(alpha), float(beta), float(k)

    @classmethod
    def from_module(cls, m: nn.LocalResponseNorm) -> NativeLRN:
        return cls(m.size, m.alpha, m.beta, m.k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.alexnet_deploy.lrn(x, self.size, self.alpha, self.beta, self.k)

    def extra_repr(self) -> str:
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"


def count_lrn_layers(model: nn.Module) -> int:
    """Number of LRN layers (torch's or :class:`NativeLRN`) in ``model``."""
    return sum(isinstance(m, (nn.LocalResponseNorm, NativeLRN)) for m in model.modules())


@contextlib.contextmanager
def native_lrn(model: nn.Module) -> Iterator[int]:
    """Swap every ``nn.LocalResponseNorm`` in ``model`` for :class:`NativeLRN` in place; restore on exit.

    Swapping in place (not on a deep copy) avoids holding a second copy of 60 M parameters.

    Yields:
        The number of layers swapped.
    """
    swapped: list[tuple[nn.Module, str, nn.Module]] = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.LocalResponseNorm):
                setattr(parent, name, NativeLRN.from_module(child))
                swapped.append((parent, name, child))
    try:
        yield len(swapped)
    finally:
        for parent, name, child in swapped:
            setattr(parent, name, child)
