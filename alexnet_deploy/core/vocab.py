"""The names of every choice the toolkit offers, defined once: the library validates with them and the CLI
offers them (Typer shows an Enum's values as the choices).

Each is a ``str`` Enum, so a member compares equal to its value (``Precision.INT8 == "int8"``) and JSON writes
the value; :meth:`Choice.parse` turns user text into a member or raises one :class:`ConfigError` sentence.
"""

from __future__ import annotations

from enum import Enum

from alexnet_deploy.core.errors import ConfigError


class Choice(str, Enum):
    """A named choice; ``parse`` accepts a member or its value (any case)."""

    @classmethod
    def parse(cls, value: str | Choice):
        """The member called ``value``.

        Raises:
            ConfigError: no member has that value.
        """
        if isinstance(value, cls):
            return value
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            choices = ", ".join(m.value for m in cls)
            raise ConfigError(f"Unknown {cls._label()} '{value}'; choose one of {choices}.") from None

    @classmethod
    def _label(cls) -> str:
        return cls.__doc__.split(":")[0].strip().lower() if cls.__doc__ else cls.__name__

    def __str__(self) -> str:  # f-strings and messages show the value, not "Precision.INT8"
        return self.value


class Precision(Choice):
    """precision: what the deployable graph computes in (BF16 is an OpenVINO inference precision on FP32 weights)."""

    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"
    INT8 = "int8"


class BackendName(Choice):
    """backend: who compiles and runs an artifact (``auto`` lets the build choose by measurement)."""

    AUTO = "auto"
    TORCH = "torch"
    ONNXRUNTIME = "onnxruntime"
    OPENVINO = "openvino"
    TENSORRT = "tensorrt"
    TENSORRT_RTX = "tensorrt-rtx"


class CalibrationMethod(Choice):
    """calibration method: how a tensor's INT8 range is chosen (``auto`` compares the other three)."""

    AUTO = "auto"  # compare minmax, entropy and percentile on held-out calibration images
    MINMAX = "minmax"  # the observed min and max
    ENTROPY = "entropy"  # the threshold whose int8 histogram is closest (KL divergence) to the float one
    PERCENTILE = "percentile"  # the given percentile of |x| (99.99 clips the rarest 0.01%)


#: The methods that compute ranges (``auto`` only chooses among them).
CONCRETE_METHODS = (CalibrationMethod.MINMAX, CalibrationMethod.ENTROPY, CalibrationMethod.PERCENTILE)


class Refinement(Choice):
    """weight refinement: what a calibration does to the weights beyond rounding them to nearest (``auto``
    compares none, bias and adaround+bias on held-out images)."""

    AUTO = "auto"
    NONE = "none"  # plain post-training quantization
    BIAS = "bias"  # each layer's mean output shift folded into its float bias
    ADAROUND = "adaround"  # each weight's rounding (down or up) learned layer by layer
    ADAROUND_BIAS = "adaround+bias"  # both


#: What ``refine="auto"`` compares (learned rounding alone is offered, but the combination is what pays).
AUTO_REFINEMENTS = (Refinement.NONE, Refinement.BIAS, Refinement.ADAROUND_BIAS)


class QuantTarget(Choice):
    """quantization target: where the Q/DQ ONNX will run: TensorRT's rules always, or ONNX Runtime's own form too."""

    TENSORRT = "tensorrt"
    ONNXRUNTIME = "onnxruntime"


class LrnForm(Choice):
    """LRN form: one native ONNX LRN node per layer, or the exporter's decomposed arithmetic."""

    NATIVE = "native"
    DECOMPOSED = "decomposed"


class HardwareCompat(Choice):
    """hardware compatibility: which GPUs a TensorRT plan may run on."""

    NONE = "none"  # this GPU model only
    SAME_COMPUTE_CAPABILITY = "same_compute_capability"
    AMPERE_PLUS = "ampere_plus"
