"""The machine a benchmark ran on: its measured compute ceiling, CPU model, SIMD features and load."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any


def measure_ceiling(device: str = "cpu", threads: int | None = None, seconds: float = 1.0) -> dict[str, Any]:
    """Measure this machine's dense-compute ceiling with a large square ``torch.mm`` (best of repeated calls).

    CPU: FP32, n = 2048, on ``threads`` threads. CUDA: FP32 (TF32 off) and FP16, n = 8192.

    Returns:
        ``{"probe": <what was run>, "gflops": {precision: GFLOP/s}}``.
    """
    import torch

    cuda = device.startswith("cuda")
    if threads and not cuda:
        torch.set_num_threads(threads)
    n = 8192 if cuda else 2048
    dtypes = {"fp32": torch.float32, "fp16": torch.float16} if cuda else {"fp32": torch.float32}
    gflops = {}
    allow_tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        for name, dtype in dtypes.items():
            a = torch.randn(n, n, device=device, dtype=dtype)
            b = torch.randn(n, n, device=device, dtype=dtype)
            best, t_end = float("inf"), time.perf_counter() + seconds
            for i in range(1000):
                if cuda:
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                torch.mm(a, b)
                if cuda:
                    torch.cuda.synchronize()
                if i > 0:  # the first call pays for allocation and kernel selection
                    best = min(best, time.perf_counter() - t0)
                if i > 1 and time.perf_counter() > t_end:
                    break
            gflops[name] = round(2 * n**3 / best / 1e9, 1)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = allow_tf32
    where = f"{torch.cuda.get_device_name(device)}" if cuda else f"{threads or torch.get_num_threads()} threads"
    return {"probe": f"torch.mm {n}x{n}, best of repeated calls ({where})", "gflops": gflops}


def machine_info() -> dict[str, Any]:
    """CPU model, cores, SIMD features that matter for inference, load average and the platform."""
    info: dict[str, Any] = {"platform": platform.platform(), "cpus": os.cpu_count(), "cpu": platform.processor()}
    try:
        text = Path("/proc/cpuinfo").read_text()
        for line in text.splitlines():
            if line.startswith("model name") and not info.get("cpu_model"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                info["simd"] = [
                    f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f in flags
                ]
                break
    except OSError:
        pass
    if hasattr(os, "getloadavg"):
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return info
