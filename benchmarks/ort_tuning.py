"""What makes ONNX Runtime fast for AlexNet on this CPU: session options, graph form (LRN), INT8 coverage
and form, threads.

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
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ensure_artifacts, load_images, ratio_table  # noqa: E402

from alexnet_deploy.backends.base import Runner  # noqa: E402
from alexnet_deploy.bench import BenchConfig, BenchTarget, measure_ceiling, run_benchmark  # noqa: E402
from alexnet_deploy.core.files import write_json_atomic  # noqa: E402


class OrtVariant(Runner):
    """An ONNX Runtime session with the project's session options plus the changes under test."""

    backend = "onnxruntime"

    def __init__(self, path: Path, name: str, threads: int, precision: str = "fp32", **changes) -> None:
        super().__init__(name, precision)
        self.path, self.threads, self.changes = path, threads, changes

    def activate_impl(self) -> None:
        import onnxruntime as ort

        from alexnet_deploy.backends.onnxruntime import session_options

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


def quantize_variants(
    fp32: Path, work: Path, calib: np.ndarray, kinds: tuple[str, ...] | None = None, exclude: list[str] | None = None
) -> dict[str, Path]:
    """INT8 graphs of ``fp32`` that differ in form and coverage (made once, cached by file name).

    Args:
        kinds: which variants (keys of the table below; default all).
        exclude: node names to leave in float (e.g. the LRN band convolutions).
    """
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

    stem = fp32.name.removesuffix(".onnx")
    pre = work / f"{stem}.pre.onnx"
    if not pre.exists():
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
    u8, s8 = QuantType.QUInt8, QuantType.QInt8
    static = {
        # ONNX Runtime's CPU form: uint8 activations (VNNI multiplies u8 x s8), per-channel int8 weights, Q/DQ
        # around every op it can quantize (ReLU, pooling, reshapes too)
        "int8 u8s8 all": (u8, None, {}),
        # TensorRT's form: symmetric int8 activations, Q/DQ only on the inputs of Conv and Gemm
        "int8 s8s8 conv+fc (TensorRT form)": (s8, ["Conv", "Gemm"], {"ActivationSymmetric": True}),
        "int8 u8s8 conv+fc": (u8, ["Conv", "Gemm"], {}),
        "int8 u8s8 conv only": (u8, ["Conv"], {}),
        "int8 u8s8 fc only": (u8, ["Gemm"], {}),
    }
    out = {}
    for label, (act, ops, extra) in static.items():
        if (
            kinds is not None
            and label not in kinds
            and not (label == "int8 u8s8 conv only" and "int8 conv + dynamic fc" in kinds)
        ):
            continue
        path = work / f"{stem}.{label.split(' (')[0].replace(' ', '_').replace('+', '_')}.onnx"
        if not path.exists():
            quantize_static(
                str(pre),
                str(path),
                Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=act,
                weight_type=QuantType.QInt8,
                op_types_to_quantize=ops,
                nodes_to_exclude=exclude or [],
                extra_options={"WeightSymmetric": True, **extra},
            )
        out[label] = path
    if kinds is None or "int8 dynamic fc" in kinds:
        # FC weights to int8, activations quantized at run time (DynamicQuantizeLinear + MatMulInteger)
        dyn = work / f"{stem}.int8_dynamic_fc.onnx"
        if not dyn.exists():
            quantize_dynamic(
                str(pre),
                str(dyn),
                op_types_to_quantize=["Gemm", "MatMul"],
                per_channel=True,
                weight_type=QuantType.QInt8,
            )
        out["int8 dynamic fc"] = dyn
    if kinds is None or "int8 conv + dynamic fc" in kinds:
        both = work / f"{stem}.int8_conv_static_fc_dynamic.onnx"
        if not both.exists():
            quantize_dynamic(
                str(out["int8 u8s8 conv only"]),
                str(both),
                op_types_to_quantize=["Gemm", "MatMul"],
                per_channel=True,
                weight_type=QuantType.QInt8,
            )
        out["int8 conv + dynamic fc"] = both
    return out


def agreement(path: Path, images: np.ndarray, ref: np.ndarray, threads: int) -> float:
    """Top-1 agreement of ``path`` with the FP32 logits ``ref``."""
    with OrtVariant(path, "check", threads) as r:
        out = np.concatenate([r.infer(images[i : i + 25]) for i in range(0, len(images), 25)])
    return float((out.argmax(1) == ref.argmax(1)).mean())


NO_SPIN = {"session.intra_op.allow_spinning": "0"}


def tuning_variants(name: str, work: Path, cal: np.ndarray) -> dict[str, tuple[Path, dict, str]]:
    """label -> (ONNX path, session changes, precision): each change under test, one at a time."""
    from lrn_forms import lrn_as_conv, lrn_conv_node_names

    art = ensure_artifacts(name, work)
    fp32 = art["fp32"]
    v: dict[str, tuple[Path, dict, str]] = {
        "onnxruntime fp32 (project options)": (fp32, {}, "fp32"),
        "fp32, no spinning": (fp32, NO_SPIN, "fp32"),
        "fp32, level EXTENDED (no NCHWc layout)": (fp32, {"level": "ORT_ENABLE_EXTENDED"}, "fp32"),
        "fp32, level BASIC": (fp32, {"level": "ORT_ENABLE_BASIC"}, "fp32"),
        "fp32, no weight prepacking": (fp32, {"session.disable_prepacking": "1"}, "fp32"),
        "fp32, no memory pattern": (fp32, {"mem_pattern": False}, "fp32"),
        "fp32, 1 thread": (fp32, {"intra_threads": 1}, "fp32"),
        "fp32, parallel execution mode": (fp32, {"parallel": True}, "fp32"),
        "onnxruntime fp16 graph": (art["fp16"], {}, "fp16"),
    }
    base = fp32
    if name == "alexnet_paper":
        conv_lrn = work / f"{name}.fp32_lrnconv.onnx"
        if not conv_lrn.exists():
            lrn_as_conv(fp32, conv_lrn)
        v["fp32, LRN decomposed (torch's export)"] = (art["fp32_decomposed_lrn"], {}, "fp32")
        v["fp32, LRN as banded 1x1 conv"] = (conv_lrn, {}, "fp32")
        v["fp32, LRN as conv, no spinning"] = (conv_lrn, NO_SPIN, "fp32")
        native = quantize_variants(fp32, work, cal, kinds=("int8 u8s8 all", "int8 s8s8 conv+fc (TensorRT form)"))
        for label, path in native.items():
            v[f"{label}, native LRN"] = (path, {}, "int8")
        base = conv_lrn
    exclude = lrn_conv_node_names(base) if base != fp32 else None
    suffix = ", LRN as conv" if base != fp32 else ""
    for label, path in quantize_variants(base, work, cal, exclude=exclude).items():
        v[label + suffix] = (path, {}, "int8")
    for label in ("int8 u8s8 all", "int8 conv + dynamic fc"):
        path = v[label + suffix][0]
        v[f"{label}{suffix}, no spinning"] = (path, NO_SPIN, "int8")
    # level ALL lets ONNX Runtime run uint8 convolutions in NHWC (its NhwcTransformer); EXTENDED does not
    v[f"int8 u8s8 all{suffix}, level EXTENDED (no NHWC)"] = (
        v["int8 u8s8 all" + suffix][0],
        {"level": "ORT_ENABLE_EXTENDED"},
        "int8",
    )
    return v


def measure_variants(name, variants, work, batches, duration_s, threads, ceiling, progress=None, torch_compile=False):
    """One interleaved run of the variants and PyTorch eager FP32 (the baseline) on ``threads`` threads
    (and ``torch.compile`` FP32 with ``torch_compile``)."""
    from alexnet_deploy.backends.pytorch import TorchRunner
    from alexnet_deploy.core.checkpoint import load_model
    from alexnet_deploy.core.models import profile_model

    loaded = load_model(ensure_artifacts(name, work)["ckpt"])
    flops = float(profile_model(loaded.model).flops)
    base = TorchRunner(loaded.model, threads=threads, name="torch eager fp32")
    targets = [BenchTarget("torch eager fp32", base, flops_per_image=flops)]
    if torch_compile:
        compiled = TorchRunner(load_model(ensure_artifacts(name, work)["ckpt"]).model, compile=True, threads=threads)
        targets.append(BenchTarget("torch compile fp32", compiled, flops_per_image=flops))
    for label, (path, changes, prec) in variants.items():
        runner = OrtVariant(path, label, threads, prec, **changes)
        targets.append(BenchTarget(label, runner, artifact=str(path), flops_per_image=flops))
    cfg = BenchConfig(batch_sizes=tuple(batches), warmup_s=1.0, duration_s=duration_s, rounds=3)
    return run_benchmark(targets, cfg, baseline="torch eager fp32", ceiling=ceiling, progress=progress)


def agreements(variants, val: np.ndarray, threads: int) -> dict[str, float]:
    """Top-1 agreement with the project's FP32 graph on ``val`` for every non-FP32 variant."""
    ref_path = next(p for k, (p, _, _) in variants.items() if k.startswith("onnxruntime fp32"))
    with OrtVariant(ref_path, "ref", threads) as r:
        ref = np.concatenate([r.infer(val[i : i + 25]) for i in range(0, len(val), 25)])
    done: dict[Path, float] = {}
    out = {}
    for label, (path, _, prec) in variants.items():
        if prec != "fp32" or "LRN" in label:
            if path not in done:
                done[path] = agreement(path, val, ref, threads)
            out[label] = done[path]
    return out


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
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.models.split(","):
        variants = tuning_variants(name, args.work, cal)
        if args.only:
            keys = args.only.split(",")
            variants = {k: v for k, v in variants.items() if "project options" in k or any(s in k for s in keys)}
        agree = agreements(variants, val, args.threads)
        report = measure_variants(
            name,
            variants,
            args.work,
            [int(b) for b in args.batch.split(",")],
            args.duration_s,
            args.threads,
            ceiling,
            progress=lambda s: print("  ", s, file=sys.stderr, flush=True),
        )
        report.command = " ".join(["python", *sys.argv])
        report.save_json(args.out / f"tuning_{name}.json")
        write_json_atomic(args.out / f"tuning_{name}_agreement.json", agree)
        print(f"\n### {name}\n")
        print(ratio_table(report, extra={k: f"{v:.0%}" for k, v in agree.items()}, extra_name="top-1 agreement"))


if __name__ == "__main__":
    main()
