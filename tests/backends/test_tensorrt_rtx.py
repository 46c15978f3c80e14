"""The TensorRT-RTX backend: real plans of both networks built here with the real library, on the CPU.

The build and its refusals run against ``tensorrt_rtx`` itself (skipped, with the reason, only where it is not
importable); what needs a supported GPU (deserialising, the JIT compile, inference) runs against a stand-in
module here and for real only where :func:`rtx_status` says a plan can run.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import types
from dataclasses import FrozenInstanceError
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from test_tensorrt_engine import small_onnx  # pytest puts this folder on sys.path (rootdir, no __init__)
from test_tensorrt_standin import W, _enum, cpu_torch_with_fake_cuda, standin_runtime_module

from alexnet_deploy.backends.tensorrt import builder as trt_engine
from alexnet_deploy.backends.tensorrt import rtx
from alexnet_deploy.backends.tensorrt.builder import describe_parser_error, parser_failure
from alexnet_deploy.backends.tensorrt.rtx import (
    DEFAULT_COMPUTE_CAPABILITIES,
    RTXBuildOptions,
    TensorRTRTXRunner,
    build_rtx_plan,
    check_rtx_plan_bytes,
    check_rtx_plan_compatible,
    parse_compute_capabilities,
    plan_validity,
    rtx_status,
)
from alexnet_deploy.core.errors import ArtifactError, ConfigError, MissingBackendError
from alexnet_deploy.core.manifest import Manifest, save_manifest
from alexnet_deploy.core.system import GPU

RTX_INSTALLED = importlib.util.find_spec("tensorrt_rtx") is not None
needs_rtx = pytest.mark.skipif(not RTX_INSTALLED, reason=f"tensorrt_rtx is not importable ({rtx.PIP_HINT})")
VERSION = "1.7.1.116"
RTX4090 = GPU("NVIDIA GeForce RTX 4090", "8.9")
H100 = GPU("NVIDIA H100 80GB HBM3", "9.0")
NETWORKS = ("alexnet", "alexnet_paper")
PRECISIONS = ("fp32", "fp16", "int8")


def _no_gpu_probe(*args, **kwargs):
    raise AssertionError("a TensorRT-RTX build probed the GPU")


@pytest.fixture(scope="module")
def exports(tiny20, tmp_path_factory) -> dict[tuple[str, str], Path]:
    """Both networks (width 0.25, 64 px, seeded weights) as FP32, FP16 and TensorRT-form INT8 Q/DQ ONNX."""
    import torch

    from alexnet_deploy.core.data import class_names
    from alexnet_deploy.core.models import alexnet, alexnet_paper
    from calib import calibrate
    from calib.request import CalibrationRequest
    from export import ExportRequest, ModelDescription, convert_fp16, export_model

    folder = tmp_path_factory.mktemp("rtx-onnx")
    out = {}
    for name, make in (("alexnet", alexnet), ("alexnet_paper", alexnet_paper)):
        torch.manual_seed(0)
        fp32 = export_model(
            make(width=0.25, num_classes=20).eval(),
            folder / f"{name}.fp32.onnx",
            ExportRequest(image_size=64, parity_samples=8),
            ModelDescription(
                classes=class_names(tiny20 / "train"), arch={"name": name, "num_classes": 20, "width": 0.25}
            ),
        ).path
        out[name, "fp32"] = fp32
        out[name, "fp16"] = convert_fp16(fp32, folder / f"{name}.fp16.onnx", parity_samples=64).path
        out[name, "int8"] = folder / f"{name}.int8.onnx"
        calibrate(
            fp32,
            CalibrationRequest.for_target("tensorrt", data=tiny20, method="minmax", num_images=32, use_cache=False),
            out[name, "int8"],
        )
    return out


@pytest.fixture(scope="module")
def plans(exports, tmp_path_factory) -> dict[tuple[str, str], tuple[Path, dict]]:
    """Every export built with the default targets, with any GPU probe turned into a failure."""
    if not RTX_INSTALLED:
        pytest.skip(f"tensorrt_rtx is not importable ({rtx.PIP_HINT})")
    folder = tmp_path_factory.mktemp("rtx-plans")
    built = {}
    with pytest.MonkeyPatch.context() as mp:
        for module in (trt_engine, rtx):
            for probe in ("probe_gpus", "tensorrt_status", "visible_gpus"):
                if hasattr(module, probe):
                    mp.setattr(module, probe, _no_gpu_probe)
        for (name, precision), onnx_path in exports.items():
            plan = folder / f"{name}.{precision}.plan"
            facts = build_rtx_plan(onnx_path, plan, RTXBuildOptions(min_batch=1, opt_batch=4, max_batch=8))
            built[name, precision] = plan, facts
    return built


def sidecar(plan: Path, facts: dict, precision: str = "fp32") -> Path:
    save_manifest(plan, Manifest(kind="plan", precision=precision, engine=facts))
    return plan


# -- real builds, CPU only ---------------------------------------------------------------------------------------
@needs_rtx
@pytest.mark.parametrize("name", NETWORKS)
@pytest.mark.parametrize("precision", PRECISIONS)
def test_rtx_builds_both_networks_in_every_precision_without_a_gpu(plans, name, precision):
    import tensorrt_rtx

    plan, facts = plans[name, precision]
    assert facts["flavour"] == "tensorrt-rtx" and facts["tensorrt_rtx_version"] == tensorrt_rtx.__version__
    assert facts["compute_capabilities"] == list(DEFAULT_COMPUTE_CAPABILITIES) == ["8.0", "8.6", "8.9", "12.0", "12.1"]
    assert facts["engine_run"] is False and facts["built_on"] == "cpu (ahead of time, no GPU used)"
    assert facts["network_flags"] == [] and facts["strongly_typed"] is True
    assert facts["profile"] == {"input": "images", "min": [1, 3, 64, 64], "opt": [4, 3, 64, 64], "max": [8, 3, 64, 64]}
    # FP16 graphs keep float32 inputs and outputs (keep_io_types), so every plan takes and gives float32.
    assert facts["io"] == [
        {"name": "images", "mode": "input", "dtype": "float32", "shape": [-1, 3, 64, 64]},
        {"name": "logits", "mode": "output", "dtype": "float32", "shape": [-1, 20]},
    ]
    assert facts["build_options"]["compute_capabilities"] == list(DEFAULT_COMPUTE_CAPABILITIES)
    assert facts["plan_bytes"] == plan.stat().st_size > 1_000_000 and facts["build_seconds"] < 30
    check_rtx_plan_bytes(plan.read_bytes(), plan.name)  # a whole plan: magic tag, recorded size
    assert sorted(p.name for p in plan.parent.iterdir() if p.name.startswith(".")) == []  # no temp files left
    json.dumps(facts)


@needs_rtx
@pytest.mark.parametrize("name", NETWORKS)
def test_rtx_plan_size_follows_the_precision(plans, name):
    fp32, fp16, int8 = (plans[name, p][1]["plan_bytes"] for p in PRECISIONS)
    # Measured at width 0.25, 64 px (one run): FP16 0.51/0.53 of FP32, INT8 0.35/0.36 (alexnet/paper); weights
    # dominate, plus ~0.3 MB of code and ~1.3 MB more for the INT8 GEMMs. At width 1.0, 224 px: INT8 0.26.
    assert 0.45 < fp16 / fp32 < 0.60
    assert 0.25 < int8 / fp32 < 0.42 and int8 < fp16


@needs_rtx
@pytest.mark.parametrize("name", NETWORKS)
def test_rtx_builds_the_pooled_form_like_the_tensorrt_form(exports, plans, tiny20, name, tmp_path):
    """The pooled Q/DQ form (pairs before max-pooling and reshapes) is valid for TensorRT: the strongly typed
    builder parses and builds it, into a plan the size of the tensorrt form's (the same int8 weights)."""
    from calib.pipeline import calibrate_forms, open_source_model
    from calib.qdq import POOLED_FORM, describe_qdq, write_qdq
    from calib.request import CalibrationRequest

    source = open_source_model(exports[name, "fp32"])
    request = CalibrationRequest(data=tiny20, method="minmax", forms=("pooled",), num_images=32, use_cache=False,
                                 refine="none")  # fmt: skip
    result = calibrate_forms(source, request, tmp_path)["pooled"]
    onnx_path = write_qdq(source.path, tmp_path / "pooled.onnx", result.ranges, POOLED_FORM)
    model = onnx.load(str(onnx_path))
    producer = {o: n for n in model.graph.node for o in n.output}
    readers = {t: n for n in model.graph.node for t in n.input}
    pools = [n for n in model.graph.node if n.op_type == "MaxPool" and readers[n.output[0]].op_type == "Conv"]
    assert len(pools) == 2 and all(producer[p.input[0]].op_type == "DequantizeLinear" for p in pools)  # int8 pools
    assert describe_qdq(model)["float"] == []
    with pytest.MonkeyPatch.context() as mp:
        for probe in ("probe_gpus", "tensorrt_status", "visible_gpus"):
            if hasattr(rtx, probe):
                mp.setattr(rtx, probe, _no_gpu_probe)
        facts = build_rtx_plan(onnx_path, tmp_path / "pooled.plan", RTXBuildOptions(min_batch=1, opt_batch=4,
                                                                                    max_batch=8))  # fmt: skip
    check_rtx_plan_bytes((tmp_path / "pooled.plan").read_bytes(), "pooled.plan")
    # Measured at width 0.25, 224 px: 5,014,868 bytes pooled vs 5,014,836 tensorrt form (alexnet); 64 px alike.
    assert abs(facts["plan_bytes"] / plans[name, "int8"][1]["plan_bytes"] - 1) < 0.02
    assert facts["plan_bytes"] < 0.42 * plans[name, "fp32"][1]["plan_bytes"]


@needs_rtx
def test_rtx_one_target_costs_about_as_much_as_all(exports, plans, tmp_path):
    one = build_rtx_plan(exports["alexnet", "fp32"], tmp_path / "one.plan", RTXBuildOptions(compute_capabilities="8.6"))
    assert one["compute_capabilities"] == ["8.6"] and one["build_options"]["compute_capabilities"] == ["8.6"]
    # Measured (one run): 14,695,324 bytes for 8.6 alone, 14,677,172 for the five default targets.
    assert abs(one["plan_bytes"] / plans["alexnet", "fp32"][1]["plan_bytes"] - 1) < 0.05


@needs_rtx
def test_rtx_parser_errors_name_the_node_in_one_sentence(tmp_path):
    def model(path: Path, node: onnx.NodeProto, *domains: str) -> Path:
        graph = helper.make_graph(
            [helper.make_node("Relu", ["images"], ["r"], name="relu0"), node],
            "bad",
            [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, 8, 8])],
            [helper.make_tensor_value_info("logits", TensorProto.FLOAT, None)],
        )
        opsets = [helper.make_opsetid("", 17)] + [helper.make_opsetid(d, 1) for d in domains]
        onnx.save(helper.make_model(graph, opset_imports=opsets), path)
        return path

    custom = model(
        tmp_path / "custom.onnx",
        helper.make_node("FancyOp", ["r"], ["logits"], name="fancy_1", domain="com.example"),
        "com.example",
    )
    with pytest.raises(ArtifactError) as err:
        build_rtx_plan(custom, tmp_path / "custom.plan")
    assert str(err.value) == (
        "TensorRT-RTX's ONNX parser rejected custom.onnx: node 'fancy_1' (FancyOp): invalid node (Plugin not found, "
        "are the plugin name, version, and namespace correct?)."
    )
    unique = model(tmp_path / "unique.onnx", helper.make_node("Unique", ["r"], ["logits"], name="uniq_1"))
    with pytest.raises(ArtifactError) as err:
        build_rtx_plan(unique, tmp_path / "unique.plan")
    assert (
        str(err.value) == "TensorRT-RTX's ONNX parser rejected unique.onnx: node 'uniq_1' (Unique): unsupported node."
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["custom.onnx", "unique.onnx"]


def test_parser_errors_without_node_fields_fall_back_to_the_text():
    class ModelLevelError:  # a real ParserError of a model that failed as a whole: no node name or operator
        def node_name(self):
            return ""

        def node_operator(self):
            return ""

        def __str__(self):
            return "(deserializeOnnxModel): MODEL_DESERIALIZE_FAILED: Failed to parse the ONNX model."

    assert describe_parser_error(ModelLevelError()) == str(ModelLevelError())
    assert describe_parser_error("node 0: unsupported operator") == "node 0: unsupported operator"  # old bindings


def test_parser_failure_shows_three_errors_and_counts_the_rest():
    parser = SimpleNamespace(num_errors=4, get_error=lambda i: f"node {i}: unsupported operator")
    assert parser_failure("TensorRT", Path("m.onnx"), parser, None) == (
        "TensorRT's ONNX parser rejected m.onnx: node 0: unsupported operator; node 1: unsupported operator; "
        "node 2: unsupported operator (and 1 more)."
    )


@needs_rtx
def test_rtx_failed_build_says_why_and_leaves_no_file(tmp_path):
    model = small_onnx(tmp_path / "m.onnx")
    # Measured: TensorRT-RTX cannot compile an FP32 GEMM for Turing, so this build fails inside the builder.
    with pytest.raises(
        ArtifactError,
        match=r"^TensorRT-RTX could not build a plan from m\.onnx: .*"
        r"for Turing \(SM75\): FP32 GEMM is not supported",
    ):
        build_rtx_plan(model, tmp_path / "m.plan", RTXBuildOptions(compute_capabilities="7.5"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


@needs_rtx
def test_rtx_current_target_needs_a_gpu(tmp_path, monkeypatch):
    monkeypatch.setattr(rtx, "probe_gpus", lambda: ((), "nvidia-smi absent"))
    with pytest.raises(
        MissingBackendError,
        match=r"^Compute capability 'current' builds for this machine's GPU, and "
        r"none was found \(nvidia-smi absent\); name the targets instead",
    ):
        build_rtx_plan(
            small_onnx(tmp_path / "m.onnx"), tmp_path / "m.plan", RTXBuildOptions(compute_capabilities="current")
        )
    monkeypatch.setattr(rtx, "probe_gpus", lambda: ((H100,), "nvidia-smi"))
    monkeypatch.setattr(rtx, "visible_gpus", lambda: [H100])
    with pytest.raises(MissingBackendError, match="Cannot build for 'current': NVIDIA H100 80GB HBM3 is a Hopper GPU"):
        build_rtx_plan(tmp_path / "m.onnx", tmp_path / "m.plan", RTXBuildOptions(compute_capabilities="current"))
    assert not (tmp_path / "m.plan").exists()


def test_rtx_build_without_the_library_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(rtx.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(
        MissingBackendError, match=r"^TensorRT-RTX is not installed \(pip install 'alexnet-deploy\[tensorrt-rtx\]'\)\.$"
    ):
        build_rtx_plan(small_onnx(tmp_path / "m.onnx"), tmp_path / "m.plan")


# -- options -----------------------------------------------------------------------------------------------------
def test_rtx_compute_capabilities_are_parsed_and_checked():
    assert parse_compute_capabilities("8.6,8.9,12.0") == ("8.6", "8.9", "12.0")
    assert parse_compute_capabilities(["sm86", "SM_89", "120", " 8.6 "]) == ("8.6", "8.9", "12.0")
    assert parse_compute_capabilities("current") == ("current",)
    for text, message in [
        (
            "8.0,9.0",
            "Compute capability 9.0 is Hopper, which TensorRT-RTX does not support; TensorRT-RTX targets "
            "7.5, 8.0, 8.6, 8.9, 12.0, 12.1 (or current, this machine's GPU).",
        ),
        ("10.0", "Compute capability 10.0 cannot be targeted; TensorRT-RTX targets 7.5, 8.0"),
        ("ampere", "'ampere' is not a compute capability; write them like 8.6,8.9,12.0."),
        ("current,8.6", "'current' targets this machine's GPU alone"),
        (" , ", "Give at least one compute capability, e.g. 8.0,8.6,8.9,12.0,12.1."),
    ]:
        with pytest.raises(ConfigError) as err:
            parse_compute_capabilities(text)
        assert str(err.value).startswith(message)


def test_rtx_options_defaults_and_serialisation():
    opts = RTXBuildOptions()
    assert opts.compute_capabilities == DEFAULT_COMPUTE_CAPABILITIES and (opts.min_batch, opts.max_batch) == (1, 32)
    opts = RTXBuildOptions(compute_capabilities="8.9,8.6", max_batch=16)
    assert opts.compute_capabilities == ("8.9", "8.6")
    assert json.loads(json.dumps(opts.to_dict())) == {
        "min_batch": 1, "opt_batch": 8, "max_batch": 16, "workspace_mib": 1024, "compute_capabilities": ["8.9", "8.6"],
    }  # fmt: skip
    assert not hasattr(opts, "timing_cache")  # a timing cache would make the build look for a GPU
    with pytest.raises(FrozenInstanceError):
        opts.max_batch = 64  # type: ignore[misc]
    with pytest.raises(ConfigError, match="min <= opt <= max"):
        RTXBuildOptions(opt_batch=64)
    with pytest.raises(ConfigError, match="9.0 is Hopper"):
        RTXBuildOptions(compute_capabilities="8.0,9.0")


# -- refusing plans before TensorRT-RTX sees them ----------------------------------------------------------------
def facts(version=VERSION, targets=DEFAULT_COMPUTE_CAPABILITIES, **extra) -> dict:
    return {
        "flavour": "tensorrt-rtx",
        "tensorrt_rtx_version": version,
        "compute_capabilities": list(targets),
        "profile": {"input": "images", "min": [1, 3, 4, 4], "opt": [4, 3, 4, 4], "max": [8, 3, 4, 4]},
        **extra,
    }


def test_rtx_compat_same_release_and_a_target_gpu_is_accepted():
    check_rtx_plan_compatible(facts(), VERSION, [RTX4090])
    check_rtx_plan_compatible(facts(targets=["8.6"]), VERSION, [RTX4090, GPU("NVIDIA RTX A6000", "8.6")], device=1)


def test_rtx_compat_other_release_is_refused_naming_both():
    with pytest.raises(ArtifactError) as err:
        check_rtx_plan_compatible(facts(version="1.6.0.28"), VERSION, [RTX4090])
    assert str(err.value) == (
        "This plan was built by TensorRT-RTX 1.6.0.28 for compute 8.0, 8.6, 8.9, 12.0, 12.1; this machine has "
        "TensorRT-RTX 1.7.1.116 and NVIDIA GeForce RTX 4090 (compute 8.9): an engine loads only on the TensorRT-RTX "
        "release that built it; rebuild it with `alexnet-deploy build --backend tensorrt-rtx --compute-capability 8.9`."
    )
    with pytest.raises(ArtifactError, match="release that built it"):  # any difference, the build number too
        check_rtx_plan_compatible(facts(version="1.7.1.117"), VERSION, [RTX4090])


def test_rtx_compat_gpu_outside_the_targets_or_hopper_is_refused():
    turing = GPU("NVIDIA GeForce RTX 2080 Ti", "7.5")
    with pytest.raises(ArtifactError) as err:
        check_rtx_plan_compatible(facts(), VERSION, [turing])
    assert (
        "for compute 8.0, 8.6, 8.9, 12.0, 12.1; this machine has TensorRT-RTX 1.7.1.116 and NVIDIA GeForce RTX "
        "2080 Ti (compute 7.5): the plan holds no code for compute 7.5; rebuild it with" in str(err.value)
    )
    with pytest.raises(ArtifactError) as err:
        check_rtx_plan_compatible(facts(), VERSION, [H100])
    assert str(err.value).endswith(
        "NVIDIA H100 80GB HBM3 (compute 9.0): NVIDIA H100 80GB HBM3 is a Hopper GPU (compute 9.0), which TensorRT-RTX "
        "cannot run on; build a TensorRT plan for this GPU instead (--backend tensorrt)."
    )
    with pytest.raises(ArtifactError, match=r"\(compute 10.0\) is not a GPU TensorRT-RTX runs on"):
        check_rtx_plan_compatible(facts(), VERSION, [GPU("NVIDIA B200", "10.0")])
    with pytest.raises(ArtifactError, match=r"NVIDIA T1000 reports no compute capability \('\[N/A\]'\)"):
        check_rtx_plan_compatible(facts(), VERSION, [GPU("NVIDIA T1000", "[N/A]")])


def test_rtx_compat_needs_facts_a_gpu_and_a_valid_device():
    with pytest.raises(ArtifactError, match="does not record the TensorRT-RTX release and target compute"):
        check_rtx_plan_compatible({"flavour": "tensorrt-rtx"}, VERSION, [RTX4090])
    with pytest.raises(ArtifactError, match="built by tensorrt, not TensorRT-RTX; run it with that backend"):
        check_rtx_plan_compatible({"flavour": "tensorrt", "tensorrt_version": "10.8.0"}, VERSION, [RTX4090])
    with pytest.raises(MissingBackendError, match="No NVIDIA GPU was found, and running a TensorRT-RTX plan needs"):
        check_rtx_plan_compatible(facts(), VERSION, [])
    with pytest.raises(ConfigError, match="GPU 1 does not exist here"):
        check_rtx_plan_compatible(facts(), VERSION, [RTX4090], device=1)


def fake_plan_bytes(size: int = 128) -> bytes:
    """What a plan's header holds, as measured on 1.7.1 plans: the magic tag and, at byte 16, the total size."""
    return rtx.PLAN_MAGIC + bytes(12) + size.to_bytes(8, "little") + bytes(size - 24)


def test_rtx_plan_bytes_that_are_not_the_plan_are_refused():
    check_rtx_plan_bytes(fake_plan_bytes(), "m.plan")
    with pytest.raises(ArtifactError, match=r"^m\.plan is not a TensorRT-RTX plan: it does not start with a plan "):
        check_rtx_plan_bytes(b"PK\x03\x04 a zip file" * 8, "m.plan")
    with pytest.raises(
        ArtifactError, match=r"^m\.plan is damaged: its plan header says 128 bytes, the file holds 100\.$"
    ):
        check_rtx_plan_bytes(fake_plan_bytes()[:100], "m.plan")


@needs_rtx
def test_rtx_real_plans_have_the_header_we_check(plans):
    plan, _ = plans["alexnet", "int8"]
    data = plan.read_bytes()
    check_rtx_plan_bytes(data, plan.name)
    with pytest.raises(ArtifactError, match="is damaged: its plan header says"):
        check_rtx_plan_bytes(data[:-1], plan.name)


@needs_rtx
def test_rtx_runner_refuses_another_release_and_corrupt_plans_before_tensorrt_rtx(plans, tmp_path, monkeypatch):
    src, real = plans["alexnet", "fp16"]
    monkeypatch.setattr(rtx, "rtx_status", lambda: {"can_run": True, "version": real["tensorrt_rtx_version"]})
    monkeypatch.setattr(rtx, "visible_gpus", lambda: [RTX4090])
    monkeypatch.setitem(sys.modules, "tensorrt_rtx", None)  # importing it now raises: the refusals must come first
    plan = sidecar(Path(shutil.copy(src, tmp_path / "m.plan")), {**real, "tensorrt_rtx_version": "1.6.0.28"}, "fp16")
    runner = TensorRTRTXRunner(plan)
    assert runner.name == "tensorrt-rtx fp16" and runner.max_batch == 8  # from the sidecar, before activation
    with pytest.raises(
        ArtifactError,
        match=r"^This plan was built by TensorRT-RTX 1\.6\.0\.28 for compute 8\.0, .*"
        r"this machine has TensorRT-RTX 1\.7\.1\.116 and NVIDIA GeForce RTX 4090",
    ):
        runner.activate()
    assert not runner.is_active
    sidecar(plan, real, "fp16")
    plan.write_bytes(plan.read_bytes()[:-7])  # changed after its sidecar was written
    with pytest.raises(
        ArtifactError, match=r"^The sidecar m\.plan\.json does not describe m\.plan \(their sha256 differ\)"
    ):
        TensorRTRTXRunner(plan).activate()
    plan.write_bytes(b"\x00" * 4096)  # not a plan at all, with a sidecar that vouches for these bytes
    sidecar(plan, real, "fp16")
    with pytest.raises(ArtifactError, match=r"^m\.plan is not a TensorRT-RTX plan: it does not start with a plan"):
        TensorRTRTXRunner(plan).activate()


@needs_rtx
def test_rtx_runner_without_a_supported_gpu_says_what_it_needs(plans, tmp_path):
    status = rtx_status()  # the real probe: child processes
    if status["can_run"]:
        pytest.skip(f"this machine can run TensorRT-RTX plans ({status['gpus']})")
    assert status["installed"] and status["can_build"] and status["version"] == VERSION
    plan = sidecar(
        Path(shutil.copy(plans["alexnet_paper", "fp32"][0], tmp_path / "p.plan")), plans["alexnet_paper", "fp32"][1]
    )
    with pytest.raises(MissingBackendError) as err:
        TensorRTRTXRunner(plan).activate()
    assert str(err.value).startswith(
        "TensorRT-RTX cannot run plans here: running a plan needs an RTX/Ampere-or-newer GPU, SM75-SM121, not Hopper"
    )
    assert "; none found here (" in str(err.value) and str(err.value).endswith(").") and "\n" not in str(err.value)


@needs_rtx
def test_rtx_engine_validity_asked_in_a_child_process(plans, tmp_path):
    plan, _ = plans["alexnet", "fp32"]
    junk = tmp_path / "junk.plan"
    junk.write_bytes(b"junk" * 64)
    assert plan_validity(junk) == {"validity": "INVALID", "diagnostics": ["MALFORMED_ENGINE"], "errors": []}
    answer = plan_validity(plan)
    if rtx_status()["can_run"]:
        assert answer["validity"] in ("VALID", "SUBOPTIMAL")
    else:  # measured here: no GPU -> INVALID with no diagnostic, after logging CUDA error 35
        assert answer["validity"] == "INVALID" and answer["diagnostics"] == []
        assert any("cudaError 35" in e for e in answer["errors"])


# -- what this machine can do ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("gpus", "can_run", "reason"),
    [
        ((), False, "running a plan needs an RTX/Ampere-or-newer GPU, SM75-SM121, not Hopper; none found here (probe)"),
        (
            (H100,),
            False,
            "running a plan needs an RTX/Ampere-or-newer GPU, SM75-SM121, not Hopper: NVIDIA H100 80GB "
            "HBM3 is a Hopper GPU (compute 9.0), which TensorRT-RTX cannot run on",
        ),
        ((H100, RTX4090), True, ""),
    ],
)
def test_rtx_status(monkeypatch, gpus, can_run, reason):
    monkeypatch.setattr(rtx.importlib.util, "find_spec", lambda name: object())
    monkeypatch.setattr(rtx, "_child", lambda code, *a, **k: (0, json.dumps({"version": VERSION}) + "\n", ""))
    monkeypatch.setattr(rtx, "probe_gpus", lambda: (gpus, "probe"))
    status = rtx_status()
    assert status == {
        "installed": True, "version": VERSION, "can_build": True, "can_run": can_run, "reason": reason,
        "gpus": [{"name": RTX4090.name, "compute_capability": "8.9"}] if can_run else [],
    }  # fmt: skip


def test_rtx_status_when_not_installed(monkeypatch):
    monkeypatch.setattr(rtx.importlib.util, "find_spec", lambda name: None)
    status = rtx_status()
    assert (status["installed"], status["can_build"], status["can_run"]) == (False, False, False)
    assert status["reason"] == "the tensorrt_rtx package is not installed (pip install 'alexnet-deploy[tensorrt-rtx]')"


def test_rtx_verification_says_what_the_accuracy_was_measured_on():
    here = {"can_run": False, "reason": "running a plan needs an RTX/Ampere-or-newer GPU, SM75-SM121, not Hopper; "
            "none found here (nvidia-smi absent)", "version": VERSION, "gpus": []}  # fmt: skip
    assert rtx.rtx_verification(here) == {
        "engine_run": False,
        "verified_on": "the deployable ONNX in ONNX Runtime, not the plan (running a plan needs an RTX/Ampere-or-newer "
        "GPU, SM75-SM121, not Hopper; none found here (nvidia-smi absent))",
    }
    gpu = {"name": RTX4090.name, "compute_capability": "8.9"}
    assert rtx.rtx_verification({"can_run": True, "reason": "", "version": VERSION, "gpus": [gpu]}) == {
        "engine_run": True,
        "verified_on": "the plan itself, run by TensorRT-RTX 1.7.1.116 on NVIDIA GeForce RTX 4090 (compute 8.9)",
    }


# -- the runner's control flow, against a stand-in tensorrt_rtx and CPU buffers ----------------------------------
class _Flags:
    """A pybind11 enum type with ``__members__``, as the runner reads ``EngineInvalidityDiagnostics``."""

    def __init__(self, **members: int) -> None:
        self.__members__ = _enum(**members).__dict__
        for name, member in self.__members__.items():
            setattr(self, name, member)


def standin_rtx(calls: dict, *, validity: str = "VALID", bits: int = 0, cache_ok: bool = True) -> types.ModuleType:
    """The TensorRT runner's stand-in engine, plus what the RTX runner adds: validity, runtime config and cache."""
    trt = standin_runtime_module(calls)
    trt.__version__ = VERSION
    trt.EngineValidity = _enum(VALID=0, SUBOPTIMAL=1, INVALID=2)
    trt.EngineInvalidityDiagnostics = _Flags(VERSION_MISMATCH=1, UNSUPPORTED_CC=2, MALFORMED_ENGINE=32)

    class RuntimeCache:
        def __init__(self):
            self.kernels = b""

        def deserialize(self, blob):
            calls["cache_in"] = bytes(blob)
            if cache_ok:
                self.kernels = bytes(blob)
            return cache_ok

        def serialize(self):
            return memoryview(self.kernels + b"+jit")

    class RuntimeConfig:
        def create_runtime_cache(self):
            return RuntimeCache()

        def set_runtime_cache(self, cache):
            calls["cache_set"] = cache
            return True

    class Runtime(trt.Runtime):
        engine_header_size = 64

        def get_engine_validity(self, header):
            calls["validity_header"] = bytes(header)
            return getattr(trt.EngineValidity, validity), bits

        def deserialize_cuda_engine(self, data):
            engine = super().deserialize_cuda_engine(data)
            make_context = engine.create_execution_context

            def create_execution_context(runtime_config=None):
                calls["runtime_config"] = runtime_config
                return make_context()

            engine.create_runtime_config = RuntimeConfig
            engine.create_execution_context = create_execution_context
            return engine

    trt.Runtime = Runtime
    return trt


@pytest.fixture
def standin_plan(tmp_path, monkeypatch):
    plan = tmp_path / "m.plan"
    plan.write_bytes(fake_plan_bytes())
    sidecar(plan, facts(targets=["8.9"]), "fp16")
    monkeypatch.setattr(rtx, "rtx_status", lambda: {"can_run": True, "version": VERSION, "reason": ""})
    monkeypatch.setattr(rtx, "visible_gpus", lambda: [RTX4090])
    monkeypatch.setitem(sys.modules, "torch", cpu_torch_with_fake_cuda())
    return plan


def test_rtx_standin_runner_flow_with_a_runtime_cache(standin_plan, monkeypatch):
    calls: dict = {}
    monkeypatch.setitem(sys.modules, "tensorrt_rtx", standin_rtx(calls))
    x = np.random.default_rng(0).standard_normal((5, 3, 4, 4)).astype(np.float32)
    expected = x.astype(np.float16).astype(np.float32).reshape(5, 3, 16).mean(-1) @ W
    cache_file = standin_plan.with_name("m.plan.rtcache")
    with TensorRTRTXRunner(standin_plan, include_copies=False) as runner:
        assert calls["validity_header"] == fake_plan_bytes()[:64] and calls["plan_bytes"] == fake_plan_bytes()
        assert calls["runtime_config"] is not None and calls["cache_set"] is runner._runtime_cache
        assert runner.runtime_cache_loaded is False and runner.jit_seconds >= 0 and "cache_in" not in calls
        np.testing.assert_allclose(runner.infer(x), expected, rtol=1e-5, atol=1e-6)
        assert runner.inference_time == runner.last_device_seconds >= 0
    assert cache_file.read_bytes() == b"+jit" and not hasattr(runner, "_runtime_config")
    with TensorRTRTXRunner(standin_plan) as runner:  # the next run starts from the saved kernels
        assert calls["cache_in"] == b"+jit" and runner.runtime_cache_loaded is True
    assert cache_file.read_bytes() == b"+jit+jit"


def test_rtx_standin_runner_replaces_a_foreign_cache_and_refuses_invalid_plans(standin_plan, monkeypatch):
    calls: dict = {}
    standin_plan.with_name("m.plan.rtcache").write_bytes(b"from another GPU")
    monkeypatch.setitem(sys.modules, "tensorrt_rtx", standin_rtx(calls, cache_ok=False))
    with TensorRTRTXRunner(standin_plan) as runner:
        assert calls["cache_in"] == b"from another GPU" and runner.runtime_cache_loaded is False
    assert standin_plan.with_name("m.plan.rtcache").read_bytes() == b"+jit"
    monkeypatch.setitem(sys.modules, "tensorrt_rtx", standin_rtx(calls, validity="INVALID", bits=1 | 2))
    runner = TensorRTRTXRunner(standin_plan, runtime_cache=False)
    with pytest.raises(
        ArtifactError,
        match=r"^TensorRT-RTX says m\.plan cannot run on this GPU: version mismatch, "
        r"unsupported cc\.$",
    ):
        runner.activate()
    assert not runner.is_active


# -- on a supported GPU only -------------------------------------------------------------------------------------
@needs_rtx
@pytest.mark.gpu
def test_rtx_real_plan_matches_onnxruntime(tmp_path):
    status = rtx_status()
    if not status["can_run"]:
        pytest.skip(f"TensorRT-RTX cannot run plans here: {status['reason']}")
    from alexnet_deploy.backends.onnxruntime import OnnxRuntimeRunner

    model = small_onnx(tmp_path / "small.onnx")
    plan = tmp_path / "small.plan"
    sidecar(plan, build_rtx_plan(model, plan, RTXBuildOptions(min_batch=1, opt_batch=4, max_batch=8)))
    x = np.random.default_rng(1).standard_normal((5, 3, 16, 16)).astype(np.float32)
    with OnnxRuntimeRunner(model) as ref, TensorRTRTXRunner(plan, include_copies=False) as run:
        expected, got = ref.infer(x), run.infer(x)
        assert run.jit_seconds > 0 and not run.runtime_cache_loaded
    np.testing.assert_allclose(got, expected, rtol=1e-2, atol=1e-2)
    with TensorRTRTXRunner(plan) as run:
        assert run.runtime_cache_loaded  # the kernels compiled above were kept beside the plan
        np.testing.assert_allclose(run.infer(x), expected, rtol=1e-2, atol=1e-2)
