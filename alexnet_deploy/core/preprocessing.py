"""How an image becomes the network's input: the :class:`Preprocessing` preset and ImageNet's statistics.

Kept apart from :mod:`alexnet_deploy.core.data` (which needs torch and torchvision for its transforms and image
folders) so that the runners of ONNX Runtime and OpenVINO, and a model served by Triton's Python backend, import
with numpy and their runtime alone. :mod:`alexnet_deploy.core.data` re-exports everything here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "Preprocessing"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes the network's input tensor: resize shorter side, centre crop, normalise."""

    resize: int = 256
    crop: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Preprocessing:
        return cls(resize=int(d["resize"]), crop=int(d["crop"]), mean=tuple(d["mean"]), std=tuple(d["std"]))

    @classmethod
    def for_crop(cls, crop: int) -> Preprocessing:
        """The paper's 256/224 ratio applied to another crop size (e.g. 112 -> resize 128)."""
        return cls(resize=int(round(crop * 256 / 224)), crop=crop)
