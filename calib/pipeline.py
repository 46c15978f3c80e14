"""Calibrate an FP32 ONNX into a Q/DQ ONNX: choose images, compute (or reuse) ranges, pick the method and form
on held-out images, write the file and its sidecar. ``alexnet-deploy calibrate`` and ``build --int8`` both
call :func:`calibrate`.
"""

from __future__ import annotations

import contextlib
import logging
import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from alexnet_deploy.core.accuracy import compare, run_logits
from alexnet_deploy.core.data import Preprocessing
from alexnet_deploy.core.errors import ArtifactError, ConfigError
from alexnet_deploy.core.files import atomic_path, fault_point, output_lock, sha256_file, work_dir
from alexnet_deploy.core.images import PreparedImages, ProgressFn
from alexnet_deploy.core.manifest import Manifest, write_manifest
from calib.cache import CacheKey, RangeCache
from calib.methods import (
    ALL_METHODS,
    DEFAULT_HOLDOUT_IMAGES,
    DEFAULT_NUM_IMAGES,
    DEFAULT_SEED,
    CalibrationMethod,
    CalibrationOptions,
    Ranges,
    compute_ranges,
)
from calib.qdq import (
    QdqForm,
    QuantTarget,
    describe_qdq,
    forms_for,
    load_graph,
    quantizable_layers,
    tensors_to_calibrate,
    write_qdq,
)
from calib.reader import CalibrationData, load_calibration_data

log = logging.getLogger(__name__)


@dataclass
class SourceModel:
    """An FP32 ONNX ready to calibrate: its manifest, input name, preprocessing and sha256."""

    path: Path
    manifest: Manifest
    input_name: str
    preprocessing: Preprocessing
    sha256: str


def open_source_model(path: str | Path) -> SourceModel:
    """Read an FP32 ONNX and its sidecar, and check it takes the image input the sidecar describes.

    Raises:
        ArtifactError: missing, not ONNX, no sidecar, not FP32, or not one float N x 3 x H x W input
            (named as the sidecar says, sized as its preprocessing crops).
    """
    from alexnet_deploy.backends import describe_artifact

    path = Path(path)
    manifest = describe_artifact(path).manifest  # the sidecar checked: schema, sha256, real input/output shapes
    model = load_graph(path)
    if manifest.precision != "fp32":
        raise ArtifactError(f"{path.name} is a {manifest.precision} model; calibrate its FP32 ONNX instead.")
    if not manifest.preprocessing:
        raise ArtifactError(f"The manifest of {path.name} records no preprocessing.")
    pre = Preprocessing.from_dict(manifest.preprocessing)
    expected = manifest.input.get("name", "images")
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]

    def shape(vi) -> list:
        return [d.dim_value or d.dim_param or "?" for d in vi.type.tensor_type.shape.dim]

    ok = (
        len(inputs) == 1
        and inputs[0].name == expected
        and inputs[0].type.tensor_type.elem_type == 1  # float32
        and len(shape(inputs[0])) == 4
        and shape(inputs[0])[1] == 3
        and all(d == pre.crop or isinstance(d, str) for d in shape(inputs[0])[2:])
    )
    if not ok:
        found = ", ".join(f"{i.name}{shape(i)}" for i in inputs) or "nothing"
        raise ArtifactError(
            f"{path.name} must take one float32 N x 3 x {pre.crop} x {pre.crop} input named '{expected}'; "
            f"it takes {found}."
        )
    return SourceModel(path, manifest, expected, pre, sha256_file(path))


@dataclass
class Candidate:
    """One calibration tried: method and form, where its ranges came from, and how it did on held-out images."""

    method: str
    form: str
    cache: str  # "hit", "miss", "stale" or "off"
    seconds: float
    holdout: dict[str, float] | None = None  # agreement_top1, top1, top5, top1_delta, top5_delta
    vs_minmax: dict[str, float] | None = None  # how this method's ranges compare with MinMax's
    chosen: bool = False
    refine: str = "none"  # the weight refinement (calib.refine): none, bias, adaround, adaround+bias

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class CalibrationResult:
    """What :func:`calibrate` made and how it chose."""

    path: Path | None
    method: CalibrationMethod
    form: QdqForm
    ranges: Ranges
    options: CalibrationOptions
    data: dict[str, Any]
    candidates: list[Candidate] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)  # node names left in float
    structure: dict[str, Any] = field(default_factory=dict)
    refinement: Any = None  # calib.refine.Refined: the weights to quantize instead of the model's, or None

    @property
    def chosen_candidate(self) -> Candidate:
        """The candidate this result's method, form and refinement were."""
        refine = self.refinement.kind.value if self.refinement is not None else "none"
        return next(c for c in self.candidates
                    if c.method == self.method.value and c.form == self.form.name and c.refine == refine)  # fmt: skip

    def mark_chosen(self) -> None:
        """Mark this result's candidate, and no other, as the one chosen."""
        mine = self.chosen_candidate
        for cand in self.candidates:
            cand.chosen = cand is mine

    def to_dict(self) -> dict[str, Any]:
        """The sidecar's ``calibration`` field."""
        return {
            "method": self.method.value,
            "form": self.form.name,
            "options": self.options.key(),
            "data": self.data,
            "candidates": [c.to_dict() for c in self.candidates],
            "selection": "smallest mean KL divergence from FP32's softmax on the held-out calibration images, "
            "then top-1 agreement",
            "quantized_layers": self.structure.get("quantized", []),
            "float_layers": self.structure.get("float", []),
            "excluded_nodes": list(self.excluded),
            "activations": "symmetric int8, per tensor"
            if self.form.symmetric_activations
            else "asymmetric uint8, per tensor",
            "weights": "symmetric int8, per output channel",
            "bias": "int32" if self.form.quantize_bias else "float",
            "refinement": self.refinement.describe() if self.refinement is not None else {"kind": "none"},
        }


def _ranges_for(
    source: SourceModel,
    data: CalibrationData,
    options: CalibrationOptions,
    tensors: set[str],
    cache: RangeCache | None,
    progress: ProgressFn | None,
) -> tuple[Ranges, str]:
    key = CacheKey.make(source.sha256, data.fingerprint, options.key(), tensors)
    if cache is not None:
        found = cache.load(key)
        if found.status == "hit" and found.ranges is not None:
            return found.ranges, "hit"
        status = found.status
    else:
        status = "off"
    reader = data.reader(source.input_name, options.batch_size)
    ranges = compute_ranges(source.path, reader, options, tensors, progress)
    if cache is not None:
        cache.save(key, ranges)
    return ranges, status


def _vs_minmax(ranges: Ranges, minmax: Ranges | None, tensors: set[str]) -> dict[str, float] | None:
    """How far a method's ranges sit inside MinMax's, over the tensors one form quantizes."""
    if minmax is None or ranges.method is CalibrationMethod.MINMAX:
        return None
    ratios = [r for name, r in ranges.ratio_to(minmax).items() if name in tensors]
    if not ratios:
        return None
    return {
        "median_amax_ratio": statistics.median(ratios),
        "min_amax_ratio": min(ratios),
        "clipped_tensors": sum(r < 0.999 for r in ratios),
        "tensors": len(ratios),
    }


def _score(candidate_path: Path, images: PreparedImages, fp32_logits: np.ndarray) -> dict[str, float | None]:
    """Held-out figures of a candidate; top-1/top-5 are ``None`` when the images' labels are not the model's."""
    from alexnet_deploy.backends.onnxruntime import OnnxRuntimeRunner

    with OnnxRuntimeRunner(candidate_path) as runner:
        logits = run_logits(runner, images, 64)
    c = compare(logits, fp32_logits, images.targets)
    kl = {"kl": softmax_kl(logits, fp32_logits)}
    if (images.targets < 0).all():
        return {"agreement_top1": c["agreement_top1"], "top1_delta": None, "top5_delta": None, "top1": None,
                "top5": None} | kl  # fmt: skip
    return (
        kl
        | {k: c[k] for k in ("agreement_top1", "top1_delta", "top5_delta")}
        | {
            "top1": c["reference_top1"] + c["top1_delta"],
            "top5": c["reference_top5"] + c["top5_delta"],
        }
    )


def softmax_kl(logits: np.ndarray, reference: np.ndarray) -> float:
    """Mean KL divergence of a candidate's softmax from the reference's (nats per image)."""

    def log_softmax(z: np.ndarray) -> np.ndarray:
        z = z.astype(np.float64) - z.max(1, keepdims=True)
        return z - np.log(np.exp(z).sum(1, keepdims=True))

    ref = log_softmax(reference)
    return float((np.exp(ref) * (ref - log_softmax(logits))).sum(1).mean()) if len(ref) else 0.0


def _holdout_rank(candidate: Candidate) -> tuple[float, float, float]:
    """Candidates are chosen by the smallest mean KL divergence from FP32's softmax on the held-out images, then
    by top-1 agreement. The KL divergence is paired and continuous: on 1,000 held-out images the agreement of
    two calibrations differs by a handful of flips (noise of +-0.5 point), where the KL divergence ranked them as
    the 5,000 evaluation images did (demo model: plain, bias-corrected and learned rounding)."""
    if candidate.holdout is None:  # nothing to choose between
        return 0.0, 0.0, 0.0
    h = candidate.holdout
    return -h.get("kl", 0.0), h["agreement_top1"], h["top1"] or 0.0


def fp32_logits(source: SourceModel, images: PreparedImages) -> np.ndarray:
    """The FP32 ONNX's logits on prepared images (ONNX Runtime, CPU)."""
    from alexnet_deploy.backends.onnxruntime import OnnxRuntimeRunner

    with OnnxRuntimeRunner(source.path) as runner:
        return run_logits(runner, images, 64)


def parse_methods(method: str | CalibrationMethod) -> tuple[CalibrationMethod, ...]:
    """``"auto"`` -> all three methods; otherwise the one named.

    Raises:
        ConfigError: an unknown method.
    """
    if isinstance(method, str) and method.lower() == "auto":
        return ALL_METHODS
    return (CalibrationMethod.parse(method),)


def calibrate(
    model: str | Path | SourceModel,
    calib_data: str | Path | None,
    out_path: str | Path | None,
    *,
    target: QuantTarget | str = QuantTarget.TENSORRT,
    method: str | CalibrationMethod = CalibrationMethod.AUTO,
    num_images: int = DEFAULT_NUM_IMAGES,
    holdout_images: int = DEFAULT_HOLDOUT_IMAGES,
    seed: int = DEFAULT_SEED,
    options: CalibrationOptions | None = None,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    exclude: Sequence[str] = (),
    data: CalibrationData | None = None,
    progress: ProgressFn | None = None,
) -> CalibrationResult:
    """Calibrate an FP32 ONNX (with its sidecar) on images from ``calib_data`` and write the Q/DQ ONNX.

    With ``method="auto"`` minmax, entropy and percentile are all computed and the one whose Q/DQ model agrees
    best with FP32 on held-out images of the *calibration* folder is kept; for ``target="onnxruntime"`` the
    tensorrt form and ONNX Runtime's own uint8 form are compared the same way. Every candidate is reported.

    Args:
        model: the FP32 ONNX (an export with its sidecar), or one already opened with :func:`open_source_model`.
        calib_data: an ImageFolder, or a root with ``train/`` (used) and ``val/``; unused when ``data`` is given.
        out_path: the Q/DQ ONNX to write (with its sidecar); ``None`` writes nothing (the caller writes).
        target: ``tensorrt`` (always the symmetric TensorRT form) or ``onnxruntime``.
        method: ``auto``, ``minmax``, ``entropy`` or ``percentile``.
        num_images: calibration images (stratified, seeded).
        holdout_images: held-out images for choosing among candidates (used only when there is a choice).
        options: histogram and percentile settings (defaults: :class:`CalibrationOptions`).
        cache_dir: where ranges are cached (default ``MODEL.onnx.calib/``); ``use_cache=False`` disables it.
        exclude: node names to leave in float.
        data: already loaded calibration images (skips decoding).

    Returns:
        :class:`CalibrationResult` (``path`` is ``out_path``).

    Raises:
        DataError: the calibration folder is empty, holds no image, or has classes the model does not know.
        ArtifactError: the model is not a calibratable FP32 ONNX, or cannot be written.
        ConfigError: an unknown method or target.
    """
    source = model if isinstance(model, SourceModel) else open_source_model(model)
    out = Path(out_path) if out_path is not None else None
    with output_lock(out) if out is not None else contextlib.nullcontext():
        per_form = calibrate_forms(
            source, calib_data, forms_for(target), method=method, num_images=num_images,
            holdout_images=holdout_images, seed=seed, options=options, cache_dir=cache_dir, use_cache=use_cache,
            exclude=exclude, data=data, progress=progress, work_beside=out,
        )  # fmt: skip
        best = max(per_form.values(), key=lambda r: _holdout_rank(r.chosen_candidate))
        best.mark_chosen()
        if out is not None:
            write_calibrated(source, best, out)
        return best


def calibrate_forms(
    source: SourceModel,
    calib_data: str | Path | None,
    forms: Sequence[QdqForm],
    *,
    method: str | CalibrationMethod = CalibrationMethod.AUTO,
    num_images: int = DEFAULT_NUM_IMAGES,
    holdout_images: int = DEFAULT_HOLDOUT_IMAGES,
    seed: int = DEFAULT_SEED,
    options: CalibrationOptions | None = None,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    exclude: Sequence[str] = (),
    data: CalibrationData | None = None,
    progress: ProgressFn | None = None,
    work_beside: Path | None = None,
) -> dict[str, CalibrationResult]:
    """One calibration per Q/DQ form: every method's ranges computed once (or taken from the cache), each form's
    best method chosen on the held-out calibration images. ``build --backend auto`` then chooses among the
    forms by measured speed; :func:`calibrate` by held-out agreement.

    Returns:
        ``{form name: CalibrationResult}``; each result lists every candidate tried (all forms).
    """
    from calib.refinements import kinds_for, refine_forms

    methods = parse_methods(method)
    options = options or CalibrationOptions()
    choice = len(methods) * len(forms) * len(kinds_for(options.refine)) > 1
    if data is None:
        if calib_data is None:
            raise ConfigError("Calibration needs images (--calib-data).")
        data = load_calibration_data(
            calib_data,
            source.preprocessing,
            num_images=num_images,
            holdout_images=holdout_images if choice else 0,
            seed=seed,
            progress=progress,
            classes=source.manifest.classes,
        )
    data.conform_to(source.manifest.classes)  # also data loaded by the caller: scores must use the model's labels
    if choice and (data.holdout is None or len(data.holdout) == 0):
        raise ConfigError("Choosing a calibration needs held-out images; the calibration folder is too small.")
    cache = None if not use_cache else RangeCache(cache_dir) if cache_dir else RangeCache.beside(source.path)
    graph = load_graph(source.path)
    needed: set[str] = set().union(*(tensors_to_calibrate(graph, f) for f in forms))
    reference = fp32_logits(source, data.holdout) if choice else None
    all_ranges: dict[CalibrationMethod, Ranges] = {}
    candidates: list[Candidate] = []
    with work_dir(work_beside or source.path, "calibrate") as work:
        for m in methods:
            start = time.perf_counter()
            ranges, status = _ranges_for(source, data, options.with_method(m), needed, cache, progress)
            all_ranges[m] = ranges
            seconds = time.perf_counter() - start
            for form in forms:
                cand = Candidate(m.value, form.name, status, round(seconds, 2))
                if choice:
                    trial = work / f"{m.value}-{form.name}.onnx"
                    write_qdq(source.path, trial, ranges, form, exclude=exclude)
                    cand.holdout = _score(trial, data.holdout, reference)
                    if progress:
                        progress("Comparing calibrations", len(candidates) + 1, len(methods) * len(forms))
                candidates.append(cand)
    minmax = all_ranges.get(CalibrationMethod.MINMAX)
    for cand in candidates:
        form_tensors = tensors_to_calibrate(graph, next(f for f in forms if f.name == cand.form))
        cand.vs_minmax = _vs_minmax(all_ranges[CalibrationMethod(cand.method)], minmax, form_tensors)
    results = {}
    for form in forms:
        mine = [c for c in candidates if c.form == form.name]
        best = max(mine, key=_holdout_rank) if choice else mine[0]
        best_method = CalibrationMethod(best.method)
        results[form.name] = CalibrationResult(
            path=None, method=best_method, form=form, ranges=all_ranges[best_method],
            options=options.with_method(best_method), data=data.describe(), candidates=candidates,
            excluded=list(exclude),
        )  # fmt: skip
    refine_forms(source, data, results, options.refine, reference, _score, _holdout_rank, work_beside=work_beside,
                 progress=progress)  # fmt: skip
    return results


def write_calibrated(
    source: SourceModel, result: CalibrationResult, out_path: Path, exclude: Iterable[str] = ()
) -> Path:
    """Write the Q/DQ ONNX of ``result`` (leaving ``exclude`` nodes in float too) and its sidecar."""
    excluded = sorted(set(result.excluded) | set(exclude))
    result.excluded = excluded
    if result.refinement is not None:  # refined from the quantized layers' inputs: again when others are float
        result.refinement = result.refinement.for_excluded(excluded)
    weights = result.refinement.weights if result.refinement is not None else None
    with atomic_path(out_path) as tmp:
        write_qdq(source.path, tmp, result.ranges, result.form, exclude=excluded, weights=weights)
        result.structure = describe_qdq(tmp)
        sha = sha256_file(tmp)
    result.path = out_path
    m = source.manifest
    manifest = Manifest(
        kind="onnx",
        model=dict(m.model),
        classes=list(m.classes),
        input=dict(m.input),
        output=dict(m.output),
        preprocessing=dict(m.preprocessing),
        precision="int8",
        calibration=result.to_dict(),
        source={"path": str(source.path), "sha256": source.sha256, "precision": "fp32"},
        extra={"layers": {layer.node: layer.label for layer in quantizable_layers(source.path)}},
    )
    fault_point("between-renames")
    write_manifest(out_path, manifest, sha)  # after the ONNX, with the sha256 of the bytes written
    return out_path
