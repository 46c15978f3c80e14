"""The CPU's ceiling for OpenVINO, measured: int8 and bf16 throughput of large convolutions and large matrix
products, compiled and run the way our engines are (one request, the LATENCY hint, ``threads`` threads).

int8 is a Q/DQ ONNX (symmetric int8 activations per tensor, int8 weights per output channel, as our Q/DQ forms
write them), so OpenVINO runs its VNNI/AMX int8 kernels; bf16 is the FP32 graph compiled with
``INFERENCE_PRECISION_HINT=bf16`` (AMX where the CPU has it). Each figure is the best call of a few seconds, in
GOP/s (2 x multiply-adds per second). :func:`fraction` turns an engine's images/s into a share of it.

    .venv/bin/python benchmarks/roofline.py [--threads 2] [--seconds 3]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

#: The probes: stacks of equal layers, ReLU and (int8) a Q/DQ pair between them as the pooled form writes it, so
#: activations stay int8 and in cache from layer to layer and the figure is the kernels' compute, not the float
#: input's conversion or the output's memory traffic (one layer alone measured 15-25% lower). The conv layers are
#: AlexNet's conv3-5 kind (3x3, 13x13 ... here 256 channels at 14x14) at batch 32; the matrix products FC6/FC7's
#: kind (4096 x 4096) on 256 rows.
CONV = {"batch": 32, "channels": 256, "size": 14, "kernel": 3, "layers": 8}
MATMUL = {"rows": 256, "width": 4096, "layers": 4}


def conv_macs() -> int:
    c = CONV
    return c["layers"] * c["batch"] * c["channels"] ** 2 * c["size"] ** 2 * c["kernel"] ** 2


def matmul_macs() -> int:
    m = MATMUL
    return m["layers"] * m["rows"] * m["width"] ** 2


def _graph(kind: str, int8: bool, path: Path) -> tuple[Path, tuple[int, ...]]:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    if kind == "conv":
        c = CONV
        shape = (c["batch"], c["channels"], c["size"], c["size"])
        w_shape, axis, layers = (c["channels"], c["channels"], c["kernel"], c["kernel"]), 0, c["layers"]
    else:
        m = MATMUL
        shape = (m["rows"], m["width"])
        w_shape, axis, layers = (m["width"], m["width"]), 1, m["layers"]
    nodes, inits = [], []
    x = "x"
    for k in range(layers):
        w = rng.standard_normal(w_shape).astype(np.float32) * 0.05
        weight = f"w{k}"
        if int8:
            others = tuple(i for i in range(w.ndim) if i != axis)
            scale = (np.abs(w).max(axis=others) / 127).astype(np.float32)
            q = np.clip(np.round(w / np.expand_dims(scale, others)), -127, 127).astype(np.int8)
            inits += [numpy_helper.from_array(q, f"w{k}q"), numpy_helper.from_array(scale, f"w{k}s"),
                      numpy_helper.from_array(np.zeros_like(q, shape=scale.shape), f"w{k}z"),
                      numpy_helper.from_array(np.array(4.0 / 127, np.float32), f"x{k}s"),
                      numpy_helper.from_array(np.array(0, np.int8), f"x{k}z")]  # fmt: skip
            nodes += [
                helper.make_node("QuantizeLinear", [x, f"x{k}s", f"x{k}z"], [f"x{k}q"]),
                helper.make_node("DequantizeLinear", [f"x{k}q", f"x{k}s", f"x{k}z"], [f"x{k}d"]),
                helper.make_node("DequantizeLinear", [f"w{k}q", f"w{k}s", f"w{k}z"], [f"w{k}d"], axis=axis),
            ]
            x, weight = f"x{k}d", f"w{k}d"
        else:
            inits.append(numpy_helper.from_array(w, weight))
        op = (helper.make_node("Conv", [x, weight], [f"y{k}"], pads=[1, 1, 1, 1]) if kind == "conv"
              else helper.make_node("MatMul", [x, weight], [f"y{k}"]))  # fmt: skip
        nodes += [op, helper.make_node("Relu", [f"y{k}"], [f"r{k}"])]
        x = f"r{k}"
    graph = helper.make_graph(
        nodes,
        f"{kind}-{'int8' if int8 else 'fp32'}",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, list(shape))],
        inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path, shape


def _best_seconds(call, seconds: float) -> float:
    call()
    best, end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < end or best == float("inf"):
        t0 = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - t0)
    return best


def measure(threads: int = 2, seconds: float = 3.0) -> dict:
    """``{"int8": {"conv": GOP/s, "matmul": GOP/s}, "bf16": {...}, "probes": {...}, "peak": {...}}``."""
    import openvino as ov

    core = ov.Core()
    out: dict = {"int8": {}, "bf16": {}, "probes": {"conv": dict(CONV), "matmul": dict(MATMUL)}}
    with tempfile.TemporaryDirectory(prefix="alexnet-deploy-roofline-") as work:
        for kind, macs in (("conv", conv_macs()), ("matmul", matmul_macs())):
            for precision in ("int8", "bf16"):
                path, shape = _graph(kind, precision == "int8", Path(work) / f"{kind}-{precision}.onnx")
                config = {
                    "PERFORMANCE_HINT": "LATENCY",
                    "INFERENCE_NUM_THREADS": threads,
                    "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
                }
                request = core.compile_model(str(path), "CPU", config).create_infer_request()
                x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
                best = _best_seconds(lambda request=request, x=x: request.infer({0: x}), seconds)
                out[precision][kind] = round(2 * macs / best / 1e9, 1)
    out["peak"] = {p: max(out[p].values()) for p in ("int8", "bf16")}
    out["how"] = (
        f"OpenVINO {ov.get_version()}, {threads} threads, LATENCY hint, one request; best call of {seconds:g} s; "
        "int8 = Q/DQ graph, bf16 = FP32 graph with INFERENCE_PRECISION_HINT=bf16"
    )
    return out


def fraction(images_per_s: float, gops_per_image: float, peak_gops: float) -> float:
    """The share of the measured ceiling an engine reaches: images/s x GOP per image / ceiling GOP/s."""
    return images_per_s * gops_per_image / peak_gops


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    print(json.dumps(measure(args.threads, args.seconds), indent=2))


if __name__ == "__main__":
    main()
