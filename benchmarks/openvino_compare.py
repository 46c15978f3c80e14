"""OpenVINO against ONNX Runtime and PyTorch on this CPU, and our runners' overhead against bare loops.

One process, per network (torchvision's AlexNet and the paper's, width 1.0 at 224 px, seeded random weights):

1. **Overhead**: bare ``ov.Core().compile_model`` + ``InferRequest.infer`` calls against our
   :class:`OpenVINORunner` on the same file, and bare ``InferenceSession.run`` against our
   ``OnnxRuntimeRunner``; call by call alternately, batch 1 and 32 (the target: medians within 3%).
2. **Comparison**, interleaved by :func:`alexnet_deploy.bench.run_benchmark`: PyTorch eager and
   ``torch.compile`` FP32, ONNX Runtime FP32 and INT8, OpenVINO FP32, BF16 (where the CPU has it) and INT8, the
   INT8 graphs being the project's own Q/DQ ONNX from ``calib`` in both forms (TensorRT's symmetric int8
   activations, ONNX Runtime's uint8), calibrated with MinMax on 64 imagenette-10 photos. Ratios against
   ONNX Runtime FP32 and against PyTorch eager, and each variant's top-1 agreement with ONNX Runtime FP32 on
   100 imagenette-10 val photos (random weights: indicative only).

JSON goes to ``--out`` (``openvino_compare_{overhead,NETWORK}.json``); the tables are printed.

    .venv/bin/python benchmarks/openvino_compare.py [--quick] [--force] [--models alexnet,alexnet_paper]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import IMAGENETTE, REPO, ensure_artifacts, load_images, ratio_table  # noqa: E402
from run_benchmarks import conditions  # noqa: E402

from alexnet_deploy.backends.onnxruntime import OnnxRuntimeRunner, session_options  # noqa: E402
from alexnet_deploy.backends.openvino import OpenVINORunner, openvino_status  # noqa: E402
from alexnet_deploy.bench import (  # noqa: E402
    BenchConfig,
    BenchTarget,
    LatencyStats,
    measure_ceiling,
    run_benchmark,
)
from alexnet_deploy.core.files import write_json_atomic  # noqa: E402
from alexnet_deploy.core.manifest import library_versions  # noqa: E402

ORT_FP32, TORCH = "onnxruntime fp32", "torch eager fp32"


def int8_graphs(name: str, work: Path) -> dict[str, Path]:
    """The project's INT8 Q/DQ ONNX of the network in both forms (made once, cached by file name)."""
    from calib import calibrate, write_qdq
    from calib.qdq import ONNXRUNTIME_FORM, TENSORRT_FORM
    from calib.request import CalibrationRequest

    fp32 = ensure_artifacts(name, work)["fp32"]
    paths = {form.name: work / f"{name}.int8.{form.name}.onnx" for form in (TENSORRT_FORM, ONNXRUNTIME_FORM)}
    if not all(p.exists() for p in paths.values()):
        # target onnxruntime calibrates the tensors of both forms; minmax is enough to time a graph
        result = calibrate(
            fp32,
            CalibrationRequest.for_target(
                "onnxruntime", data=IMAGENETTE, method="minmax", num_images=64, holdout_images=32, use_cache=False
            ),
        )
        for form in (TENSORRT_FORM, ONNXRUNTIME_FORM):
            write_qdq(fp32, paths[form.name], result.ranges, form)
    return paths


def variants(name: str, work: Path, threads: int) -> dict[str, OnnxRuntimeRunner | OpenVINORunner]:
    """label -> runner for every engine compared (PyTorch is added by :func:`comparison`)."""
    fp32 = ensure_artifacts(name, work)["fp32"]
    q = int8_graphs(name, work)
    out: dict = {ORT_FP32: OnnxRuntimeRunner(fp32, threads=threads)}
    out["onnxruntime int8 (TensorRT form)"] = OnnxRuntimeRunner(q["tensorrt"], threads=threads, precision="int8")
    out["onnxruntime int8 (ORT uint8 form)"] = OnnxRuntimeRunner(q["onnxruntime"], threads=threads, precision="int8")
    out["openvino fp32"] = OpenVINORunner(fp32, threads=threads)
    if openvino_status()["bf16"]:
        out["openvino bf16"] = OpenVINORunner(fp32, threads=threads, inference_precision="bf16", precision="bf16")
    out["openvino int8 (TensorRT form)"] = OpenVINORunner(q["tensorrt"], threads=threads, precision="int8")
    out["openvino int8 (ORT uint8 form)"] = OpenVINORunner(q["onnxruntime"], threads=threads, precision="int8")
    for label, runner in out.items():
        runner.name = label
    return out


def comparison(name: str, work: Path, batches, duration_s: float, threads: int, ceiling: dict, log):
    """One interleaved run of every variant with PyTorch eager (the harness's baseline) and torch.compile."""
    from alexnet_deploy.backends.pytorch import TorchRunner
    from alexnet_deploy.core.checkpoint import load_model
    from alexnet_deploy.core.models import profile_model

    ckpt = ensure_artifacts(name, work)["ckpt"]
    model = load_model(ckpt).model
    flops = float(profile_model(model).flops)
    targets = [
        BenchTarget(TORCH, TorchRunner(model, threads=threads, name=TORCH), flops_per_image=flops),
        BenchTarget(
            "torch compile fp32",
            TorchRunner(load_model(ckpt).model, compile=True, threads=threads),
            flops_per_image=flops,
            thread_safe=False,
        ),  # fmt: skip
    ]
    for label, runner in variants(name, work, threads).items():
        targets.append(BenchTarget(label, runner, artifact=str(runner.model), flops_per_image=flops))
    cfg = BenchConfig(batch_sizes=tuple(batches), warmup_s=1.0, duration_s=duration_s, rounds=3)
    return run_benchmark(targets, cfg, baseline=TORCH, ceiling=ceiling, progress=log)


def agreements(name: str, work: Path, val: np.ndarray, threads: int) -> dict[str, float]:
    """Top-1 agreement of every variant with ONNX Runtime FP32 on ``val``."""
    logits = {}
    for label, runner in variants(name, work, threads).items():
        with runner:
            logits[label] = np.concatenate([runner.infer(val[i : i + 25]) for i in range(0, len(val), 25)])
    ref = logits[ORT_FP32].argmax(1)
    return {label: float((out.argmax(1) == ref).mean()) for label, out in logits.items()}


def _paired(ours, bare, seconds: float) -> tuple[list[float], list[float]]:
    """Per-call alternation of ``ours()`` and ``bare()`` (the order swapped every pair), so that the load of a
    shared machine, which drifts by tens of percent within seconds, hits both alike."""
    ours(), bare()  # the one discarded call the bench also makes
    a: list[float] = []
    b: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(a) < 5:
        for call, times in ((ours, a), (bare, b)) if len(a) % 2 == 0 else ((bare, b), (ours, a)):
            t0 = time.perf_counter()
            call()
            times.append(time.perf_counter() - t0)
    return a, b


def overhead(name: str, work: Path, threads: int, batches, seconds: float) -> list[dict]:
    """Our runners (through :meth:`Runner.infer`, as the bench calls them) against bare OpenVINO / ONNX Runtime
    calls of the same file, on a model compiled (session made) apart and on the runner's own one: the second
    isolates the runner's Python cost from the noise between two compiled copies. The bench harness's own cost
    on top of ``Runner.infer`` is what ``bench_overhead.py`` measures."""
    import onnxruntime as ort
    import openvino as ov

    fp32 = ensure_artifacts(name, work)["fp32"]
    ours = OpenVINORunner(fp32, threads=threads)
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"}
    request = ov.Core().compile_model(str(fp32), "CPU", config).create_infer_request()
    ort_runner = OnnxRuntimeRunner(fp32, threads=threads)
    session = ort.InferenceSession(str(fp32), session_options(threads), providers=["CPUExecutionProvider"])
    rows = []
    with ours, ort_runner:
        same = ours.compiled.create_infer_request()
        for batch in batches:
            x = np.random.default_rng(0).standard_normal((batch, 3, 224, 224), dtype=np.float32)
            pairs = {
                ("openvino", "own compile_model"): (ours.infer, lambda x=x: request.infer({0: x})),
                ("openvino", "the runner's compiled model"): (ours.infer, lambda x=x, same=same: same.infer({0: x})),
                ("onnxruntime", "own session"): (ort_runner.infer, lambda x=x: session.run(None, {"images": x})),
                ("onnxruntime", "the runner's session"): (
                    ort_runner.infer,
                    lambda x=x: ort_runner.session.run(None, {"images": x}),
                ),
            }
            for (backend, bare_on), (mine, bare) in pairs.items():
                a, b = (LatencyStats.from_samples(t) for t in _paired(lambda x=x, f=mine: f(x), bare, seconds))
                rows.append({"model": name, "backend": backend, "bare_on": bare_on, "batch": batch,
                             "runner_median_ms": a.median * 1e3, "bare_median_ms": b.median * 1e3, "calls": a.n,
                             "difference": a.median / b.median - 1})  # fmt: skip
    return rows


def with_bf16_ceiling(ceiling: dict, seconds: float) -> dict:
    """Add a bf16 ceiling (``torch.mm`` bf16, n = 2048: oneDNN, AMX where the CPU has it), so that the bf16
    engine's compute fraction is not taken against FP32's."""
    import torch

    a, b = torch.randn(2048, 2048, dtype=torch.bfloat16), torch.randn(2048, 2048, dtype=torch.bfloat16)
    best, end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < end or best == float("inf"):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    value = round(2 * 2048**3 / best / 1e9, 1)
    return {**ceiling, "gflops": {**ceiling["gflops"], "bf16": value},
            "probes": {**ceiling["probes"], "torch.mm bf16": value}}  # fmt: skip


def vs_ort(report, batches) -> dict[str, str]:
    """Each target's ratio to ONNX Runtime FP32: latency at batch 1, throughput at larger batches."""
    out = {}
    for t in report.targets:
        parts = []
        for b in batches:
            m, ref = report.get(t["label"], b), report.get(ORT_FP32, b)
            parts.append(ref.latency.median / m.latency.median if b == 1 else m.throughput / ref.throughput)
        out[t["label"]] = " / ".join(f"{p:.2f}" for p in parts)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/alexnet-bench"), help="artifact cache folder")
    ap.add_argument("--out", type=Path, default=None, help="JSON folder (default benchmarks/results; --quick: --work)")
    ap.add_argument("--models", default="alexnet,alexnet_paper")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--duration-s", type=float, default=4.0)
    ap.add_argument("--quick", action="store_true", help="short runs, to check the script (figures unreliable)")
    ap.add_argument("--max-load", type=float, default=0.8)
    ap.add_argument("--force", action="store_true", help="measure even on a busy machine")
    args = ap.parse_args()
    before = conditions()
    if before["load_average"][0] > args.max_load and not args.force:
        print(f"The 1-minute load is {before['load_average'][0]} (busy: {before['busy']}); wait, or pass --force.")
        raise SystemExit(1)
    out = args.out or (args.work / "quick-results" if args.quick else REPO / "benchmarks" / "results")
    out.mkdir(parents=True, exist_ok=True)
    batches = (1, 32)
    duration = 0.4 if args.quick else args.duration_s

    def log(text: str) -> None:
        print("  ", text, file=sys.stderr, flush=True)

    _, val = load_images(1, 20 if args.quick else 100)
    ceiling = measure_ceiling("cpu", args.threads, seconds=0.5 if args.quick else 2.0)
    ceiling = with_bf16_ceiling(ceiling, 0.5 if args.quick else 2.0)
    over: list[dict] = []
    for name in args.models.split(","):
        rows = overhead(name, args.work, args.threads, batches, 1.0 if args.quick else 10.0)
        over += rows
        report = comparison(name, args.work, batches, duration, args.threads, ceiling, log)
        agree = agreements(name, args.work, val, args.threads)
        report.command = " ".join(["python", *sys.argv])
        report.versions["openvino"] = openvino_status()["version"]
        report.save_json(out / f"openvino_compare_{name}.json")
        write_json_atomic(out / f"openvino_compare_{name}_agreement.json", agree)
        extra = {k: f"{v} (agreement {agree[k]:.0%})" if k in agree else v for k, v in vs_ort(report, batches).items()}
        print(f"\n### {name} (x = vs torch eager; last column: vs {ORT_FP32}, batch 1 / batch 32)\n")
        print(f"Ceilings: {ceiling['probe']}; bf16 {ceiling['gflops']['bf16']:g} GFLOP/s (torch.mm). The INT8 one is "
              "ONNX Runtime's VNNI MatMulInteger: OpenVINO's AMX int8 kernels can pass it.\n")  # fmt: skip
        print(ratio_table(report, extra=extra, extra_name=f"vs {ORT_FP32} b1 / b32"))
        print()
        for r in rows:
            inside = "within" if abs(r["difference"]) <= 0.03 else "OUTSIDE"
            print(f"- overhead, {r['backend']} batch {r['batch']} (bare on {r['bare_on']}): runner "
                  f"{r['runner_median_ms']:.2f} ms vs bare "
                  f"{r['bare_median_ms']:.2f} ms ({r['difference']:+.1%}, {inside} 3%)")  # fmt: skip
    after = conditions()
    summary = {"before": before, "after": after, "overhead": over, "versions": library_versions(),
               "openvino": openvino_status(), "quick": args.quick}  # fmt: skip
    write_json_atomic(out / "openvino_compare_overhead.json", summary)
    print(f"\nload average before / after: {before['load_average']} / {after['load_average']}; JSON in {out}")


if __name__ == "__main__":
    main()
