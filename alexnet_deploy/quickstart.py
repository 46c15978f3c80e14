"""The whole product in one run: train (demo preset), export FP32 and FP16, calibrate and build INT8 for the best
backend here, verify every precision against FP32, bench them side by side, and write a report.

Each stage is cached by content: a stage whose inputs (checkpoint, ONNX, data, settings) hash to what the last
run recorded is reused, so a second run rebuilds nothing unless ``force``.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from alexnet_deploy.core.data import ImageFolderDataset, folder_fingerprint, is_synthetic, make_synthetic_imagefolder
from alexnet_deploy.core.errors import ConfigError, DataError
from alexnet_deploy.core.files import copy_atomic, ensure_folder, sha256_file, sha256_text, write_json_atomic
from alexnet_deploy.core.limits import check_count, check_duration, check_threads
from alexnet_deploy.core.manifest import load_manifest
from alexnet_deploy.report import write_report

log = logging.getLogger(__name__)

Say = Callable[[str], None]


@dataclass(frozen=True)
class QuickstartOptions:
    """Settings of a quickstart run (the CLI's options).

    Args:
        data: an ImageFolder root with ``train/`` and ``val/``; ``None`` makes and uses the synthetic set.
        out: where every artifact, the cache records and the report go.
        checkpoint: use this checkpoint instead of training one.
        train_minutes: training time budget (the demo preset's schedule follows it).
        epochs: at most this many epochs (``None``: the preset's).
        train_overrides: further training settings (``TrainConfig`` field names), e.g. ``{"width": 0.125}``.
        backend: ``auto`` (the fastest verified engine here, measured) or a backend of the registry, for INT8.
        calib_images / holdout_images: calibration images, and held-out ones to choose the method on.
        eval_limit: evaluate on at most this many validation images (``None``: all).
        bench_batches / bench_seconds: what the benchmark measures, and for how long per engine and batch.
        threads: CPU threads for every backend (``None``: the libraries' defaults).
        force: rebuild every stage even if cached.
    """

    data: Path | None = None
    out: Path = Path("alexnet-deploy-quickstart")
    checkpoint: Path | None = None
    train_minutes: float = 4.0
    epochs: int | None = None
    train_overrides: dict[str, Any] = field(default_factory=dict)
    backend: str = "auto"
    calib_images: int = 256
    holdout_images: int = 200
    eval_limit: int | None = None
    bench_batches: tuple[int, ...] = (1, 32)
    bench_seconds: float = 2.0
    threads: int | None = None
    force: bool = False

    def __post_init__(self) -> None:
        """Refuse numbers that mean nothing or exceed the machine before anything runs (not after the training).

        Raises:
            ConfigError: one sentence (:mod:`alexnet_deploy.core.limits`).
        """
        check_duration(self.train_minutes, "--train-minutes")
        check_duration(self.bench_seconds, "--bench-seconds")
        check_threads(self.threads)
        check_count(self.calib_images, "--calib-images")
        check_count(self.holdout_images, "--holdout-images", low=0)
        for value, what in ((self.epochs, "--epochs"), (self.eval_limit, "--eval-limit")):
            if value is not None:
                check_count(value, what)
        for batch in self.bench_batches:
            check_count(batch, "A --bench-batch size")


class _Stages:
    """Per-stage cache records in ``out/.quickstart/NAME.json``: ``{"key": ..., "value": ...}``."""

    def __init__(self, out: Path, force: bool, say: Say) -> None:
        self.dir = out / ".quickstart"
        self.force = force
        self.say = say
        self.status: dict[str, str] = {}

    def run(self, name: str, key: str, outputs: list[Path], fn: Callable[[], Any]) -> Any:
        record = self.dir / f"{name}.json"
        if not self.force and record.is_file() and all(p.is_file() for p in outputs):
            saved = json.loads(record.read_text())
            if saved.get("key") == key:
                self.status[name] = "cached"
                self.say(f"[{name}] up to date, reused (key {key[:12]})")
                return saved["value"]
        self.say(f"[{name}] running")
        start = time.monotonic()
        value = fn()
        self.status[name] = f"built in {time.monotonic() - start:.1f} s"
        write_json_atomic(record, {"key": key, "value": value})
        return value


def _data_key(root: Path) -> str:
    parts = []
    for split in ("train", "val"):
        ds = ImageFolderDataset(root / split, check_files=False)
        parts.append(folder_fingerprint(ds))
    return sha256_text(*parts)


def _prepare_data(opts: QuickstartOptions, say: Say) -> tuple[Path, bool]:
    if opts.data is None:
        root = make_synthetic_imagefolder(opts.out / "synthetic-data", num_classes=10, train_per_class=100,
                                          val_per_class=30, size=64)  # fmt: skip
        say(f"No --data given: using the built-in SYNTHETIC image set at {root} (generated patterns, not photos).")
        return root, True
    root = Path(opts.data)
    if not (root / "train").is_dir() or not (root / "val").is_dir():
        raise DataError(f"{root} must hold train/ and val/ ImageFolders (ImageNet's layout).")
    return root, is_synthetic(root)


def _train(opts: QuickstartOptions, data: Path, data_key: str, stages: _Stages, hooks) -> dict[str, Any]:
    from train.config import resolve_config

    overrides: dict[str, Any] = {"data": str(data), "output": str(opts.out / "train"),
                                 "max_minutes": opts.train_minutes, **opts.train_overrides}  # fmt: skip
    if opts.epochs:
        overrides["epochs"] = opts.epochs
    if opts.threads:
        overrides["threads"] = opts.threads
    cfg = resolve_config("demo", overrides=overrides)
    settings = {k: v for k, v in cfg.to_dict().items() if k not in ("output", "data")}
    key = sha256_text(json.dumps(settings, sort_keys=True, default=str), data_key)
    best = opts.out / "train" / "best.pt"

    def fit_run() -> dict[str, Any]:
        from train.loop import fit

        result = fit(cfg, hooks=hooks)
        return {
            "checkpoint": str(best),
            "epochs": len(result.history),
            "wall_s": result.wall_seconds,
            "top1": 100 * result.best["val_top1"],
            "top5": 100 * result.best["val_top5"],
            "curves_png": str(opts.out / "train" / "curves.png"),
        }

    return stages.run("train", key, [best], fit_run)


def _export(checkpoint: Path, out: Path, precision: str, val: Path, data_key: str, stages: _Stages) -> Path:
    from export import ExportRequest, export_onnx

    path = out / f"model.{precision}.onnx"
    key = sha256_text(sha256_file(checkpoint), precision, data_key)

    def do() -> str:
        export_onnx(checkpoint, path, ExportRequest(precision=precision, parity_data=val))
        return str(path)

    stages.run(f"export-{precision}", key, [path], do)
    return path


def _build_int8(opts, fp32: Path, data: Path, data_key: str, stages: _Stages, progress) -> dict[str, Any]:
    from alexnet_deploy.backends import backend_spec
    from alexnet_deploy.build import BuildGateError, build
    from alexnet_deploy.core.accuracy import EvalRequest
    from alexnet_deploy.requests import BuildRequest
    from calib.request import CalibrationRequest

    # The output's ending tells auto which engines to measure: plans where TensorRT runs here, else ONNX engines
    # (ONNX Runtime, OpenVINO).
    plan = opts.backend in ("tensorrt", "tensorrt-rtx") or (
        opts.backend == "auto" and backend_spec("tensorrt").status().can_run
    )
    path = opts.out / ("model.int8.plan" if plan else "model.int8.onnx")
    request = BuildRequest(
        backend=opts.backend,
        verify=EvalRequest(threads=opts.threads, limit=opts.eval_limit),
        calibration=CalibrationRequest(data=data, num_images=opts.calib_images, holdout_images=opts.holdout_images),
    )
    key = sha256_text(sha256_file(fp32), str(request.backend), data_key, str(opts.calib_images),
                      str(opts.holdout_images), str(opts.eval_limit))  # fmt: skip

    def do() -> dict[str, Any]:
        try:
            r = build(fp32, data, request, out=path, progress=progress)
            reason = ""
        except BuildGateError as exc:
            r, reason = exc.result, str(exc)
        return {
            "path": str(r.path) if r.path else None,
            "passed": r.passed,
            "reason": reason,
            "backend": r.backend,
            "backend_reason": r.backend_reason,
            "gate": asdict(r.gate),
            "calibration": r.calibration,
            "selection": r.selection,
            "notes": list(r.notes),
        }

    value = stages.run("build-int8", key, [path], do)
    if not value["passed"]:
        # A failed build wrote no engine: do not cache it as done. The record is ours: stages.run wrote it just now.
        (stages.dir / "build-int8.json").unlink(missing_ok=True)
    return value


def _verify(opts, artifacts: list[Path], fp32: Path, data: Path, data_key: str, stages: _Stages, progress) -> list:
    from alexnet_deploy.core.accuracy import EvalRequest
    from alexnet_deploy.core.images import describe_skipped, load_eval_images

    key = sha256_text(*(sha256_file(a) for a in artifacts), data_key, str(opts.eval_limit))

    def do() -> list[dict[str, Any]]:
        from alexnet_deploy.backends import describe_artifact
        from alexnet_deploy.backends.verification import verify_file

        info = describe_artifact(fp32)
        images = load_eval_images(
            data, info.classes, info.require_preprocessing(), limit=opts.eval_limit, progress=progress
        )
        request = EvalRequest(threads=opts.threads)
        ref = verify_file(info, images, request=request, progress=progress)
        rows = []
        for a in artifacts:
            art = describe_artifact(a)
            found = ref if a == fp32 else verify_file(art, images, ref.logits, request, progress=progress)
            rows.append({
                "artifact": str(a),
                "backend": art.backend.value,
                "precision": art.precision,
                "top1": found.metrics["top1"],
                "top5": found.metrics["top5"],
                "agreement": found.agreement if found.agreement is not None else 100.0,
                "num_images": found.metrics["num_images"],
                **describe_skipped(images.skipped),
            })  # fmt: skip
        return rows

    return stages.run("verify", key, [], do)


def _cross_specs(artifacts: list[Path]) -> list:
    """ONNX Runtime and OpenVINO side by side: the INT8 file on the runtime it was not built for, and the FP32
    file on OpenVINO, where OpenVINO runs here."""
    from alexnet_deploy.backends import backend_spec, describe_artifact
    from alexnet_deploy.bench.targets import parse_spec

    fp32, int8 = artifacts[0], artifacts[-1]
    if int8.suffix != ".onnx" or not backend_spec("openvino").status().can_run:
        return []
    other = "onnxruntime" if describe_artifact(int8).backend == "openvino" else "openvino"
    return [parse_spec(f"{int8}@{other}"), parse_spec(f"{fp32}@openvino")]


def _bench(opts, artifacts: list[Path], checkpoint: Path, stages: _Stages, say: Say) -> dict[str, Any]:
    from alexnet_deploy.bench.harness import run_benchmark
    from alexnet_deploy.bench.plot import save_plot
    from alexnet_deploy.bench.results import BenchConfig
    from alexnet_deploy.bench.targets import build_targets, parse_spec

    plot = opts.out / "bench.png"
    key = sha256_text(*(sha256_file(a) for a in [checkpoint, *artifacts]), repr(opts.bench_batches),
                      str(opts.bench_seconds), str(opts.threads))  # fmt: skip

    def do() -> dict[str, Any]:
        specs = [parse_spec(str(checkpoint))] + [parse_spec(str(a)) for a in artifacts] + _cross_specs(artifacts)
        targets, baseline = build_targets(specs, threads=opts.threads, compare=True)
        config = BenchConfig(batch_sizes=tuple(opts.bench_batches), warmup_s=0.5, duration_s=opts.bench_seconds)
        report = run_benchmark(targets, config, baseline=baseline, progress=lambda s: log.debug(s))
        report.save_json(opts.out / "bench.json")
        save_plot(report, plot)
        return {"baseline": baseline, "rows": report.report_rows(), "plot_png": str(plot),
                "contention": report.report_contention()}  # fmt: skip

    return stages.run("bench", key, [plot], do)


def run_quickstart(opts: QuickstartOptions, *, say: Say = log.info, train_hooks=None, progress=None) -> dict:
    """Run every stage and write ``report.md``, ``report.html`` and ``results.json`` into ``opts.out``.

    Returns:
        The results dict the report was rendered from (see :mod:`alexnet_deploy.report`), with ``stages``
        saying which stages were built and which reused.

    Raises:
        AlexNetDeployError: bad data or settings (one sentence); an INT8 gate failure is reported, not raised.
    """
    if opts.train_minutes <= 0:
        raise ConfigError("--train-minutes must be positive.")
    ensure_folder(opts.out)
    stages = _Stages(opts.out, opts.force, say)
    data, synthetic = _prepare_data(opts, say)
    data_key = _data_key(data)
    if opts.checkpoint:
        from alexnet_deploy.core.checkpoint import load_model

        load_model(opts.checkpoint)  # refuse a bad checkpoint before any work
        checkpoint, training = Path(opts.checkpoint), {"checkpoint": str(opts.checkpoint), "given": True}
        meta = load_manifest(checkpoint, required=False)
        if meta and meta.accuracy:
            training.update({k: meta.accuracy.get(k) for k in ("top1", "top5")})
    else:
        training = _train(opts, data, data_key, stages, train_hooks)
        checkpoint = Path(training["checkpoint"])
    val = data / "val"
    fp32 = _export(checkpoint, opts.out, "fp32", val, data_key, stages)
    fp16 = _export(checkpoint, opts.out, "fp16", val, data_key, stages)
    int8 = _build_int8(opts, fp32, data, data_key, stages, progress)
    artifacts = [fp32, fp16] + ([Path(int8["path"])] if int8["passed"] else [])
    accuracy = _verify(opts, artifacts, fp32, data, data_key, stages, progress)
    bench = _bench(opts, artifacts, checkpoint, stages, say)

    if training.get("curves_png") and Path(training["curves_png"]).is_file():
        copy_atomic(training["curves_png"], opts.out / "curves.png")
    gate = int8["gate"]
    results = {
        "title": "alexnet-deploy quickstart" + (" (SYNTHETIC data)" if synthetic else ""),
        "data": _data_summary(data, synthetic),
        "training": training,
        "accuracy": accuracy,
        "gate": {
            "passed": int8["passed"],
            "max_top1_drop": gate.get("max_top1_drop"),
            "max_top5_drop": gate.get("max_top5_drop"),
            "top1_drop": gate.get("top1_drop"),
            "top5_drop": gate.get("top5_drop"),
            "reason": int8["reason"],
        },
        "int8": {k: int8.get(k) for k in ("path", "backend", "backend_reason", "selection", "notes")},
        "calibration": _calibration_rows(int8.get("calibration")),
        "bench": bench,
        "system": _system(),
        "stages": dict(stages.status),
    }
    write_report(opts.out, results)
    return results


def _data_summary(root: Path, synthetic: bool) -> dict[str, Any]:
    counts = {s: sum(1 for p in (root / s).rglob("*") if p.is_file()) for s in ("train", "val")}
    classes = sum(1 for p in (root / "train").iterdir() if p.is_dir())
    return {"path": str(root), "synthetic": synthetic, "classes": classes,
            "train_images": counts["train"], "val_images": counts["val"]}  # fmt: skip


def _calibration_rows(calibration: dict | None) -> list[dict[str, Any]]:
    rows = []
    for c in (calibration or {}).get("candidates", []):
        held = c.get("holdout") or {}
        refined = f" + {c['refine']}" if c.get("refine", "none") != "none" else ""  # calib/refine.py variants
        rows.append({"method": c["method"], "form": c.get("form", "") + refined, "top1": held.get("top1"),
                     "agreement": held.get("agreement_top1"), "chosen": bool(c.get("chosen"))})  # fmt: skip
    return rows


def _system() -> dict[str, Any]:
    from alexnet_deploy.bench.machine import machine_info
    from alexnet_deploy.core.manifest import library_versions
    from alexnet_deploy.core.system import probe_gpus

    gpus, _ = probe_gpus()
    machine = machine_info()
    model = machine.get("cpu_model") or platform.processor() or ""
    return {"versions": library_versions(), "cpu": f"{platform.machine()} {model}".strip(),
            "cpu_model": model, "cores": machine.get("cpus"), "simd": machine.get("simd", []),
            "gpus": [f"{g.name} (compute {g.compute_capability})" for g in gpus]}  # fmt: skip
