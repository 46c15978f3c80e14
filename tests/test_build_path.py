"""The build's path through the modules goes down: followed call by call (``sys.setprofile``) through a small INT8
build, no call of ours goes back up into a module that is waiting for it (a module lower on the call stack), and
none goes to a higher floor, except through the runner interface (core's ``run_logits`` drives whichever runner
it is handed: Polygraphy's pattern, a call *through* an object, not an import). docs/ARCHITECTURE.md draws the path
and quotes the counts this test prints.
"""

from __future__ import annotations

import functools
import sys
from collections import Counter
from pathlib import Path

import pytest
from quant_models import trained_onnx

from alexnet_deploy.build import build
from alexnet_deploy.core.accuracy import EvalRequest, Gate
from alexnet_deploy.requests import BuildRequest, ProbeRequest
from calib.request import CalibrationRequest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("alexnet_deploy", "calib", "export", "train")
#: The floors, lowest first; inside orchestration the build's steps sit below the build.
FLOORS = [
    ("alexnet_deploy.core", 0),
    ("alexnet_deploy.backends", 1),
    ("calib", 2),
    ("export", 2),
    ("train", 2),
    ("alexnet_deploy.requests", 3),
    ("alexnet_deploy.bench", 3),
    ("alexnet_deploy.selection", 3),
    ("alexnet_deploy.sensitivity", 3),
    ("alexnet_deploy.build", 4),
]
#: Methods a lower floor may call on an object it was handed (the Runner protocol).
INTERFACE = {"infer", "infer_impl", "activate", "activate_impl", "deactivate", "deactivate_impl", "__enter__",
             "__exit__", "max_batch"}  # fmt: skip


@functools.cache  # every call of the build passes here: resolve each file once
def _module(filename: str) -> str | None:
    try:
        rel = Path(filename).resolve().relative_to(REPO)
    except ValueError:
        return None
    if rel.parts[0] not in PACKAGES:
        return None
    parts = rel.with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _floor(module: str) -> int:
    return max((floor for prefix, floor in FLOORS if module == prefix or module.startswith(prefix + ".")), default=0)


class Tracer:
    """Our modules' call stack, and every call from one of our modules into another."""

    def __init__(self) -> None:
        self.stack: list[str | None] = []
        self.calls: list[tuple[str, str, str]] = []  # (caller module, callee module, function)
        self.back_up: list[tuple[str, str, str]] = []
        self.upward: list[tuple[str, str, str]] = []
        self.entries: Counter[str] = Counter()

    def __call__(self, frame, event, arg) -> None:
        if event == "call":
            module = _module(frame.f_code.co_filename)
            caller = next((m for m in reversed(self.stack) if m), None)
            if module and caller and module != caller:
                call = (caller, module, frame.f_code.co_name)
                self.calls.append(call)
                self.entries[module] += 1
                if module in self.stack:
                    self.back_up.append(call)
                if _floor(module) > _floor(caller) and frame.f_code.co_name not in INTERFACE:
                    self.upward.append(call)
            self.stack.append(module)
        elif event == "return" and self.stack:
            self.stack.pop()


@pytest.fixture(scope="session")
def fp32_onnx(tiny20, tmp_path_factory, request):
    return trained_onnx(tiny20, tmp_path_factory.mktemp("qmodel"), request.config.cache.mkdir("alexnet-deploy-quant"))


@pytest.mark.slow
def test_an_int8_builds_calls_only_go_down(fp32_onnx, tiny20, tmp_path):
    # bias correction, not the learned rounding: its many small torch steps are slow under the profiler
    calibration = CalibrationRequest(data=tiny20, method="minmax", num_images=32, holdout_images=20, use_cache=False,
                                     refine="bias")  # fmt: skip
    request = BuildRequest(
        backend="onnxruntime", verify=EvalRequest(Gate(100, 100), limit=40), calibration=calibration,
        probe=ProbeRequest(()),
    )  # fmt: skip
    tracer = Tracer()
    sys.setprofile(tracer)
    try:
        result = build(fp32_onnx, tiny20, request, tmp_path / "m.int8.onnx")
    finally:
        sys.setprofile(None)
    assert result.passed and tracer.calls, "the build ran and was traced"
    print(f"\n{len(tracer.calls)} calls between {len(tracer.entries)} modules; entries per module:")
    for module, n in tracer.entries.most_common():
        print(f"  {n:5d}  {module}")
    assert not tracer.back_up, f"calls back up into a waiting module: {sorted(set(tracer.back_up))[:10]}"
    assert not tracer.upward, f"calls to a higher floor: {sorted(set(tracer.upward))[:10]}"


def test_the_tracer_sees_a_call_back_up(tmp_path):
    """The check can fail: a core function calling back into the build while the build waits is caught."""
    tracer = Tracer()
    tracer.stack = ["alexnet_deploy.build", "alexnet_deploy.core.files"]
    frame = type("F", (), {"f_code": type("C", (), {"co_filename": str(REPO / "alexnet_deploy" / "build.py"),
                                                     "co_name": "_result"})()})()  # fmt: skip
    tracer(frame, "call", None)
    assert tracer.back_up == [("alexnet_deploy.core.files", "alexnet_deploy.build", "_result")]
    assert tracer.upward == tracer.back_up
