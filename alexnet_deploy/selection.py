"""The steps a build's candidates go through, each returning a frozen result for the next:

* :func:`choose_backends` -> :class:`Candidate`\\ s: the backend asked for, or with ``auto`` every backend of the
  registry that can both build and *run* here (an engine that cannot be verified on this machine is never picked
  unless asked for), one candidate per Q/DQ form it compiles (INT8);
* :func:`compile_candidate` -> :class:`CompiledEngine`: the engine file in the staging folder with a provisional
  sidecar;
* :func:`verify_compiled` -> :class:`VerifiedEngine`: the accuracy of *that file*
  (:func:`~alexnet_deploy.backends.verification.verify_file`); an engine that cannot run here (TensorRT-RTX
  without a supported GPU) is verified on the deployable ONNX it was compiled from, in ONNX Runtime, and says so;
  an OpenVINO blob exported beside the engine is verified itself too (imported and run), and :func:`place_blob`
  writes it, with a sidecar of its own figures, beside the engine;
* :func:`probe_speed` -> :class:`Speed` per candidate: a short side-by-side measurement (the bench harness,
  interleaved) of every passing candidate and of the FP32 model on each candidate's runtime;
* :func:`choose` -> :class:`BuildChoice`: the fastest passing candidate (geometric mean of images/s over the probe's
  batch sizes; among those within :data:`SPEED_TIE` of it, the one closest to FP32), the figures of every
  candidate, why it won, and a note whenever the chosen engine is slower than FP32 on its runtime.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from alexnet_deploy.backends import BackendSpec, BackendStatus, backend_spec, backends, describe_artifact, runner_for
from alexnet_deploy.backends.verification import verify_file
from alexnet_deploy.core.accuracy import EvalRequest, GateResult, Verification
from alexnet_deploy.core.errors import ConfigError, MissingBackendError
from alexnet_deploy.core.files import sha256_file
from alexnet_deploy.core.images import PreparedImages, ProgressFn
from alexnet_deploy.core.manifest import Manifest, place_artifact, save_manifest
from alexnet_deploy.core.vocab import BackendName, Precision

log = logging.getLogger(__name__)

_KIND_OF_SUFFIX = {".onnx": "onnx", ".plan": "plan", ".engine": "plan", ".ovblob": "ovblob"}
#: Candidates this close to the fastest (geometric mean of the probe) count as equally fast; the one that agrees
#: best with FP32 on the evaluation images is kept. The short probe moves by several percent on a shared machine:
#: OpenVINO's int8 and uint8 pooled forms of the demo model probed 5.3% apart under a load of 2, and within 1.3%
#: of each other, in the other order, on the quiet machine (benchmarks/nncf_compare.py).
SPEED_TIE = 0.10


@dataclass(frozen=True)
class Candidate:
    """One engine a build may keep: a backend, what it can do here, and (INT8) the Q/DQ form it compiles."""

    spec: BackendSpec
    status: BackendStatus
    form: str | None  # the Q/DQ form (INT8), else None

    @property
    def backend(self) -> BackendName:
        return self.spec.name

    @property
    def label(self) -> str:
        return f"{self.backend.value}" + (f" ({self.form} form)" if self.form else "")


@dataclass(frozen=True)
class CompiledEngine:
    """A candidate compiled: the ONNX it came from, the engine file (staging folder) and its provisional sidecar."""

    candidate: Candidate
    deployable: Path
    deployable_sha256: str
    engine: Path
    facts: dict[str, Any]
    provisional: Manifest

    @property
    def blob(self) -> Path | None:
        """The OpenVINO blob exported beside the staged engine, if any."""
        blob = self.facts.get("blob")
        return self.engine.with_name(blob["file"]) if blob else None


@dataclass(frozen=True)
class BlobCheck:
    """An exported OpenVINO blob's own verification: imported and run, against FP32."""

    verification: Verification
    sha256: str
    verified_on: str


@dataclass(frozen=True)
class VerifiedEngine:
    """A compiled engine and its accuracy against FP32: what ran (``engine_run``), on what, and the verdict."""

    compiled: CompiledEngine
    verification: Verification
    engine_run: bool
    verified_on: str
    verified_sha256: str
    fallback: dict[str, Any] = field(default_factory=dict)
    blob: BlobCheck | None = None

    @property
    def candidate(self) -> Candidate:
        return self.compiled.candidate

    @property
    def label(self) -> str:
        return self.candidate.label

    @property
    def gate(self) -> GateResult:
        """The gate's verdict (always compared with FP32): the engine's, or its exported blob's when only that
        failed (the candidate passes only if both do)."""
        gate = self.verification.gate
        if gate.passed and self.blob is not None and not self.blob.verification.passed:
            blob = self.blob.verification.gate
            return replace(blob, reason=f"its exported blob: {blob.reason}")
        return gate  # type: ignore[return-value]

    @property
    def passed(self) -> bool:
        return self.gate.passed

    @property
    def metrics(self) -> dict[str, Any]:
        return self.verification.metrics

    @property
    def comparison(self) -> dict[str, Any]:
        return self.verification.comparison or {}

    @property
    def facts(self) -> dict[str, Any]:
        """The engine facts for the sidecar, with what was verified (and how its exported blob did)."""
        facts = self.compiled.facts | {"engine_run": self.engine_run, "verified_on": self.verified_on}
        if self.blob is not None:
            agreement = self.blob.verification.agreement
            facts["blob"] = facts["blob"] | {"verified_on": self.blob.verified_on, "agreement_top1": agreement}
        return facts


@dataclass(frozen=True)
class Speed:
    """A candidate's measured speed, and the FP32 model's on the same runtime: batch -> median_ms, images_per_s."""

    engine: dict[int, dict[str, float]] = field(default_factory=dict)
    fp32: dict[int, dict[str, float]] = field(default_factory=dict)

    def score(self) -> float | None:
        """Geometric mean of images/s over the probe's batch sizes (``None`` when not measured)."""
        rates = [s["images_per_s"] for s in self.engine.values() if s["images_per_s"] > 0]
        return math.exp(sum(map(math.log, rates)) / len(rates)) if rates else None


@dataclass(frozen=True)
class BuildChoice:
    """The engine kept, the record of every candidate and why this one, and what a user must hear."""

    chosen: VerifiedEngine
    selection: dict[str, Any]
    notes: tuple[str, ...] = ()


def _refusal(spec: BackendSpec, precision: Precision, kind: str | None) -> str | None:
    """Why ``spec`` cannot make this build, or None."""
    if not spec.builds:
        return f"the {spec.name} backend builds no engine (it runs checkpoints)"
    if precision is Precision.BF16 and spec.name is not BackendName.OPENVINO:
        return "BF16 is OpenVINO's inference precision, which only the openvino backend offers"
    if kind == "ovblob":
        return "an OpenVINO blob is written beside its ONNX engine: name the .onnx output and add --export-blob"
    if kind is not None and spec.runs != kind:
        return f"it writes {spec.runs} files, not the {kind} file the output's name asks for"
    return None


def _candidates(spec: BackendSpec, status: BackendStatus, precision: Precision) -> list[Candidate]:
    forms = (spec.forms or ("tensorrt",)) if precision is Precision.INT8 else (None,)
    return [Candidate(spec, status, form) for form in forms]


def choose_backends(precision: Precision, backend: BackendName, out: Path | None = None) -> tuple[list[Candidate], str]:
    """The candidates of a build and, in words, why these.

    Raises:
        ConfigError: the backend cannot make this precision or output.
        MissingBackendError: the backend asked for cannot build here, or with ``auto`` none can build and run.
    """
    kind = _KIND_OF_SUFFIX.get(out.suffix.lower()) if out is not None else None
    if backend is not BackendName.AUTO:
        spec = backend_spec(backend)
        refusal = _refusal(spec, precision, kind)
        if refusal:
            raise ConfigError(f"Cannot build {precision} with --backend {spec.name}: {refusal}.")
        status = spec.status()
        if not status.can_build:
            raise MissingBackendError(f"The {spec.name} backend is not usable here: {status.reason}.")
        reason = f"{spec.name}, as asked for"
        if not status.can_run:
            reason += f"; its engine cannot run here ({status.reason}), so it is verified on its deployable ONNX"
        return _candidates(spec, status, precision), reason
    chosen, skipped, unverifiable = [], [], []
    for spec in backends():
        refusal = _refusal(spec, precision, kind)
        if refusal is None:
            status = spec.status()
            if status.can_build and status.can_run:
                chosen += _candidates(spec, status, precision)
                continue
            refusal = status.reason if not status.can_build else f"it cannot run (or be verified) here: {status.reason}"
            if status.can_build:
                unverifiable.append(spec.name.value)
        if spec.builds:
            skipped.append(f"{spec.name}: {refusal}")
    if not chosen:
        hint = f"; --backend {unverifiable[0]} builds one anyway, verified on its ONNX" if unverifiable else ""
        article = "an" if precision.value[0] in "aeiouf" else "a"
        raise MissingBackendError(
            f"No backend can build and verify {article} {precision} engine here ({'; '.join(skipped)}){hint}."
        )
    names = sorted({c.backend.value for c in chosen})
    reason = f"auto: measured among {', '.join(names)}" + (f" (not {'; '.join(skipped)})" if skipped else "")
    return chosen, reason


def compile_candidate(cand: Candidate, deployable: Path, source: Manifest, request) -> CompiledEngine:
    """Compile ``deployable`` for the candidate's backend into ``<its folder>/<backend>-<form>/model.<suffix>``,
    with a provisional sidecar (runners check an engine against its sidecar).

    Args:
        source: the FP32 model's sidecar (model, classes, input, output, preprocessing are carried over).
        request: the :class:`~alexnet_deploy.requests.BuildRequest` (precision, this backend's options).
    """
    options = request.engine_options(cand.spec)
    if request.precision is Precision.BF16:
        options = replace(options, inference_precision="bf16")
    folder = deployable.parent / f"{cand.backend.value}-{cand.form or request.precision.value}"
    folder.mkdir(exist_ok=True)
    engine = folder / f"model.{cand.spec.suffix}"
    facts = dict(cand.spec.load().compile_engine(deployable, engine, options))
    facts.setdefault("backend", cand.backend.value)
    provisional = Manifest(
        kind=cand.spec.runs,
        model=dict(source.model),
        classes=list(source.classes),
        class_names=list(source.class_names),
        input=dict(source.input),
        output=dict(source.output),
        preprocessing=dict(source.preprocessing),
        precision=request.precision.value,
        engine=facts,
        other_fields=dict(source.other_fields),  # keys this release does not know travel on, never dropped
    )
    save_manifest(engine, provisional)
    compiled = CompiledEngine(cand, deployable, sha256_file(deployable), engine, facts, provisional)
    if compiled.blob is not None:  # an exported OpenVINO blob: a sidecar of its own, which its runner checks
        save_manifest(compiled.blob, replace(provisional, kind="ovblob", engine=facts["blob"]))
    return compiled


def verify_compiled(
    compiled: CompiledEngine,
    images: PreparedImages,
    reference: np.ndarray,
    request: EvalRequest,
    progress: ProgressFn | None = None,
) -> VerifiedEngine:
    """The accuracy of the compiled file (or, where it cannot run here, of its deployable ONNX) against FP32."""
    cand = compiled.candidate
    if cand.status.can_run:
        found = verify_file(compiled.engine, images, reference, request, progress=progress)
        sha, on = sha256_file(compiled.engine), f"the engine file itself, run by {found.runner}"
    else:
        found = verify_file(compiled.deployable, images, reference, request, BackendName.ONNXRUNTIME, progress)
        sha = compiled.deployable_sha256
        on = f"the deployable ONNX in ONNX Runtime, not the {cand.backend} engine ({cand.status.reason})"
    blob = None
    if cand.status.can_run and compiled.blob is not None:
        checked = verify_file(compiled.blob, images, reference, request, progress=progress)
        blob = BlobCheck(
            checked, sha256_file(compiled.blob), f"the exported blob itself, imported and run by {checked.runner}"
        )
        if not checked.passed:
            log.warning("The exported blob of %s failed the gate: %s.", cand.label, checked.gate.reason)
    verified = VerifiedEngine(compiled, found, cand.status.can_run, on, sha, blob=blob)
    if not verified.passed:
        log.warning("%s failed the gate: %s.", cand.label, verified.gate.reason)
    return verified


def place_blob(chosen: VerifiedEngine, target: Path, engine_manifest: Manifest) -> Path | None:
    """Rename the chosen engine's exported blob into place beside its engine ``target``, with a sidecar of the
    blob's own accuracy (measured on the blob), and name it in ``engine_manifest``; call it before the engine is
    placed. Returns its path, if any."""
    from alexnet_deploy.backends.openvino import blob_path

    staged, check = chosen.compiled.blob, chosen.blob
    if staged is None or check is None:
        return None
    v = check.verification
    metrics_, comparison, result = v.metrics, v.comparison, v.gate
    classes = list(engine_manifest.classes)
    accuracy = dict(engine_manifest.accuracy) | {
        engine_manifest.precision: {"top1": metrics_["top1"], "top5": metrics_["top5"]},
        "top1": metrics_["top1"],
        "top5": metrics_["top5"],
        "agreement_top1": comparison["agreement_top1"],
        "top1_delta": comparison["top1_delta"],
        "top5_delta": comparison["top5_delta"],
        "per_class_top1": dict(zip(classes, metrics_["per_class_top1"], strict=True)),
        "per_class_top1_delta": dict(zip(classes, comparison["per_class_top1_delta"], strict=True)),
        "verified_file_sha256": check.sha256,
        "verified_on": check.verified_on,
        "verified_with": v.runner,
    }
    gate = result.to_dict() | {"status": "passed" if result.passed else "failed",
                               "forced": bool(engine_manifest.gate.get("forced"))}  # fmt: skip
    path = blob_path(target)
    engine = dict(chosen.facts["blob"]) | {"file": path.name, "source_onnx": target.name}
    engine_manifest.engine["blob"] = engine  # the engine's sidecar names its blob by its final name
    fp32 = engine_manifest.source
    source = {"path": str(target), "sha256": engine["source_onnx_sha256"], "kind": "onnx",
              "fp32_onnx": fp32.get("path"), "fp32_sha256": fp32.get("sha256")}  # fmt: skip
    manifest = replace(engine_manifest, kind="ovblob", engine=engine, accuracy=accuracy, gate=gate, source=source)
    place_artifact(staged, path, manifest)
    return path


def probe_speed(
    verified: list[VerifiedEngine],
    fp32_onnx: Path,
    probe,
    threads: int | None,
    progress: ProgressFn | None = None,
) -> dict[str, Speed]:
    """Measure every engine and the FP32 model on each engine's runtime, side by side (interleaved).

    Args:
        probe: the :class:`~alexnet_deploy.requests.ProbeRequest` (batch sizes, seconds).

    Returns:
        ``{candidate label: Speed}``.
    """
    from alexnet_deploy.bench import BenchConfig, BenchTarget, run_benchmark

    source = describe_artifact(fp32_onnx)
    targets, fp32_label = [], {}
    for v in verified:
        cand = v.candidate
        targets.append(BenchTarget(cand.label, runner_for(describe_artifact(v.compiled.engine), threads=threads),
                                   image_shape=source.input_shape))  # fmt: skip
        if cand.backend not in fp32_label and source.kind == "onnx" and cand.spec.runs == "onnx":
            fp32_label[cand.backend] = f"{cand.backend.value} fp32"
            targets.append(BenchTarget(fp32_label[cand.backend], runner_for(source, cand.backend, threads=threads),
                                       image_shape=source.input_shape))  # fmt: skip
    limit = min((t.runner.max_batch or max(probe.batches)) for t in targets)
    config = BenchConfig(
        batch_sizes=tuple(sorted({min(b, limit) for b in probe.batches})),
        warmup_s=0.2,
        duration_s=probe.seconds,
        rounds=2,
        switch_warmup_s=0.1,
    )
    report = run_benchmark(
        targets, config, progress=(lambda text: progress(f"Speed probe: {text}", 0, 0)) if progress else None
    )
    measured: dict[str, dict[int, dict[str, float]]] = {}
    for m in report.measurements:
        measured.setdefault(m.label, {})[m.batch] = {
            "median_ms": round(m.latency.median * 1e3, 3),
            "images_per_s": round(m.throughput, 1),
        }
    return {
        v.label: Speed(measured.get(v.label, {}), measured.get(fp32_label.get(v.candidate.backend, ""), {}))
        for v in verified
    }


def _figures(v: VerifiedEngine, speed: Speed) -> dict[str, Any]:
    """The sidecar's record of one candidate."""
    return {
        "backend": v.candidate.backend.value,
        "form": v.candidate.form,
        "passed": v.passed,
        "agreement_top1": v.comparison.get("agreement_top1"),
        "top1": v.metrics.get("top1"),
        "top5": v.metrics.get("top5"),
        "verified_on": v.verified_on,
        "speed": {str(b): s for b, s in speed.engine.items()},
        "fp32_speed": {str(b): s for b, s in speed.fp32.items()},
        "images_per_s_geomean": speed.score(),
    }


def choose(verified: list[VerifiedEngine], speeds: dict[str, Speed], backend: BackendName) -> BuildChoice:
    """The fastest passing candidate (the best agreement when none was measured or none passed), with its
    ``selection`` record and the notes a user must hear."""
    speed = {v.label: speeds.get(v.label, Speed()) for v in verified}
    passing = [v for v in verified if v.passed]
    measured = [v for v in passing if speed[v.label].score() is not None]
    if measured:
        fastest = max(measured, key=lambda v: speed[v.label].score())
        # within the probe's noise of the fastest, the one closest to FP32 (e.g. the pooled forms in int8 and uint8)
        tied = [v for v in measured if speed[v.label].score() >= (1 - SPEED_TIE) * speed[fastest.label].score()]
        chosen = max(tied, key=lambda v: (v.comparison["agreement_top1"], speed[v.label].score()))
        rivals = [v for v in measured if v is not chosen]
        why = f"the fastest of {len(measured)} gate-passing candidates measured here"
        if chosen is not fastest:
            why = (
                f"the closest to FP32 ({chosen.comparison['agreement_top1']:.2f}% top-1 agreement) of the "
                f"{len(tied)} candidates within {SPEED_TIE:.0%} of the fastest of {len(measured)} measured here"
            )
        if rivals:
            runner_up = max(rivals, key=lambda v: speed[v.label].score())
            why += (
                f" ({speed[chosen.label].score():.0f} vs {speed[runner_up.label].score():.0f} images/s for "
                f"{runner_up.label}, geometric mean)"
            )
    elif passing:
        chosen = max(passing, key=lambda v: v.comparison["agreement_top1"])
        why = "the best top-1 agreement with FP32 (no speed probe)" if len(passing) > 1 else "the only candidate"
    else:  # a failed build (written only with --force): the closest to FP32
        chosen = max(verified, key=lambda v: v.comparison["agreement_top1"])
        why = "no candidate passed the gate; the one closest to FP32 (top-1 agreement)"
    selection = {
        "chosen": chosen.label,
        "why": why,
        "asked_for": backend.value,
        "candidates": [_figures(v, speed[v.label]) for v in verified],
        "measured_with": "the bench harness, interleaved, random inputs, this machine's threads",
    }
    notes = []
    mine = speed[chosen.label]
    for batch, s in mine.engine.items():
        fp32 = mine.fp32.get(batch)
        if fp32 and s["images_per_s"] < fp32["images_per_s"]:
            notes.append(
                f"The chosen {chosen.label} engine is slower than FP32 on {chosen.candidate.backend} at batch {batch} "
                f"({s['images_per_s']:.0f} vs {fp32['images_per_s']:.0f} images/s)."
            )
    if chosen.compiled.blob is None and any(v.compiled.blob is not None for v in verified):
        notes.append(
            f"No OpenVINO blob was written: the chosen engine is {chosen.label}; --backend openvino --export-blob "
            "writes one."
        )
    for note in notes:
        log.warning("%s", note)
    return BuildChoice(chosen, selection, tuple(notes))
