"""The TensorRT backend (10.x/11.x): :mod:`.builder` compiles an ONNX into a plan (strongly typed), :mod:`.runner`
runs it and holds the compatibility rule that is checked before TensorRT sees a plan's bytes.

``tensorrt`` itself is imported only after a child process has found a GPU (without one it can crash).
"""

from __future__ import annotations

from typing import Any

from alexnet_deploy.backends.base import BackendStatus


def status() -> BackendStatus:
    """Whether TensorRT 10/11 is installed and a GPU is present (both probed in child processes)."""
    from alexnet_deploy.core.system import tensorrt_status

    found = tensorrt_status()
    ok = bool(found["usable"])
    return BackendStatus(
        "tensorrt",
        bool(found.get("installed", found.get("usable"))),
        found.get("version") or None,  # type: ignore[arg-type]
        can_build=ok,
        can_run=ok,
        reason="" if ok else str(found["reason"]),
    )


def compile_engine(onnx_path, plan_path, options=None) -> dict[str, Any]:
    """Build a plan (see :func:`.builder.build_plan`)."""
    from alexnet_deploy.backends.tensorrt.builder import build_plan

    return build_plan(onnx_path, plan_path, options)


def open_runner(artifact, *, device: str = "cpu", threads=None, precision=None, compile: bool = False):
    """A :class:`.runner.TensorRTRunner` for a plan on ``cuda:N`` (GPU 0 for the default device); the plan is
    checked against this machine when it activates."""
    from alexnet_deploy.backends.tensorrt.runner import TensorRTRunner

    index = int(device.partition(":")[2] or 0) if device.startswith("cuda") else 0
    return TensorRTRunner(artifact.path, device=index)
