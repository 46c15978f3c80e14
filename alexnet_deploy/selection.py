"""Which engine a build keeps: the candidate backends and Q/DQ forms, compiled, verified, measured, chosen.

* :func:`choose_backends`: the backend asked for, or with ``auto`` every backend of the registry that can both
  build and *run* here (an engine that cannot be verified on this machine is never picked unless asked for),
  with one candidate per Q/DQ form it takes (INT8).
* :func:`compile_candidate` / :func:`verify_candidate`: the engine file in the staging folder with a provisional
  sidecar, and the accuracy of *that file*; an engine that cannot run here (TensorRT-RTX without a supported
  GPU) is verified on the deployable ONNX it was compiled from, in ONNX Runtime, and says so (``verified_on``,
  ``engine_run: false``).
* :func:`probe_speed`: a short side-by-side measurement (the bench harness, interleaved) of every passing
  candidate and of the FP32 model on each candidate's runtime.
* :func:`select`: the fastest passing candidate (geometric mean of images/s over the probe's batch sizes; among
  those within :data:`SPEED_TIE` of it, the one closest to FP32), the figures of every candidate, why it won, and
  a note whenever the chosen engine is slower than FP32 on its runtime.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from alexnet_deploy.backends import BackendSpec, BackendStatus, backend_spec, backends, describe_artifact, runner_for
from alexnet_deploy.core.accuracy import Gate, GateResult, compare, metrics, run_logits
from alexnet_deploy.core.errors import ConfigError, MissingBackendError
from alexnet_deploy.core.files import sha256_file
from alexnet_deploy.core.images import PreparedImages, ProgressFn
from alexnet_deploy.core.manifest import Manifest, save_manifest
from alexnet_deploy.core.vocab import BackendName, Precision

log = logging.getLogger(__name__)

_FORMS = {  # the Q/DQ forms each backend runs (INT8); pooled: int8 through max-pooling and reshapes (calib/qdq.py)
    BackendName.ONNXRUNTIME: ("tensorrt", "onnxruntime", "pooled", "pooled-u8"),
    BackendName.OPENVINO: ("tensorrt", "onnxruntime", "pooled", "pooled-u8"),
    BackendName.TENSORRT: ("tensorrt", "pooled"),
    BackendName.TENSORRT_RTX: ("tensorrt", "pooled"),
}
_KIND_OF_SUFFIX = {".onnx": "onnx", ".plan": "plan", ".engine": "plan"}
#: Candidates this close to the fastest (geometric mean of the probe) count as equally fast; the one that agrees
#: best with FP32 on the evaluation images is kept. The short probe moves by several percent on a shared machine:
#: OpenVINO's int8 and uint8 pooled forms of the demo model probed 5.3% apart under a load of 2, and within 1.3%
#: of each other, in the other order, on the quiet machine (benchmarks/nncf_compare.py).
SPEED_TIE = 0.10


@dataclass
class Candidate:
    """One engine a build may keep, and everything measured about it."""

    spec: BackendSpec
    status: BackendStatus
    form: str | None  # the Q/DQ form (INT8), else None
    deployable: Path | None = None  # the ONNX it is compiled from
    engine: Path | None = None  # the compiled file, in the staging folder
    facts: dict[str, Any] = field(default_factory=dict)
    provisional: Manifest | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    comparison: dict[str, Any] = field(default_factory=dict)
    gate: GateResult | None = None
    engine_run: bool = False
    verified_on: str = ""
    verified_with: str = ""
    verified_sha256: str = ""
    deployable_sha256: str = ""
    speed: dict[int, dict[str, float]] = field(default_factory=dict)  # batch -> median_ms, images_per_s
    fp32_speed: dict[int, dict[str, float]] = field(default_factory=dict)  # the same runtime's FP32 model
    fallback: dict[str, Any] = field(default_factory=dict)
    selection: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def backend(self) -> BackendName:
        return self.spec.name

    @property
    def label(self) -> str:
        return f"{self.backend.value}" + (f" ({self.form} form)" if self.form else "")

    def score(self) -> float | None:
        """Geometric mean of images/s over the probe's batch sizes (``None`` when not measured)."""
        rates = [s["images_per_s"] for s in self.speed.values() if s["images_per_s"] > 0]
        return math.exp(sum(map(math.log, rates)) / len(rates)) if rates else None

    def figures(self) -> dict[str, Any]:
        """The sidecar's record of this candidate."""
        return {
            "backend": self.backend.value,
            "form": self.form,
            "passed": bool(self.gate and self.gate.passed),
            "agreement_top1": self.comparison.get("agreement_top1"),
            "top1": self.metrics.get("top1"),
            "top5": self.metrics.get("top5"),
            "verified_on": self.verified_on,
            "speed": {str(b): s for b, s in self.speed.items()},
            "fp32_speed": {str(b): s for b, s in self.fp32_speed.items()},
            "images_per_s_geomean": self.score(),
        }


def _forms(name: BackendName, precision: Precision) -> tuple[str | None, ...]:
    return _FORMS.get(name, ("tensorrt",)) if precision is Precision.INT8 else (None,)


def _refusal(spec: BackendSpec, precision: Precision, kind: str | None) -> str | None:
    """Why ``spec`` cannot make this build, or None."""
    if not spec.builds:
        return f"the {spec.name} backend builds no engine (it runs checkpoints)"
    if precision is Precision.BF16 and spec.name is not BackendName.OPENVINO:
        return "BF16 is OpenVINO's inference precision, which only the openvino backend offers"
    if kind is not None and spec.runs != kind:
        return f"it writes {spec.runs} files, not the {kind} file the output's name asks for"
    return None


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
        return [Candidate(spec, status, form) for form in _forms(spec.name, precision)], reason
    chosen, skipped, unverifiable = [], [], []
    for spec in backends():
        refusal = _refusal(spec, precision, kind)
        if refusal is None:
            status = spec.status()
            if status.can_build and status.can_run:
                chosen += [Candidate(spec, status, form) for form in _forms(spec.name, precision)]
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


def compile_candidate(cand: Candidate, source: Manifest, precision: Precision, engine_options: dict) -> None:
    """Compile ``cand.deployable`` into ``STAGING/<backend>-<form>/model.<suffix>`` with a provisional sidecar."""
    module = cand.spec.load()
    options = engine_options.get(cand.backend) or module.BuildOptions()
    if precision is Precision.BF16:
        options = replace(options, inference_precision="bf16")
    folder = cand.deployable.parent / f"{cand.backend.value}-{cand.form or precision.value}"
    folder.mkdir(exist_ok=True)
    cand.engine = folder / f"model.{cand.spec.suffix}"
    facts = dict(module.build(cand.deployable, cand.engine, options))
    facts.setdefault("backend", cand.backend.value)
    cand.facts = facts
    cand.deployable_sha256 = sha256_file(cand.deployable)
    cand.provisional = Manifest(
        kind=cand.spec.runs,
        model=dict(source.model),
        classes=list(source.classes),
        input=dict(source.input),
        output=dict(source.output),
        preprocessing=dict(source.preprocessing),
        precision=precision.value,
        engine=facts,
    )
    save_manifest(cand.engine, cand.provisional)  # runners check an engine against its sidecar


def verify_candidate(
    cand: Candidate,
    images: PreparedImages,
    reference: np.ndarray,
    gate: Gate,
    batch_size: int,
    threads: int | None,
    progress: ProgressFn | None,
) -> None:
    """The accuracy of the compiled file (or, where it cannot run here, of its deployable ONNX) against FP32."""
    from alexnet_deploy.backends.onnxruntime import OnnxRuntimeRunner

    cand.engine_run = cand.status.can_run
    if cand.engine_run:
        runner = runner_for(describe_artifact(cand.engine), threads=threads)
        cand.verified_sha256 = sha256_file(cand.engine)
    else:
        runner = OnnxRuntimeRunner(cand.deployable, threads=threads, precision=cand.provisional.precision)
        cand.verified_sha256 = cand.deployable_sha256
    with runner:
        logits = run_logits(runner, images, batch_size, progress, task=f"Verifying {cand.label}")
        cand.verified_with = runner.name
    cand.verified_on = (
        f"the engine file itself, run by {runner.name}"
        if cand.engine_run
        else f"the deployable ONNX in ONNX Runtime, not the {cand.backend} engine ({cand.status.reason})"
    )
    cand.facts["engine_run"] = cand.engine_run
    cand.facts["verified_on"] = cand.verified_on
    cand.comparison = compare(logits, reference, images.targets)
    cand.metrics = metrics(logits, images.targets, len(images.classes))
    cand.gate = gate.check(cand.comparison)
    if not cand.gate.passed:
        log.warning("%s failed the gate: %s.", cand.label, cand.gate.reason)


def probe_speed(
    candidates: list[Candidate],
    fp32_onnx: Path,
    batches: tuple[int, ...],
    seconds: float,
    threads: int | None,
    progress: ProgressFn | None = None,
) -> None:
    """Measure every candidate and the FP32 model on each candidate's runtime, side by side (interleaved)."""
    from alexnet_deploy.bench import BenchConfig, BenchTarget, run_benchmark

    source = describe_artifact(fp32_onnx)
    targets, fp32_label = [], {}
    for cand in candidates:
        targets.append(BenchTarget(cand.label, runner_for(describe_artifact(cand.engine), threads=threads),
                                   image_shape=source.input_shape))  # fmt: skip
        if cand.backend not in fp32_label and source.kind == "onnx" and cand.spec.runs == "onnx":
            fp32_label[cand.backend] = f"{cand.backend.value} fp32"
            targets.append(BenchTarget(fp32_label[cand.backend], runner_for(source, cand.backend, threads=threads),
                                       image_shape=source.input_shape))  # fmt: skip
    limit = min((t.runner.max_batch or max(batches)) for t in targets)
    config = BenchConfig(
        batch_sizes=tuple(sorted({min(b, limit) for b in batches})),
        warmup_s=0.2,
        duration_s=seconds,
        rounds=2,
        switch_warmup_s=0.1,
    )
    report = run_benchmark(
        targets, config, progress=(lambda text: progress(f"Speed probe: {text}", 0, 0)) if progress else None
    )
    speeds: dict[str, dict[int, dict[str, float]]] = {}
    for m in report.measurements:
        speeds.setdefault(m.label, {})[m.batch] = {
            "median_ms": round(m.latency.median * 1e3, 3),
            "images_per_s": round(m.throughput, 1),
        }
    for cand in candidates:
        cand.speed = speeds.get(cand.label, {})
        cand.fp32_speed = speeds.get(fp32_label.get(cand.backend, ""), {})


def select(candidates: list[Candidate], backend: BackendName) -> Candidate:
    """The fastest passing candidate (the best agreement when none was measured or none passed), with its
    ``selection`` record."""
    passing = [c for c in candidates if c.gate and c.gate.passed]
    measured = [c for c in passing if c.score() is not None]
    if measured:
        fastest = max(measured, key=lambda c: c.score())
        # within the probe's noise of the fastest, the one closest to FP32 (e.g. the pooled forms in int8 and uint8)
        tied = [c for c in measured if c.score() >= (1 - SPEED_TIE) * fastest.score()]
        chosen = max(tied, key=lambda c: (c.comparison["agreement_top1"], c.score()))
        rivals = [c for c in measured if c is not chosen]
        why = f"the fastest of {len(measured)} gate-passing candidates measured here"
        if chosen is not fastest:
            why = (
                f"the closest to FP32 ({chosen.comparison['agreement_top1']:.2f}% top-1 agreement) of the "
                f"{len(tied)} candidates within {SPEED_TIE:.0%} of the fastest of {len(measured)} measured here"
            )
        if rivals:
            runner_up = max(rivals, key=lambda c: c.score())
            why += f" ({chosen.score():.0f} vs {runner_up.score():.0f} images/s for {runner_up.label}, geometric mean)"
    elif passing:
        chosen = max(passing, key=lambda c: c.comparison["agreement_top1"])
        why = "the best top-1 agreement with FP32 (no speed probe)" if len(passing) > 1 else "the only candidate"
    else:  # a failed build (written only with --force): the closest to FP32
        chosen = max(candidates, key=lambda c: c.comparison["agreement_top1"])
        why = "no candidate passed the gate; the one closest to FP32 (top-1 agreement)"
    chosen.selection = {
        "chosen": chosen.label,
        "why": why,
        "asked_for": backend.value,
        "candidates": [c.figures() for c in candidates],
        "measured_with": "the bench harness, interleaved, random inputs, this machine's threads",
    }
    for batch, speed in chosen.speed.items():
        fp32 = chosen.fp32_speed.get(batch)
        if fp32 and speed["images_per_s"] < fp32["images_per_s"]:
            chosen.notes.append(
                f"The chosen {chosen.label} engine is slower than FP32 on {chosen.backend} at batch {batch} "
                f"({speed['images_per_s']:.0f} vs {fp32['images_per_s']:.0f} images/s)."
            )
    for note in chosen.notes:
        log.warning("%s", note)
    return chosen
