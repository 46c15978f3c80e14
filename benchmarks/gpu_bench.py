"""The GPU bench: PyTorch eager FP32/FP16, torch.compile with CUDA graphs, ONNX Runtime's CUDA provider and
TensorRT plans (where installed), interleaved per model, with ratios against PyTorch eager FP32.

Latency is end to end (numpy in, numpy out: host<->device copies included); the "w/o copies" figures are the
model alone on device-resident tensors, timed with CUDA events. Run by ``benchmarks/gpu_check.sh``.

    python benchmarks/gpu_bench.py --out RESULTS_DIR [--models alexnet,alexnet_paper] [--duration-s 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ensure_artifacts, ensure_checkpoint, ratio_table  # noqa: E402

from alexnet_deploy import bench  # noqa: E402
from alexnet_deploy.core.files import write_bytes_atomic  # noqa: E402


def gpu_or_exit() -> str:
    """The GPU's name, or exit 1 with one sentence."""
    import torch

    if not torch.cuda.is_available():
        print("error: no CUDA GPU is visible to torch here, so the GPU bench cannot run.", file=sys.stderr)
        raise SystemExit(1)
    return torch.cuda.get_device_name(0)


def tensorrt_plans(art: dict[str, Path], work: Path, name: str, log) -> list[Path]:
    """FP32 and FP16 plans (and INT8 from a speed-only Q/DQ graph) where TensorRT is usable; [] otherwise."""
    from alexnet_deploy.core.system import tensorrt_status

    status = tensorrt_status()
    if not status["usable"]:
        log(f"TensorRT skipped: {status['reason']}")
        return []
    from alexnet_deploy.backends.tensorrt.builder import TensorRTBuildOptions, build_plan

    options = TensorRTBuildOptions(min_batch=1, opt_batch=8, max_batch=32, timing_cache=work / "timing.cache")
    sources = {"fp32": art["fp32"], "fp16": art["fp16"]}
    int8 = work / f"{name}.int8.trt_form.onnx"
    try:
        if not int8.exists():
            quantize_trt_form(art["fp32"], int8)
        sources["int8"] = int8
    except Exception as exc:  # noqa: BLE001 - INT8 is a bonus; report and go on
        log(f"INT8 Q/DQ graph not made: {exc}")
    plans = []
    for precision, onnx_path in sources.items():
        plan = work / f"{name}.{precision}.plan"
        t0 = time.perf_counter()
        try:
            if not plan.exists():
                build_plan(onnx_path, plan, options)
            plans.append(plan)
            log(f"TensorRT {precision} plan: {plan.name} ({time.perf_counter() - t0:.0f} s)")
        except Exception as exc:  # noqa: BLE001 - one failed build must not lose the other figures
            log(f"TensorRT {precision} build failed: {str(exc)[:300]}")
    return plans


def quantize_trt_form(fp32: Path, out: Path) -> None:
    """Symmetric int8 Q/DQ on Conv/Gemm inputs (TensorRT's rules), MinMax on random images: for speed only."""
    import numpy as np
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    rng = np.random.default_rng(0)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.left = 4

        def get_next(self):
            self.left -= 1
            return {"images": rng.standard_normal((4, 3, 224, 224), dtype=np.float32)} if self.left >= 0 else None

    quantize_static(
        str(fp32),
        str(out),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["Conv", "Gemm"],
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
    )
    from alexnet_deploy.core.manifest import load_manifest, save_manifest

    manifest = load_manifest(fp32)
    manifest.precision = "int8"
    manifest.extra = {**manifest.extra, "note": "MinMax on random inputs: for speed measurements only"}
    save_manifest(out, manifest)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--work", type=Path, default=None, help="artifact folder (default OUT/artifacts)")
    ap.add_argument("--models", default="alexnet,alexnet_paper")
    ap.add_argument("--batch", default="1,8,32")
    ap.add_argument("--duration-s", type=float, default=2.0)
    ap.add_argument("--warmup-s", type=float, default=0.5)
    args = ap.parse_args()
    gpu = gpu_or_exit()
    work = args.work or args.out / "artifacts"
    args.out.mkdir(parents=True, exist_ok=True)
    logs: list[str] = []

    def log(text: str) -> None:
        print(text, flush=True)
        logs.append(text)

    log(f"GPU: {gpu}")
    peak = bench.measure_ceiling("cuda")
    log(f"ceiling: {json.dumps(peak)}")
    for name in args.models.split(","):
        t0 = time.perf_counter()
        ckpt = ensure_checkpoint(name, work)
        specs = [bench.parse_spec(f"{ckpt}@compile"), bench.parse_spec(f"{ckpt}@compile,fp16")]
        try:
            art = ensure_artifacts(name, work)
            log(f"{name}: artifacts in {time.perf_counter() - t0:.0f} s")
        except Exception as exc:  # noqa: BLE001 - e.g. onnxscript missing: the PyTorch figures still count
            art = None
            log(f"{name}: no ONNX export here ({type(exc).__name__}: {str(exc)[:200]}); PyTorch targets only")
        if art:
            import onnxruntime as ort

            if "CUDAExecutionProvider" in ort.get_available_providers():
                specs.append(bench.parse_spec(str(art["fp32"])))
            specs += [bench.parse_spec(str(p)) for p in tensorrt_plans(art, work, name, log)]
        targets, base = bench.build_targets(specs, device="cuda", compare=True)
        config = bench.BenchConfig(
            batch_sizes=tuple(int(b) for b in args.batch.split(",")),
            warmup_s=args.warmup_s,
            duration_s=args.duration_s,
            rounds=2,
        )
        t0 = time.perf_counter()
        report = bench.run_benchmark(targets, config, baseline=base, ceiling=peak, progress=lambda s: print(" ", s))
        report.command = " ".join(["python", *sys.argv])
        report.save_json(args.out / f"gpu_bench_{name}.json")
        table = ratio_table(report)
        compute = [
            f"| {m.label} | {m.batch} | {m.latency.median * 1e3:.3f} | {m.compute_latency.median * 1e3:.3f} |"
            for m in report.measurements
            if m.compute_latency
        ]
        text = f"### {name} on {gpu}\n\n{table}\n\nModel alone (CUDA events, copies excluded):\n\n"
        text += "| target | batch | median ms with copies | median ms w/o copies |\n|---|---|---|---|\n"
        text += "\n".join(compute) + "\n"
        write_bytes_atomic(args.out / f"gpu_bench_{name}.md", text.encode())
        log(f"{name}: measured in {time.perf_counter() - t0:.0f} s")
        print(text, flush=True)
    write_bytes_atomic(args.out / "gpu_bench.log", ("\n".join(logs) + "\n").encode())


if __name__ == "__main__":
    main()
