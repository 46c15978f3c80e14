"""Post-training INT8 calibration: images -> ranges -> a Q/DQ ONNX that TensorRT and ONNX Runtime both run.

Public API::

    from calib import calibrate, CalibrationMethod, CalibrationOptions, QuantTarget
    result = calibrate("model.onnx", "data/", "model.int8.qdq.onnx", target="tensorrt", method="auto")

The modules: :mod:`calib.reader` (images), :mod:`calib.methods` (minmax/entropy/percentile ranges),
:mod:`calib.qdq` (Q/DQ insertion and inspection), :mod:`calib.cache` (range cache), :mod:`calib.pipeline`
(the whole calibration).
"""

from calib.cache import CacheKey, RangeCache
from calib.methods import CalibrationMethod, CalibrationOptions, Ranges, compute_ranges, make_calibrator
from calib.pipeline import CalibrationResult, Candidate, calibrate, open_source_model
from calib.qdq import QdqForm, QuantTarget, describe_qdq, quantizable_layers, write_qdq
from calib.reader import CalibrationData, ImageReader, load_calibration_data, split_calibration

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
