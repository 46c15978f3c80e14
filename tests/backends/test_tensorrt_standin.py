"""build_plan's and TensorRTRunner's control flow, executed here with a stand-in ``tensorrt`` module.

This is NOT a test of TensorRT: the stand-in only mirrors the names and signatures of the real Python bindings
(checked against tensorrt_bindings 10.16.1 and 11.4.0), so that every line of ``build_plan`` runs on this CPU
machine — flags, config calls, profile, timing cache round trip, atomic writes, error sentences, the facts dict;
for the runner, buffers on the CPU and a faked ``torch.cuda`` (stream, events) stand in for the GPU.
The real build is covered by the ``@pytest.mark.tensorrt`` tests in test_tensorrt_engine.py; the part of it that
TensorRT-RTX shares (parser errors naming the node, a failed build leaving no file) by the real-library tests in
test_tensorrt_rtx.py, which replaced the stand-in tests of those.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import sys
import time
import types
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from test_tensorrt_engine import small_onnx  # pytest puts this folder on sys.path (rootdir, no __init__)

from alexnet_deploy.backends.tensorrt import builder as trt_engine
from alexnet_deploy.backends.tensorrt.builder import TensorRTBuildOptions, build_plan
from alexnet_deploy.core.errors import ConfigError
from alexnet_deploy.core.system import GPU


class _Member:
    """A pybind11 enum member: has ``.name`` and converts to int."""

    def __init__(self, name: str, value: int) -> None:
        self.name, self.value = name, value

    def __int__(self) -> int:
        return self.value


def _enum(**members: int) -> SimpleNamespace:
    return SimpleNamespace(**{k: _Member(k, v) for k, v in members.items()})


def standin_tensorrt(version: str, calls: dict, *, parse_ok=True, build_ok=True) -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    major = int(version.split(".")[0])
    trt.NetworkDefinitionCreationFlag = (
        _enum(EXPLICIT_BATCH=0, STRONGLY_TYPED=1) if major == 10 else _enum(STRONGLY_TYPED=0)
    )
    levels = {"NONE": 0, "AMPERE_PLUS": 1}
    if version != "10.0.1":
        levels["SAME_COMPUTE_CAPABILITY"] = 2
    trt.HardwareCompatibilityLevel = _enum(**levels)
    trt.MemoryPoolType = _enum(WORKSPACE=0)
    trt.BuilderFlag = _enum(TF32=5, VERSION_COMPATIBLE=9)
    trt.ProfilingVerbosity = _enum(LAYER_NAMES_ONLY=0, DETAILED=1, NONE=2)
    trt.LayerInformationFormat = _enum(ONELINE=0, JSON=1)
    trt.DataType = _enum(FLOAT=0, HALF=1)
    severity = _enum(INTERNAL_ERROR=0, ERROR=1, WARNING=2, INFO=3, VERBOSE=4)

    class ILogger:
        Severity = severity

        def __init__(self) -> None:
            pass

    class Tensor:
        def __init__(self, name, dtype, shape):
            self.name, self.dtype, self.shape = name, dtype, shape

    class Network:
        def __init__(self, flags):
            calls["network_flags"] = flags
            self._in = [Tensor("images", trt.DataType.FLOAT, (-1, 3, 16, 16))]
            self._out = [Tensor("logits", trt.DataType.FLOAT, (-1, 10))]
            self.num_inputs, self.num_outputs = 1, 1

        def get_input(self, i):
            return self._in[i]

        def get_output(self, i):
            return self._out[i]

    class OnnxParser:
        def __init__(self, network, logger):
            self.num_errors = 0

        def parse_from_file(self, model: str) -> bool:
            calls["parsed"] = model
            if not parse_ok:
                self.num_errors = 4
            return parse_ok

        def get_error(self, index):
            return f"node {index}: unsupported operator"

    class Profile:
        def set_shape(self, name, mn, opt, mx):
            calls["profile"] = (name, mn, opt, mx)

    class TimingCache:
        def __init__(self, data):
            self.data = bytes(data)

        def serialize(self):
            return memoryview(b"cache+" + self.data)

    class Config:
        def set_memory_pool_limit(self, pool, size):
            calls["pool"] = (pool.name, size)

        def set_flag(self, flag):
            calls.setdefault("builder_flags", []).append(flag.name)

        def add_optimization_profile(self, profile):
            return 0

        def create_timing_cache(self, data):
            calls["cache_in"] = bytes(data)
            return TimingCache(data)

        def set_timing_cache(self, cache, ignore_mismatch):
            return True

    class Builder:
        def __init__(self, logger):
            self.logger = logger

        def create_network(self, flags=0):
            return Network(flags)

        def create_builder_config(self):
            calls["config"] = Config()
            return calls["config"]

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            if not build_ok:
                self.logger.log(severity.ERROR, "Out of memory while building the fused conv.")
                return None
            return memoryview(b"PLAN" * 8)

    class Runtime:
        def __init__(self, logger):
            self.engine_host_code_allowed = False

        def deserialize_cuda_engine(self, plan):
            calls["report_host_code"] = self.engine_host_code_allowed
            inspector = SimpleNamespace(
                get_engine_information=lambda fmt: json.dumps({"Layers": ["conv"], "f": fmt.name})
            )
            return SimpleNamespace(create_engine_inspector=lambda: inspector)

    for name, obj in dict(ILogger=ILogger, Builder=Builder, OnnxParser=OnnxParser, Runtime=Runtime).items():
        setattr(trt, name, obj)
    return trt


@pytest.fixture
def standin(monkeypatch):
    """Install a stand-in ``tensorrt`` (and a usable status and GPU); returns a factory taking the version."""
    monkeypatch.setattr(trt_engine, "tensorrt_status", lambda: {"usable": True, "version": "x", "reason": ""})
    monkeypatch.setattr(trt_engine, "visible_gpus", lambda: [GPU("NVIDIA L40S", "8.9")])

    def install(version="10.16.1.11", **kwargs) -> dict:
        calls: dict = {}
        monkeypatch.setitem(sys.modules, "tensorrt", standin_tensorrt(version, calls, **kwargs))
        return calls

    return install


def test_standin_build_flow_on_10x(tmp_path: Path, standin):
    calls = standin("10.16.1.11")
    model = small_onnx(tmp_path / "m.onnx")
    opts = TensorRTBuildOptions(
        min_batch=2,
        opt_batch=4,
        max_batch=16,
        workspace_mib=256,
        timing_cache=tmp_path / "t.cache",
        optimization_level=5,
        hardware_compatibility="ampere_plus",
        version_compatible=True,
        layer_report=tmp_path / "layers.json",
    )
    facts = build_plan(model, tmp_path / "m.plan", opts)
    assert calls["network_flags"] == 1 << 1  # STRONGLY_TYPED is member 1 on 10.x
    assert calls["parsed"] == str(model)
    assert calls["pool"] == ("WORKSPACE", 256 << 20)
    config = calls["config"]
    assert config.builder_optimization_level == 5 and config.hardware_compatibility_level.name == "AMPERE_PLUS"
    assert config.profiling_verbosity.name == "DETAILED" and calls["builder_flags"] == ["VERSION_COMPATIBLE"]
    assert calls["profile"] == ("images", (2, 3, 16, 16), (4, 3, 16, 16), (16, 3, 16, 16))
    assert (tmp_path / "m.plan").read_bytes() == b"PLAN" * 8
    assert calls["cache_in"] == b"" and (tmp_path / "t.cache").read_bytes() == b"cache+"
    assert calls["report_host_code"] is True  # version-compatible plans embed the lean runtime
    assert json.loads((tmp_path / "layers.json").read_text()) == {"Layers": ["conv"], "f": "JSON"}
    assert facts["tensorrt_version"] == "10.16.1.11" and facts["network_flags"] == ["STRONGLY_TYPED"]
    assert facts["gpu"] == {"name": "NVIDIA L40S", "compute_capability": "8.9"}
    assert facts["io"] == [
        {"name": "images", "mode": "input", "dtype": "float32", "shape": [-1, 3, 16, 16]},
        {"name": "logits", "mode": "output", "dtype": "float32", "shape": [-1, 10]},
    ]
    assert facts["profile"] == {"input": "images", "min": [2, 3, 16, 16], "opt": [4, 3, 16, 16], "max": [16, 3, 16, 16]}
    assert facts["build_options"] == opts.to_dict() and facts["plan_bytes"] == 32
    json.dumps(facts)  # the sidecar must be able to hold it
    # A rebuild starts from the saved timing cache.
    calls = standin("10.16.1.11")
    build_plan(model, tmp_path / "m.plan", opts)
    assert calls["cache_in"] == b"cache+"


def test_standin_build_on_11x_sets_no_network_flag(tmp_path, standin):
    calls = standin("11.4.0.106")
    facts = build_plan(small_onnx(tmp_path / "m.onnx"), tmp_path / "m.plan", TensorRTBuildOptions())
    assert calls["network_flags"] == 0 and facts["network_flags"] == [] and "builder_flags" not in calls
    assert calls["config"].hardware_compatibility_level.name == "NONE"
    assert not hasattr(calls["config"], "profiling_verbosity")  # no layer report asked for


def test_standin_old_10x_without_same_compute_capability(tmp_path, standin):
    standin("10.0.1")
    with pytest.raises(ConfigError, match="TensorRT 10.0.1 has no same_compute_capability hardware compatibility"):
        build_plan(
            small_onnx(tmp_path / "m.onnx"),
            tmp_path / "m.plan",
            TensorRTBuildOptions(hardware_compatibility="same_compute_capability"),
        )


# -- TensorRTRunner's control flow: stand-in engine + torch with a faked ``cuda`` namespace, CPU buffers ----------
W = np.linspace(-1, 1, 30, dtype=np.float32).reshape(3, 10)


def standin_runtime_module(calls: dict) -> types.ModuleType:
    """Engine I/O: float16 'images' (profile 1..8 x 3 x 4 x 4), float32 'logits' = channel means @ W."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.16.1.11"
    trt.TensorIOMode = _enum(NONE=0, INPUT=1, OUTPUT=2)
    trt.DataType = _enum(FLOAT=0, HALF=1)

    class Context:
        def __init__(self):
            self.shape, self.addresses = None, {}

        def set_input_shape(self, name, shape):
            self.shape = tuple(shape)
            return 1 <= self.shape[0] <= 8

        def get_tensor_shape(self, name):
            return [self.shape[0], 10]

        def set_tensor_address(self, name, ptr):
            self.addresses[name] = ptr
            return True

        def execute_async_v3(self, stream_handle):
            # Compute through the raw addresses, as TensorRT would: proves the runner bound the right memory.
            calls["streams"] = calls.get("streams", set()) | {stream_handle}
            n = self.shape[0]
            x = np.ctypeslib.as_array((ctypes.c_uint16 * (n * 48)).from_address(self.addresses["images"]))
            out = np.ctypeslib.as_array((ctypes.c_float * (n * 10)).from_address(self.addresses["logits"]))
            out[:] = (x.view(np.float16).astype(np.float32).reshape(n, 3, 16).mean(-1) @ W).ravel()
            return True

    class Engine:
        num_io_tensors = 2

        def get_tensor_name(self, i):
            return ["images", "logits"][i]

        def get_tensor_mode(self, name):
            return trt.TensorIOMode.INPUT if name == "images" else trt.TensorIOMode.OUTPUT

        def get_tensor_dtype(self, name):
            return trt.DataType.HALF if name == "images" else trt.DataType.FLOAT

        def get_tensor_profile_shape(self, name, profile_index):
            return [[1, 3, 4, 4], [4, 3, 4, 4], [8, 3, 4, 4]]

        def create_execution_context(self):
            return Context()

    class Runtime:
        def __init__(self, logger):
            self.engine_host_code_allowed = False

        def deserialize_cuda_engine(self, data):
            calls["plan_bytes"] = bytes(data)
            return Engine()

    class ILogger:
        def __init__(self) -> None:
            pass

    trt.Runtime, trt.ILogger = Runtime, ILogger
    return trt


def cpu_torch_with_fake_cuda() -> types.ModuleType:
    import torch

    class Event:
        def __init__(self, enable_timing=False):
            self.t = None

        def record(self, stream=None):
            self.t = time.perf_counter()

        def synchronize(self):
            pass

        def elapsed_time(self, end):
            return (end.t - self.t) * 1e3

    class Stream:
        def __init__(self, device=None):
            self.cuda_stream = 0x5EED

        def synchronize(self):
            pass

    cuda = SimpleNamespace(
        is_available=lambda: True,
        device=lambda index: contextlib.nullcontext(),
        stream=lambda s: contextlib.nullcontext(),
        Stream=Stream,
        Event=Event,
    )
    fake = types.ModuleType("torch")
    fake.__dict__["__getattr__"] = lambda name: getattr(torch, name)  # everything else is the real torch
    fake.cuda = cuda
    fake.device = lambda *args, **kwargs: torch.device("cpu")
    return fake


def test_standin_runner_flow(tmp_path, monkeypatch):
    from alexnet_deploy.backends.tensorrt import runner as trt_runner
    from alexnet_deploy.backends.tensorrt.runner import TensorRTRunner
    from alexnet_deploy.core.manifest import Manifest, save_manifest

    calls: dict = {}
    plan = tmp_path / "m.plan"
    plan.write_bytes(b"stand-in plan")
    engine = {
        "tensorrt_version": "10.16.1.11",
        "gpu": {"name": "NVIDIA L40S", "compute_capability": "8.9"},
        "profile": {"input": "images", "min": [1, 3, 4, 4], "opt": [4, 3, 4, 4], "max": [8, 3, 4, 4]},
        "build_options": {"hardware_compatibility": "none", "version_compatible": True},
    }
    save_manifest(plan, Manifest(kind="plan", precision="fp16", engine=engine))
    monkeypatch.setattr(trt_runner, "tensorrt_status", lambda: {"usable": True, "version": "10.16.1.11", "reason": ""})
    monkeypatch.setattr(trt_engine, "visible_gpus", lambda: [GPU("NVIDIA L40S", "8.9")])
    monkeypatch.setitem(sys.modules, "tensorrt", standin_runtime_module(calls))
    monkeypatch.setitem(sys.modules, "torch", cpu_torch_with_fake_cuda())

    x = np.random.default_rng(0).standard_normal((5, 3, 4, 4)).astype(np.float32)
    expected = x.astype(np.float16).astype(np.float32).reshape(5, 3, 16).mean(-1) @ W
    with TensorRTRunner(plan, include_copies=False) as runner:
        assert calls["plan_bytes"] == b"stand-in plan" and runner._runtime.engine_host_code_allowed is True
        assert (runner.input_name, runner.output_name, runner.max_batch) == ("images", "logits", 8)
        assert runner._input.dtype.is_floating_point and runner._input.element_size() == 2  # float16 buffer
        got = runner.infer(x)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
        assert got.dtype == np.float32 and got.shape == (5, 10)
        assert runner.inference_time == runner.last_device_seconds >= 0
        np.testing.assert_allclose(runner.infer(x[:2]), expected[:2], rtol=1e-5, atol=1e-6)  # smaller batch after
        with pytest.raises(ConfigError, match=r"batch of 9 is outside the plan's profile \(1 to 8\)"):
            runner.infer(np.zeros((9, 3, 4, 4), np.float32))
        times = runner.time_device(4, iterations=3, warmup=1)
        assert len(times) == 3 and all(t >= 0 for t in times)
        assert calls["streams"] == {0x5EED}
    assert not runner.is_active and not hasattr(runner, "_engine")
