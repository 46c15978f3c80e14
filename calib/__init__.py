"""Post-training INT8 calibration: images -> ranges -> a Q/DQ ONNX that TensorRT and ONNX Runtime both run.

Public API::

    from calib import CalibrationRequest, calibrate
    request = CalibrationRequest.for_target("tensorrt", data="data/", method="auto")
    result = calibrate("model.onnx", request, "model.int8.qdq.onnx")

The modules, in the order a calibration uses them: :mod:`calib.request` (what is asked), :mod:`calib.reader`
(images), :mod:`calib.cache` (ranges, cached or computed by :mod:`calib.methods`), :mod:`calib.qdq` (Q/DQ
files and their inspection), :mod:`calib.pipeline` (the four steps, and the choice).
"""

_WHERE = {
    "CacheKey": "calib.cache",
    "CollectedRanges": "calib.cache",
    "RangeCache": "calib.cache",
    "collect_ranges": "calib.cache",
    "Ranges": "calib.methods",
    "compute_ranges": "calib.methods",
    "make_calibrator": "calib.methods",
    "CalibrationResult": "calib.results",
    "CalibrationTrial": "calib.results",
    "calibrate": "calib.pipeline",
    "calibrate_forms": "calib.pipeline",
    "open_source_model": "calib.pipeline",
    "CalibrationMethod": "calib.request",
    "CalibrationRequest": "calib.request",
    "RangeSettings": "calib.request",
    "QdqForm": "calib.qdq",
    "QuantTarget": "calib.qdq",
    "describe_qdq": "calib.qdq",
    "quantizable_layers": "calib.qdq",
    "write_qdq": "calib.qdq",
    "CalibrationData": "calib.reader",
    "ImageReader": "calib.reader",
    "load_calibration_data": "calib.reader",
    "split_calibration": "calib.reader",
}


def __getattr__(name: str):
    """Import the public names on first use, so that ``import calib.methods`` (the CLI's defaults) stays light."""
    import importlib

    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'calib' has no attribute {name!r}")


__all__ = [
    "CacheKey",
    "CalibrationData",
    "CalibrationMethod",
    "CalibrationRequest",
    "CalibrationResult",
    "CalibrationTrial",
    "CollectedRanges",
    "ImageReader",
    "QdqForm",
    "QuantTarget",
    "RangeCache",
    "Ranges",
    "RangeSettings",
    "calibrate",
    "calibrate_forms",
    "collect_ranges",
    "compute_ranges",
    "describe_qdq",
    "load_calibration_data",
    "make_calibrator",
    "open_source_model",
    "quantizable_layers",
    "split_calibration",
    "write_qdq",
]
