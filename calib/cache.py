"""Calibration ranges, computed once per method or taken from the cache: a rebuild with the same model, images and
method skips calibration (:func:`collect_ranges`, the calibration's second step).

One JSON file per (method, tensor set) in the cache folder (default: ``MODEL.onnx.calib/`` beside the model).
It stores the key it was computed for: the model's sha256, the calibration data's hash (files, sizes, labels,
preprocessing), the method's settings, the tensors measured and the onnxruntime version. A lookup whose file
holds another key is *stale*: it is said (which part changed) and recomputed, never used. A cache folder that is
a symbolic link is neither read nor written (it is not one we made), and a cache that cannot be written (a
read-only model folder, a full disk) is said and skipped: calibration goes on without it.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from alexnet_deploy.core.errors import ArtifactError
from alexnet_deploy.core.files import ensure_folder, sha256_text, write_json_atomic
from alexnet_deploy.core.images import ProgressFn
from alexnet_deploy.core.vocab import CalibrationMethod
from calib.methods import Ranges, compute_ranges
from calib.qdq import form_named, load_graph, tensors_to_calibrate
from calib.request import CalibrationRequest

log = logging.getLogger(__name__)

CACHE_VERSION = 1


@dataclass(frozen=True)
class CacheKey:
    """What a set of ranges depends on."""

    model_sha256: str
    data_sha256: str
    method: dict[str, Any]  # RangeSettings.key(method)
    tensors_sha256: str
    onnxruntime: str

    @classmethod
    def make(cls, model_sha256: str, data_sha256: str, method: dict[str, Any], tensors) -> CacheKey:
        import onnxruntime

        return cls(model_sha256, data_sha256, dict(method), sha256_text(*sorted(tensors)), onnxruntime.__version__)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def differences(self, other: dict[str, Any]) -> list[str]:
        """Names of the parts of the key that differ from a stored key (e.g. ``["model_sha256"]``)."""
        mine = self.to_dict()
        return [k for k in mine if mine[k] != other.get(k)]


_WHY = {
    "model_sha256": "the model changed",
    "data_sha256": "the calibration images changed",
    "method": "the method's settings changed",
    "tensors_sha256": "other tensors are quantized",
    "onnxruntime": "onnxruntime's version changed",
}


@dataclass
class CacheLookup:
    """The outcome of a lookup: ``status`` is ``"hit"``, ``"miss"`` or ``"stale"`` (with ``reason``)."""

    status: str
    path: Path
    ranges: Ranges | None = None
    reason: str = ""


class RangeCache:
    """Calibration ranges on disk, keyed by :class:`CacheKey`."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    @staticmethod
    def beside(model_path: str | Path) -> RangeCache:
        """The default cache of a model: ``MODEL.onnx.calib/``."""
        model_path = Path(model_path)
        return RangeCache(model_path.with_name(model_path.name + ".calib"))

    def path(self, key: CacheKey) -> Path:
        """The file for a key's method and tensor set (the model and data are checked inside it)."""
        return self.directory / f"{key.method['method']}-{key.tensors_sha256[:12]}.json"

    def load(self, key: CacheKey) -> CacheLookup:
        """Look up ranges for ``key``; a file made for another key is reported stale and not used."""
        path = self.path(key)
        if self.directory.is_symlink():
            log.warning("The calibration cache %s is a symbolic link, not one we made; not using it.", self.directory)
            return CacheLookup("stale", path, reason="the cache folder is a symbolic link")
        if not path.is_file():
            return CacheLookup("miss", path)
        try:
            stored = json.loads(path.read_text())
            ranges = Ranges.from_dict(stored["ranges"])
            stored_key = stored["key"]
        except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError):
            log.warning("The calibration cache %s is unreadable; recomputing.", path)
            return CacheLookup("stale", path, reason="the cache file is unreadable")
        changed = key.differences(stored_key)
        if changed or stored.get("version") != CACHE_VERSION:
            reason = ", ".join(_WHY.get(c, c) for c in changed) or "the cache format changed"
            log.warning("The calibration cache %s is stale (%s); recalibrating.", path, reason)
            return CacheLookup("stale", path, reason=reason)
        log.info("Calibration ranges for %s come from the cache %s.", key.method["method"], path)
        return CacheLookup("hit", path, ranges)

    def save(self, key: CacheKey, ranges: Ranges) -> Path | None:
        """Store ranges for ``key`` (atomically, replacing a stale file); None when the cache cannot be written."""
        path = self.path(key)
        try:
            ensure_folder(self.directory)
            write_json_atomic(path, {"version": CACHE_VERSION, "key": key.to_dict(), "ranges": ranges.to_dict()})
        except ArtifactError as exc:
            log.warning("The calibration ranges were not cached: %s", exc)
            return None
        return path


@dataclass(frozen=True)
class CollectedRanges:
    """One method's ranges, where they came from (``cache``: hit, miss, stale or off) and what they cost."""

    method: CalibrationMethod
    ranges: Ranges
    cache: str
    seconds: float


def collect_ranges(
    source, data, request: CalibrationRequest, progress: ProgressFn | None = None
) -> dict[CalibrationMethod, CollectedRanges]:
    """For every method of ``request``, the ranges of the tensors its Q/DQ forms quantize: from the cache, or
    computed on the calibration images of ``data`` (:class:`calib.reader.CalibrationData`) and then cached.

    Args:
        source: the FP32 model (:class:`calib.pipeline.SourceModel`: path, sha256, input name).
    """
    graph = load_graph(source.path)
    tensors: set[str] = set().union(*(tensors_to_calibrate(graph, form_named(f)) for f in request.forms))
    cache = None
    if request.use_cache:
        cache = RangeCache(request.cache_dir) if request.cache_dir else RangeCache.beside(source.path)
    collected = {}
    for method in request.methods:
        start = time.perf_counter()
        key = CacheKey.make(source.sha256, data.fingerprint, request.settings.key(method), tensors)
        found = cache.load(key) if cache is not None else None
        if found is not None and found.status == "hit" and found.ranges is not None:
            ranges, status = found.ranges, "hit"
        else:
            fixed = (source.manifest.input.get("shape") or [-1])[0]
            if fixed > 0:  # a graph exported for one batch size: whole batches of that size (the rest left out)
                reader = data.reader(source.input_name, fixed, whole_batches=True)
            else:
                reader = data.reader(source.input_name, request.settings.batch_size)
            ranges = compute_ranges(source.path, reader, method, tensors, request.settings, progress)
            status = found.status if found is not None else "off"
            if cache is not None:
                cache.save(key, ranges)
        collected[method] = CollectedRanges(method, ranges, status, round(time.perf_counter() - start, 2))
    return collected
