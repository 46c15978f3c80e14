"""``build``: an FP32 ONNX -> an FP16, BF16 or INT8 engine whose accuracy is proven, in three steps.

1. **Prepare** (:func:`_prepare`): open the source model, decode the evaluation images (their classes checked) and
   the calibration images, run the FP32 reference, and list the candidate backends: the one asked for, or with
   ``auto`` every backend that can build *and verify* here (:mod:`alexnet_deploy.selection`). Bad input costs
   seconds and writes nothing.
2. **Make the deployable ONNX** (:func:`_deployables`): the FP16 graph (``export.convert_fp16``), the FP32 graph
   (BF16 is OpenVINO's inference precision on it), or one INT8 Q/DQ graph per Q/DQ form the candidates take
   (:func:`calib.calibrate_forms`, method ``auto`` by default: minmax, entropy and percentile compared on
   held-out calibration images).
3. **Compile and verify** (:func:`_compile_and_verify`) each candidate in a staging folder beside the output,
   *that engine file* against the FP32 ONNX on the evaluation images (top-1, top-5, agreement, per-class deltas,
   the gate); an engine that cannot run here (TensorRT-RTX without a supported GPU) is verified on its
   deployable ONNX in ONNX Runtime, and the sidecar says so. INT8 only: when no candidate passes, the most
   sensitive layers are left in float, one more at a time (:func:`alexnet_deploy.sensitivity.fallback`).
   With several passing candidates, their speed is measured side by side with the FP32 engine of each runtime
   and the fastest is chosen; every candidate's figures go into the sidecar, and an INT8 engine slower than
   FP32 on its own runtime is said, never chosen silently. The engine is renamed into place, then its sidecar;
   when the gate fails nothing is written (``force``: written, marked failed) and :class:`BuildGateError` is
   raised.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from alexnet_deploy.core.accuracy import GateResult, metrics
from alexnet_deploy.core.errors import ConfigError, GateError
from alexnet_deploy.core.files import output_lock, work_dir
from alexnet_deploy.core.images import PreparedImages, ProgressFn, describe_skipped, load_eval_images
from alexnet_deploy.core.manifest import Manifest, place_artifact
from alexnet_deploy.core.vocab import BackendName, Precision
from alexnet_deploy.options import BuildOptions
from alexnet_deploy.selection import Candidate, choose_backends, probe_speed, select

log = logging.getLogger(__name__)


class BuildGateError(GateError):
    """The engine failed the accuracy gate; ``result`` holds the figures (and ``path`` when forced)."""

    def __init__(self, message: str, result: BuildResult) -> None:
        super().__init__(message)
        self.result = result


@dataclass
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
    notes: list[str] = field(default_factory=list)  # what a user must hear (an INT8 engine slower than FP32...)

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


@dataclass
class _Inputs:
    """What step 1 prepared, shared by every candidate."""

    source: Any  # calib.pipeline.SourceModel
    images: PreparedImages
    reference: np.ndarray  # FP32 logits on ``images``
    fp32: dict[str, Any]
    data: Any  # calib.reader.CalibrationData, INT8 only
    candidates: list[Candidate]
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
    calib_data: str | Path | None = None,
    options: BuildOptions | None = None,
    *,
    out: str | Path | None = None,
    progress: ProgressFn | None = None,
) -> BuildResult:
    """Build a verified engine from an FP32 ONNX (an export, with its sidecar); see the module docstring.

    Args:
        model: the FP32 ONNX.
        eval_data: images for the accuracy gate (an ImageFolder, or a root whose ``val/`` is used).
        calib_data: INT8 calibration images (an ImageFolder, or a root whose ``train/`` is used).
        options: :class:`BuildOptions`.
        out: the engine file (default: :func:`default_output` of the chosen backend); with ``auto``, its ending
            (``.onnx`` / ``.plan``) limits the candidates to backends that write such files.

    Returns:
        :class:`BuildResult` of a build that passed the gate.

    Raises:
        BuildGateError: the gate failed (nothing written unless ``force``); ``.result`` has the figures.
        DataError / ArtifactError / ConfigError / MissingBackendError: bad inputs, caught before anything is written.
    """
    options = options or BuildOptions()
    out = Path(out) if out is not None else None
    if out is not None and out.is_dir():
        raise ConfigError(f"The output {out} is a folder; give a file name.")
    with output_lock(out) if out is not None else contextlib.nullcontext():
        inputs = _prepare(model, eval_data, calib_data, options, out, progress)
        with work_dir(out or inputs.source.path, "build") as staging:
            calibrations = _deployables(inputs, options, staging, progress)
            for cand in inputs.candidates:
                _compile_and_verify(cand, inputs, options, progress)
            chosen = _choose(inputs, options, calibrations, staging, progress)
            result = _result(inputs, options, chosen, calibrations)
            if result.passed or options.force:
                target = out or default_output(inputs.source.path, options.precision, chosen.backend)
                with output_lock(target) if out is None else contextlib.nullcontext():
                    place_artifact(chosen.engine, target, _manifest(inputs, result, chosen))
                result.path = target
    if not result.passed:
        where = f"; written anyway to {result.path} (marked failed)" if options.force else "; no engine was written"
        raise BuildGateError(
            f"The {result.precision} engine failed the accuracy gate: {result.gate.reason}{where}.", result
        )
    return result


def _prepare(model, eval_data, calib_data, options: BuildOptions, out: Path | None, progress) -> _Inputs:
    from calib.pipeline import fp32_logits, open_source_model

    source = open_source_model(model)
    candidates, reason = choose_backends(options.precision, options.backend, out)
    log.info("Backend: %s.", reason)
    images = load_eval_images(
        eval_data, source.manifest.classes, source.preprocessing, limit=options.eval_limit, progress=progress
    )
    data = None
    if options.precision is Precision.INT8:
        from calib.reader import load_calibration_data

        if calib_data is None:
            raise ConfigError("An INT8 build needs calibration images (--calib-data).")
        # Held-out images are loaded even for one method: the fallback ranks layers on them, not on eval data.
        data = load_calibration_data(
            calib_data, source.preprocessing, num_images=options.num_calib_images,
            holdout_images=options.holdout_images, seed=options.seed, progress=progress,
        )  # fmt: skip
    reference = fp32_logits(source, images)
    fp32 = metrics(reference, images.targets, len(source.manifest.classes))
    return _Inputs(source, images, reference, fp32, data, candidates, reason)


def _deployables(inputs: _Inputs, options: BuildOptions, staging: Path, progress) -> dict[str, Any]:
    """Write each candidate's deployable ONNX into ``staging``; return the calibrations by Q/DQ form (INT8)."""
    source, precision = inputs.source, options.precision
    if precision is Precision.BF16:  # OpenVINO computes in bf16 from the FP32 graph itself
        for cand in inputs.candidates:
            cand.deployable = source.path
        return {}
    if precision is Precision.FP16:
        from export import convert_fp16

        deployable = staging / "model.fp16.onnx"
        convert_fp16(source.path, deployable, eval_data=inputs.images.root)
        for cand in inputs.candidates:
            cand.deployable = deployable
        return {}
    from calib.pipeline import calibrate_forms, write_calibrated
    from calib.qdq import form_named

    forms = sorted({c.form for c in inputs.candidates})
    per_form = calibrate_forms(
        source, None, [form_named(f) for f in forms], method=options.calib_method, options=options.calibration,
        cache_dir=options.cache_dir, use_cache=options.use_cache, data=inputs.data, progress=progress,
        work_beside=staging / "calibration",
    )  # fmt: skip
    for name, calibration in per_form.items():
        write_calibrated(source, calibration, staging / f"model.int8.{name}.onnx")
    for cand in inputs.candidates:
        cand.deployable = staging / f"model.int8.{cand.form}.onnx"
    return per_form


def _compile_and_verify(cand: Candidate, inputs: _Inputs, options: BuildOptions, progress) -> None:
    """Compile ``cand.deployable`` for its backend into the staging folder and verify the file written."""
    from alexnet_deploy.selection import compile_candidate, verify_candidate

    compile_candidate(cand, inputs.source.manifest, options.precision, options.engine_options)
    verify_candidate(cand, inputs.images, inputs.reference, options.gate, options.batch_size, options.threads,
                     progress)  # fmt: skip


def _choose(inputs: _Inputs, options: BuildOptions, calibrations, staging: Path, progress) -> Candidate:
    """The fastest passing candidate (measured when there is a choice), or the fallback's when none passes."""
    passing = [c for c in inputs.candidates if c.gate.passed]
    if not passing and options.precision is Precision.INT8 and options.max_fallback_layers > 0:
        from alexnet_deploy.sensitivity import fallback

        best = max(inputs.candidates, key=lambda c: c.comparison["agreement_top1"])
        fallback(best, inputs, calibrations[best.form], options, progress)
        passing = [best] if best.gate.passed else []
    if not passing:
        return select(inputs.candidates, options.backend)
    measurable = [c for c in passing if c.engine_run]
    if options.probe_batches and measurable:  # also for one candidate: is it faster than FP32 on its runtime?
        probe_speed(measurable, inputs.source.path, options.probe_batches, options.probe_seconds, options.threads,
                    progress)  # fmt: skip
    return select(inputs.candidates, options.backend)


def _result(inputs: _Inputs, options: BuildOptions, chosen: Candidate, calibrations) -> BuildResult:
    calibration = calibrations.get(chosen.form) if chosen.form else None
    if calibration is not None:
        calibration.mark_chosen()
    passed = chosen.gate.passed
    return BuildResult(
        path=None,
        backend=chosen.backend.value,
        backend_reason=inputs.reason,
        precision=options.precision.value,
        passed=passed,
        forced=options.force and not passed,
        gate=chosen.gate,
        fp32=inputs.fp32,
        engine=chosen.metrics,
        comparison=chosen.comparison,
        eval_data=str(inputs.images.root),
        calibration=calibration.to_dict() if calibration else None,
        fallback=chosen.fallback,
        engine_facts=chosen.facts,
        verified_on=chosen.verified_on,
        selection=chosen.selection,
        notes=list(chosen.notes),
    )


def _manifest(inputs: _Inputs, result: BuildResult, chosen: Candidate) -> Manifest:
    """The engine's sidecar: what it is, how it was made, and what it measured."""
    source, images = inputs.source, inputs.images
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
        "per_class_top1": dict(zip(classes, result.engine["per_class_top1"], strict=True)),
        "per_class_top1_delta": dict(zip(classes, result.comparison["per_class_top1_delta"], strict=True)),
        "verified_file_sha256": chosen.verified_sha256,
        "verified_on": chosen.verified_on,
        "verified_with": chosen.verified_with,
    }
    gate = result.gate.to_dict() | {"status": "passed" if result.passed else "failed", "forced": result.forced}
    return replace(
        chosen.provisional,
        calibration=result.calibration or {},
        accuracy=accuracy,
        gate=gate,
        source={
            "path": str(source.path),
            "sha256": source.sha256,
            "precision": "fp32",
            "deployable_onnx_sha256": chosen.deployable_sha256,
        },  # fmt: skip
        extra={
            "backend_reason": result.backend_reason,
            "fallback": result.fallback,
            "selection": result.selection,
            "notes": result.notes,
        },  # fmt: skip
    )
