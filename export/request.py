"""What an export is asked to do, defined once in a module light enough for the CLI to import at start-up:
:class:`ExportRequest` (how to export) and :class:`ModelDescription` (what the sidecar says of an in-memory
model)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alexnet_deploy.core.errors import ConfigError

if TYPE_CHECKING:
    from alexnet_deploy.core.data import Preprocessing

# The dynamo exporter implements opset 18 and newer; lower requests go through a version converter that
# fails on some ops (FINDINGS: "No Adapter To Version 17 for Pad"), so 18 is the default.
DEFAULT_OPSET = 18
PRECISIONS = ("fp32", "fp16")
# "native": one ONNX LRN node per layer (TensorRT's LRN layer; quantizes as one op). "decomposed": the exporter's
# Pow/Div/AveragePool form, which ONNX Runtime's CPU EP runs about twice as fast as its own single LRN kernel
# (docs/BENCHMARKS.md, Export).
LRN_FORMS = ("native", "decomposed")
# Op types kept in FP32 in the FP16 graph. The converter's own default block list holds ML-domain ops, TopK,
# Resize, Min/Max, ...: none of them occur in AlexNet, so an empty list and the default give the same graph; an
# explicit list is recorded in the sidecar.
DEFAULT_BLOCK_LIST: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExportRequest:
    """How a model is exported; every default is defined here once (the CLI shows these).

    Attributes:
        precision: ``"fp32"`` or ``"fp16"`` (FP16 weights and activations, FP32 graph inputs and outputs).
        opset: ONNX opset (default 18).
        lrn: ``"native"`` (one ONNX ``LRN`` node per layer) or ``"decomposed"`` (faster in ONNX Runtime's CPU EP).
        parity_data: an ImageFolder whose images feed the parity check (else seeded random inputs).
        parity_samples: how many inputs the parity check uses (default: 64 for FP32, 1,024 for FP16, see
            :data:`export.parity.DEFAULT_SAMPLES`); the FP32 graph of an FP16 export is checked on the first 64.
        image_size: input height and width (default: the checkpoint's crop).
        expected_classes: refuse a checkpoint that does not predict this many classes.
        expected_model: refuse a checkpoint of another architecture (``alexnet`` or ``alexnet_paper``).
        fp16_block_list: op types kept in FP32 in the FP16 graph.
    """

    precision: str = "fp32"
    opset: int = DEFAULT_OPSET
    lrn: str = "native"
    parity_data: Path | None = None
    parity_samples: int | None = None
    image_size: int | None = None
    expected_classes: int | None = None
    expected_model: str | None = None
    fp16_block_list: tuple[str, ...] = DEFAULT_BLOCK_LIST

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"Unknown precision '{self.precision}'; choose fp32 or fp16.")
        if self.lrn not in LRN_FORMS:
            raise ConfigError(f"Unknown LRN form '{self.lrn}'; choose native or decomposed.")
        if self.parity_data is not None:
            object.__setattr__(self, "parity_data", Path(self.parity_data))
        for name in ("parity_samples", "image_size", "expected_classes"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be positive, not {value}.")


@dataclass(frozen=True)
class ModelDescription:
    """What the sidecar says of an in-memory model: its class names (default ``"0"``, ``"1"``...), its eval preset
    (default: the 256/224 ratio at the export's size), its model entry (name, num_classes, width, columns) and
    where it came from (path, sha256, format)."""

    classes: tuple[str, ...] | None = None
    preprocessing: Preprocessing | None = None
    arch: dict[str, Any] | None = None
    source: dict[str, Any] | None = None
