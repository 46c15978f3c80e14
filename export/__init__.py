"""Checkpoints to ONNX (FP32 and FP16), with a native LRN, structure checks and a parity check.

Public entry points::

    from export import ExportRequest, export_onnx, export_model, convert_fp16, check_parity, describe_onnx
"""

_WHERE = {
    **dict.fromkeys(
        ("INPUT_NAME", "OUTPUT_NAME", "ExportResult", "GraphSummary", "read_metadata", "summarize_graph"),
        "export.artifact",
    ),
    **dict.fromkeys(("DescribeResult", "describe_onnx", "preprocessing_from"), "export.foreign"),
    **dict.fromkeys(("convert_fp16", "ort_cpu_fp16_kernels", "to_fp16"), "export.fp16"),
    **dict.fromkeys(("build_onnx", "export_model", "export_onnx"), "export.onnx_export"),
    **dict.fromkeys(
        (
            "FP16_MIN_TOP1_AGREEMENT",
            "FP32_MAX_REL_ERROR",
            "ParityResult",
            "check_parity",
            "compare_logits",
            "parity_inputs",
        ),
        "export.parity",
    ),  # fmt: skip
    **dict.fromkeys(
        ("DEFAULT_OPSET", "LRN_FORMS", "PRECISIONS", "ExportRequest", "ModelDescription"), "export.request"
    ),
    **dict.fromkeys(("load_source", "load_torchvision_weights"), "export.source"),
}


def __getattr__(name: str):
    """Import the public names on first use, so that ``import export.request`` (the CLI's defaults) stays light:
    the exporter itself loads torch and onnx."""
    import importlib

    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'export' has no attribute {name!r}")


__all__ = [
    "DEFAULT_OPSET",
    "FP16_MIN_TOP1_AGREEMENT",
    "FP32_MAX_REL_ERROR",
    "INPUT_NAME",
    "OUTPUT_NAME",
    "LRN_FORMS",
    "PRECISIONS",
    "ExportRequest",
    "DescribeResult",
    "ExportResult",
    "GraphSummary",
    "ModelDescription",
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
