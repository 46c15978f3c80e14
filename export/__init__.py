"""Checkpoints to ONNX (FP32 and FP16), with a native LRN, structure checks and a parity check.

Public entry points::

    from export import export_onnx, export_model, convert_fp16, check_parity, describe_onnx
"""

from export.artifact import INPUT_NAME, OUTPUT_NAME, ExportResult, GraphSummary, read_metadata, summarize_graph
from export.foreign import DescribeResult, describe_onnx, preprocessing_from
from export.fp16 import convert_fp16, ort_cpu_fp16_kernels, to_fp16
from export.onnx_export import DEFAULT_OPSET, LRN_FORMS, PRECISIONS, build_onnx, export_model, export_onnx
from export.parity import (
    FP16_MIN_TOP1_AGREEMENT,
    FP32_MAX_REL_ERROR,
    ParityResult,
    check_parity,
    compare_logits,
    parity_inputs,
)
from export.source import load_source, load_torchvision_weights

__all__ = [
    "DEFAULT_OPSET",
    "FP16_MIN_TOP1_AGREEMENT",
    "FP32_MAX_REL_ERROR",
    "INPUT_NAME",
    "OUTPUT_NAME",
    "LRN_FORMS",
    "PRECISIONS",
    "DescribeResult",
    "ExportResult",
    "GraphSummary",
    "ParityResult",
    "build_onnx",
    "check_parity",
    "compare_logits",
    "convert_fp16",
    "describe_onnx",
    "export_model",
    "export_onnx",
    "load_source",
    "load_torchvision_weights",
    "ort_cpu_fp16_kernels",
    "parity_inputs",
    "preprocessing_from",
    "read_metadata",
    "summarize_graph",
    "to_fp16",
]
