"""Post-training INT8 calibration: images -> ranges -> a Q/DQ ONNX that TensorRT and ONNX Runtime both run.

Public API::

    from calib import calibrate, CalibrationMethod, CalibrationOptions, QuantTarget
    result = calibrate("model.onnx", "data/", "model.int8.qdq.onnx", target="tensorrt", method="auto")

The modules: :mod:`calib.reader` (images), :mod:`calib.methods` (minmax/entropy/percentile ranges),
:mod:`calib.qdq` (Q/DQ insertion and inspection), :mod:`calib.cache` (range cache), :mod:`calib.pipeline`
(the whole calibration).
"""

_WHERE = {
    "CacheKey": "calib.cache",
    "RangeCache": "calib.cache",
    "CalibrationMethod": "calib.methods",
    "CalibrationOptions": "calib.methods",
    "Ranges": "calib.methods",
    "compute_ranges": "calib.methods",
    "make_calibrator": "calib.methods",
    "CalibrationResult": "calib.pipeline",
    "Candidate": "calib.pipeline",
    "calibrate": "calib.pipeline",
    "open_source_model": "calib.pipeline",
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
    "CalibrationOptions",
    "CalibrationResult",
    "Candidate",
    "ImageReader",
    "QdqForm",
    "QuantTarget",
    "RangeCache",
    "Ranges",
    "calibrate",
    "compute_ranges",
    "describe_qdq",
    "load_calibration_data",
    "make_calibrator",
    "open_source_model",
    "quantizable_layers",
    "split_calibration",
    "write_qdq",
]
