"""The build's options: every default defined once, in a module light enough for the CLI to import at start-up
(``--help`` must never load torch or TensorRT)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alexnet_deploy.core.accuracy import Gate
from alexnet_deploy.core.errors import ConfigError
from alexnet_deploy.core.limits import check_count, check_duration, check_threads
from alexnet_deploy.core.vocab import BackendName, CalibrationMethod, Precision
from calib.methods import DEFAULT_HOLDOUT_IMAGES, DEFAULT_NUM_IMAGES, DEFAULT_SEED, CalibrationOptions


@dataclass(frozen=True)
class BuildOptions:
    """Everything a build can be told; every default is defined here once (the CLI shows these).

    Attributes:
        precision: ``int8``, ``fp16`` or ``bf16`` (OpenVINO only).
        backend: ``auto`` (the fastest verified here, measured) or one backend of the registry.
        gate: the accuracy gate (top-1 and top-5 may each drop at most 0.5 point by default).
        force: write the engine even when the gate fails, marked failed in its sidecar (still raises).
        calib_method: ``auto`` (compare all three on held-out images), ``minmax``, ``entropy`` or ``percentile``.
        num_calib_images / holdout_images / seed: the calibration selection, and held-out images for choosing
            the method and ranking layers for the fallback.
        calibration: histogram bins and percentile of the calibration methods.
        cache_dir / use_cache: the calibration range cache (default ``MODEL.onnx.calib/``).
        max_fallback_layers: at most this many layers may be left in float to pass the gate (0: no fallback).
        eval_limit: evaluate on this many images (stratified) instead of all.
        batch_size: images per inference while verifying.
        threads: CPU threads of every CPU backend (verification and the speed probe).
        engine_options: per backend, its own build options (``backends.<name>.BuildOptions``); the default
            otherwise.
        probe_batches: batch sizes the speed probe of ``auto`` measures (empty: no probe, the first passing
            candidate wins).
        probe_seconds: timed seconds per candidate and batch size in the probe.
    """

    precision: Precision = Precision.INT8
    backend: BackendName = BackendName.AUTO
    gate: Gate = field(default_factory=Gate)
    force: bool = False
    calib_method: CalibrationMethod = CalibrationMethod.AUTO
    num_calib_images: int = DEFAULT_NUM_IMAGES
    holdout_images: int = DEFAULT_HOLDOUT_IMAGES
    seed: int = DEFAULT_SEED
    calibration: CalibrationOptions = field(default_factory=CalibrationOptions)
    cache_dir: Path | None = None
    use_cache: bool = True
    max_fallback_layers: int = 4
    eval_limit: int | None = None
    batch_size: int = 64
    threads: int | None = None
    engine_options: dict[BackendName, Any] = field(default_factory=dict)
    probe_batches: tuple[int, ...] = (1, 32)
    probe_seconds: float = 0.5

    def __post_init__(self) -> None:
        object.__setattr__(self, "precision", Precision.parse(self.precision))
        object.__setattr__(self, "backend", BackendName.parse(self.backend))
        object.__setattr__(self, "calib_method", CalibrationMethod.parse(self.calib_method))
        # backend names as members: an unknown name is refused here, not silently ignored
        object.__setattr__(self, "engine_options", {BackendName.parse(k): v for k, v in self.engine_options.items()})
        if self.precision is Precision.FP32:
            raise ConfigError("build makes FP16, BF16 or INT8 engines; the FP32 ONNX is the export itself.")
        for name in ("num_calib_images", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be positive, not {getattr(self, name)}.")
        if self.holdout_images < 0 or self.max_fallback_layers < 0:
            raise ConfigError("holdout_images and max_fallback_layers must not be negative.")
        if any(b < 1 for b in self.probe_batches) or self.probe_seconds <= 0:
            raise ConfigError("The speed probe needs positive batch sizes and a positive duration.")
        check_duration(self.probe_seconds, "The speed probe's duration")
        check_threads(self.threads)
        if self.eval_limit is not None:
            check_count(self.eval_limit, "The evaluation limit")
