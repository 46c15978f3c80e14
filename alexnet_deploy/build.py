"""``build``: an FP32 ONNX -> an FP16 or INT8 engine for TensorRT or ONNX Runtime, whose accuracy is proven.

The pipeline:

1. check everything that can be checked cheaply first (the model's input, the classes of ``eval_data``, the
   calibration folder), so a bad input costs seconds and writes nothing;
2. make the deployable ONNX: the FP16 graph (``export.convert_fp16``) or the INT8 Q/DQ graph
   (:func:`calib.calibrate`, method ``auto`` by default: minmax, entropy and percentile compared on held-out
   calibration images);
3. compile it for the backend (``auto``: TensorRT when the doctor's probe finds it usable, else ONNX Runtime on
   the CPU), in a staging folder beside the output;
4. verify *that engine file* against the FP32 ONNX on ``eval_data``: top-1, top-5, top-1 agreement, per-class
   deltas, and the gate (top-1 and top-5 may each drop at most 0.5 point by default);
5. INT8 only, when the gate fails: rank the layers by the harm of quantizing each alone (on held-out calibration
   images), and leave the most sensitive ones in float, one more at a time, until the gate passes;
6. move the engine and its sidecar into place, or, when the gate still fails, write nothing (``force``: write
   it with ``gate.passed = false``) and raise :class:`BuildGateError`.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from alexnet_deploy.core.accuracy import Gate, GateResult, compare, metrics
from alexnet_deploy.core.errors import ConfigError, GateError, MissingBackendError
from alexnet_deploy.core.files import sha256_file
from alexnet_deploy.core.images import PreparedImages, ProgressFn, load_eval_images
from alexnet_deploy.core.manifest import Manifest, save_manifest

log = logging.getLogger(__name__)

BACKENDS = ("auto", "tensorrt", "onnxruntime")
PRECISIONS = ("fp16", "int8")


class BuildGateError(GateError):
    """The engine failed the accuracy gate; ``result`` holds the figures (and ``path`` when forced)."""

    def __init__(self, message: str, result: BuildResult) -> None:
        super().__init__(message)
        self.result = result


def resolve_backend(backend: str) -> tuple[str, str]:
    """``auto`` -> ``tensorrt`` when TensorRT is usable here, else ``onnxruntime``; with the reason, in words.

    Raises:
        ConfigError: an unknown backend.
        MissingBackendError: ``tensorrt`` was asked for and is not usable here.
    """
    from alexnet_deploy.core.system import tensorrt_status

    if backend not in BACKENDS:
        raise ConfigError(f"Unknown backend '{backend}'; choose one of {', '.join(BACKENDS)}.")
    if backend == "onnxruntime":
        return "onnxruntime", "asked for"
    status = tensorrt_status()
    if status["usable"]:
        return "tensorrt", f"TensorRT {status['version']} is usable" + (" (auto)" if backend == "auto" else "")
    if backend == "tensorrt":
        raise MissingBackendError(f"The tensorrt backend is not usable here: {status['reason']}.")
    return "onnxruntime", f"auto: ONNX Runtime on the CPU, because TensorRT is not usable here: {status['reason']}"


def default_output(model: str | Path, precision: str, backend: str) -> Path:
    """``model.fp32.onnx`` -> ``model.int8.plan`` (TensorRT) or ``model.int8.ort.onnx`` (ONNX Runtime)."""
    model = Path(model)
    stem = model.name.removesuffix(".onnx").removesuffix(".fp32")
    return model.with_name(f"{stem}.{precision}.{'plan' if backend == 'tensorrt' else 'ort.onnx'}")


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
class _Job:
    """What every compile-and-verify attempt of one build shares."""

    backend: str
    source: Any  # calib.pipeline.SourceModel
    precision: str
    images: PreparedImages
    reference: np.ndarray  # FP32 logits on ``images``
    gate: Gate
    tensorrt_options: Any
    ort_options: Any
    batch_size: int
    threads: int | None
    progress: ProgressFn | None


def _compile(job: _Job, deployable: Path, out: Path) -> dict[str, Any]:
    if job.backend == "tensorrt":
        from alexnet_deploy.backends.tensorrt.builder import TensorRTBuildOptions, build_plan

        return build_plan(deployable, out, job.tensorrt_options or TensorRTBuildOptions())
    from alexnet_deploy.backends.onnxruntime import build_onnxruntime_engine

    return build_onnxruntime_engine(deployable, out, job.ort_options)


def _engine_logits(job: _Job, path: Path, facts: dict[str, Any]) -> np.ndarray:
    from alexnet_deploy.core.accuracy import run_logits

    if job.backend == "tensorrt":
        from alexnet_deploy.backends import runner_for

        runner = runner_for(path)
    else:
        from alexnet_deploy.backends.onnxruntime import OnnxRuntimeRunner

        runner = OnnxRuntimeRunner(path, providers=facts.get("providers"), threads=job.threads)
    with runner:
        return run_logits(runner, job.images, job.batch_size, job.progress, task=f"Verifying {path.name}")


def build(
    model: str | Path,
    *,
    precision: str = "int8",
    eval_data: str | Path,
    calib_data: str | Path | None = None,
    backend: str = "auto",
    out: str | Path | None = None,
    gate: Gate | None = None,
    force: bool = False,
    calib_method: str = "auto",
    num_calib_images: int = 512,
    holdout_images: int = 1000,
    calib_options=None,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    seed: int = 0,
    max_fallback_layers: int = 4,
    tensorrt_options=None,
    ort_options=None,
    eval_limit: int | None = None,
    batch_size: int = 64,
    threads: int | None = None,
    progress: ProgressFn | None = None,
) -> BuildResult:
    """Build a verified FP16 or INT8 engine from an FP32 ONNX (an export, with its sidecar).

    Args:
        model: the FP32 ONNX.
        precision: ``"int8"`` or ``"fp16"``.
        eval_data: images for the accuracy gate (an ImageFolder, or a root whose ``val/`` is used).
        calib_data: INT8 calibration images (an ImageFolder, or a root whose ``train/`` is used).
        backend: ``auto``, ``tensorrt`` or ``onnxruntime``.
        out: the engine file (default: :func:`default_output`).
        gate: the accuracy gate (default: 0.5 point top-1 and top-5).
        force: write the engine even when the gate fails, marked failed in its sidecar (still raises).
        calib_method: ``auto``, ``minmax``, ``entropy`` or ``percentile``.
        num_calib_images / holdout_images: calibration images, and held-out ones for choosing and ranking.
        calib_options: :class:`calib.CalibrationOptions` (histogram bins, percentile).
        cache_dir / use_cache: the calibration range cache (default ``MODEL.onnx.calib/``).
        max_fallback_layers: at most this many layers may be left in float to pass the gate (0: no fallback).
        tensorrt_options: ``alexnet_deploy.backends.tensorrt.builder.TensorRTBuildOptions``.
        ort_options: :class:`alexnet_deploy.backends.onnxruntime.OnnxRuntimeBuildOptions`.
        eval_limit: evaluate on this many images (stratified) instead of all.

    Returns:
        :class:`BuildResult` of a build that passed the gate.

    Raises:
        BuildGateError: the gate failed (nothing written unless ``force``); ``.result`` has the figures.
        DataError / ArtifactError / ConfigError / MissingBackendError: bad inputs, caught before anything is written.
    """
    from calib.pipeline import open_source_model

    if precision not in PRECISIONS:
        raise ConfigError(f"Unknown precision '{precision}'; choose fp16 or int8.")
    gate = gate or Gate()
    source = open_source_model(model)
    chosen_backend, reason = resolve_backend(backend)
    log.info("Backend: %s (%s).", chosen_backend, reason)
    out = Path(out) if out else default_output(source.path, precision, chosen_backend)
    if out.is_dir():
        raise ConfigError(f"The output {out} is a folder; give a file name.")
    images = load_eval_images(
        eval_data, source.manifest.classes, source.preprocessing, limit=eval_limit, progress=progress
    )
    data = None
    if precision == "int8":
        from calib.reader import load_calibration_data

        if calib_data is None:
            raise ConfigError("An INT8 build needs calibration images (--calib-data).")
        # Held-out images are loaded even for one method: the fallback ranks layers on them, not on eval data.
        data = load_calibration_data(
            calib_data,
            source.preprocessing,
            num_images=num_calib_images,
            holdout_images=holdout_images,
            seed=seed,
            progress=progress,
        )
    from calib.pipeline import fp32_logits

    reference = fp32_logits(source, images)
    fp32 = metrics(reference, images.targets, len(source.manifest.classes))
    job = _Job(
        chosen_backend, source, precision, images, reference, gate, tensorrt_options, ort_options, batch_size,
        threads, progress,
    )  # fmt: skip

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.build-", dir=out.parent) as staging:
        staging = Path(staging)
        deployable = staging / f"model.{precision}.onnx"
        calibration = None
        if precision == "fp16":
            from export import convert_fp16

            convert_fp16(source.path, deployable, eval_data=images.root)
        else:
            from calib.pipeline import calibrate

            calibration = calibrate(
                source.path,
                calib_data,
                deployable,
                target=chosen_backend,
                method=calib_method,
                options=calib_options,
                cache_dir=cache_dir,
                use_cache=use_cache,
                data=data,
                progress=progress,
            )
        engine_path = staging / out.name
        attempt = _attempt(job, deployable, engine_path)
        fallback: dict[str, Any] = {}
        if not attempt["gate"].passed and precision == "int8" and max_fallback_layers > 0:
            attempt, fallback = _fallback(job, calibration, data, deployable, engine_path, attempt, max_fallback_layers)
        passed = attempt["gate"].passed
        result = BuildResult(
            path=None,
            backend=chosen_backend,
            backend_reason=reason,
            precision=precision,
            passed=passed,
            forced=force and not passed,
            gate=attempt["gate"],
            fp32=fp32,
            engine=attempt["metrics"],
            comparison=attempt["comparison"],
            eval_data=str(images.root),
            calibration=calibration.to_dict() if calibration else None,
            fallback=fallback,
            engine_facts=attempt["facts"],
        )
        if passed or force:
            manifest = _manifest(source, result, chosen_backend, deployable, images, sha256_file(engine_path))
            os.replace(engine_path, out)
            save_manifest(out, manifest)
            result.path = out
    if not passed:
        where = f"; written anyway to {out} (marked failed)" if force else "; no engine was written"
        raise BuildGateError(f"The {precision} engine failed the accuracy gate: {result.gate.reason}{where}.", result)
    return result


def _attempt(job: _Job, deployable: Path, engine_path: Path) -> dict[str, Any]:
    """Compile ``deployable`` into ``engine_path`` (with a provisional sidecar) and verify that file."""
    m = job.source.manifest
    facts = _compile(job, deployable, engine_path)
    provisional = Manifest(
        kind="plan" if job.backend == "tensorrt" else "onnx",
        model=dict(m.model),
        classes=list(m.classes),
        input=dict(m.input),
        output=dict(m.output),
        preprocessing=dict(m.preprocessing),
        precision=job.precision,
        engine=facts,
    )
    save_manifest(engine_path, provisional)  # the TensorRT runner checks a plan against its sidecar
    logits = _engine_logits(job, engine_path, facts)
    comparison = compare(logits, job.reference, job.images.targets)
    return {
        "facts": facts,
        "metrics": metrics(logits, job.images.targets, len(m.classes)),
        "comparison": comparison,
        "gate": job.gate.check(comparison),
    }


def _summary(excluded: list[str], attempt: dict[str, Any]) -> dict[str, Any]:
    return {
        "float_layers": excluded,
        "top1": attempt["metrics"]["top1"],
        "top5": attempt["metrics"]["top5"],
        "agreement_top1": attempt["comparison"]["agreement_top1"],
        "passed": attempt["gate"].passed,
    }


def _fallback(job: _Job, calibration, data, deployable: Path, engine_path: Path, first, max_layers: int):
    """Leave the most sensitive layers in float, one more at a time, until the gate passes.

    Returns:
        (the last attempt, the sidecar's ``fallback`` record).
    """
    from alexnet_deploy.sensitivity import rank_layers
    from calib.pipeline import fp32_logits, write_calibrated

    src = job.source
    rank_images = data.holdout if data.holdout is not None and len(data.holdout) else data.calibration
    rank_ref = fp32_logits(src, rank_images)
    ranking = rank_layers(src.path, calibration.ranges, calibration.form, rank_images, rank_ref, progress=job.progress)
    tried = [_summary([], first)]
    attempt = first
    for k in range(1, min(max_layers, len(ranking)) + 1):
        excluded = ranking[:k]
        log.warning("The gate failed; leaving %s in float.", ", ".join(r.label for r in excluded))
        write_calibrated(src, calibration, deployable, exclude=[r.node for r in excluded])
        attempt = _attempt(job, deployable, engine_path)
        tried.append(_summary([r.label for r in excluded], attempt))
        if attempt["gate"].passed:
            break
    fallback = {
        "ranked_on": f"{len(rank_images)} held-out calibration images (not the evaluation set)",
        "ranking": [r.to_dict() for r in ranking],
        "attempts": tried,
        "float_layers": tried[-1]["float_layers"],
        "float_nodes": list(calibration.excluded),
        "max_layers": max_layers,
    }
    return attempt, fallback


def _manifest(
    source, result: BuildResult, backend: str, deployable: Path, images: PreparedImages, sha: str
) -> Manifest:
    """The engine's sidecar: what it is, how it was made, and what it measured."""
    classes = list(source.manifest.classes)
    per_class_delta = dict(zip(classes, result.comparison["per_class_top1_delta"], strict=True))
    accuracy = {
        "eval_data": result.eval_data,
        "num_images": len(images),
        "fp32": {"top1": result.fp32["top1"], "top5": result.fp32["top5"]},
        result.precision: {"top1": result.engine["top1"], "top5": result.engine["top5"]},
        "top1": result.engine["top1"],
        "top5": result.engine["top5"],
        "agreement_top1": result.comparison["agreement_top1"],
        "top1_delta": result.comparison["top1_delta"],
        "top5_delta": result.comparison["top5_delta"],
        "per_class_top1": dict(zip(classes, result.engine["per_class_top1"], strict=True)),
        "per_class_top1_delta": per_class_delta,
        "verified_file_sha256": sha,
        "verified_with": f"{backend} ({', '.join(result.engine_facts.get('providers', [])) or 'GPU'})",
    }
    gate = result.gate.to_dict() | {"status": "passed" if result.passed else "failed", "forced": result.forced}
    return Manifest(
        kind="plan" if backend == "tensorrt" else "onnx",
        model=dict(source.manifest.model),
        classes=classes,
        input=dict(source.manifest.input),
        output=dict(source.manifest.output),
        preprocessing=dict(source.manifest.preprocessing),
        precision=result.precision,
        calibration=result.calibration or {},
        accuracy=accuracy,
        gate=gate,
        source={
            "path": str(source.path),
            "sha256": source.sha256,
            "precision": "fp32",
            "deployable_onnx_sha256": sha256_file(deployable),
        },  # fmt: skip
        engine=dict(result.engine_facts),
        extra={"backend_reason": result.backend_reason, "fallback": result.fallback},
    )
