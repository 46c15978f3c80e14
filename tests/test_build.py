from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from quant_models import trained_onnx
from typer.testing import CliRunner

import calib.cache
from alexnet_deploy.build import BuildGateError, build, default_output
from alexnet_deploy.cli.main import app
from alexnet_deploy.core.accuracy import EvalRequest, Gate
from alexnet_deploy.core.errors import MissingBackendError
from alexnet_deploy.core.files import sha256_file
from alexnet_deploy.core.manifest import load_manifest, save_manifest
from alexnet_deploy.requests import BuildRequest, ProbeRequest
from alexnet_deploy.selection import SPEED_TIE, choose_backends
from alexnet_deploy.verify import evaluate
from calib import describe_qdq
from calib.request import CalibrationRequest

runner = CliRunner()
LOOSE = Gate(2.0, 2.0)  # 200 val images: one image is 0.5 point, so the default gate is a coin toss here


def fast(calib_data=None, *, backend="onnxruntime", method="minmax", refine="none", **fields) -> BuildRequest:
    """A small INT8 build: 64 calibration and 60 held-out images, no cache, the loose gate, and no weight
    refinement unless asked (tests/calib/test_calib_refine.py tests that; the build's default compares them)."""
    calibration = CalibrationRequest(
        data=calib_data, method=method, num_images=64, holdout_images=60, use_cache=False, refine=refine
    )
    return BuildRequest(backend=backend, verify=EvalRequest(LOOSE), calibration=calibration, **fields)


@pytest.fixture(scope="session")
def fp32_onnx(tiny20, tmp_path_factory, request):
    return trained_onnx(tiny20, tmp_path_factory.mktemp("qmodel"), request.config.cache.mkdir("alexnet-deploy-quant"))


@pytest.fixture(scope="module")
def black(tmp_path_factory, tiny20):
    """A calibration folder of four flat images in ImageNet's mean colour: normalised they are all ~0, so the
    calibrated input range is ~0 and every real image is clipped flat, whatever the model learned. (Black images
    were not reliably broken: their ranges fit some trained models well enough to pass the gate.) The folder is
    named after one of the model's classes, with the set's classes.tsv: calibration refuses classes the model does
    not know."""
    root = tmp_path_factory.mktemp("black")
    first_class = sorted(p.name for p in (tiny20 / "train").iterdir() if p.is_dir())[0]
    (root / first_class).mkdir()
    (root / "classes.tsv").write_bytes((tiny20 / "classes.tsv").read_bytes())
    for i in range(4):
        Image.new("RGB", (64, 64), (124, 116, 104)).save(root / first_class / f"{i}.png")
    return root


def test_int8_build_writes_the_file_it_verified(fp32_onnx, tiny20, tmp_path):
    out = tmp_path / "m.int8.onnx"
    result = build(fp32_onnx, tiny20, fast(tiny20, refine="auto"), out=out)  # the default: refinements compared
    assert result.passed and result.path == out and out.is_file()
    m = load_manifest(out)
    assert m.kind == "onnx" and m.precision == "int8" and m.gate["status"] == "passed" and not m.gate["forced"]
    assert m.accuracy["verified_file_sha256"] == sha256_file(out) == m.sha256
    assert m.calibration["method"] == "minmax" and m.calibration["data"]["folder"].endswith("train")
    assert m.engine["backend"] == "onnxruntime" and m.engine["providers"] == ["CPUExecutionProvider"]
    assert len(m.accuracy["per_class_top1_delta"]) == 20 and m.accuracy["fp32"]["top1"] > 5.0
    # Re-verifying the written file gives the sidecar's figures.
    again = evaluate(out, tiny20, reference=fp32_onnx)
    assert again.top1 == m.accuracy["top1"] and again.top5 == m.accuracy["top5"]
    assert again.reference["agreement_top1"] == m.accuracy["agreement_top1"] > 80.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.int8.onnx", "m.int8.onnx.json"]


def test_broken_calibration_is_refused_and_nothing_is_written(fp32_onnx, tiny20, black, tmp_path):
    out = tmp_path / "out" / "m.int8.onnx"
    with pytest.raises(BuildGateError, match="no engine was written") as err:
        build(fp32_onnx, tiny20, fast(black, max_fallback_layers=0),
              out=out)  # fmt: skip
    result = err.value.result
    assert not result.passed and result.path is None and result.comparison["agreement_top1"] < 80.0
    assert list(out.parent.iterdir()) == []  # no engine, no sidecar, no staging leftovers


@pytest.mark.slow
def test_force_writes_the_failed_engine_marked_failed(fp32_onnx, tiny20, black, tmp_path):
    out = tmp_path / "forced.onnx"
    args = ["build", str(fp32_onnx), "--int8", "--calib-data", str(black), "--eval-data", str(tiny20),
            "--backend", "onnxruntime", "--calib-method", "minmax", "--refine", "none", "--max-fallback-layers", "0",
            "--no-cache", "--max-top1-drop", "2", "--max-top5-drop", "2", "-o", str(out)]  # fmt: skip
    refused = runner.invoke(app, args)
    assert refused.exit_code == 1 and "no engine was written" in refused.output and not out.exists()
    forced = runner.invoke(app, [*args, "--force"])
    assert forced.exit_code == 1 and "written anyway" in forced.output and out.is_file()
    m = load_manifest(out)
    assert m.gate["status"] == "failed" and m.gate["forced"] is True and m.gate["passed"] is False
    assert "gate FAILED" in forced.output
    assert m.extra["selection"]["why"].startswith("no candidate passed the gate")  # the record says why this one


@pytest.mark.slow
def test_fallback_leaves_the_damaged_layer_in_float(fp32_onnx, tiny20, tmp_path, monkeypatch):
    real = calib.cache.compute_ranges

    def conv1_broken(*args, **kwargs):
        ranges = real(*args, **kwargs)
        lo, hi = ranges.values["images"]
        ranges.values["images"] = (lo * 0.02, hi * 0.02)  # conv1's input range: 50x too narrow
        return ranges

    monkeypatch.setattr(calib.cache, "compute_ranges", conv1_broken)
    out = tmp_path / "fb.onnx"
    result = build(fp32_onnx, tiny20, fast(tiny20), out=out)
    assert result.passed and result.fallback["float_layers"] == ["conv1"]
    assert result.fallback["ranking"][0]["label"] == "conv1"
    assert not result.fallback["attempts"][0]["passed"] and result.fallback["attempts"][-1]["passed"]
    assert "held-out calibration images" in result.fallback["ranked_on"]
    info = describe_qdq(out)
    assert info["float"] == ["conv1"] and len(info["quantized"]) == 7
    m = load_manifest(out)
    assert m.calibration["float_layers"] == ["conv1"] and m.extra["fallback"]["float_layers"] == ["conv1"]


@pytest.mark.slow
def test_calibrate_auto_reports_all_three_methods(fp32_onnx, tiny20, tmp_path):
    out = tmp_path / "q.onnx"
    res = runner.invoke(app, ["calibrate", str(fp32_onnx), "--calib-data", str(tiny20), "--target", "tensorrt",
                              "--method", "auto", "--num-images", "64", "--holdout-images", "60", "--num-bins",
                              "1024", "--no-cache", "-o", str(out), "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    everything = d["candidates"]  # the methods, then the refinements of the best one (calib/refine.py)
    cands = [c for c in everything if c["refine"] == "none"]
    assert [c["method"] for c in cands] == ["minmax", "entropy", "percentile"]
    assert {c["form"] for c in everything} == {"tensorrt"} and sum(c["chosen"] for c in everything) == 1
    assert all(0 <= c["holdout"]["agreement_top1"] <= 100 for c in cands)
    entropy = cands[1]["vs_minmax"]
    assert entropy["clipped_tensors"] >= 1 and entropy["min_amax_ratio"] < 1.0
    assert d["method"] == next(c["method"] for c in everything if c["chosen"])
    assert out.is_file() and load_manifest(out).calibration["candidates"] == everything


def test_fp16_build(fp32_onnx, tiny20, tmp_path):
    request = BuildRequest(precision="fp16", backend="onnxruntime")
    result = build(fp32_onnx, tiny20, request, out=tmp_path / "h.onnx")
    assert result.passed and result.comparison["agreement_top1"] >= 99.0
    m = load_manifest(tmp_path / "h.onnx")
    assert m.precision == "fp16" and m.calibration == {}


def _tiny_bad_input_onnx(path, fp32_onnx) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((20, 8 * 8), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("Gemm", ["f", "w"], ["logits"], transB=1)],
        "bad",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 20])],
        [w],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    save_manifest(path, load_manifest(fp32_onnx))  # the FP32 export's facts, for this file's bytes


def test_bad_inputs_are_one_sentence_and_write_nothing(fp32_onnx, tiny20, imagenette10, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    empty = tmp_path / "empty"
    empty.mkdir()
    texts = tmp_path / "texts" / "a"
    texts.mkdir(parents=True)
    (texts / "readme.txt").write_text("no images here")
    bad_onnx = tmp_path / "bad.onnx"
    _tiny_bad_input_onnx(bad_onnx, fp32_onnx)
    base = ["build", "--backend", "onnxruntime", "--no-cache", "-o", str(out_dir / "x.onnx")]
    cases = {
        "no class subfolders": [str(fp32_onnx), "--calib-data", str(empty), "--eval-data", str(tiny20)],
        "no readable image": [str(fp32_onnx), "--calib-data", str(tmp_path / "texts"), "--eval-data", str(tiny20)],
        "do not match the model's 20 classes": [str(fp32_onnx), "--calib-data", str(tiny20), "--eval-data",
                                                str(imagenette10)],
        "must take one N x 3 x H x W image input; it takes x[-1, 1, 8, 8]": [str(bad_onnx), "--calib-data",
                                                                             str(tiny20), "--eval-data", str(tiny20)],
    }  # fmt: skip
    for expected, args in cases.items():
        res = runner.invoke(app, [*base, *args])
        lines = res.output.strip().splitlines()
        assert res.exit_code == 1, (expected, res.output)
        assert lines[-1].startswith("error: ") and expected in lines[-1], (expected, res.output)
        assert list(out_dir.iterdir()) == []
    res = runner.invoke(app, ["calibrate", str(fp32_onnx), "--calib-data", str(empty), "-o", str(out_dir / "q.onnx")])
    assert res.exit_code == 1 and "no class subfolders" in res.output and list(out_dir.iterdir()) == []


def test_backend_choice(monkeypatch):
    import alexnet_deploy.core.system as system
    from alexnet_deploy.core.errors import ConfigError
    from alexnet_deploy.core.vocab import BackendName, Precision

    monkeypatch.setattr(system, "tensorrt_status", lambda: {"installed": True, "version": None, "usable": False,
                                                           "reason": "no NVIDIA GPU was found"})  # fmt: skip
    candidates, reason = choose_backends(Precision.INT8, BackendName.AUTO)
    assert {(c.backend.value, c.form) for c in candidates} == {
        ("onnxruntime", "tensorrt"), ("onnxruntime", "onnxruntime"), ("onnxruntime", "pooled"),
        ("onnxruntime", "pooled-u8"), ("openvino", "tensorrt"), ("openvino", "onnxruntime"), ("openvino", "pooled"),
        ("openvino", "pooled-u8"),
    }  # fmt: skip
    assert "measured among onnxruntime, openvino" in reason and "tensorrt: no NVIDIA GPU was found" in reason
    assert "tensorrt-rtx: it cannot run (or be verified) here" in reason  # built here, never picked unasked
    with pytest.raises(MissingBackendError, match="tensorrt backend is not usable here: no NVIDIA GPU"):
        choose_backends(Precision.INT8, BackendName.TENSORRT)
    with pytest.raises(ConfigError, match="BF16 is OpenVINO's inference precision"):
        choose_backends(Precision.BF16, BackendName.ONNXRUNTIME)
    assert [c.backend.value for c in choose_backends(Precision.BF16, BackendName.AUTO)[0]] == ["openvino"]
    refused = "No backend can build and verify an int8 engine here .*--backend tensorrt-rtx builds one anyway"
    with pytest.raises(MissingBackendError, match=refused):
        choose_backends(Precision.INT8, BackendName.AUTO, Path("m.plan"))  # no plan backend can run here
    monkeypatch.setattr(system, "tensorrt_status", lambda: {"installed": True, "version": "10.9.0", "usable": True,
                                                           "reason": ""})  # fmt: skip
    plans, _ = choose_backends(Precision.INT8, BackendName.AUTO, Path("m.plan"))
    assert [(c.backend.value, c.form) for c in plans] == [("tensorrt", "tensorrt"), ("tensorrt", "pooled")]
    assert default_output("a/m.fp32.onnx", "int8", "tensorrt").name == "m.int8.plan"
    assert default_output("a/m.fp32.onnx", "int8", "tensorrt-rtx").name == "m.int8.rtx.plan"
    assert default_output("a/m.onnx", "fp16", "onnxruntime").name == "m.fp16.ort.onnx"
    assert default_output("a/m.onnx", "bf16", "openvino").name == "m.bf16.ov.onnx"


def test_tensorrt_branch_builds_the_tensorrt_form_and_records_the_plan(fp32_onnx, tiny20, tmp_path, monkeypatch):
    """The TensorRT path's control flow with a stand-in build_plan (the 'plan' is the Q/DQ ONNX itself, run by
    ONNX Runtime): TensorRT itself is not available here."""
    import alexnet_deploy.backends.tensorrt.builder as trt_engine
    import alexnet_deploy.backends.verification as verification
    import alexnet_deploy.core.system as system
    import alexnet_deploy.selection as selection
    from alexnet_deploy.backends.onnxruntime import OnnxRuntimeRunner
    from alexnet_deploy.backends.tensorrt.builder import TensorRTBuildOptions

    seen = {}

    def fake_build_plan(onnx_path, plan_path, options):
        seen["onnx"] = describe_qdq(onnx_path)
        shutil.copy(onnx_path, plan_path)
        return {"tensorrt_version": "10.9.0", "gpu": {"name": "stand-in", "compute_capability": "9.0"},
                "build_options": options.to_dict()}  # fmt: skip

    monkeypatch.setattr(system, "tensorrt_status", lambda: {"usable": True, "version": "10.9.0", "reason": ""})
    monkeypatch.setattr(trt_engine, "build_plan", fake_build_plan)
    for module in (verification, selection):  # verifying the plan, and the speed probe
        monkeypatch.setattr(module, "runner_for", lambda art, *a, **k: OnnxRuntimeRunner(art.path))
    out = tmp_path / "m.plan"
    request = fast(tiny20, backend="auto", engines={"tensorrt": TensorRTBuildOptions(opt_batch=16, max_batch=64)})
    result = build(fp32_onnx, tiny20, request, out=out)
    assert result.backend == "tensorrt" and result.passed
    assert {x["activation"]["dtype"] for x in seen["onnx"]["layers"]} == {"int8"}  # TensorRT's symmetric form
    m = load_manifest(out)
    assert m.kind == "plan" and m.engine["tensorrt_version"] == "10.9.0"
    assert m.engine["build_options"]["opt_batch"] == 16
    # TensorRT takes the tensorrt form and the pooled one (int8 through max-pooling): both built, the faster kept
    assert m.calibration["form"] in ("tensorrt", "pooled")
    assert {c["form"] for c in m.calibration["candidates"]} == {"tensorrt", "pooled"}


def test_auto_measures_every_verified_candidate_and_keeps_the_fastest(fp32_onnx, tiny20, tmp_path):
    out = tmp_path / "m.int8.onnx"
    request = fast(tiny20, backend="auto", probe=ProbeRequest((1, 8), 0.2))
    result = build(fp32_onnx, tiny20, request, out=out)
    m = load_manifest(out)
    selection = m.extra["selection"]
    assert {(c["backend"], c["form"]) for c in selection["candidates"]} == {
        ("onnxruntime", "tensorrt"), ("onnxruntime", "onnxruntime"), ("onnxruntime", "pooled"),
        ("onnxruntime", "pooled-u8"), ("openvino", "tensorrt"), ("openvino", "onnxruntime"), ("openvino", "pooled"),
        ("openvino", "pooled-u8"),
    }  # fmt: skip
    passing = [c for c in selection["candidates"] if c["passed"]]
    assert passing and all(c["speed"]["1"]["images_per_s"] > 0 and c["fp32_speed"]["8"] for c in passing)
    fastest = max(c["images_per_s_geomean"] for c in passing)
    # the fastest, or within SPEED_TIE of it the one closest to FP32
    tied = [c for c in passing if c["images_per_s_geomean"] >= (1 - SPEED_TIE) * fastest]
    best = max(tied, key=lambda c: (c["agreement_top1"], c["images_per_s_geomean"]))
    assert selection["chosen"] == f"{best['backend']} ({best['form']} form)" and "fastest" in selection["why"]
    assert m.engine["backend"] == best["backend"] == result.backend
    assert m.calibration["form"] == best["form"] and sum(c["chosen"] for c in m.calibration["candidates"]) == 1
    slower = [b for b, s in best["speed"].items() if s["images_per_s"] < best["fp32_speed"][b]["images_per_s"]]
    assert len(m.extra["notes"]) == len(slower)  # an INT8 engine slower than FP32 is said, never silent
    assert m.accuracy["verified_on"].startswith("the engine file itself, run by")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.int8.onnx", "m.int8.onnx.json"]


def test_bf16_is_openvinos_inference_precision_and_is_gated(fp32_onnx, tiny20, tmp_path):
    from alexnet_deploy.backends.openvino import precision_supported

    if not precision_supported("bf16"):
        pytest.skip("this CPU has no BF16 support in OpenVINO (OPTIMIZATION_CAPABILITIES lacks BF16)")
    out = tmp_path / "m.bf16.ov.onnx"
    request = BuildRequest(precision="bf16", verify=EvalRequest(LOOSE), probe=ProbeRequest(()))
    result = build(fp32_onnx, tiny20, request, out=out)
    m = load_manifest(out)
    assert result.passed and result.backend == "openvino" and m.precision == "bf16"
    assert m.engine["compiled"]["INFERENCE_PRECISION_HINT"] == "bf16" and m.gate["status"] == "passed"
    assert out.read_bytes() == fp32_onnx.read_bytes()  # the FP32 graph itself; OpenVINO computes it in bf16
    assert 90.0 <= m.accuracy["agreement_top1"] < 100.5


def test_tensorrt_rtx_build_writes_a_real_plan_and_says_it_was_verified_on_its_onnx(fp32_onnx, tiny20, tmp_path):
    pytest.importorskip("tensorrt_rtx", reason="TensorRT-RTX is not installed (its extra: tensorrt-rtx)")
    from alexnet_deploy.backends.tensorrt.rtx import rtx_status

    out = tmp_path / "m.int8.rtx.plan"
    args = ["build", str(fp32_onnx), "--int8", "--backend", "tensorrt-rtx", "--calib-data", str(tiny20),
            "--eval-data", str(tiny20), "-o", str(out), "--no-cache", "--calib-method", "minmax", "--refine", "none",
            "--num-calib-images", "64", "--holdout-images", "60", "--max-top1-drop", "2",
            "--max-top5-drop", "2"]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    m = load_manifest(out)
    assert m.kind == "plan" and m.engine["flavour"] == "tensorrt-rtx" and m.gate["status"] == "passed"
    assert out.read_bytes()[:4] == b"vtrt" and m.sha256 == sha256_file(out)  # a real TensorRT-RTX plan
    assert m.calibration["form"] == "tensorrt"
    if not rtx_status()["can_run"]:
        assert m.engine["engine_run"] is False
        assert m.accuracy["verified_on"].startswith("the deployable ONNX in ONNX Runtime, not the tensorrt-rtx engine")
        assert m.accuracy["verified_file_sha256"] == m.source["deployable_onnx_sha256"]
        assert "not the tensorrt-rtx engine" in " ".join(res.output.split())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.int8.rtx.plan", "m.int8.rtx.plan.json"]


def test_a_blob_output_name_is_refused_with_the_way_to_get_one(tmp_path):
    from alexnet_deploy.core.errors import ConfigError
    from alexnet_deploy.core.vocab import BackendName, Precision

    with pytest.raises(ConfigError, match="beside its ONNX engine: name the .onnx output and add --export-blob"):
        choose_backends(Precision.INT8, BackendName.OPENVINO, tmp_path / "m.int8.ovblob")


def test_auto_says_when_the_chosen_engine_has_no_blob(tmp_path):
    from alexnet_deploy.backends import BackendStatus, backend_spec
    from alexnet_deploy.core.accuracy import judge
    from alexnet_deploy.core.manifest import Manifest
    from alexnet_deploy.core.vocab import BackendName
    from alexnet_deploy.selection import Candidate, CompiledEngine, Speed, VerifiedEngine, choose

    logits = np.eye(4, dtype=np.float32)
    passed = judge(logits, np.arange(4), 4, logits, Gate())

    def verified(name: str, facts: dict) -> VerifiedEngine:
        cand = Candidate(backend_spec(name), BackendStatus(name, True, "1", True, True), "tensorrt")
        compiled = CompiledEngine(
            cand, tmp_path / "q.onnx", "", tmp_path / name / "model.onnx", facts, Manifest("onnx")
        )
        return VerifiedEngine(compiled, passed, True, "the engine file itself", "")

    def speed(images_per_s: float) -> Speed:
        return Speed({1: {"median_ms": 1.0, "images_per_s": images_per_s}})

    ort, ov = verified("onnxruntime", {}), verified("openvino", {"blob": {"file": "model.ovblob"}})
    choice = choose([ort, ov], {ort.label: speed(100.0), ov.label: speed(50.0)}, BackendName.AUTO)
    assert choice.chosen is ort and ov.compiled.blob == tmp_path / "openvino" / "model.ovblob"
    assert ort.compiled.blob is None
    assert choice.notes == (
        "No OpenVINO blob was written: the chosen engine is onnxruntime (tensorrt form); --backend openvino "
        "--export-blob writes one.",
    )
    assert choose([ov], {ov.label: speed(50.0)}, BackendName.OPENVINO).notes == ()
