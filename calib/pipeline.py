"""Calibrate an FP32 ONNX into INT8 Q/DQ ONNX files, in four steps that each take the previous step's result:

1. **images**: :func:`calib.reader.load_calibration_data` decodes the calibration images (and, when there is a
   choice to make, held-out images of the same folder) through the model's own preprocessing;
2. **ranges**: :func:`calib.cache.collect_ranges` gives every method's ranges, from the cache or computed;
3. **Q/DQ files**: :func:`calib.qdq.write_trials` writes one file per method and Q/DQ form;
4. **scores**: each file is run on the held-out images (:func:`alexnet_deploy.backends.verification.verify_file`)
   and every form keeps the method that agrees best with FP32 there.

:func:`calibrate_forms` runs those four steps and returns each form's choice (``build --int8`` compiles each one);
:func:`calibrate` (``alexnet-deploy calibrate``) keeps the best form and places it with its sidecar.
:func:`requantize` writes a result again with more layers left in float (the build's fallback).
"""

from __future__ import annotations

import contextlib
import logging
import statistics
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from alexnet_deploy.core.data import Preprocessing
from alexnet_deploy.core.errors import ArtifactError, ConfigError
from alexnet_deploy.core.files import output_lock, scratch_dir, sha256_file, work_dir
from alexnet_deploy.core.images import PreparedImages, ProgressFn
from alexnet_deploy.core.manifest import Manifest, place_artifact, refuse_linked_pair
from alexnet_deploy.core.vocab import CalibrationMethod
from calib.cache import CollectedRanges, collect_ranges
from calib.methods import Ranges
from calib.qdq import (
    QdqForm,
    QdqTrial,
    describe_qdq,
    form_named,
    load_graph,
    quantizable_layers,
    write_qdq,
    write_trials,
)
from calib.reader import CalibrationData, load_calibration_data
from calib.request import CalibrationRequest, RangeSettings

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


@dataclass(frozen=True)
class CalibrationTrial:
    """One calibration tried: method and form, where its ranges came from, and how it did on held-out images."""

    method: str
    form: str
    cache: str  # "hit", "miss", "stale" or "off"
    seconds: float
    holdout: dict[str, float | None] | None = None  # agreement_top1, top1, top5, top1_delta, top5_delta
    vs_minmax: dict[str, float] | None = None  # how this method's ranges compare with MinMax's

    @property
    def rank(self) -> tuple[float, float]:
        """Trials are chosen by top-1 agreement with FP32 on the held-out images, then by top-1."""
        if self.holdout is None:  # nothing to choose between
            return 0.0, 0.0
        return self.holdout["agreement_top1"] or 0.0, self.holdout["top1"] or 0.0

    def to_dict(self, chosen: bool = False) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("method", "form", "cache", "seconds", "holdout", "vs_minmax")} | {
            "chosen": chosen
        }


@dataclass(frozen=True)
class CalibrationResult:
    """One form's calibration: the Q/DQ file written, the method chosen, every trial, and what the file quantizes.

    ``path`` is a work file until :func:`calibrate` places it (or a build compiles it).
    """

    path: Path
    method: CalibrationMethod
    form: QdqForm
    ranges: Ranges
    settings: RangeSettings
    data: dict[str, Any]
    trials: tuple[CalibrationTrial, ...]
    excluded: tuple[str, ...] = ()
    structure: dict[str, Any] = field(default_factory=dict)

    @property
    def trial(self) -> CalibrationTrial:
        """The trial this result's method and form were."""
        return next(t for t in self.trials if t.method == self.method.value and t.form == self.form.name)

    def to_dict(self) -> dict[str, Any]:
        """The sidecar's ``calibration`` field."""
        mine = self.trial
        return {
            "method": self.method.value,
            "form": self.form.name,
            "options": self.settings.key(self.method),
            "data": self.data,
            "candidates": [t.to_dict(chosen=t is mine) for t in self.trials],
            "selection": "highest top-1 agreement with FP32 on the held-out calibration images, then top-1",
            "quantized_layers": self.structure.get("quantized", []),
            "float_layers": self.structure.get("float", []),
            "excluded_nodes": list(self.excluded),
            "activations": "symmetric int8, per tensor"
            if self.form.symmetric_activations
            else "asymmetric uint8, per tensor",
            "weights": "symmetric int8, per output channel",
            "bias": "int32" if self.form.quantize_bias else "float",
        }


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
        raise ConfigError("Choosing a calibration needs held-out images; the calibration folder is too small.")
    collected = collect_ranges(source, data, request, progress)
    ranges = {m: c.ranges for m, c in collected.items()}
    files = write_trials(source.path, ranges, request.forms, work, exclude=request.exclude)
    scores = _scores(source, files, data.holdout, progress) if request.chooses else {}
    trials = tuple(_trial(f, collected, scores.get(f.path)) for f in files)
    return {form: _result(request, data, trials, files, ranges, form) for form in request.forms}


def _scores(source: SourceModel, files: list[QdqTrial], holdout: PreparedImages, progress) -> dict[Path, dict]:
    """Held-out figures of every trial file against the FP32 model; top-1/top-5 are ``None`` when the images'
    labels are not the model's."""
    from alexnet_deploy.backends.verification import verify_file

    reference = verify_file(source.path, holdout).logits
    scores = {}
    for i, f in enumerate(files):
        c = verify_file(f.path, holdout, reference).comparison
        labelled = not (holdout.targets < 0).all()
        scores[f.path] = {
            "agreement_top1": c["agreement_top1"],
            "top1_delta": c["top1_delta"] if labelled else None,
            "top5_delta": c["top5_delta"] if labelled else None,
            "top1": c["reference_top1"] + c["top1_delta"] if labelled else None,
            "top5": c["reference_top5"] + c["top5_delta"] if labelled else None,
        }
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
    """``result`` written again to ``path`` (atomically, no sidecar) with the ``exclude`` nodes left in float too."""
    excluded = tuple(sorted(set(result.excluded) | set(exclude)))
    write_qdq(source.path, path, result.ranges, result.form, exclude=excluded)
    return replace(result, path=path, excluded=excluded, structure=describe_qdq(path))


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
