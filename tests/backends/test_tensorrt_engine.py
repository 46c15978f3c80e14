"""The TensorRT backend: pure parts tested everywhere; real builds and runs only where TensorRT and a GPU exist.

The ``@pytest.mark.tensorrt`` tests skip here with the reason (conftest): no machine of this project has TensorRT.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import FrozenInstanceError
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from alexnet_deploy.backends import runner_for
from alexnet_deploy.backends.tensorrt import builder as trt_engine
from alexnet_deploy.backends.tensorrt import runner as trt_runner
from alexnet_deploy.backends.tensorrt.builder import (
    TensorRTBuildOptions,
    build_plan,
    dtype_name,
    network_flag_names,
    network_flags,
    onnx_image_input,
)
from alexnet_deploy.backends.tensorrt.runner import TensorRTRunner, check_batch, check_plan_compatible
from alexnet_deploy.core.errors import AlexNetDeployError, ArtifactError, ConfigError, MissingBackendError
from alexnet_deploy.core.manifest import Manifest, save_manifest
from alexnet_deploy.core.system import GPU

TENSORRT_INSTALLED = importlib.util.find_spec("tensorrt") is not None
L40S = GPU("NVIDIA L40S", "8.9")
H100 = GPU("NVIDIA H100 80GB HBM3", "9.0")


def facts(version="10.8.0.43", gpu=L40S, hardware="none", version_compatible=False) -> dict:
    return {
        "tensorrt_version": version,
        "gpu": {"name": gpu.name, "compute_capability": gpu.compute_capability},
        "build_options": {"hardware_compatibility": hardware, "version_compatible": version_compatible},
        "profile": {"input": "images", "min": [1, 3, 16, 16], "opt": [4, 3, 16, 16], "max": [8, 3, 16, 16]},
    }


def small_onnx(path: Path, hw: int = 16, batch: str | int = "N", seed: int = 0) -> Path:
    """Conv-ReLU-pool-Gemm written directly as ONNX: small enough to build in seconds, real enough to compare."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3
    b = rng.standard_normal(8).astype(np.float32) * 0.1
    fw = rng.standard_normal((10, 8)).astype(np.float32) * 0.3
    fb = rng.standard_normal(10).astype(np.float32) * 0.1
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["images", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c"], ["r"]),
            helper.make_node("GlobalAveragePool", ["r"], ["g"]),
            helper.make_node("Flatten", ["g"], ["f"]),
            helper.make_node("Gemm", ["f", "fw", "fb"], ["logits"], transB=1),
        ],
        "small",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, hw, hw])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 10])],
        [numpy_helper.from_array(a, n) for a, n in ((w, "w"), (b, "b"), (fw, "fw"), (fb, "fb"))],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


# -- check_plan_compatible: pure, from the sidecar ---------------------------------------------------------------
def test_trt_compat_same_version_and_gpu_is_accepted():
    check_plan_compatible(facts(), "10.8.0.43", [L40S])
    # The build number does not change the plan format.
    check_plan_compatible(facts(), "10.8.0.40", [L40S])


def test_trt_compat_other_version_is_refused_naming_both():
    with pytest.raises(ArtifactError) as err:
        check_plan_compatible(facts(version="10.8.0.43"), "10.9.0.34", [L40S])
    msg = str(err.value)
    assert "built by TensorRT 10.8.0.43 for NVIDIA L40S (compute 8.9)" in msg
    assert "this machine has TensorRT 10.9.0.34 and NVIDIA L40S (compute 8.9)" in msg
    assert "release that built them" in msg


def test_trt_compat_other_gpu_is_refused_naming_both():
    with pytest.raises(ArtifactError) as err:
        check_plan_compatible(facts(gpu=L40S), "10.8.0.43", [H100])
    msg = str(err.value)
    assert "NVIDIA L40S (compute 8.9)" in msg and "NVIDIA H100 80GB HBM3 (compute 9.0)" in msg
    assert "compute capability that built them" in msg


def test_trt_compat_same_capability_other_model_depends_on_hardware_level():
    rtx = GPU("NVIDIA GeForce RTX 4090", "8.9")
    with pytest.raises(ArtifactError, match="for that GPU model only"):
        check_plan_compatible(facts(gpu=L40S, hardware="none"), "10.8.0.43", [rtx])
    check_plan_compatible(facts(gpu=L40S, hardware="same_compute_capability"), "10.8.0.43", [rtx])
    with pytest.raises(ArtifactError, match="compute capability that built them"):
        check_plan_compatible(facts(gpu=L40S, hardware="same_compute_capability"), "10.8.0.43", [H100])


def test_trt_compat_ampere_plus_needs_compute_8():
    check_plan_compatible(facts(gpu=L40S, hardware="ampere_plus"), "10.8.0.43", [H100])
    with pytest.raises(ArtifactError, match="8.0 or newer") as err:
        check_plan_compatible(facts(gpu=L40S, hardware="ampere_plus"), "10.8.0.43", [GPU("Tesla T4", "7.5")])
    assert "Tesla T4 (compute 7.5)" in str(err.value)


def test_trt_compat_version_compatible_plans_load_forward_only():
    vc = facts(version="10.8.0.43", version_compatible=True)
    check_plan_compatible(vc, "10.9.0.34", [L40S])
    check_plan_compatible(vc, "11.1.0.2", [L40S])  # documented: 10.x version-compatible plans run on 11.x
    with pytest.raises(ArtifactError, match="same or a later release"):
        check_plan_compatible(vc, "10.7.0.23", [L40S])
    with pytest.raises(ArtifactError, match="same or a later release"):
        check_plan_compatible(facts(version="11.1.0", version_compatible=True), "10.16.1", [L40S])


def test_trt_compat_needs_facts_a_gpu_and_a_valid_device():
    with pytest.raises(ArtifactError, match="does not record the TensorRT version"):
        check_plan_compatible({"gpu": {"name": "x"}}, "10.8.0", [L40S])
    with pytest.raises(MissingBackendError, match="No NVIDIA GPU"):
        check_plan_compatible(facts(), "10.8.0.43", [])
    with pytest.raises(ConfigError, match="GPU 2 does not exist here"):
        check_plan_compatible(facts(), "10.8.0.43", [L40S], device=2)
    # The device index picks which GPU is compared.
    check_plan_compatible(facts(gpu=H100), "10.8.0.43", [L40S, H100], device=1)


# -- options -----------------------------------------------------------------------------------------------------
def test_trt_options_defaults_and_serialisation(tmp_path):
    opts = TensorRTBuildOptions(timing_cache=str(tmp_path / "t.cache"))
    assert (opts.min_batch, opts.opt_batch, opts.max_batch, opts.workspace_mib) == (1, 8, 32, 1024)
    assert opts.optimization_level == 3 and opts.hardware_compatibility == "none" and not opts.version_compatible
    assert opts.timing_cache == tmp_path / "t.cache" and opts.layer_report is None
    d = json.loads(json.dumps(opts.to_dict()))
    assert d["timing_cache"] == str(tmp_path / "t.cache") and d["layer_report"] is None and d["max_batch"] == 32
    assert opts.profile_shapes((3, 224, 224)) == ((1, 3, 224, 224), (8, 3, 224, 224), (32, 3, 224, 224))
    with pytest.raises(FrozenInstanceError):
        opts.max_batch = 64  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_batch": 4, "opt_batch": 2}, "min <= opt <= max; got min 4, opt 2, max 32"),
        ({"opt_batch": 64}, "min <= opt <= max; got min 1, opt 64, max 32"),
        ({"min_batch": 0}, "min_batch must be a positive integer"),
        ({"workspace_mib": -1}, "workspace_mib must be a positive integer"),
        ({"optimization_level": 6}, "optimization_level must be 0 to 5"),
        ({"hardware_compatibility": "turing_plus"}, "Unknown hardware compatibility 'turing_plus'; choose one of none"),
    ],
)
def test_trt_options_refuse_bad_values(kwargs, message):
    with pytest.raises(ConfigError) as err:
        TensorRTBuildOptions(**kwargs)
    assert message in str(err.value)


# -- version -> network flags ------------------------------------------------------------------------------------
def test_trt_network_flags_follow_the_version():
    assert network_flag_names("10.8.0.43") == ("STRONGLY_TYPED",)
    assert network_flag_names("10.0.1") == ("STRONGLY_TYPED",)
    assert network_flag_names("11.1.0.2") == ()
    enum = SimpleNamespace(STRONGLY_TYPED=1, EXPLICIT_BATCH=0)
    assert network_flags(SimpleNamespace(__version__="10.8.0.43", NetworkDefinitionCreationFlag=enum)) == 1 << 1
    # 11.x: no flag at all, so a missing EXPLICIT_BATCH (or any member) cannot matter.
    assert network_flags(SimpleNamespace(__version__="11.1.0", NetworkDefinitionCreationFlag=None)) == 0


@pytest.mark.parametrize("version", ["8.6.1", "9.3.0.1", "12.0.0", "dev"])
def test_trt_old_or_unknown_versions_are_refused(version):
    with pytest.raises(MissingBackendError) as err:
        network_flag_names(version)
    assert version in str(err.value) and "10.x or 11.x" in str(err.value)


def test_trt_dtype_names():
    assert dtype_name(SimpleNamespace(name="FLOAT")) == "float32"
    assert dtype_name(SimpleNamespace(name="HALF")) == "float16"
    assert dtype_name(SimpleNamespace(name="INT8")) == "int8"
    assert dtype_name(SimpleNamespace(name="E8M0")) == "e8m0"


# -- the ONNX input, read before TensorRT ------------------------------------------------------------------------
def test_trt_onnx_image_input(tmp_path):
    assert onnx_image_input(small_onnx(tmp_path / "m.onnx", hw=20)) == ("images", (3, 20, 20))
    assert onnx_image_input(small_onnx(tmp_path / "s.onnx", batch=1)) == ("images", (3, 16, 16))


def test_trt_onnx_without_the_expected_input_is_refused(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["y"])],
        "two",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 3, 8, 8]) for n in ("a", "b")],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, 8, 8])],
    )
    onnx.save(helper.make_model(graph), tmp_path / "two.onnx")
    with pytest.raises(ArtifactError, match="must have one image input for TensorRT's profile; it has a, b"):
        onnx_image_input(tmp_path / "two.onnx")
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "dyn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, "H", "W"])],
    )
    onnx.save(helper.make_model(graph), tmp_path / "dyn.onnx")
    with pytest.raises(ArtifactError, match=r"must be N x 3 x H x W with a fixed H and W; it is \['N', 3, 'H', 'W'\]"):
        onnx_image_input(tmp_path / "dyn.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\xff\xfe not protobuf")
    with pytest.raises(ArtifactError, match="junk.onnx is not a readable ONNX model"):
        onnx_image_input(tmp_path / "junk.onnx")
    with pytest.raises(ArtifactError, match="ONNX model not found"):
        onnx_image_input(tmp_path / "absent.onnx")


# -- without TensorRT (this machine) -----------------------------------------------------------------------------
@pytest.mark.skipif(TENSORRT_INSTALLED, reason="tensorrt is installed here; this checks the message where it is not")
def test_trt_build_without_tensorrt_says_so_in_one_sentence(tmp_path):
    model = small_onnx(tmp_path / "m.onnx")
    with pytest.raises(MissingBackendError) as err:
        build_plan(model, tmp_path / "m.plan", TensorRTBuildOptions())
    assert str(err.value) == (
        "TensorRT is not usable here: the tensorrt package is not installed (pip install 'alexnet-deploy[tensorrt]')."
    )
    assert not (tmp_path / "m.plan").exists()


def test_trt_build_without_a_gpu_never_imports_tensorrt(tmp_path, monkeypatch):
    reason = "no NVIDIA GPU was found, and TensorRT needs one"
    monkeypatch.setattr(trt_engine, "tensorrt_status", lambda: {"usable": False, "reason": reason})
    with pytest.raises(MissingBackendError, match=f"^TensorRT is not usable here: {reason}.$"):
        build_plan(small_onnx(tmp_path / "m.onnx"), tmp_path / "m.plan")


def test_trt_build_checks_the_onnx_before_tensorrt(tmp_path, monkeypatch):
    monkeypatch.setattr(trt_engine, "tensorrt_status", lambda: pytest.fail("TensorRT was probed before the ONNX check"))
    with pytest.raises(ArtifactError, match="ONNX model not found"):
        build_plan(tmp_path / "absent.onnx", tmp_path / "m.plan")


def fake_plan(tmp_path: Path, engine: dict) -> Path:
    plan = tmp_path / "m.plan"
    plan.write_bytes(b"not a real plan")
    save_manifest(plan, Manifest(kind="plan", precision="fp16", engine=engine))
    return plan


def test_trt_runner_checks_the_sidecar_before_tensorrt(tmp_path, monkeypatch):
    plan = fake_plan(tmp_path, facts(version="10.8.0.43", gpu=L40S))
    monkeypatch.setattr(trt_runner, "tensorrt_status", lambda: {"usable": True, "version": "10.9.0.34", "reason": ""})
    monkeypatch.setattr(trt_engine, "visible_gpus", lambda: [L40S])
    runner = TensorRTRunner(plan)
    assert runner.name == "tensorrt fp16" and runner.max_batch == 8  # from the sidecar, before activation
    # tensorrt is not importable here: reaching it would raise ImportError, so the refusal came first.
    with pytest.raises(ArtifactError, match="built by TensorRT 10.8.0.43 .* this machine has TensorRT 10.9.0.34"):
        runner.activate()
    assert not runner.is_active


def test_trt_runner_refuses_a_plan_whose_sidecar_describes_other_bytes(tmp_path, monkeypatch):
    plan = fake_plan(tmp_path, facts())
    plan.write_bytes(b"another plan")
    monkeypatch.setattr(trt_runner, "tensorrt_status", lambda: {"usable": True, "version": "10.8.0.43", "reason": ""})
    monkeypatch.setattr(trt_engine, "visible_gpus", lambda: [L40S])
    with pytest.raises(ArtifactError, match="does not describe"):
        TensorRTRunner(plan).activate()


def test_trt_runner_needs_a_sidecar_and_a_backend(tmp_path):
    bare = tmp_path / "bare.plan"
    bare.write_bytes(b"x")
    with pytest.raises(ArtifactError, match=r"has no manifest \(bare.plan.json is missing\)"):
        TensorRTRunner(bare).activate()
    runner = runner_for(fake_plan(tmp_path, facts()))
    assert isinstance(runner, TensorRTRunner)
    if not TENSORRT_INSTALLED:
        with pytest.raises(MissingBackendError, match="^TensorRT is not usable here: the tensorrt package"):
            runner.activate()
    with pytest.raises(AlexNetDeployError, match="must be activated"):
        runner.time_device(1)


def test_trt_check_batch():
    check_batch((8, 3, 16, 16), (1, 3, 16, 16), (8, 3, 16, 16))
    with pytest.raises(ConfigError, match=r"batch of 9 is outside the plan's profile \(1 to 8\)"):
        check_batch((9, 3, 16, 16), (1, 3, 16, 16), (8, 3, 16, 16))
    with pytest.raises(ConfigError, match=r"batch of 1 is outside the plan's profile \(2 to 8\)"):
        check_batch((1, 3, 16, 16), (2, 3, 16, 16), (8, 3, 16, 16))
    with pytest.raises(ConfigError, match="images of shape N x 3 x 16 x 16; got"):
        check_batch((2, 3, 32, 32), (1, 3, 16, 16), (8, 3, 16, 16))


# -- with TensorRT and a GPU (skipped here) ----------------------------------------------------------------------
def built_plan(tmp_path: Path, onnx_path: Path, **kwargs) -> tuple[Path, dict]:
    plan = tmp_path / (onnx_path.stem + ".plan")
    engine = build_plan(onnx_path, plan, TensorRTBuildOptions(min_batch=1, opt_batch=4, max_batch=8, **kwargs))
    save_manifest(plan, Manifest(kind="plan", engine=engine))
    return plan, engine


@pytest.mark.tensorrt
def test_trt_real_plan_matches_onnxruntime(tmp_path):
    from alexnet_deploy.backends.onnxruntime import OnnxRuntimeRunner

    model = small_onnx(tmp_path / "small.onnx")
    cache, report = tmp_path / "timing.cache", tmp_path / "layers.json"
    plan, engine = built_plan(tmp_path, model, timing_cache=cache, layer_report=report)
    assert plan.stat().st_size == engine["plan_bytes"] > 0
    assert engine["profile"] == {"input": "images", "min": [1, 3, 16, 16], "opt": [4, 3, 16, 16], "max": [8, 3, 16, 16]}
    assert [(t["name"], t["mode"], t["dtype"]) for t in engine["io"]] == [
        ("images", "input", "float32"),
        ("logits", "output", "float32"),
    ]
    assert cache.stat().st_size > 0 and json.loads(report.read_text())
    x = np.random.default_rng(1).standard_normal((5, 3, 16, 16)).astype(np.float32)
    with OnnxRuntimeRunner(model) as ref, TensorRTRunner(plan, include_copies=False) as run:
        expected, got = ref.infer(x), run.infer(x)
        assert run.max_batch == 8 and run.inference_time == run.last_device_seconds > 0
        times = run.time_device(4, iterations=5, warmup=2)
        assert len(times) == 5 and all(t > 0 for t in times)
        with pytest.raises(ConfigError, match="outside the plan's profile"):
            run.infer(np.zeros((9, 3, 16, 16), np.float32))
    np.testing.assert_allclose(got, expected, rtol=1e-2, atol=1e-2)  # TF32 may be used for FP32 layers
    assert (got.argmax(1) == expected.argmax(1)).all()


@pytest.mark.tensorrt
def test_trt_real_fp16_graph_is_built_as_fp16(tmp_path):
    from onnxconverter_common import float16

    from alexnet_deploy.backends.onnxruntime import OnnxRuntimeRunner

    fp32 = small_onnx(tmp_path / "small.onnx")
    fp16 = tmp_path / "small16.onnx"
    onnx.save(float16.convert_float_to_float16(onnx.load(fp32), keep_io_types=True), fp16)
    plan, _ = built_plan(tmp_path, fp16)
    x = np.random.default_rng(2).standard_normal((3, 3, 16, 16)).astype(np.float32)
    with OnnxRuntimeRunner(fp16) as ref, TensorRTRunner(plan) as run:
        np.testing.assert_allclose(run.infer(x), ref.infer(x), rtol=2e-2, atol=2e-2)


@pytest.mark.tensorrt
def test_trt_real_plan_from_another_version_is_refused_before_loading(tmp_path):
    plan, engine = built_plan(tmp_path, small_onnx(tmp_path / "small.onnx"))
    save_manifest(plan, Manifest(kind="plan", engine={**engine, "tensorrt_version": "10.0.0.1"}))
    with pytest.raises(ArtifactError, match="built by TensorRT 10.0.0.1"):
        TensorRTRunner(plan).activate()
