"""What a calibration is asked to do, defined once: :class:`RangeSettings` (how a method turns statistics into a
range) and :class:`CalibrationRequest` (which images, how many, which methods and Q/DQ forms, the cache).

The CLI fills a request and every layer below takes it whole: nothing is unpacked into keywords again. Both are
frozen and validate themselves on construction (:class:`ConfigError`, one sentence).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alexnet_deploy.core.errors import ConfigError
from alexnet_deploy.core.vocab import AUTO_REFINEMENTS, CONCRETE_METHODS, CalibrationMethod, QuantTarget, Refinement


@dataclass(frozen=True)
class RangeSettings:
    """How the histogram methods turn statistics into a range; part of the range cache's key.

    Attributes:
        percentile: for ``percentile``: the percentile of |x| kept (the rest is clipped).
        num_bins: histogram bins (entropy: the whole symmetric window; percentile: |x|).
        num_quantized_bins: entropy: bins of the quantized histogram the KL search compares against.
        flatten_zero_bin: entropy: give the bin holding 0 its neighbour's count (TensorRT's rule).
        batch_size: images per calibration batch.
    """

    percentile: float = 99.99
    num_bins: int = 4096
    num_quantized_bins: int = 255
    flatten_zero_bin: bool = True
    batch_size: int = 32

    def __post_init__(self) -> None:
        if not (isinstance(self.percentile, (int, float)) and math.isfinite(self.percentile)) or not (
            0 < self.percentile <= 100
        ):
            raise ConfigError(f"The percentile must be in (0, 100], got {self.percentile}.")
        if self.num_quantized_bins < 3 or self.num_bins < 2 * self.num_quantized_bins:
            raise ConfigError(
                f"num_bins ({self.num_bins}) must be at least twice num_quantized_bins ({self.num_quantized_bins}), "
                "or the entropy search has no threshold to choose from."
            )
        if self.batch_size < 1:
            raise ConfigError(f"The calibration batch size must be positive, got {self.batch_size}.")

    def key(self, method: CalibrationMethod | str) -> dict[str, Any]:
        """What shapes one method's ranges (the sidecar's ``calibration.options`` and the cache key).

        Raises:
            ConfigError: ``auto`` or an unknown method (a range is computed by one concrete method).
        """
        method = concrete_method(method)
        if method is CalibrationMethod.MINMAX:
            return {"method": method.value}
        d: dict[str, Any] = {"method": method.value, "percentile": self.percentile, "num_bins": self.num_bins}
        if method is CalibrationMethod.ENTROPY:
            del d["percentile"]
            d |= {"num_quantized_bins": self.num_quantized_bins, "flatten_zero_bin": self.flatten_zero_bin}
        return d


def concrete_method(method: CalibrationMethod | str) -> CalibrationMethod:
    """The method called ``method``; ``auto`` is refused (it only chooses among the others).

    Raises:
        ConfigError: ``auto`` or an unknown name.
    """
    method = CalibrationMethod.parse(method)
    if method is CalibrationMethod.AUTO:
        raise ConfigError("A calibration computes ranges with one method; 'auto' only chooses among them.")
    return method


@dataclass(frozen=True)
class CalibrationRequest:
    """Everything a calibration can be told; every default is defined here once (the CLI shows these).

    Attributes:
        data: an ImageFolder, or a root whose ``train/`` is used (``None``: the caller hands decoded images in).
        method: ``auto`` (compare minmax, entropy and percentile on the held-out images) or one of them.
        forms: the Q/DQ forms to write (names of :data:`calib.qdq.FORMS`); with several, the held-out images
            choose (:func:`calib.pipeline.calibrate`) or the build measures them (``build --backend auto``).
        num_images: calibration images, stratified over classes with ``seed``.
        holdout_images: further images of the same folder, set aside to choose the method and form and to rank
            layers for the build's fallback; decoded only when something is to be chosen or ranked.
        seed: the image selection's seed.
        settings: :class:`RangeSettings` of the histogram methods.
        refine: what is done to the weights beyond rounding them to nearest (:mod:`calib.refine`): ``none``,
            ``bias`` (bias correction), ``adaround`` (learned rounding), ``adaround+bias``, or ``auto`` (none, bias
            and adaround+bias compared on the held-out images, like the methods). Not part of the ranges.
        cache_dir: where ranges are cached (``None``: ``MODEL.onnx.calib/`` beside the model).
        use_cache: read and write the range cache.
        exclude: node names left in float.
    """

    data: Path | None = None
    method: CalibrationMethod = CalibrationMethod.AUTO
    forms: tuple[str, ...] = ("tensorrt",)
    num_images: int = 512
    holdout_images: int = 1000
    seed: int = 0
    settings: RangeSettings = field(default_factory=RangeSettings)
    refine: Refinement = Refinement.AUTO
    cache_dir: Path | None = None
    use_cache: bool = True
    exclude: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        from calib.qdq import form_named

        object.__setattr__(self, "method", CalibrationMethod.parse(self.method))
        object.__setattr__(self, "refine", Refinement.parse(self.refine))
        for name in ("data", "cache_dir"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, Path(getattr(self, name)))
        forms = (self.forms,) if isinstance(self.forms, str) else tuple(self.forms)
        object.__setattr__(self, "forms", tuple(form_named(f).name for f in forms))  # ConfigError: unknown form
        object.__setattr__(self, "exclude", tuple(self.exclude))
        if not self.forms:
            raise ConfigError("A calibration needs at least one Q/DQ form.")
        if self.num_images < 1:
            raise ConfigError(f"The number of calibration images must be positive, got {self.num_images}.")
        if self.holdout_images < 0:
            raise ConfigError(f"The number of held-out images must not be negative, got {self.holdout_images}.")

    @classmethod
    def for_target(cls, target: QuantTarget | str, **fields: Any) -> CalibrationRequest:
        """A request whose forms are those a target may use (TensorRT: its own; ONNX Runtime: either)."""
        from calib.qdq import forms_for

        return cls(forms=tuple(f.name for f in forms_for(target)), **fields)

    @property
    def methods(self) -> tuple[CalibrationMethod, ...]:
        """The methods to compute: all three for ``auto``, else the one asked for."""
        return CONCRETE_METHODS if self.method is CalibrationMethod.AUTO else (self.method,)

    @property
    def refinements(self) -> tuple[Refinement, ...]:
        """The refinements to try: ``none``, ``bias`` and ``adaround+bias`` for ``auto``, else the one asked for."""
        return AUTO_REFINEMENTS if self.refine is Refinement.AUTO else (self.refine,)

    @property
    def chooses(self) -> bool:
        """Whether there is anything to choose among (several methods, forms or refinements), so held-out images
        are needed."""
        return len(self.methods) * len(self.forms) * len(self.refinements) > 1
