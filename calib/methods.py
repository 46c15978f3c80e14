"""Calibration methods (minmax, entropy, percentile) on top of onnxruntime.quantization's calibrators.

The template is onnxruntime's: a calibrator ``collect``s statistics from a data reader, then ``compute``s one
range per tensor. What this module adds:

* :class:`CalibrationMethod` as an Enum and :class:`CalibrationOptions` as a frozen dataclass instead of an
  untyped ``extra_options`` dict; :func:`make_calibrator` is the factory and raises on an unknown method.
* Entropy settings that really search for a threshold. ``quantize_static`` passes neither ``num_bins`` nor
  ``num_quantized_bins`` to the entropy calibrator, whose defaults are both 128: the KL search then has exactly
  one candidate, the full range, so "entropy" silently equals MinMax. We build the calibrator ourselves with
  TensorRT's resolution: 2048 histogram bins per sign over the observed range and 255 quantized bins
  (int8's 255 levels across the symmetric window).
* Only the tensors that will be quantized are calibrated (the KL search is pure Python, ~1 s per tensor).
* :class:`Ranges`: the result, plain floats per tensor, serialisable for the cache.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from alexnet_deploy.core.errors import ConfigError
from alexnet_deploy.core.vocab import CONCRETE_METHODS, CalibrationMethod, Refinement

log = logging.getLogger(__name__)

#: How many images a calibration takes (stratified over classes, seeded), and how many more it holds out to
#: choose the method (and rank layers for the build's fallback): the defaults of ``calibrate`` and ``build``.
DEFAULT_NUM_IMAGES = 512
DEFAULT_HOLDOUT_IMAGES = 1000
DEFAULT_SEED = 0


ALL_METHODS = CONCRETE_METHODS


@dataclass(frozen=True)
class CalibrationOptions:
    """Settings of one calibration; everything here is part of the range cache's key.

    Attributes:
        method: the calibration method.
        percentile: for ``percentile``: the percentile of |x| kept (the rest is clipped).
        num_bins: histogram bins (entropy: the whole symmetric window; percentile: |x|).
        num_quantized_bins: entropy: bins of the quantized histogram the KL search compares against.
        batch_size: images per calibration batch.
        refine: what is done to the weights beyond rounding to nearest (:mod:`calib.refine`): ``none``,
            ``bias`` (bias correction), ``adaround`` (learned rounding), ``adaround+bias``, or ``auto`` (none,
            bias and adaround+bias compared on the held-out images, like the methods). Not part of the ranges.
    """

    method: CalibrationMethod = CalibrationMethod.MINMAX
    percentile: float = 99.99
    num_bins: int = 4096
    num_quantized_bins: int = 255
    flatten_zero_bin: bool = True
    batch_size: int = 32
    refine: Refinement = Refinement.AUTO

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", CalibrationMethod.parse(self.method))
        object.__setattr__(self, "refine", Refinement.parse(self.refine))
        if self.method is CalibrationMethod.AUTO:
            raise ConfigError("A calibration computes ranges with one method; 'auto' only chooses among them.")
        if not 0 < self.percentile <= 100:
            raise ConfigError(f"The percentile must be in (0, 100], got {self.percentile}.")
        if self.num_quantized_bins < 3 or self.num_bins < 2 * self.num_quantized_bins:
            raise ConfigError(
                f"num_bins ({self.num_bins}) must be at least twice num_quantized_bins ({self.num_quantized_bins}), "
                "or the entropy search has no threshold to choose from."
            )
        if self.batch_size < 1:
            raise ConfigError(f"The calibration batch size must be positive, got {self.batch_size}.")

    def key(self) -> dict[str, Any]:
        """The settings that shape the ranges (the batch size does not, except through rounding)."""
        d = asdict(self)
        d["method"] = self.method.value
        d.pop("batch_size")
        d.pop("refine")  # applied to the weights after the ranges
        if self.method is CalibrationMethod.MINMAX:
            d = {"method": d["method"]}
        elif self.method is CalibrationMethod.PERCENTILE:
            d.pop("num_quantized_bins")
        else:
            d.pop("percentile")
        if self.method is not CalibrationMethod.ENTROPY:
            d.pop("flatten_zero_bin", None)
        return d

    def with_method(self, method: CalibrationMethod | str) -> CalibrationOptions:
        """A copy with another method."""
        return replace(self, method=CalibrationMethod.parse(method))


@dataclass
class Ranges:
    """Per-tensor calibration ranges ``{tensor: (low, high)}`` and the method that produced them."""

    method: CalibrationMethod
    values: dict[str, tuple[float, float]]

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method.value, "values": {k: [lo, hi] for k, (lo, hi) in sorted(self.values.items())}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Ranges:
        return cls(
            CalibrationMethod.parse(d["method"]), {k: (float(v[0]), float(v[1])) for k, v in d["values"].items()}
        )

    def amax(self) -> dict[str, float]:
        """max(|low|, |high|) per tensor: what a symmetric int8 scale is made of (scale = amax / 127)."""
        return {k: max(abs(lo), abs(hi)) for k, (lo, hi) in self.values.items()}

    def to_tensors_data(self):
        """onnxruntime's ``TensorsData`` for ``quantize_static``."""
        from onnxruntime.quantization.calibrate import TensorData, TensorsData

        data = {
            k: TensorData(lowest=np.array(lo, dtype=np.float32), highest=np.array(hi, dtype=np.float32))
            for k, (lo, hi) in self.values.items()
        }
        return TensorsData(ort_method(self.method), data)

    def ratio_to(self, other: Ranges) -> dict[str, float]:
        """amax of each tensor relative to another calibration's (e.g. entropy vs minmax)."""
        mine, theirs = self.amax(), other.amax()
        return {k: mine[k] / theirs[k] for k in mine if k in theirs and theirs[k] > 0}


def ort_method(method: CalibrationMethod):
    """onnxruntime's CalibrationMethod member for ours."""
    from onnxruntime.quantization import CalibrationMethod as OrtMethod

    return {
        CalibrationMethod.MINMAX: OrtMethod.MinMax,
        CalibrationMethod.ENTROPY: OrtMethod.Entropy,
        CalibrationMethod.PERCENTILE: OrtMethod.Percentile,
    }[method]


def make_calibrator(
    model_path: str | Path, options: CalibrationOptions, workdir: str | Path, op_types: Iterable[str] | None = None
):
    """Build onnxruntime's calibrator for ``options`` on an FP32 ONNX (the augmented model goes to ``workdir``).

    ``op_types`` limits the tensors observed to the inputs and outputs of those nodes (``None``: every tensor).

    Raises:
        ConfigError: an unknown method.
    """
    from onnxruntime.quantization.calibrate import create_calibrator

    method = CalibrationMethod.parse(options.method)
    if method is CalibrationMethod.MINMAX:
        # Not max_intermediate_outputs: in onnxruntime 1.32 it drops the batches it clears instead of merging
        # them. compute_ranges feeds a few batches per collect_data call, which merges as it goes.
        extra = {"symmetric": False}
    elif method is CalibrationMethod.ENTROPY:
        extra = {"symmetric": False, "num_bins": options.num_bins, "num_quantized_bins": options.num_quantized_bins}
    else:
        # A histogram of |x|: the threshold is the same for both signs, as symmetric int8 needs.
        extra = {"symmetric": True, "num_bins": options.num_bins, "percentile": options.percentile}
    with contextlib.redirect_stdout(io.StringIO()):
        return create_calibrator(
            Path(model_path),
            sorted(op_types) if op_types else None,
            augmented_model_path=str(Path(workdir) / "augmented.onnx"),
            calibrate_method=ort_method(method),
            extra_options=extra,
        )


class _Chunks:
    """Feeds a reader to a calibrator a few batches per ``collect_data`` call, never two batch sizes in one call.

    A call's batches are merged as they go, so histograms grow incrementally. onnxruntime's histogram collector
    stacks one call's outputs with ``np.asarray``, which fails ("inhomogeneous shape") when a short last batch
    (any image count that is not a multiple of the batch size) sits beside full ones; a batch whose size differs
    from the call's first is held back and opens the next call.
    """

    def __init__(self, reader, per_call: int) -> None:
        self.reader, self.per_call = reader, per_call
        self._pending = reader.get_next()
        self.served = 0  # batches handed to the calibrator so far

    @property
    def exhausted(self) -> bool:
        return self._pending is None

    def next_call(self) -> _Call:
        """A data reader over the next batches of one size (at most ``per_call`` of them)."""
        return _Call(self)

    def _take(self, size: int | None, left: int):
        if self._pending is None or left <= 0 or (size is not None and _batch_size(self._pending) != size):
            return None
        batch, self._pending = self._pending, self.reader.get_next()
        self.served += 1
        return batch


class _Call:
    def __init__(self, chunks: _Chunks) -> None:
        self.chunks, self.left, self.size = chunks, chunks.per_call, None

    def get_next(self):
        batch = self.chunks._take(self.size, self.left)
        if batch is not None:
            self.left -= 1
            self.size = _batch_size(batch)
        return batch


def _batch_size(feed: dict[str, np.ndarray]) -> int:
    return int(next(iter(feed.values())).shape[0])


def compute_ranges(
    model_path: str | Path,
    reader,
    options: CalibrationOptions,
    tensors: Iterable[str],
    progress=None,
) -> Ranges:
    """Calibrate ``tensors`` of an FP32 ONNX with images from ``reader`` (a data reader: ``get_next()`` gives a
    feed dict, ``None`` when exhausted; ``rewind()`` restarts it).

    Returns:
        :class:`Ranges` for the requested tensors.

    Raises:
        ConfigError: the model has none of ``tensors`` or the reader gave no data.
    """
    import onnx

    wanted = set(tensors)
    graph = onnx.load(str(model_path), load_external_data=False).graph
    # Observe only the nodes around the tensors to quantize: fewer tensors copied out of every batch.
    op_types = {n.op_type for n in graph.node if wanted & (set(n.input) | set(n.output))}
    reader.rewind()
    total = len(reader)
    if total == 0:
        raise ConfigError("The calibration reader gave no images.")
    with tempfile.TemporaryDirectory(prefix="alexnet-deploy-calib-") as work:
        calibrator = make_calibrator(model_path, options, work, op_types)
        if hasattr(calibrator, "tensors_to_calibrate"):
            # The histogram methods' threshold search is slow per tensor: keep only what will be quantized.
            calibrator.tensors_to_calibrate = set(calibrator.tensors_to_calibrate) & wanted
        chunks = _Chunks(reader, per_call=4)
        with contextlib.redirect_stdout(io.StringIO()):  # the histogram calibrators print as they go
            while not chunks.exhausted:
                calibrator.collect_data(chunks.next_call())
                if progress:
                    progress(f"Calibrating ({options.method.value})", min(chunks.served, total), total)
            collector = getattr(calibrator, "collector", None)
            if collector is not None:
                collector.histogram_dict = {k: v for k, v in collector.histogram_dict.items() if k in wanted}
                if options.method is CalibrationMethod.ENTROPY and options.flatten_zero_bin:
                    _flatten_zero_bin(collector.histogram_dict)
            data = calibrator.compute_data()
        del calibrator
    missing = sorted(wanted - set(data.data))
    if missing:
        raise ConfigError(f"The model has no float tensors named {missing[:3]} to calibrate.")
    values = {}
    for name in wanted:
        lo, hi = data[name].range_value
        values[name] = (float(np.ravel(lo)[0]), float(np.ravel(hi)[0]))
    ranges = Ranges(options.method, values)
    if options.method is CalibrationMethod.ENTROPY:
        _warn_if_no_clipping(ranges, data)
    return ranges


def _flatten_zero_bin(histograms: dict) -> None:
    """Give the bin holding 0 its neighbour's count, as TensorRT's entropy calibration does.

    After a ReLU most values are exactly 0. Left in, that spike decides the KL search: a wider window merges
    the zero bin with its neighbours, q spreads the spike over them, and the divergence grows with the window,
    so the *narrowest* threshold always wins (measured: every tensor at 1/16 of its max, top-1 agreement with
    FP32 fell to 32%). Zeros are represented exactly by any symmetric int8 scale, so they carry no information
    about where to clip.
    """
    for name, entry in histograms.items():
        hist, edges = entry[0], entry[1]
        zero = int(np.searchsorted(edges, 0.0, side="right")) - 1
        if 0 <= zero < len(hist) - 1:
            hist = hist.copy()
            hist[zero] = hist[zero + 1]
            histograms[name] = (hist, *entry[1:])


def _warn_if_no_clipping(ranges: Ranges, data) -> None:
    """Entropy that kept every tensor's full range searched nothing: say so (FINDINGS: it happens silently)."""
    clipped = 0
    for name, (lo, hi) in ranges.values.items():
        edges = getattr(data[name], "bins", None)  # the histogram edges, under this name
        full = float(np.abs(edges).max()) if edges is not None and np.size(edges) else max(abs(lo), abs(hi))
        if max(abs(lo), abs(hi)) < full * 0.999:
            clipped += 1
    if clipped == 0:
        log.warning("The entropy calibration clipped no tensor: its ranges equal MinMax's.")
