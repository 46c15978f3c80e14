"""examples/cpp: the CMake project refuses clearly without TensorRT (here), its TensorRT-free half (sidecar reader,
compatibility rule, preprocessing) is compiled with g++ and checked against the Python code (here), and the whole
program is built and run against a real plan where TensorRT's C++ SDK and a GPU exist (skipped here)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alexnet_deploy.backends.tensorrt.runner import check_plan_compatible
from alexnet_deploy.core.data import Preprocessing, eval_transform
from alexnet_deploy.core.errors import ArtifactError
from alexnet_deploy.core.manifest import Manifest, save_manifest
from alexnet_deploy.core.system import GPU

CPP = Path(__file__).resolve().parents[2] / "examples" / "cpp"
CXX = shutil.which("g++") or shutil.which("c++")
CMAKE = shutil.which("cmake")
CLASSES = ["tench", 'say "cheese"', "back\\slash", "café", "snow☃man", "fish🐟", "goldfish", "shark", "ray", "cock"]


def engine_facts(hardware="none", version_compatible=False) -> dict:
    return {
        "tensorrt_version": "10.16.1.11",
        "gpu": {"name": "NVIDIA L40S", "compute_capability": "8.9"},
        "io": [
            {"name": "images", "mode": "input", "dtype": "float32", "shape": [-1, 3, 16, 16]},
            {"name": "logits", "mode": "output", "dtype": "float32", "shape": [-1, 10]},
        ],
        "profile": {"input": "images", "min": [1, 3, 16, 16], "opt": [4, 3, 16, 16], "max": [8, 3, 16, 16]},
        "build_options": {"hardware_compatibility": hardware, "version_compatible": version_compatible},
    }


def write_sidecar(folder: Path, pre: Preprocessing, engine: dict | None = None) -> Path:
    plan = folder / "model.plan"
    plan.write_bytes(b"")
    save_manifest(
        plan, Manifest(kind="plan", classes=CLASSES, preprocessing=pre.to_dict(), engine=engine or engine_facts())
    )
    return folder / "model.plan.json"


@pytest.fixture(scope="module")
def sidecar_tool(tmp_path_factory) -> Path:
    if CXX is None:
        pytest.skip("no C++ compiler (g++) on this machine")
    exe = tmp_path_factory.mktemp("cpp") / "alexnet_sidecar_tool"
    subprocess.run(
        [CXX, "-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(exe), str(CPP / "sidecar_tool.cpp")],
        check=True,
    )
    return exe


def run_tool(exe: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, timeout=60, check=False)


# -- here: CMake without TensorRT --------------------------------------------------------------------------------
@pytest.mark.skipif(CMAKE is None, reason="cmake is not installed")
def test_cpp_cmake_fails_clearly_without_tensorrt(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TensorRT_ROOT"}
    proc = subprocess.run(
        [CMAKE, "-S", str(CPP), "-B", str(tmp_path / "build")], capture_output=True, text=True, env=env, check=False
    )
    if proc.returncode == 0:
        pytest.skip("TensorRT and CUDA are installed here, so configuration succeeds")
    message = " ".join(proc.stderr.split())  # CMake wraps long messages
    assert "alexnet-deploy C++ example cannot be built here. TensorRT was not found" in message
    assert "need NvInferRuntime.h and libnvinfer from TensorRT 10.x or 11.x" in message
    assert "configure with -DTensorRT_ROOT=/path/to/TensorRT" in message
    assert not (tmp_path / "build" / "Makefile").exists()


# -- here: the TensorRT-free half, compiled with g++ -------------------------------------------------------------
def test_cpp_sidecar_reader_reads_what_python_wrote(tmp_path, sidecar_tool):
    pre = Preprocessing(resize=18, crop=16, mean=(0.5, 0.25, 0.125), std=(0.2, 0.3, 0.4))
    proc = run_tool(sidecar_tool, write_sidecar(tmp_path, pre, engine_facts("ampere_plus", True)))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    fields = dict(line.split("=", 1) for line in lines if not line.startswith(("io=", "class=")))
    assert fields["tensorrt_version"] == "10.16.1.11" and fields["gpu"] == "NVIDIA L40S"
    assert fields["compute_capability"] == "8.9" and fields["hardware_compatibility"] == "ampere_plus"
    assert fields["version_compatible"] == "true" and (fields["resize"], fields["crop"]) == ("18", "16")
    assert [float(fields[f"mean{c}"]) for c in range(3)] == [0.5, 0.25, 0.125]
    assert [float(fields[f"std{c}"]) for c in range(3)] == pytest.approx([0.2, 0.3, 0.4])
    assert [line for line in lines if line.startswith("io=")] == [
        "io=images,input,float32,-1,3,16,16",
        "io=logits,output,float32,-1,10",
    ]
    # Python's json escapes non-ASCII as \uXXXX (surrogate pairs beyond the BMP); the reader turns them into UTF-8.
    assert fields["classes"] == "10" and [line[6:] for line in lines if line.startswith("class=")] == CLASSES


@pytest.mark.parametrize(
    ("size", "resize", "crop"), [((75, 53), 40, 32), ((53, 75), 40, 32), ((64, 64), 73, 64), ((301, 450), 256, 224)]
)
def test_cpp_preprocessing_matches_the_eval_preset(tmp_path, sidecar_tool, size, resize, crop):
    w, h = size
    rng = np.random.default_rng(w * h)
    yy, xx = np.mgrid[0:h, 0:w]
    image = Image.fromarray(np.stack([xx * 255 // w, yy * 255 // h, rng.integers(0, 256, (h, w))], -1).astype(np.uint8))
    image.save(tmp_path / "x.ppm")
    pre = Preprocessing(resize=resize, crop=crop)
    proc = run_tool(sidecar_tool, write_sidecar(tmp_path, pre), tmp_path / "x.ppm", tmp_path / "x.f32")
    assert proc.returncode == 0, proc.stderr
    got = np.fromfile(tmp_path / "x.f32", np.float32).reshape(3, crop, crop)
    expected = eval_transform(pre)(image).numpy()
    # In 8-bit levels: torchvision resamples in fixed point, the C++ in double; they differ by at most one level
    # on a few pixels (measured: < 0.4% of values).
    levels = np.abs(got - expected) * np.array(pre.std, np.float32)[:, None, None] * 255
    assert levels.max() <= 1.0 + 1e-3
    assert (levels > 1e-3).mean() < 0.01


def test_cpp_preprocessing_of_a_real_photo(tmp_path, sidecar_tool, tiny20):
    photo = next(p for p in sorted((tiny20 / "val").rglob("*")) if p.is_file())
    image = Image.open(photo).convert("RGB")
    image.save(tmp_path / "p.ppm")
    pre = Preprocessing(resize=50, crop=44)  # the 64 px photos are really downscaled
    assert run_tool(sidecar_tool, write_sidecar(tmp_path, pre), tmp_path / "p.ppm", tmp_path / "p.f32").returncode == 0
    got = np.fromfile(tmp_path / "p.f32", np.float32).reshape(3, 44, 44)
    levels = np.abs(got - eval_transform(pre)(image).numpy()) * np.array(pre.std, np.float32)[:, None, None] * 255
    assert levels.max() <= 1.0 + 1e-3 and (levels > 1e-3).mean() < 0.01


@pytest.mark.parametrize(
    ("hardware", "vc", "trt", "gpu"),
    [
        ("none", False, "10.16.1", GPU("NVIDIA L40S", "8.9")),
        ("none", False, "10.15.1.29", GPU("NVIDIA L40S", "8.9")),
        ("none", False, "10.16.1", GPU("NVIDIA H100 80GB HBM3", "9.0")),
        ("none", False, "10.16.1", GPU("NVIDIA GeForce RTX 4090", "8.9")),
        ("same_compute_capability", False, "10.16.1", GPU("NVIDIA GeForce RTX 4090", "8.9")),
        ("ampere_plus", False, "10.16.1", GPU("NVIDIA H100 80GB HBM3", "9.0")),
        ("ampere_plus", False, "10.16.1", GPU("Tesla T4", "7.5")),
        ("none", True, "11.4.0.106", GPU("NVIDIA L40S", "8.9")),
        ("none", True, "10.9.0", GPU("Tesla T4", "7.5")),
    ],
)
def test_cpp_compatibility_rule_says_what_python_says(tmp_path, sidecar_tool, hardware, vc, trt, gpu):
    engine = engine_facts(hardware, vc)
    try:
        check_plan_compatible(engine, trt, [gpu])
        expected = "compatible"
    except ArtifactError as exc:
        expected = str(exc)
    proc = run_tool(
        sidecar_tool, write_sidecar(tmp_path, Preprocessing(), engine), "--check", trt, gpu.name, gpu.compute_capability
    )
    assert proc.stdout.strip() == expected
    assert proc.returncode == (0 if expected == "compatible" else 2)


def test_cpp_tool_errors_are_one_line(tmp_path, sidecar_tool):
    good = write_sidecar(tmp_path, Preprocessing())
    (tmp_path / "x.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a ppm")
    proc = run_tool(sidecar_tool, good, tmp_path / "x.jpg", tmp_path / "x.f32")
    assert proc.returncode == 1 and proc.stderr == f"error: {tmp_path / 'x.jpg'} is not a binary PPM (P6) image\n"
    (tmp_path / "t.ppm").write_bytes(b"P6\n4 4\n255\n" + bytes(10))
    proc = run_tool(sidecar_tool, good, tmp_path / "t.ppm", tmp_path / "x.f32")
    assert proc.returncode == 1 and "is truncated or has a bad size" in proc.stderr
    (tmp_path / "bad.json").write_text('{"engine": {"tensorrt_version": "10.1"},}')
    proc = run_tool(sidecar_tool, tmp_path / "bad.json")
    assert proc.returncode == 1 and proc.stderr.startswith("error: invalid JSON at byte")
    (tmp_path / "partial.json").write_text('{"classes": []}')
    proc = run_tool(sidecar_tool, tmp_path / "partial.json")
    assert proc.returncode == 1 and proc.stderr == 'error: the sidecar has no "engine" field\n'


# -- where TensorRT's C++ SDK and a GPU exist (skipped here) -----------------------------------------------------
@pytest.mark.tensorrt
@pytest.mark.skipif(CMAKE is None, reason="cmake is not installed")
def test_cpp_example_builds_and_matches_the_python_runner(tmp_path):
    from test_tensorrt_engine import small_onnx  # pytest puts this folder on sys.path

    from alexnet_deploy.backends.tensorrt.builder import TensorRTBuildOptions, build_plan
    from alexnet_deploy.backends.tensorrt.runner import TensorRTRunner

    build = tmp_path / "build"
    configure = subprocess.run([CMAKE, "-S", str(CPP), "-B", str(build)], capture_output=True, text=True, check=False)
    if configure.returncode != 0 and "was not found" in configure.stderr:
        pytest.skip(
            "TensorRT's C++ SDK (headers) or the CUDA toolkit is absent: " + " ".join(configure.stderr.split())[:300]
        )
    assert configure.returncode == 0, configure.stderr
    subprocess.run([CMAKE, "--build", str(build), "-j", "2"], check=True, capture_output=True)

    pre = Preprocessing(resize=18, crop=16)
    plan = tmp_path / "model.plan"
    engine = build_plan(
        small_onnx(tmp_path / "m.onnx"), plan, TensorRTBuildOptions(min_batch=1, opt_batch=1, max_batch=4)
    )
    save_manifest(plan, Manifest(kind="plan", classes=CLASSES, preprocessing=pre.to_dict(), engine=engine))
    rng = np.random.default_rng(5)
    image = Image.fromarray(rng.integers(0, 256, (24, 30, 3), dtype=np.uint8))
    image.save(tmp_path / "x.ppm")

    proc = subprocess.run(
        [str(build / "alexnet_trt_infer"), str(plan), str(tmp_path / "x.ppm")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    rows = [line.split("\t") for line in proc.stdout.splitlines()[1:]]
    assert len(rows) == 5
    with TensorRTRunner(plan) as runner:
        logits = runner.infer(eval_transform(pre)(image).numpy()[None])[0]
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    top = np.argsort(-probs)[:5]
    assert [int(r[1]) for r in rows] == top.tolist()
    assert [r[3] for r in rows] == [CLASSES[i] for i in top]
    np.testing.assert_allclose([float(r[2]) for r in rows], probs[top], atol=2e-3)
