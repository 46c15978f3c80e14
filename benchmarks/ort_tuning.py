"""What makes ONNX Runtime fast for AlexNet on this CPU: session options, INT8 coverage and form, threads.

Every variant is measured by the bench harness in one interleaved run per model, as a ratio against PyTorch
eager FP32 on the same thread count. INT8 variants are quantized here with onnxruntime.quantization (MinMax on
64 calibration images) *for speed*: the project's calibrated INT8 comes from calib/, and the speed of a Q/DQ
graph depends on its form and coverage, not on the ranges. Top-1 agreement with FP32 on real photos (100
imagenette-10 val images) is printed beside each INT8 variant as a first check; with random weights it is only
indicative.

    .venv/bin/python benchmarks/ort_tuning.py --work /tmp/alexnet-bench --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ensure_artifacts, load_images, ratio_table  # noqa: E402

from alexnet_deploy.bench import BenchConfig, BenchTarget, measure_ceiling, run_benchmark  # noqa: E402
from alexnet_deploy.runners.base import Runner  # noqa: E402


class OrtVariant(Runner):
    """An ONNX Runtime session with the project's session options plus the changes under test."""

    backend = "onnxruntime"

    def __init__(self, path: Path, name: str, threads: int, precision: str = "fp32", **changes) -> None:
        super().__init__(name, precision)
        self.path, self.threads, self.changes = path, threads, changes

    def activate_impl(self) -> None:
        import onnxruntime as ort

        from alexnet_deploy.runners.onnxruntime_runner import session_options

        opts = session_options(self.changes.pop("intra_threads", self.threads))
        for key, value in self.changes.items():
            if key == "level":
                opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, value)
            elif key == "parallel":
                opts.execution_mode = ort.ExecutionMode.ORT_PARALLEL
            elif key == "mem_pattern":
                opts.enable_mem_pattern = value
            elif key == "cpu_arena":
                opts.enable_cpu_mem_arena = value
            else:  # a session config entry, e.g. session.intra_op.allow_spinning
                opts.add_session_config_entry(key, value)
        self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def infer_impl(self, images: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: images})[0]

    def deactivate_impl(self) -> None:
        self.session = None


def quantize_variants(fp32: Path, work: Path, calib: np.ndarray) -> dict[str, Path]:
    """INT8 graphs that differ in form and coverage (cached by file name)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(calib[i : i + 8] for i in range(0, len(calib), 8))

        def get_next(self):
            batch = next(self.it, None)
            return None if batch is None else {"images": batch}

    stem = fp32.name.removesuffix(".fp32.onnx")
    pre = work / f"{stem}.pre.onnx"
    if not pre.exists():
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
    static = {
        # ONNX Runtime's CPU form: uint8 activations (VNNI's u8 x s8), per-channel int8 weights, every op
        "int8 qdq u8s8 all": dict(activation_type=QuantType.QUInt8, op_types_to_quantize=None, extra={}),
        # TensorRT's form: symmetric int8 activations, Q/DQ only on Conv/Gemm inputs
        "int8 qdq s8s8 conv+fc": dict(
            activation_type=QuantType.QInt8,
            op_types_to_quantize=["Conv", "Gemm"],
            extra={"ActivationSymmetric": True, "WeightSymmetric": True},
        ),
        "int8 qdq u8s8 conv only": dict(activation_type=QuantType.QUInt8, op_types_to_quantize=["Conv"], extra={}),
        "int8 qdq u8s8 fc only": dict(activation_type=QuantType.QUInt8, op_types_to_quantize=["Gemm"], extra={}),
    }
    out = {}
    for label, kw in static.items():
        path = work / f"{stem}.{label.replace(' ', '_').replace('+', '_')}.onnx"
        if not path.exists():
            quantize_static(
                str(pre),
                str(path),
                Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=kw["activation_type"],
                weight_type=QuantType.QInt8,
                op_types_to_quantize=kw["op_types_to_quantize"],
                extra_options=kw["extra"],
            )
        out[label] = path
    # FC weights to int8 with activations quantized at run time (MatMulInteger): the FC weights dominate batch 1
    dyn = work / f"{stem}.int8_dynamic_fc.onnx"
    if not dyn.exists():
        quantize_dynamic(
            str(pre), str(dyn), op_types_to_quantize=["Gemm", "MatMul"], per_channel=True, weight_type=QuantType.QInt8
        )
    out["int8 dynamic fc (MatMulInteger)"] = dyn
    both = work / f"{stem}.int8_conv_static_fc_dynamic.onnx"
    if not both.exists():
        quantize_dynamic(
            str(out["int8 qdq u8s8 conv only"]),
            str(both),
            op_types_to_quantize=["Gemm", "MatMul"],
            per_channel=True,
            weight_type=QuantType.QInt8,
        )
    out["int8 qdq conv + dynamic fc"] = both
    return out


def agreement(path: Path, images: np.ndarray, ref: np.ndarray, threads: int) -> float:
    """Top-1 agreement of ``path`` with the FP32 logits ``ref``."""
    with OrtVariant(path, "check", threads) as r:
        out = np.concatenate([r.infer(images[i : i + 25]) for i in range(0, len(images), 25)])
    return float((out.argmax(1) == ref.argmax(1)).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/alexnet-bench"), help="artifact cache folder")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="JSON results folder")
    ap.add_argument("--models", default="alexnet,alexnet_paper")
    ap.add_argument("--batch", default="1,32")
    ap.add_argument("--duration-s", type=float, default=3.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", default="", help="comma-separated substrings: keep only matching variants")
    args = ap.parse_args()
    cal, val = load_images(64, 100)
    ceiling = measure_ceiling("cpu", args.threads)
    summary = {}
    for name in args.models.split(","):
        art = ensure_artifacts(name, args.work)
        variants: dict[str, tuple[Path, dict, str]] = {
            "onnxruntime fp32 (project options)": (art["fp32"], {}, "fp32"),
            "fp32 no spinning": (art["fp32"], {"session.intra_op.allow_spinning": "0"}, "fp32"),
            "fp32 level EXTENDED (no NCHWc layout)": (art["fp32"], {"level": "ORT_ENABLE_EXTENDED"}, "fp32"),
            "fp32 level BASIC": (art["fp32"], {"level": "ORT_ENABLE_BASIC"}, "fp32"),
            "fp32 no prepacking": (art["fp32"], {"session.disable_prepacking": "1"}, "fp32"),
            "fp32 no memory pattern": (art["fp32"], {"mem_pattern": False}, "fp32"),
            "fp32 1 thread": (art["fp32"], {"intra_threads": 1}, "fp32"),
            "onnxruntime fp16 graph": (art["fp16"], {}, "fp16"),
        }
        if "fp32_decomposed_lrn" in art:
            variants["fp32 decomposed LRN"] = (art["fp32_decomposed_lrn"], {}, "fp32")
        for label, path in quantize_variants(art["fp32"], args.work, cal).items():
            variants[label] = (path, {}, "int8")
        best_int8 = args.work / f"{name}.int8_conv_static_fc_dynamic.onnx"
        variants["int8 qdq conv + dynamic fc, no spinning"] = (
            best_int8,
            {"session.intra_op.allow_spinning": "0"},
            "int8",
        )
        if args.only:
            keys = args.only.split(",")
            variants = {
                k: v for k, v in variants.items() if k.startswith("onnxruntime fp32") or any(s in k for s in keys)
            }
        with OrtVariant(art["fp32"], "ref", args.threads) as r:
            ref = np.concatenate([r.infer(val[i : i + 25]) for i in range(0, len(val), 25)])
        agree = {k: agreement(p, val, ref, args.threads) for k, (p, _, prec) in variants.items() if prec != "fp32"}
        from alexnet_deploy.checkpoint import load_model
        from alexnet_deploy.models import profile_model
        from alexnet_deploy.runners.torch_runner import TorchRunner

        loaded = load_model(art["ckpt"])
        flops = float(profile_model(loaded.model).flops)
        targets = [
            BenchTarget(
                "torch eager fp32",
                TorchRunner(loaded.model, threads=args.threads, name="torch eager fp32"),
                flops_per_image=flops,
            )
        ]
        for label, (path, changes, prec) in variants.items():
            targets.append(
                BenchTarget(
                    label,
                    OrtVariant(path, label, args.threads, prec, **changes),
                    artifact=str(path),
                    flops_per_image=flops,
                )
            )
        cfg = BenchConfig(
            batch_sizes=tuple(int(b) for b in args.batch.split(",")), warmup_s=1.0, duration_s=args.duration_s, rounds=3
        )
        report = run_benchmark(
            targets,
            cfg,
            baseline="torch eager fp32",
            ceiling=ceiling,
            progress=lambda s: print("  ", s, file=sys.stderr, flush=True),
        )
        report.command = " ".join(["python", *sys.argv])
        args.out.mkdir(parents=True, exist_ok=True)
        report.save_json(args.out / f"tuning_{name}.json")
        print(f"\n### {name}\n")
        print(ratio_table(report, extra={k: f"{v:.0%}" for k, v in agree.items()}, extra_name="top-1 agreement"))
        summary[name] = {"agreement": agree}
    (args.out / "tuning_agreement.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
