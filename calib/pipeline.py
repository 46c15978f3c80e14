"""Calibrate an FP32 ONNX into INT8 Q/DQ ONNX files, in five steps that each take the previous step's result:

1. **images**: :func:`calib.reader.load_calibration_data` decodes the calibration images (and, when there is a
   choice to make, held-out images of the same folder) through the model's own preprocessing;
2. **ranges**: :func:`calib.cache.collect_ranges` gives every method's ranges, from the cache or computed;
3. **Q/DQ files**: :func:`calib.qdq.write_trials` writes one file per method and Q/DQ form;
4. **scores**: each file is run on the held-out images (:func:`calib.results.score_file`) and every form keeps the
   method closest to FP32 there (:attr:`calib.results.CalibrationTrial.rank`);
5. **refinements**: :func:`calib.refinements.refine_forms` refines each form's chosen calibration's weights (bias
   correction, learned rounding) and keeps a refinement only where it scores closer to FP32.

:func:`calibrate_forms` runs those five steps and returns each form's choice (``build --int8`` compiles each one);
:func:`calibrate` (``alexnet-deploy calibrate``) keeps the best form and places it with its sidecar.
:func:`requantize` writes a result again with more layers left in float (the build's fallback).
"""

from __future__ import annotations

import contextlib
import logging
import statistics
from dataclasses import dataclass, replace
from pathlib import Path

from alexnet_deploy.core.data import Preprocessing
from alexnet_deploy.core.errors import ArtifactError, ConfigError
from alexnet_deploy.core.files import output_lock, scratch_dir, sha256_file, work_dir
from alexnet_deploy.core.images import PreparedImages, ProgressFn
from alexnet_deploy.core.manifest import Manifest, place_artifact, refuse_linked_pair
from alexnet_deploy.core.vocab import CalibrationMethod
from calib.cache import CollectedRanges, collect_ranges
from calib.qdq import (
    QdqTrial,
    describe_qdq,
    form_named,
    load_graph,
    quantizable_layers,
    write_qdq,
    write_trials,
)
from calib.reader import CalibrationData, load_calibration_data
from calib.refinements import refine_forms
from calib.request import CalibrationRequest
from calib.results import CalibrationResult, CalibrationTrial, score_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
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


def calibrate(
    model: str | Path | SourceModel,
    request: CalibrationRequest,
    out: str | Path | None = None,
    progress: ProgressFn | None = None,
) -> CalibrationResult:
    """Calibrate an FP32 ONNX (with its sidecar) as ``request`` says and write the best Q/DQ ONNX to ``out``.

    With ``method="auto"`` minmax, entropy and percentile are all computed; with several forms (``--target
    onnxruntime``) each is tried too. The trial that agrees best with FP32 on held-out images of the
    *calibration* folder is kept. Every trial is reported.

    Args:
        model: the FP32 ONNX (an export with its sidecar), or one already opened with :func:`open_source_model`.
        request: the images, counts, methods, forms and cache (:class:`CalibrationRequest`).
        out: the Q/DQ ONNX to write with its sidecar; ``None`` writes nothing.

    Returns:
        The kept :class:`CalibrationResult` (its ``path`` is ``out``; a removed work file when ``out`` is None).

    Raises:
        DataError: the calibration folder is empty, holds no image, or has classes the model does not know.
        ArtifactError: the model is not a calibratable FP32 ONNX, or cannot be written.
        ConfigError: the request cannot be carried out (no images named).
    """
    source = model if isinstance(model, SourceModel) else open_source_model(model)
    out = refuse_linked_pair(out) if out is not None else None
    with output_lock(out) if out is not None else contextlib.nullcontext():
        # Work files beside the output (a killed run's are swept by the next); with no output, in the system's
        # temporary folder, never beside the source model (a read-only folder, someone else's).
        with work_dir(out, "calibrate") if out is not None else scratch_dir("alexnet-deploy-calibrate-") as work:
            per_form = calibrate_forms(source, request, work, progress=progress)
            best = max(per_form.values(), key=lambda r: r.trial.rank)
            return place_calibrated(source, best, out) if out is not None else best


def calibrate_forms(
    source: SourceModel,
    request: CalibrationRequest,
    work: Path,
    data: CalibrationData | None = None,
    progress: ProgressFn | None = None,
) -> dict[str, CalibrationResult]:
    """The four steps (module docstring): one result per Q/DQ form of the request, its file written in ``work``.

    Args:
        work: a folder the Q/DQ files are written into (they stay there for the caller).
        data: calibration images already loaded (and held-out ones, when there is a choice); else loaded here.

    Returns:
        ``{form name: CalibrationResult}``; each lists every trial (of all forms).

    Raises:
        ConfigError: a choice to make but no held-out images (a folder too small).
    """
    if data is None:
        data = load_calibration_data(request, source.preprocessing, source.manifest.classes, request.chooses, progress)
    data.conform_to(source.manifest.classes)  # also data loaded by the caller: scores must use the model's labels
    if request.chooses and (data.holdout is None or len(data.holdout) == 0):
        n = len(request.methods) * len(request.forms) * len(request.refinements)
        if request.holdout_images == 0:
            raise ConfigError(
                f"Choosing among {n} calibrations (methods x forms x refinements) needs held-out images and "
                "--holdout-images is 0: give some, or name one --method and one --refine (and one form)."
            )
        raise ConfigError(
            f"Choosing among {n} calibrations needs held-out images; the calibration folder is too small to leave "
            "any after the calibration images (lower --num-images)."
        )
    collected = collect_ranges(source, data, request, progress)
    ranges = {m: c.ranges for m, c in collected.items()}
    files = write_trials(source.path, ranges, request.forms, work, exclude=request.exclude)
    from alexnet_deploy.backends.verification import verify_file

    reference = verify_file(source.path, data.holdout).logits if request.chooses else None
    scores = _scores(files, data.holdout, reference, progress) if reference is not None else {}
    trials = tuple(_trial(f, collected, scores.get(f.path)) for f in files)
    results = {form: _result(request, data, trials, files, ranges, form) for form in request.forms}
    return refine_forms(source, data, results, request.refinements, reference, work, progress)


def _scores(files: list[QdqTrial], holdout: PreparedImages, reference, progress) -> dict[Path, dict]:
    """Held-out figures of every trial file against the FP32 logits (:func:`calib.results.score_file`)."""
    scores = {}
    for i, f in enumerate(files):
        scores[f.path] = score_file(f.path, holdout, reference)
        if progress:
            progress("Comparing calibrations", i + 1, len(files))
    return scores


def _trial(f: QdqTrial, collected: dict[CalibrationMethod, CollectedRanges], score) -> CalibrationTrial:
    mine = collected[CalibrationMethod(f.method)]
    minmax = collected.get(CalibrationMethod.MINMAX)
    return CalibrationTrial(f.method, f.form, mine.cache, mine.seconds, score, _vs_minmax(mine, minmax, f.tensors))


def _vs_minmax(mine: CollectedRanges, minmax: CollectedRanges | None, tensors) -> dict[str, float] | None:
    """How far a method's ranges sit inside MinMax's, over the tensors one form quantizes."""
    if minmax is None or mine.method is CalibrationMethod.MINMAX:
        return None
    ratios = [r for name, r in mine.ranges.ratio_to(minmax.ranges).items() if name in tensors]
    if not ratios:
        return None
    return {
        "median_amax_ratio": statistics.median(ratios),
        "min_amax_ratio": min(ratios),
        "clipped_tensors": sum(r < 0.999 for r in ratios),
        "tensors": len(ratios),
    }


def _result(request, data, trials, files, ranges, form: str) -> CalibrationResult:
    """A form's result: the trial of that form that ranks first, and its file."""
    best = max((t for t in trials if t.form == form), key=lambda t: t.rank)
    method = CalibrationMethod(best.method)
    path = next(f.path for f in files if f.method == best.method and f.form == form)
    return CalibrationResult(
        path=path, method=method, form=form_named(form), ranges=ranges[method], settings=request.settings,
        data=data.describe(), trials=trials, excluded=request.exclude, structure=describe_qdq(path),
    )  # fmt: skip


def requantize(
    source: SourceModel, result: CalibrationResult, exclude: tuple[str, ...], path: Path
) -> CalibrationResult:
    """``result`` written again to ``path`` (atomically, no sidecar) with the ``exclude`` nodes left in float too.
    A refinement is computed again for them: the layers after a float one were refined from inputs that are float
    now."""
    excluded = tuple(sorted(set(result.excluded) | set(exclude)))
    refinement = result.refinement.for_excluded(excluded) if result.refinement is not None else None
    weights = refinement.weights if refinement is not None else None
    write_qdq(source.path, path, result.ranges, result.form, exclude=excluded, weights=weights)
    return replace(result, path=path, excluded=excluded, structure=describe_qdq(path), refinement=refinement)


def place_calibrated(source: SourceModel, result: CalibrationResult, out: Path) -> CalibrationResult:
    """Move the result's Q/DQ file into place as ``out``, then write its sidecar: the pair as one unit
    (:func:`~alexnet_deploy.core.manifest.place_artifact`)."""
    m = source.manifest
    manifest = Manifest(
        kind="onnx",
        model=dict(m.model),
        classes=list(m.classes),
        class_names=list(m.class_names),
        input=dict(m.input),
        output=dict(m.output),
        preprocessing=dict(m.preprocessing),
        precision="int8",
        calibration=result.to_dict(),
        source={"path": str(source.path), "sha256": source.sha256, "precision": "fp32"},
        extra={"layers": {layer.node: layer.label for layer in quantizable_layers(source.path)}},
        other_fields=dict(m.other_fields),  # keys this release does not know travel on, never silently dropped
    )
    place_artifact(result.path, out, manifest)
    return replace(result, path=out)
