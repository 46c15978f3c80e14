"""What this machine can do: library versions, GPUs (probed in a child process), the CPU's SIMD features, usable
backends.

TensorRT can segfault when a GPU is absent, so the GPU is always probed in a subprocess first and TensorRT is
only imported (also in a subprocess, for the doctor) once a GPU is known to be there.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import json
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from alexnet_deploy.core.manifest import library_versions

_TORCH_GPU_PROBE = """
import json, torch
gpus = []
if torch.cuda.is_available():
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        gpus.append({"name": p.name, "compute_capability": f"{p.major}.{p.minor}",
                     "memory_gib": round(p.total_memory / 2**30, 1)})
print(json.dumps(gpus))
"""

_TENSORRT_PROBE = "import json, tensorrt; print(json.dumps({'version': tensorrt.__version__}))"


@dataclass
class GPU:
    name: str
    compute_capability: str
    memory_gib: float | None = None


@dataclass
class SystemReport:
    """The doctor's findings."""

    versions: dict[str, str]
    gpus: list[GPU]
    gpu_probe: str
    onnxruntime_providers: list[str]
    tensorrt: dict[str, str | bool | None]
    backends: dict[str, dict] = field(default_factory=dict)  # backend -> its status (BackendStatus as a dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _run_child(code: str, timeout: float = 60.0) -> tuple[int, str, str]:
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return -1, "", f"timed out after {timeout:.0f} s"
    return proc.returncode, proc.stdout, proc.stderr


@functools.lru_cache(maxsize=1)
def probe_gpus() -> tuple[tuple[GPU, ...], str]:
    """Find NVIDIA GPUs without touching CUDA in this process.

    Returns:
        (gpus, how): the GPUs found and a sentence on how they were probed.
    """
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run(
                [smi, "--query-gpu=name,compute_cap,memory.total", "--format=csv,noheader,nounits"],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            ).stdout
            gpus = []
            for line in out.strip().splitlines():
                name, cc, mem = (s.strip() for s in line.split(","))
                gpus.append(GPU(name=name, compute_capability=cc, memory_gib=round(float(mem) / 1024, 1)))
            if gpus:
                return tuple(gpus), "nvidia-smi"
        except (subprocess.SubprocessError, ValueError, OSError):
            pass
    if importlib.util.find_spec("torch") is None:
        return (), "no nvidia-smi and no torch to probe with"
    rc, out, err = _run_child(_TORCH_GPU_PROBE)
    if rc != 0:
        return (), f"torch probe failed: {err.strip().splitlines()[-1] if err.strip() else rc}"
    gpus = tuple(GPU(**g) for g in json.loads(out.strip().splitlines()[-1]))
    return gpus, "torch.cuda in a child process" if gpus else "torch.cuda in a child process: no CUDA device"


def tensorrt_status() -> dict[str, str | bool | None]:
    """Whether TensorRT is installed and usable (importable with a GPU present); never imports it here."""
    status: dict[str, str | bool | None] = {"installed": False, "version": None, "usable": False, "reason": ""}
    if importlib.util.find_spec("tensorrt") is None:
        status["reason"] = "the tensorrt package is not installed (pip install 'alexnet-deploy[tensorrt]')"
        return status
    status["installed"] = True
    gpus, _ = probe_gpus()
    if not gpus:
        status["reason"] = "no NVIDIA GPU was found, and TensorRT needs one"
        return status
    rc, out, err = _run_child(_TENSORRT_PROBE)
    if rc != 0:
        last = err.strip().splitlines()[-1] if err.strip() else f"exit code {rc}"
        status["reason"] = f"importing tensorrt failed: {last}"
        return status
    status["version"] = json.loads(out.strip().splitlines()[-1])["version"]
    major = int(str(status["version"]).split(".")[0])
    if major not in (10, 11):
        status["reason"] = f"TensorRT {status['version']} is not supported; alexnet-deploy needs 10.x or 11.x"
        return status
    status["usable"] = True
    return status


def onnxruntime_providers() -> list[str]:
    """ONNX Runtime's available execution providers, or an empty list when it is not installed."""
    if importlib.util.find_spec("onnxruntime") is None:
        return []
    import onnxruntime as ort

    return list(ort.get_available_providers())


def system_report(backends: dict[str, dict] | None = None) -> SystemReport:
    """Collect versions, GPUs and providers (the ``doctor`` command's data); ``backends`` is each registered
    backend's status, which the caller gathers from the registry (the core does not know the backends)."""
    gpus, how = probe_gpus()
    return SystemReport(
        versions=library_versions(),
        gpus=list(gpus),
        gpu_probe=how,
        onnxruntime_providers=onnxruntime_providers(),
        tensorrt=tensorrt_status(),
        backends=backends or {},
    )


def package_version(name: str) -> str | None:
    """An installed distribution's version without importing it, or None."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


#: /proc/cpuinfo flags that decide which kernels ONNX Runtime, oneDNN and MKL pick (x86; ARM's in SIMD_ARM).
SIMD_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
    "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16",
)  # fmt: skip
SIMD_ARM = ("asimd", "asimddp", "sve", "sve2", "i8mm", "bf16")


def cpu_features(cpuinfo: str) -> dict[str, Any]:
    """The CPU model and its inference-relevant SIMD features from the text of ``/proc/cpuinfo``."""
    info: dict[str, Any] = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "Model", "cpu model") and not info.get("cpu_model"):
            info["cpu_model"] = value.strip()
        elif key in ("flags", "Features") and "simd" not in info:
            flags = set(value.split())
            info["simd"] = [f for f in (*SIMD_FLAGS, *SIMD_ARM) if f in flags]
    return info


@functools.lru_cache(maxsize=1)
def this_cpu() -> dict[str, Any]:
    """:func:`cpu_features` of this machine (empty where ``/proc/cpuinfo`` cannot be read: not Linux)."""
    try:
        return cpu_features(Path("/proc/cpuinfo").read_text())
    except OSError:
        return {}
