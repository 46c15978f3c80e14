"""The machine a benchmark ran on: its measured compute ceiling, CPU model, SIMD features and load."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any

from alexnet_deploy.core.system import SIMD_ARM, SIMD_FLAGS, cpu_features  # noqa: F401 - re-exported


def _best_seconds(fn, seconds: float, sync=None) -> float:
    """The fastest of repeated calls of ``fn`` over about ``seconds`` (the first call is not counted: it pays for
    allocation and kernel selection)."""
    best, t_end = float("inf"), time.perf_counter() + seconds
    for i in range(1000):
        if sync:
            sync()
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        if i > 0:
            best = min(best, time.perf_counter() - t0)
        if i > 1 and time.perf_counter() > t_end:
            break
    return best


def _ort_matmul_probe(n: int, threads: int | None, seconds: float, integer: bool) -> float | None:
    """GFLOP/s (GOP/s for ``integer``: uint8 x int8 MatMulInteger) of ONNX Runtime's CPU kernels, or None."""
    try:
        import numpy as np
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return None
    rng = np.random.default_rng(0)
    if integer:
        b = numpy_helper.from_array(rng.integers(-127, 127, (n, n), dtype=np.int8), "B")
        node = helper.make_node("MatMulInteger", ["A", "B"], ["C"])
        a_type, c_type, a = TensorProto.UINT8, TensorProto.INT32, rng.integers(0, 255, (n, n), dtype=np.uint8)
    else:
        b = numpy_helper.from_array(rng.standard_normal((n, n), dtype=np.float32), "B")
        node = helper.make_node("MatMul", ["A", "B"], ["C"])
        a_type, c_type, a = TensorProto.FLOAT, TensorProto.FLOAT, rng.standard_normal((n, n), dtype=np.float32)
    graph = helper.make_graph(
        [node],
        "probe",
        [helper.make_tensor_value_info("A", a_type, [n, n])],
        [helper.make_tensor_value_info("C", c_type, [n, n])],
        [b],
    )
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return round(2 * n**3 / _best_seconds(lambda: session.run(None, {"A": a}), seconds) / 1e9, 1)


def measure_ceiling(device: str = "cpu", threads: int | None = None, seconds: float = 1.0) -> dict[str, Any]:
    """Measure this machine's dense-compute ceiling: the best of large square matrix products.

    CPU (on ``threads`` threads, n = 2048): ``torch.mm`` FP32 and ONNX Runtime's MatMul FP32 (their BLAS
    libraries differ: MKL's ``torch.mm`` ran at half the speed of ONNX Runtime's MLAS on an AMD EPYC), the FP32
    ceiling being the better of the two; and ONNX Runtime's uint8 x int8 MatMulInteger for the INT8 ceiling.
    CUDA (n = 8192): ``torch.mm`` FP32 (TF32 off) and FP16.

    Returns:
        ``{"probe": <what was run>, "gflops": {precision: best GFLOP/s}, "probes": {probe: GFLOP/s}}``.
    """
    import torch

    cuda = device.startswith("cuda")
    if threads and not cuda:
        torch.set_num_threads(threads)
    n = 8192 if cuda else 2048
    probes: dict[str, float] = {}
    allow_tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    sync = torch.cuda.synchronize if cuda else None
    try:
        for name, dtype in (
            {"fp32": torch.float32, "fp16": torch.float16} if cuda else {"fp32": torch.float32}
        ).items():
            a = torch.randn(n, n, device=device, dtype=dtype)
            b = torch.randn(n, n, device=device, dtype=dtype)
            best = _best_seconds(lambda a=a, b=b: torch.mm(a, b), seconds, sync)
            probes[f"torch.mm {name}"] = round(2 * n**3 / best / 1e9, 1)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = allow_tf32
    if not cuda:
        for name, integer in (("onnxruntime MatMul fp32", False), ("onnxruntime MatMulInteger u8s8", True)):
            value = _ort_matmul_probe(n, threads, seconds, integer)
            if value:
                probes[name] = value
    gflops = {
        "fp32": max(v for k, v in probes.items() if "fp32" in k),
        **({"fp16": probes["torch.mm fp16"]} if cuda else {}),
        **({"int8": probes["onnxruntime MatMulInteger u8s8"]} if "onnxruntime MatMulInteger u8s8" in probes else {}),
    }
    where = torch.cuda.get_device_name(device) if cuda else f"{threads or torch.get_num_threads()} threads"
    listed = ", ".join(f"{k} {v:g}" for k, v in probes.items())
    return {"probe": f"best of {n}x{n} matrix products ({where}): {listed} GFLOP/s", "gflops": gflops, "probes": probes}


def machine_info() -> dict[str, Any]:
    """CPU model, cores, SIMD features that matter for inference, load average and the platform."""
    info: dict[str, Any] = {"platform": platform.platform(), "cpus": os.cpu_count(), "cpu": platform.processor()}
    try:
        info.update(cpu_features(Path("/proc/cpuinfo").read_text()))
    except OSError:
        pass
    if hasattr(os, "getloadavg"):
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return info
