"""What a build is asked to do: :class:`BuildRequest`, every default defined once, in a module light enough for
the CLI to import at start-up (``--help`` must never load torch or TensorRT).

The CLI fills one request; :func:`alexnet_deploy.build.build` and every step below it take the parts they need
whole (the calibration its :class:`~calib.request.CalibrationRequest`, verification its
:class:`~alexnet_deploy.core.accuracy.EvalRequest`, each backend its own options): nothing is unpacked into keywords
again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from alexnet_deploy.core.accuracy import EvalRequest, Gate
from alexnet_deploy.core.errors import ConfigError
from alexnet_deploy.core.limits import check_count, check_duration
from alexnet_deploy.core.values import parse_batch_sizes
from alexnet_deploy.core.vocab import BackendName, Precision
from calib.request import CalibrationRequest


@dataclass(frozen=True)
class ProbeRequest:
    """The speed probe of a build: which batch sizes, for how long (``batches`` empty: no probe, the first
    passing candidate wins)."""

    batches: tuple[int, ...] = (1, 32)
    seconds: float = 0.5

    def __post_init__(self) -> None:
        object.__setattr__(self, "batches", parse_batch_sizes(self.batches, flag="--probe-batch", allow_empty=True))
        check_duration(self.seconds, "The speed probe's duration")


@dataclass(frozen=True)
class BuildRequest:
    """Everything a build can be told.

    Attributes:
        precision: ``int8``, ``fp16`` or ``bf16`` (OpenVINO only).
        backend: ``auto`` (the fastest verified here, measured) or one backend of the registry.
        verify: how each candidate is verified: the gate (top-1 and top-5 may each drop at most 0.5 point by
            default), batch size, CPU threads, and how many evaluation images (``limit``).
        calibration: INT8 only: the calibration images (``data``), counts, methods and cache; the Q/DQ forms are
            the candidates' (the request's own ``forms`` are replaced). Held-out images are decoded even for one
            method: the fallback ranks layers on them, never on the evaluation images.
        engines: per backend, its own build options (an instance of the registry's options class); the defaults
            for any backend not named.
        probe: the speed probe that chooses among passing candidates.
        max_fallback_layers: at most this many layers may be left in float to pass the gate (0: no fallback).
        force: write the engine even when the gate fails, marked failed in its sidecar (still raises).
    """

    precision: Precision = Precision.INT8
    backend: BackendName = BackendName.AUTO
    verify: EvalRequest = field(default_factory=EvalRequest)
    calibration: CalibrationRequest = field(default_factory=CalibrationRequest)
    engines: Mapping[BackendName, Any] = field(default_factory=dict)
    probe: ProbeRequest = field(default_factory=ProbeRequest)
    max_fallback_layers: int = 4
    force: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "precision", Precision.parse(self.precision))
        object.__setattr__(self, "backend", BackendName.parse(self.backend))
        # backend names as members: an unknown name is refused here, not silently ignored
        engines = {BackendName.parse(k): v for k, v in self.engines.items()}
        object.__setattr__(self, "engines", MappingProxyType(engines))
        if self.precision is Precision.FP32:
            raise ConfigError("build makes FP16, BF16 or INT8 engines; the FP32 ONNX is the export itself.")
        check_count(self.max_fallback_layers, "max_fallback_layers", low=0)

    @property
    def gate(self) -> Gate:
        """The accuracy gate every candidate is judged by."""
        return self.verify.gate

    def engine_options(self, spec) -> Any:
        """The build options of a backend (:class:`~alexnet_deploy.backends.BackendSpec`): as given, else its
        defaults."""
        return self.engines.get(spec.name) or spec.default_options()


@dataclass(frozen=True)
class SensitivityRequest:
    """What ``sensitivity`` is asked: the calibration whose ranges and form quantize each layer (``minmax`` and
    the tensorrt form by default; with a choice, the held-out images choose as in ``calibrate``) and how many
    evaluation images (stratified) to measure on."""

    calibration: CalibrationRequest = field(default_factory=lambda: CalibrationRequest(method="minmax"))
    limit: int | None = 1000
