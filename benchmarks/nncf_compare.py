"""Our INT8 against NNCF's on OpenVINO, side by side in one run: speed, fidelity, and the CPU's ceiling.

Three parts (``--parts``), one process:

1. **speed** (per network, torchvision layout and the paper's, width 1.0 at 224 px, seeded random weights, 1,000
   classes): ``build --int8 --backend auto`` (the library call, every candidate compiled and probed; calibration
   MinMax without refinement, a gate of 100 points, because random weights have no accuracy and values do not
   change an int8 kernel's speed) keeps an engine; NNCF 3.4 ``nncf.quantize`` (performance preset) of the same
   FP32 ONNX on the same calibration images; our tensorrt-form Q/DQ file (the issue's baseline row). All run by
   our OpenVINO runner (LATENCY hint, one request, ``--threads``), interleaved by the bench harness, batch 1 and
   32, repeated ``--repeats`` times: the kept/NNCF ratio's median is the result and its spread the run's noise.
2. **accuracy** (the demo model on tiny-imagenet-100): ``build --int8 --backend auto`` with its defaults
   (calibration on 512 ``train/`` images, methods and refinements chosen on 1,000 held-out ``train/`` images),
   NNCF PTQ on the same 512 images, and NNCF's ``quantize_with_accuracy_control`` (max_drop = our gate's top-1
   drop, validated on the same 1,000 held-out images); each engine on the runtime it deploys to (NNCF's on
   OpenVINO) against the FP32 ONNX on all 5,000 ``val/`` images: top-1, top-5, top-1 agreement. Then what each
   refinement buys on the kept engine's form and method: none, bias, adaround, adaround+bias, with seconds.
3. **roofline**: OpenVINO's int8 and bf16 throughput on a large conv and matmul (:mod:`roofline`), and each
   network's kept engine at batch 32 as a fraction of the int8 ceiling.

NNCF is an optional dependency (``pip install -e '.[nncf]'``); without it the script says so and exits 0.
JSON goes to ``--out`` (``nncf_compare.json``); the tables are printed.

    .venv/bin/python benchmarks/nncf_compare.py --demo runs/demo/best.pt [--quick] [--force] [--parts ...]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import roofline  # noqa: E402
from common import REPO, ensure_checkpoint  # noqa: E402
from run_benchmarks import conditions  # noqa: E402

from alexnet_deploy.core.manifest import library_versions  # noqa: E402

DATA = Path(os.environ.get("ALEXNET_DEPLOY_DATA", REPO.parent / "shared" / "data"))
NNCF_PTQ, NNCF_AC, TRT_FORM = "NNCF PTQ on OpenVINO", "NNCF accuracy control on OpenVINO", "ours, tensorrt form"


def log(text: str) -> None:
    print("  ", text, file=sys.stderr, flush=True)


# -- NNCF ----------------------------------------------------------------------------------------------------------
def nncf_ptq(fp32: Path, images, out: Path, subset: int) -> tuple[Path, float]:
    """NNCF's post-training quantization of an FP32 ONNX (performance preset) on ``images``; seconds taken."""
    import nncf
    import onnx

    items = [images.batch(i, i + 1) for i in range(len(images))]
    start = time.perf_counter()
    quantized = nncf.quantize(
        onnx.load(str(fp32)),
        nncf.Dataset(items, lambda x: {"images": x}),
        preset=nncf.QuantizationPreset.PERFORMANCE,
        subset_size=min(subset, len(items)),
    )
    seconds = time.perf_counter() - start
    onnx.save(quantized, str(out))
    return out, seconds


def nncf_accuracy_control(fp32: Path, images, holdout, out: Path, max_drop: float) -> tuple[Path, float]:
    """NNCF's ``quantize_with_accuracy_control``: top-1 on ``holdout`` may drop at most ``max_drop`` (absolute,
    a fraction); layers are reverted to float until it holds. Validation runs ONNX Runtime on NNCF's ONNX."""
    import nncf
    import onnx
    import onnxruntime as ort

    items = [images.batch(i, i + 1) for i in range(len(images))]
    val = [(holdout.batch(i, i + 50), holdout.targets[i : i + 50]) for i in range(0, len(holdout), 50)]

    def validate(model, data) -> float:
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        hits = total = 0
        for x, y in data:
            hits += int((session.run(None, {"images": x})[0].argmax(1) == y).sum())
            total += len(y)
        return hits / max(total, 1)

    start = time.perf_counter()
    quantized = nncf.quantize_with_accuracy_control(
        onnx.load(str(fp32)),
        calibration_dataset=nncf.Dataset(items, lambda x: {"images": x}),
        validation_dataset=nncf.Dataset(val),
        validation_fn=validate,
        max_drop=max_drop,
        drop_type=nncf.DropType.ABSOLUTE,
        preset=nncf.QuantizationPreset.PERFORMANCE,
        subset_size=len(items),
    )
    seconds = time.perf_counter() - start
    onnx.save(quantized, str(out))
    return out, seconds


# -- speed ---------------------------------------------------------------------------------------------------------
def speed_data(work: Path, classes: int = 1000) -> Path:
    """A synthetic ImageFolder with the speed models' 1,000 classes (one 64 px pattern per class and split)."""
    from alexnet_deploy.core.data import make_synthetic_imagefolder

    return make_synthetic_imagefolder(work / "speed-data", num_classes=classes, train_per_class=1, val_per_class=1)


def speed_model(name: str, work: Path, data: Path) -> Path:
    """The FP32 ONNX of a width-1.0 network with seeded random weights, its classes the speed data's."""
    from alexnet_deploy.core.checkpoint import load_model
    from alexnet_deploy.core.data import ImageFolderDataset
    from export import ExportRequest, export_onnx

    out = work / f"{name}.speed.fp32.onnx"
    if not out.exists():
        loaded = load_model(ensure_checkpoint(name, work))
        loaded.classes[:] = ImageFolderDataset(data / "train", check_files=False).classes
        export_onnx(loaded, out, ExportRequest(parity_samples=4), source_info={"path": "seeded random weights"})
    return out


def speed(name: str, work: Path, threads: int, duration: float, repeats: int, quick: bool) -> dict[str, Any]:
    from alexnet_deploy.backends import describe_artifact, runner_for
    from alexnet_deploy.backends.openvino import OpenVINORunner
    from alexnet_deploy.bench import BenchConfig, BenchTarget, run_benchmark
    from alexnet_deploy.build import build
    from alexnet_deploy.core.accuracy import EvalRequest, Gate
    from alexnet_deploy.requests import BuildRequest, ProbeRequest
    from calib.pipeline import calibrate_forms, open_source_model
    from calib.reader import load_calibration_data
    from calib.request import CalibrationRequest

    data = speed_data(work)
    fp32 = speed_model(name, work, data)
    kept = work / f"{name}.speed.int8.onnx"
    calibration = CalibrationRequest(data=data, method="minmax", refine="none", num_images=256, holdout_images=100)
    request = BuildRequest(
        verify=EvalRequest(gate=Gate(100.0, 100.0), threads=threads, limit=50 if quick else 200),
        calibration=calibration, probe=ProbeRequest(seconds=0.3 if quick else 1.0), max_fallback_layers=0,
    )  # fmt: skip
    start = time.perf_counter()
    result = build(fp32, data, request, out=kept)
    build_s = time.perf_counter() - start
    log(f"{name}: build kept {result.selection['chosen']} ({build_s:.0f} s)")
    source = open_source_model(fp32)
    cal = load_calibration_data(calibration, source.preprocessing, source.manifest.classes, holdout=False)
    nncf_path, nncf_s = nncf_ptq(fp32, cal.calibration, work / f"{name}.speed.nncf.onnx", 256)
    trials = work / f"{name}.speed.trials"
    trials.mkdir(exist_ok=True)
    trt_path = calibrate_forms(source, replace(calibration, use_cache=False), trials, data=cal)["tensorrt"].path
    kept_label = f"kept by build: {result.selection['chosen']}"
    runners = {
        kept_label: lambda: runner_for(describe_artifact(kept), threads=threads),
        NNCF_PTQ: lambda: OpenVINORunner(nncf_path, threads=threads, precision="int8"),
        TRT_FORM: lambda: OpenVINORunner(trt_path, threads=threads, precision="int8"),
    }
    batches = (1, 32)
    ratios: dict[int, list[float]] = {b: [] for b in batches}
    rows: dict[str, dict[int, list[float]]] = {label: {b: [] for b in batches} for label in runners}
    contention = []
    for r in range(repeats):
        targets = [BenchTarget(label, make()) for label, make in runners.items()]
        for t in targets:
            t.runner.name = t.label
        cfg = BenchConfig(batch_sizes=batches, warmup_s=0.3 if quick else 1.0, duration_s=duration, rounds=3, seed=r)
        report = run_benchmark(targets, cfg, progress=log)
        contention.append(report.contention.to_dict() if report.contention else None)
        for b in batches:
            for label in runners:
                rows[label][b].append(report.get(label, b).throughput)
            ratios[b].append(report.get(kept_label, b).throughput / report.get(NNCF_PTQ, b).throughput)
    return {
        "network": name,
        "kept": result.selection["chosen"],
        "selection": result.selection,
        "build_seconds": round(build_s, 1),
        "nncf_seconds": round(nncf_s, 1),
        "images_per_s": {k: {b: round(statistics.median(v), 1) for b, v in per.items()} for k, per in rows.items()},
        "runs": {label: {b: [round(x, 1) for x in v] for b, v in per.items()} for label, per in rows.items()},
        "kept_vs_nncf": {
            b: {"median": round(statistics.median(v), 3), "min": round(min(v), 3), "max": round(max(v), 3)}
            for b, v in ratios.items()
        },  # fmt: skip
        "contention": contention,
        "flops_per_image": _flops(name),
    }


def _flops(name: str) -> float:
    from alexnet_deploy.core.models import build_model, profile_model

    return float(profile_model(build_model(name)).flops)


# -- accuracy ------------------------------------------------------------------------------------------------------
def _evaluate(path: Path, images, reference: np.ndarray, backend: str | None, threads: int) -> dict[str, float]:
    from alexnet_deploy.backends import describe_artifact, runner_for
    from alexnet_deploy.backends.openvino import OpenVINORunner
    from alexnet_deploy.core.accuracy import compare, metrics, run_logits

    runner = (
        OpenVINORunner(path, threads=threads, precision="int8")
        if backend == "openvino"
        else runner_for(describe_artifact(path), threads=threads)
    )
    with runner:
        logits = run_logits(runner, images, 64)
    c, m = compare(logits, reference, images.targets), metrics(logits, images.targets)
    return {"top1": m["top1"], "top5": m["top5"], "agreement_top1": c["agreement_top1"],
            "top1_delta": c["top1_delta"], "top5_delta": c["top5_delta"], "runner": runner.name}  # fmt: skip


def accuracy(demo: Path, tiny100: Path, work: Path, threads: int, quick: bool) -> dict[str, Any]:
    from alexnet_deploy.backends.verification import verify_file
    from alexnet_deploy.build import build
    from alexnet_deploy.core.accuracy import EvalRequest, Gate, metrics
    from alexnet_deploy.core.images import load_eval_images
    from alexnet_deploy.requests import BuildRequest
    from calib.pipeline import calibrate_forms, open_source_model, place_calibrated
    from calib.qdq import form_named
    from calib.reader import load_calibration_data
    from calib.request import CalibrationRequest
    from export import ExportRequest, export_onnx

    fp32 = work / "demo.fp32.onnx"
    if not fp32.exists():
        export_onnx(demo, fp32, ExportRequest(parity_samples=16))
    source = open_source_model(fp32)
    limit = 500 if quick else None
    val = load_eval_images(tiny100, source.manifest.classes, source.preprocessing, limit=limit)
    reference = verify_file(source.path, val, request=EvalRequest(threads=threads)).logits
    fp32_metrics = metrics(reference, val.targets)
    gate = Gate()
    num_calib, holdout = (128, 200) if quick else (512, 1000)
    calibration = CalibrationRequest(data=tiny100, num_images=num_calib, holdout_images=holdout, use_cache=False)
    request = BuildRequest(verify=EvalRequest(gate=gate, threads=threads, limit=limit), calibration=calibration)
    kept = work / "demo.int8.onnx"
    start = time.perf_counter()
    result = build(fp32, tiny100, request, out=kept)
    build_s = time.perf_counter() - start
    chosen = result.calibration
    log(f"demo: build kept {result.selection.get('chosen')} ({build_s:.0f} s), {chosen['refinement']['kind']}")
    rows: dict[str, dict[str, Any]] = {
        f"ours: build --backend auto ({result.selection.get('chosen')})": _evaluate(kept, val, reference, None, threads)
        | {
            "seconds": round(build_s, 1),
            "calibration": f"{chosen['method']}, {chosen['form']} form, refinement {chosen['refinement']['kind']}",
        }  # fmt: skip
    }
    data = load_calibration_data(calibration, source.preprocessing, source.manifest.classes)
    ptq, ptq_s = nncf_ptq(fp32, data.calibration, work / "demo.nncf.onnx", num_calib)
    rows[NNCF_PTQ] = _evaluate(ptq, val, reference, "openvino", threads) | {"seconds": round(ptq_s, 1)}
    ac, ac_s = nncf_accuracy_control(fp32, data.calibration, data.holdout, work / "demo.nncf-ac.onnx",
                                     gate.max_top1_drop / 100)  # fmt: skip
    rows[NNCF_AC] = _evaluate(ac, val, reference, "openvino", threads) | {"seconds": round(ac_s, 1)}
    # What each refinement buys on the kept engine's form and method (the same calibration images).
    form, method, backend = form_named(chosen["form"]), chosen["method"], result.backend
    refinements = {}
    for kind in ("none", "bias", "adaround", "adaround+bias"):
        trials = work / f"demo.trials.{kind.replace('+', '-')}"
        trials.mkdir(exist_ok=True)
        one_request = replace(calibration, method=method, forms=(form.name,), refine=kind, use_cache=True)
        one = calibrate_forms(source, one_request, trials, data=data)[form.name]
        path = work / f"demo.int8.{form.name}.{kind.replace('+', '-')}.onnx"
        place_calibrated(source, one, path)
        seconds = one.refinement.seconds if one.refinement is not None else 0.0
        refinements[kind] = _evaluate(path, val, reference, backend, threads) | {"refine_seconds": round(seconds, 1)}
        log(f"demo: refinement {kind}: agreement {refinements[kind]['agreement_top1']:.2f}%")
    return {
        "fp32": {"top1": fp32_metrics["top1"], "top5": fp32_metrics["top5"]},
        "val_images": len(val),
        "rows": rows,
        "refinements": {"form": form.name, "method": method, "backend": backend, "rows": refinements},
        "build_calibration": chosen,
        "gate": {"max_top1_drop": gate.max_top1_drop, "max_top5_drop": gate.max_top5_drop},
    }


# -- printing ------------------------------------------------------------------------------------------------------
def print_speed(s: dict[str, Any], ceiling: dict | None) -> None:
    print(f"\n### {s['network']}: images/s (median of {len(next(iter(s['runs'].values()))[1])} interleaved runs)\n")
    print("| engine | b1 img/s | b32 img/s |" + (" b32 of int8 ceiling |" if ceiling else ""))
    print("|---|---|---|" + ("---|" if ceiling else ""))
    for label, per in s["images_per_s"].items():
        frac = ""
        if ceiling:
            frac = f" {roofline.fraction(per[32], s['flops_per_image'] / 1e9, ceiling['peak']['int8']):.1%} |"
        print(f"| {label} | {per[1]:.0f} | {per[32]:.0f} |{frac}")
    r = s["kept_vs_nncf"]
    print(f"\nkept / NNCF: batch 1 {r[1]['median']:.3f} (runs {r[1]['min']:.3f}-{r[1]['max']:.3f}), "
          f"batch 32 {r[32]['median']:.3f} (runs {r[32]['min']:.3f}-{r[32]['max']:.3f})")  # fmt: skip


def print_accuracy(a: dict[str, Any]) -> None:
    print(f"\n### demo model, {a['val_images']} val images (FP32 top-1 {a['fp32']['top1']:.2f}, "
          f"top-5 {a['fp32']['top5']:.2f})\n")  # fmt: skip
    print("| engine | runner | top-1 | top-5 | Δ top-1 | Δ top-5 | agreement % | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for label, r in a["rows"].items():
        print(f"| {label} | {r['runner']} | {r['top1']:.2f} | {r['top5']:.2f} | {r['top1_delta']:+.2f} | "
              f"{r['top5_delta']:+.2f} | {r['agreement_top1']:.2f} | {r['seconds']} |")  # fmt: skip
    ref = a["refinements"]
    print(f"\nRefinements ({ref['method']}, {ref['form']} form, {ref['backend']}):\n")
    print("| refinement | agreement % | Δ top-1 | Δ top-5 | refinement seconds |")
    print("|---|---|---|---|---|")
    for kind, r in ref["rows"].items():
        print(f"| {kind} | {r['agreement_top1']:.2f} | {r['top1_delta']:+.2f} | {r['top5_delta']:+.2f} | "
              f"{r['refine_seconds']} |")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/alexnet-nncf"), help="artifact cache folder")
    ap.add_argument("--out", type=Path, default=None, help="JSON folder (default benchmarks/results; --quick: --work)")
    ap.add_argument("--demo", type=Path, default=REPO / "runs" / "demo" / "best.pt", help="the demo checkpoint")
    ap.add_argument("--data", type=Path, default=DATA / "tiny-imagenet-100", help="tiny-imagenet-100 (train/, val/)")
    ap.add_argument("--models", default="alexnet,alexnet_paper")
    ap.add_argument("--parts", default="roofline,speed,accuracy")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--duration-s", type=float, default=3.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="short runs and subsets, to check the script")
    ap.add_argument("--max-load", type=float, default=0.8)
    ap.add_argument("--force", action="store_true", help="measure even on a busy machine")
    args = ap.parse_args()
    if importlib.util.find_spec("nncf") is None:
        print("NNCF is not installed (pip install -e '.[nncf]'): nothing to compare against; skipped.")
        return
    parts = set(args.parts.split(","))
    if "accuracy" in parts and not args.demo.is_file():
        raise SystemExit(f"The demo checkpoint {args.demo} is missing (train it: alexnet-deploy train --preset demo).")
    before = conditions()
    if before["load_average"][0] > args.max_load and not args.force:
        print(f"The 1-minute load is {before['load_average'][0]} (busy: {before['busy']}); wait, or pass --force.")
        raise SystemExit(1)
    out = args.out or (args.work / "quick-results" if args.quick else REPO / "benchmarks" / "results")
    out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {"command": " ".join(["python", *sys.argv]), "quick": args.quick, "before": before}
    import nncf

    record["versions"] = library_versions() | {"nncf": nncf.__version__}
    ceiling = None
    if "roofline" in parts:
        ceiling = roofline.measure(args.threads, 1.0 if args.quick else 3.0)
        record["roofline"] = ceiling
        print(f"\nCeiling ({ceiling['how']}): int8 conv {ceiling['int8']['conv']:g} / matmul "
              f"{ceiling['int8']['matmul']:g} GOP/s; bf16 conv {ceiling['bf16']['conv']:g} / matmul "
              f"{ceiling['bf16']['matmul']:g} GOP/s")  # fmt: skip
    if "speed" in parts:
        record["speed"] = []
        for name in args.models.split(","):
            s = speed(name, args.work, args.threads, 0.5 if args.quick else args.duration_s,
                      1 if args.quick else args.repeats, args.quick)  # fmt: skip
            record["speed"].append(s)
            print_speed(s, ceiling)
    if "accuracy" in parts:
        record["accuracy"] = accuracy(args.demo, args.data, args.work, args.threads, args.quick)
        print_accuracy(record["accuracy"])
    record["after"] = conditions()
    (out / "nncf_compare.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(f"\nload average before / after: {before['load_average']} / {record['after']['load_average']}; "
          f"JSON in {out / 'nncf_compare.json'}")  # fmt: skip


if __name__ == "__main__":
    main()
