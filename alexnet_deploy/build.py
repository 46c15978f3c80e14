"""``build``: an FP32 ONNX -> an FP16, BF16 or INT8 engine whose accuracy is proven, as a pipeline of steps over
one frozen :class:`~alexnet_deploy.requests.BuildRequest`, each step returning a frozen result for the next:

1. **prepare** (:func:`_prepare` -> :class:`Prepared`): open the source model, decode the evaluation images (their
   classes checked) and the calibration images, run the FP32 reference, and list the candidates: the backend
   asked for, or with ``auto`` every backend that can build *and verify* here
   (:func:`alexnet_deploy.selection.choose_backends`). Bad input costs seconds and writes nothing.
2. **deployable ONNX** (:func:`_deployables`): the FP16 graph (``export.convert_fp16``), the FP32 graph (BF16 is
   OpenVINO's inference precision on it), or one INT8 Q/DQ graph per Q/DQ form the candidates take
   (:func:`calib.pipeline.calibrate_forms`, method ``auto`` by default: minmax, entropy and percentile compared
   on held-out calibration images).
3. **compile, verify** each candidate in a staging folder beside the output
   (:func:`~alexnet_deploy.selection.compile_candidate`, :func:`~alexnet_deploy.selection.verify_compiled`):
   *that engine file* against the FP32 ONNX on the evaluation images (top-1, top-5, agreement, per-class deltas,
   the gate); an engine that cannot run here (TensorRT-RTX without a supported GPU) is verified on its
   deployable ONNX in ONNX Runtime, and the sidecar says so.
4. **fallback** (INT8, :func:`_fallback`): when no candidate passes, the layers are ranked on held-out
   calibration images (:func:`alexnet_deploy.sensitivity.rank_layers`) and the most sensitive are left in float,
   one more at a time, each attempt re-quantized, recompiled and re-verified.
5. **probe speed, choose** (:func:`~alexnet_deploy.selection.probe_speed`, :func:`~alexnet_deploy.selection.choose`):
   with passing candidates, their speed is measured side by side with the FP32 engine of each runtime and the
   fastest is chosen; every candidate's figures go into the sidecar, and an INT8 engine slower than FP32 on its
   runtime is said, never chosen silently.
6. **write**: the engine is renamed into place, then its sidecar; when the gate fails nothing is written
   (``force``: written, marked failed) and :class:`BuildGateError` is raised.

Each step is entered from here and calls only downwards (docs/ARCHITECTURE.md draws the path).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from alexnet_deploy.backends.verification import verify_file
from alexnet_deploy.core.accuracy import GateResult, metrics
from alexnet_deploy.core.errors import ConfigError, GateError
from alexnet_deploy.core.files import link_into, output_lock, work_dir
from alexnet_deploy.core.images import PreparedImages, ProgressFn, describe_skipped, load_eval_images
from alexnet_deploy.core.manifest import Manifest, place_artifact, refuse_linked_pair
from alexnet_deploy.core.vocab import BackendName, Precision
from alexnet_deploy.requests import BuildRequest
from alexnet_deploy.selection import (
    BuildChoice,
    Candidate,
    VerifiedEngine,
    choose,
    choose_backends,
    compile_candidate,
    place_blob,
    probe_speed,
    verify_compiled,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildResult:
    """Everything a build measured and decided; ``path`` is None when nothing was written."""

    path: Path | None
    backend: str
    backend_reason: str
    precision: str
    passed: bool
    forced: bool
    gate: GateResult
    fp32: dict[str, Any]  # metrics() of the FP32 ONNX on the eval images
    engine: dict[str, Any]  # metrics() of the engine
    comparison: dict[str, Any]  # compare(engine, fp32)
    eval_data: str
    calibration: dict[str, Any] | None = None
    fallback: dict[str, Any] = field(default_factory=dict)
    engine_facts: dict[str, Any] = field(default_factory=dict)
    verified_on: str = ""
    selection: dict[str, Any] = field(default_factory=dict)  # every candidate's figures, and why one was chosen
    notes: tuple[str, ...] = ()  # what a user must hear (an INT8 engine slower than FP32...)

    def summary(self) -> dict[str, Any]:
        """The figures a summary table shows."""
        return {
            "output": str(self.path) if self.path else None,
            "backend": self.backend,
            "precision": self.precision,
            "fp32_top1": self.fp32["top1"],
            "fp32_top5": self.fp32["top5"],
            "top1": self.engine["top1"],
            "top5": self.engine["top5"],
            "agreement_top1": self.comparison["agreement_top1"],
            "passed": self.passed,
        }


class BuildGateError(GateError):
    """The engine failed the accuracy gate; ``result`` holds the figures (and ``path`` when forced)."""

    def __init__(self, message: str, result: BuildResult) -> None:
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class Prepared:
    """What step 1 prepared, shared by every candidate."""

    source: Any  # calib.pipeline.SourceModel
    images: PreparedImages
    reference: np.ndarray  # FP32 logits on ``images``
    fp32: dict[str, Any]
    data: Any  # calib.reader.CalibrationData, INT8 only
    candidates: tuple[Candidate, ...]
    reason: str


def default_output(model: str | Path, precision: str, backend: str | BackendName) -> Path:
    """``model.fp32.onnx`` -> ``model.int8.plan`` (TensorRT), ``model.int8.rtx.plan``, ``model.int8.ov.onnx``
    (OpenVINO) or ``model.int8.ort.onnx`` (ONNX Runtime): the registry's suffix of the backend."""
    from alexnet_deploy.backends import backend_spec

    model = Path(model)
    stem = model.name.removesuffix(".onnx").removesuffix(".fp32")
    return model.with_name(f"{stem}.{Precision.parse(precision)}.{backend_spec(backend).suffix}")


def build(
    model: str | Path,
    eval_data: str | Path,
    request: BuildRequest | None = None,
    out: str | Path | None = None,
    progress: ProgressFn | None = None,
) -> BuildResult:
    """Build a verified engine from an FP32 ONNX (an export, with its sidecar); see the module docstring.

    Args:
        model: the FP32 ONNX.
        eval_data: images for the accuracy gate (an ImageFolder, or a root whose ``val/`` is used).
        request: :class:`BuildRequest` (INT8 calibration images in ``request.calibration.data``).
        out: the engine file (default: :func:`default_output` of the chosen backend); with ``auto``, its ending
            (``.onnx`` / ``.plan``) limits the candidates to backends that write such files.

    Returns:
        :class:`BuildResult` of a build that passed the gate.

    Raises:
        BuildGateError: the gate failed (nothing written unless ``force``); ``.result`` has the figures.
        DataError / ArtifactError / ConfigError / MissingBackendError: bad inputs, caught before anything is written.
    """
    request = request or BuildRequest()
    out = refuse_linked_pair(out) if out is not None else None
    if out is not None and out.is_dir():
        raise ConfigError(f"The output {out} is a folder; give a file name.")
    with output_lock(out) if out is not None else contextlib.nullcontext():
        prepared = _prepare(model, eval_data, request, out, progress)
        with work_dir(out or prepared.source.path, "build") as staging:
            deployables, calibrations = _deployables(prepared, request, staging, progress)
            verified = [
                _compile_and_verify(c, deployables[c.form], prepared, request, progress) for c in prepared.candidates
            ]
            if request.precision is Precision.INT8 and not any(v.passed for v in verified):
                verified, calibrations = _fallback(verified, prepared, calibrations, request, progress)
            choice = _choose(verified, prepared, request, progress)
            result = _result(prepared, request, choice, calibrations)
            if result.passed or request.force:
                target = out or default_output(prepared.source.path, request.precision, result.backend)
                with output_lock(target) if out is None else contextlib.nullcontext():
                    manifest = _manifest(prepared, result, choice.chosen)
                    place_blob(choice.chosen, target, manifest)  # an exported OpenVINO blob, before its engine
                    place_artifact(choice.chosen.compiled.engine, target, manifest)
                result = replace(result, path=target, engine_facts=manifest.engine)  # the blob by its final name
    if not result.passed:
        where = f"; written anyway to {result.path} (marked failed)" if request.force else "; no engine was written"
        raise BuildGateError(
            f"The {result.precision} engine failed the accuracy gate: {result.gate.reason}{where}.", result
        )
    return result


def _prepare(model, eval_data, request: BuildRequest, out: Path | None, progress) -> Prepared:
    from calib.pipeline import open_source_model

    source = open_source_model(model)
    candidates, reason = choose_backends(request.precision, request.backend, out)
    log.info("Backend: %s.", reason)
    images = load_eval_images(
        eval_data, source.manifest.classes, source.preprocessing, limit=request.verify.limit, progress=progress,
        model_names=source.manifest.class_names,
    )  # fmt: skip
    data = None
    if request.precision is Precision.INT8:
        from calib.reader import load_calibration_data

        if request.calibration.data is None:
            raise ConfigError("An INT8 build needs calibration images (--calib-data).")
        # Held-out images are loaded even for one method: the fallback ranks layers on them, not on eval data.
        data = load_calibration_data(request.calibration, source.preprocessing, progress=progress)
    reference = verify_file(source.path, images, request=request.verify, progress=progress).logits
    fp32 = metrics(reference, images.targets, len(source.manifest.classes))
    return Prepared(source, images, reference, fp32, data, tuple(candidates), reason)


def _deployables(prepared: Prepared, request: BuildRequest, staging: Path, progress) -> tuple[dict, dict]:
    """Each candidate's deployable ONNX, written into ``staging``: ``({form or None: path}, {form: calibration})``
    (the calibrations, INT8 only, by Q/DQ form)."""
    source, precision = prepared.source, request.precision
    if precision is Precision.BF16:  # OpenVINO computes in bf16 from the FP32 graph itself
        # A link in staging, so that each engine is compiled into the staging folder, never beside the source.
        return {None: link_into(staging, source.path, "model.fp32.onnx")}, {}
    if precision is Precision.FP16:
        from export import convert_fp16

        deployable = staging / "model.fp16.onnx"
        convert_fp16(source.path, deployable, eval_data=prepared.images.root)
        return {None: deployable}, {}
    from calib.pipeline import calibrate_forms

    forms = tuple(sorted({c.form for c in prepared.candidates}))
    work = staging / "calibration"
    work.mkdir()
    calibrations = calibrate_forms(
        source, replace(request.calibration, forms=forms), work, prepared.data, progress
    )  # fmt: skip
    return {form: c.path for form, c in calibrations.items()}, calibrations


def _compile_and_verify(cand: Candidate, deployable: Path, prepared: Prepared, request: BuildRequest, progress):
    """Step 3 for one candidate: compile its deployable ONNX, then verify the file written."""
    compiled = compile_candidate(cand, deployable, prepared.source.manifest, request)
    return verify_compiled(compiled, prepared.images, prepared.reference, request.verify, progress)


def _fallback(verified: list[VerifiedEngine], prepared: Prepared, calibrations: dict, request: BuildRequest, progress):
    """No INT8 candidate passed: leave the most sensitive layers of the one closest to FP32 in float, one more at a
    time (at most ``request.max_fallback_layers``), until it passes the gate.

    The layers are ranked on held-out *calibration* images (never the evaluation set); each attempt re-quantizes
    the candidate's deployable ONNX, recompiles and re-verifies it.

    Returns:
        The candidates with that one replaced by its last attempt (whose ``fallback`` records the ranking and
        every attempt), and the calibrations with its form's replaced by the one it was quantized with.
    """
    from alexnet_deploy.sensitivity import rank_layers
    from calib.pipeline import requantize

    if request.max_fallback_layers < 1:
        return verified, calibrations
    best = max(verified, key=lambda v: v.comparison["agreement_top1"])
    src, data, calibration = prepared.source, prepared.data, calibrations[best.candidate.form]
    rank_images = data.holdout if data.holdout is not None and len(data.holdout) else data.calibration
    reference = verify_file(src.path, rank_images).logits
    ranking = rank_layers(src.path, calibration, rank_images, reference, progress)
    attempts, current, requantized = [_attempt([], best)], best, calibration
    for k in range(1, min(request.max_fallback_layers, len(ranking)) + 1):
        excluded = ranking[:k]
        log.warning("The gate failed; leaving %s in float.", ", ".join(r.label for r in excluded))
        requantized = requantize(src, calibration, tuple(r.node for r in excluded), best.compiled.deployable)
        current = _compile_and_verify(best.candidate, requantized.path, prepared, request, progress)
        attempts.append(_attempt([r.label for r in excluded], current))
        if current.passed:
            break
    record = {
        "ranked_on": f"{len(rank_images)} held-out calibration images (not the evaluation set)",
        "ranking": [r.to_dict() for r in ranking],
        "attempts": attempts,
        "float_layers": attempts[-1]["float_layers"],
        "float_nodes": list(requantized.excluded),
        "max_layers": request.max_fallback_layers,
    }
    fixed = replace(current, fallback=record)
    return [fixed if v is best else v for v in verified], calibrations | {best.candidate.form: requantized}


def _attempt(float_layers: list[str], v: VerifiedEngine) -> dict[str, Any]:
    return {
        "float_layers": float_layers,
        "top1": v.metrics["top1"],
        "top5": v.metrics["top5"],
        "agreement_top1": v.comparison["agreement_top1"],
        "passed": v.passed,
    }


def _choose(verified: list[VerifiedEngine], prepared: Prepared, request: BuildRequest, progress) -> BuildChoice:
    """The fastest passing candidate, measured when there is a choice (and for one candidate: is it faster than
    FP32 on its runtime?)."""
    measurable = [v for v in verified if v.passed and v.engine_run]
    speeds = {}
    if request.probe.batches and measurable:
        speeds = probe_speed(measurable, prepared.source.path, request.probe, request.verify.threads, progress)
    return choose(verified, speeds, request.backend)


def _result(prepared: Prepared, request: BuildRequest, choice: BuildChoice, calibrations: dict) -> BuildResult:
    chosen = choice.chosen
    calibration = calibrations.get(chosen.candidate.form) if chosen.candidate.form else None
    return BuildResult(
        path=None,
        backend=chosen.candidate.backend.value,
        backend_reason=prepared.reason,
        precision=request.precision.value,
        passed=chosen.passed,
        forced=request.force and not chosen.passed,
        gate=chosen.gate,
        fp32=prepared.fp32,
        engine=chosen.metrics,
        comparison=chosen.comparison,
        eval_data=str(prepared.images.root),
        calibration=calibration.to_dict() if calibration else None,
        fallback=chosen.fallback,
        engine_facts=chosen.facts,
        verified_on=chosen.verified_on,
        selection=choice.selection,
        notes=choice.notes,
    )


def _present(classes: list[str], values: list) -> dict:
    return {c: v for c, v in zip(classes, values, strict=True) if v is not None}


def _manifest(prepared: Prepared, result: BuildResult, chosen: VerifiedEngine) -> Manifest:
    """The engine's sidecar: what it is, how it was made, and what it measured."""
    source, images = prepared.source, prepared.images
    classes = list(source.manifest.classes)
    accuracy = {
        "eval_data": result.eval_data,
        "num_images": len(images),
        **describe_skipped(images.skipped),  # every unreadable file the evaluation met, also of a --eval-limit subset
        "fp32": {"top1": result.fp32["top1"], "top5": result.fp32["top5"]},
        result.precision: {"top1": result.engine["top1"], "top5": result.engine["top5"]},
        "top1": result.engine["top1"],
        "top5": result.engine["top5"],
        "agreement_top1": result.comparison["agreement_top1"],
        "top1_delta": result.comparison["top1_delta"],
        "top5_delta": result.comparison["top5_delta"],
        **images.coverage.to_dict(),  # per-class figures for the classes the data holds only
        "per_class_top1": _present(classes, result.engine["per_class_top1"]),
        "per_class_top1_delta": _present(classes, result.comparison["per_class_top1_delta"]),
        "verified_file_sha256": chosen.verified_sha256,
        "verified_on": chosen.verified_on,
        "verified_with": chosen.verification.runner,
    }
    gate = result.gate.to_dict() | {"status": "passed" if result.passed else "failed", "forced": result.forced}
    return replace(
        chosen.compiled.provisional,
        engine=chosen.facts,
        calibration=result.calibration or {},
        accuracy=accuracy,
        gate=gate,
        source={
            "path": str(source.path),
            "sha256": source.sha256,
            "precision": "fp32",
            "deployable_onnx_sha256": chosen.compiled.deployable_sha256,
        },  # fmt: skip
        extra={
            "backend_reason": result.backend_reason,
            "fallback": result.fallback,
            "selection": result.selection,
            "notes": list(result.notes),
        },  # fmt: skip
    )
