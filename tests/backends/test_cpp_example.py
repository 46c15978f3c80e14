"""examples/cpp: the OpenVINO program is configured with CMake against the openvino wheel's C++ SDK, compiled with
g++, run on real engines (the FP32 export, an INT8 Q/DQ engine and its exported blob, built here with
``alexnet-deploy build --export-blob``) and compared with Python's predict; blobs of another release or CPU and
corrupt blobs are refused in both languages with the same sentence. The SDK-free half (sidecar reader, the
plan and blob compatibility rules, preprocessing, SHA-256) is compiled with g++ and checked against the Python
code. The TensorRT program is built and run only where TensorRT's C++ SDK and a GPU exist (skipped here).

Where cmake or a C++ compiler is missing these tests skip with the reason; under CI (``CI=true``) that is a
failure: ``.ci/run`` installs both. The tests that build an engine and run the program are marked ``slow`` (about a
minute the first time: the compile is kept in pytest's cache folder).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from quant_models import trained_onnx
from typer.testing import CliRunner

from alexnet_deploy.backends.tensorrt.runner import check_plan_compatible
from alexnet_deploy.core.data import Preprocessing, eval_transform
from alexnet_deploy.core.errors import ArtifactError
from alexnet_deploy.core.manifest import Manifest, load_manifest, save_manifest
from alexnet_deploy.core.system import GPU

CPP = Path(__file__).resolve().parents[2] / "examples" / "cpp"
CXX = shutil.which("g++") or shutil.which("c++")
CMAKE = shutil.which("cmake")
CLASSES = ["tench", 'say "cheese"', "back\\slash", "café", "snow☃man", "fish🐟", "goldfish", "shark", "ray", "cock"]
IN_CI = os.environ.get("CI", "").lower() == "true"
REQS = "meta=1.0;ov=2026.4.1;isa=Intel AVX10.1 and Intel AMX with bfloat16 and 8-bit integer support"


def _require(found: str | None, what: str) -> str:
    """The tool's path; skip without it, but fail under CI (``.ci/run`` installs it)."""
    if found is None:
        message = f"{what} is not installed"
        if IN_CI:
            pytest.fail(f"{message}; under CI its absence is a failure (.ci/run installs cmake and g++)")
        pytest.skip(message)
    return found


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


def blob_sidecar(folder: Path, version: str, requirements: str) -> Path:
    blob = folder / "model.ovblob"
    blob.write_bytes(b"not a real blob")
    facts = {"backend": "openvino", "device": "CPU", "openvino_version": version, "runtime_requirements": requirements,
             "options": {"inference_precision": None, "performance_hint": "LATENCY", "threads": 2}}  # fmt: skip
    save_manifest(blob, Manifest(kind="ovblob", classes=CLASSES, preprocessing=Preprocessing().to_dict(), engine=facts))
    return folder / "model.ovblob.json"


@pytest.fixture(scope="module")
def sidecar_tool(tmp_path_factory) -> Path:
    cxx = _require(CXX, "a C++ compiler (g++)")
    exe = tmp_path_factory.mktemp("cpp") / "alexnet_sidecar_tool"
    subprocess.run(
        [cxx, "-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(exe), str(CPP / "sidecar_tool.cpp")],
        check=True,
    )
    return exe


def run_tool(exe: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, timeout=120, check=False)


# -- CMake: each program only where its SDK is found ---------------------------------------------------------------
def _configure(build: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("TensorRT_ROOT", "OpenVINO_DIR")}
    return subprocess.run([_require(CMAKE, "cmake"), "-S", str(CPP), "-B", str(build), *args], capture_output=True,
                          text=True, env=env, check=False, timeout=300)  # fmt: skip


def test_cpp_cmake_fails_clearly_without_any_sdk(tmp_path):
    proc = _configure(tmp_path / "build")
    if proc.returncode == 0:
        pytest.skip("an OpenVINO or TensorRT C++ SDK is installed system-wide here, so configuration succeeds")
    message = " ".join(proc.stderr.split())  # CMake wraps long messages
    assert "alexnet-deploy C++ example cannot be built here. OpenVINO was not found" in message
    assert "ships inside the openvino wheel: configure with -DOpenVINO_DIR=" in message
    assert "TensorRT was not found (need NvInferRuntime.h and libnvinfer from TensorRT 10.x or 11.x" in message
    assert "configure with -DTensorRT_ROOT=/path/to/TensorRT" in message
    assert not (tmp_path / "build" / "Makefile").exists()


def test_cpp_cmake_builds_the_openvino_program_alone_and_keeps_the_tensorrt_refusal(tmp_path):
    import openvino.utils

    sdk = f"-DOpenVINO_DIR={openvino.utils.get_cmake_path()}"
    proc = _configure(tmp_path / "ov", sdk)
    assert proc.returncode == 0, proc.stderr
    assert "building alexnet_ov_infer" in proc.stdout
    warning = " ".join(proc.stderr.split())
    if "building alexnet_trt_infer" not in proc.stdout:  # no TensorRT here: skipped with the sentence
        assert "building alexnet_ov_infer only. TensorRT was not found" in warning
        # asking for the TensorRT program (TensorRT_ROOT given, or required) still stops configuration
        proc = _configure(tmp_path / "trt", sdk, "-DTensorRT_ROOT=/nonexistent/TensorRT")
        assert proc.returncode != 0
        assert "cannot be built here. TensorRT was not found" in " ".join(proc.stderr.split())


# -- the SDK-free half, compiled with g++ --------------------------------------------------------------------------
def test_cpp_sidecar_reader_reads_what_python_wrote(tmp_path, sidecar_tool):
    pre = Preprocessing(resize=18, crop=16, mean=(0.5, 0.25, 0.125), std=(0.2, 0.3, 0.4))
    proc = run_tool(sidecar_tool, write_sidecar(tmp_path, pre, engine_facts("ampere_plus", True)))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    fields = dict(line.split("=", 1) for line in lines if not line.startswith(("io=", "class=")))
    assert fields["kind"] == "plan" and fields["precision"] == "fp32"
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


def test_cpp_sidecar_reader_reads_a_blob_sidecar(tmp_path, sidecar_tool):
    proc = run_tool(sidecar_tool, blob_sidecar(tmp_path, "2026.4.1", REQS))
    assert proc.returncode == 0, proc.stderr
    fields = dict(line.split("=", 1) for line in proc.stdout.splitlines() if not line.startswith("class="))
    assert fields["kind"] == "ovblob" and fields["device"] == "CPU" and fields["threads"] == "2"
    assert fields["inference_precision"] == "" and fields["performance_hint"] == "LATENCY"
    assert fields["openvino_version"] == "2026.4.1" and fields["runtime_requirements"] == REQS


@pytest.mark.parametrize(
    ("size", "resize", "crop"),
    [((75, 53), 40, 32), ((53, 75), 40, 32), ((64, 64), 73, 64), ((301, 450), 256, 224), ((1000, 21), 18, 16)],
)
def test_cpp_preprocessing_is_torchvisions_bit_for_bit(tmp_path, sidecar_tool, size, resize, crop):
    w, h = size
    rng = np.random.default_rng(w * h)
    yy, xx = np.mgrid[0:h, 0:w]
    image = Image.fromarray(np.stack([xx * 255 // w, yy * 255 // h, rng.integers(0, 256, (h, w))], -1).astype(np.uint8))
    image.save(tmp_path / "x.ppm")
    pre = Preprocessing(resize=resize, crop=crop)
    proc = run_tool(sidecar_tool, write_sidecar(tmp_path, pre), tmp_path / "x.ppm", tmp_path / "x.f32")
    assert proc.returncode == 0, proc.stderr
    got = np.fromfile(tmp_path / "x.f32", np.float32).reshape(3, crop, crop)
    # torch's uint8 antialiased resize (int16 weights, the same rounding), ToDtype's x * (1/255), Normalize:
    # the C++ computes each step the same way, so the tensors are equal, not close.
    np.testing.assert_array_equal(got, eval_transform(pre)(image).numpy())


def test_cpp_preprocessing_of_real_photos(tmp_path, sidecar_tool, tiny20, imagenette10):
    photos = [next(p for p in sorted((root / "val").rglob("*")) if p.is_file()) for root in (tiny20, imagenette10)]
    for photo, pre in zip(photos, (Preprocessing(resize=50, crop=44), Preprocessing()), strict=True):
        image = Image.open(photo).convert("RGB")
        image.save(tmp_path / "p.ppm")
        assert (
            run_tool(sidecar_tool, write_sidecar(tmp_path, pre), tmp_path / "p.ppm", tmp_path / "p.f32").returncode == 0
        )
        got = np.fromfile(tmp_path / "p.f32", np.float32).reshape(3, pre.crop, pre.crop)
        np.testing.assert_array_equal(got, eval_transform(pre)(image).numpy())


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
def test_cpp_plan_rule_says_what_python_says(tmp_path, sidecar_tool, hardware, vc, trt, gpu):
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


@pytest.mark.parametrize(
    ("version", "requirements"),
    [
        ("2026.4.1", REQS),  # the same: compatible
        ("2026.3.0", REQS.replace("ov=2026.4.1", "ov=2026.3.0")),  # another release
        (
            "2026.4.1",
            REQS.replace("isa=Intel AVX10.1 and Intel AMX with bfloat16 and 8-bit integer support", "isa=Intel AVX2"),
        ),  # fmt: skip
        ("2025.2.0", "meta=1.0;ov=2025.2.0;isa=Intel AVX-512"),  # both
        ("2026.4.1", REQS.replace("meta=1.0", "meta=2.0")),  # something else OpenVINO records
        ("2026.4.1", ""),  # a sidecar without requirements
    ],
)
def test_cpp_blob_rule_says_what_python_says(tmp_path, sidecar_tool, version, requirements):
    from alexnet_deploy.backends.openvino import check_blob_compatible

    try:
        check_blob_compatible({"openvino_version": version, "runtime_requirements": requirements}, "2026.4.1", REQS)
        expected = "compatible"
    except ArtifactError as exc:
        expected = str(exc)
    proc = run_tool(sidecar_tool, blob_sidecar(tmp_path, version, requirements), "--check-blob", "2026.4.1", REQS)
    assert proc.stdout.strip() == expected
    assert proc.returncode == (0 if expected == "compatible" else 2)
    if expected != "compatible":  # both sides named
        assert (
            f"compiled by OpenVINO {version}" in expected
            and "this machine has OpenVINO 2026.4.1 and Intel AVX10.1" in expected
        )


def test_cpp_sha256_is_hashlibs(tmp_path, sidecar_tool):
    for size in (0, 3, 55, 56, 64, 1000, (1 << 20) + 7):
        data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
        (tmp_path / "f").write_bytes(data)
        assert run_tool(sidecar_tool, "--sha256", tmp_path / "f").stdout.strip() == hashlib.sha256(data).hexdigest()


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
    assert proc.returncode == 1 and proc.stderr == 'error: the sidecar has no "kind" field\n'
    (tmp_path / "noengine.json").write_text('{"kind": "plan", "classes": [], "preprocessing": ' +
                                            json.dumps(Preprocessing().to_dict()) + "}")  # fmt: skip
    proc = run_tool(sidecar_tool, tmp_path / "noengine.json", "--check", "10.1", "GPU", "8.9")
    assert proc.returncode == 1 and proc.stderr == 'error: the sidecar has no "tensorrt_version" field\n'


# -- the OpenVINO program, built with CMake against the wheel's SDK and run on real engines ------------------------
def _build_key() -> str:
    """What the built program depends on: its sources, the OpenVINO release and the compiler."""
    import openvino

    digest = hashlib.sha256(openvino.get_version().encode())
    for name in ("CMakeLists.txt", "ov_infer.cpp", "sidecar.hpp"):
        digest.update((CPP / name).read_bytes())
    digest.update(subprocess.run([CXX, "--version"], capture_output=True, text=True, check=False).stdout.encode())
    return digest.hexdigest()[:16]


@pytest.fixture(scope="session")
def ov_program(request, tmp_path_factory) -> Path:
    """alexnet_ov_infer, configured and built once (kept in pytest's cache folder between runs, by a hash of its
    sources, the OpenVINO release and the compiler)."""
    cmake, cxx = _require(CMAKE, "cmake"), _require(CXX, "a C++ compiler (g++)")
    import openvino.utils

    cached = request.config.cache.mkdir("alexnet-deploy-cpp") / _build_key()
    exe = cached / "alexnet_ov_infer"
    if exe.is_file():
        return exe
    build = tmp_path_factory.mktemp("cpp-build")
    configure = subprocess.run(
        [cmake, "-S", str(CPP), "-B", str(build), f"-DOpenVINO_DIR={openvino.utils.get_cmake_path()}",
         f"-DCMAKE_CXX_COMPILER={cxx}", "-DCMAKE_CXX_FLAGS=-Wall -Wextra -Werror", "-DALEXNET_REQUIRE_OPENVINO=ON"],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert configure.returncode == 0, configure.stderr
    compiled = subprocess.run([cmake, "--build", str(build), "--target", "alexnet_ov_infer", "-j", "2"],
                              capture_output=True, text=True, check=False, timeout=900)  # fmt: skip
    assert compiled.returncode == 0, compiled.stdout[-3000:] + compiled.stderr[-3000:]
    staged = cached.with_name(cached.name + f".{os.getpid()}")
    staged.mkdir(exist_ok=True)
    shutil.copy2(build / "alexnet_ov_infer", staged / "alexnet_ov_infer")  # the RPATH names the wheel's libs
    staged.replace(cached) if not cached.exists() else shutil.rmtree(staged)
    return exe


@pytest.fixture(scope="session")
def engines(tiny20, tmp_path_factory, request) -> dict[str, Path]:
    """The FP32 export of a model trained on tiny20, and its INT8 OpenVINO engine and blob, built the way the README
    says: ``alexnet-deploy build MODEL --int8 --backend openvino --export-blob``."""
    from alexnet_deploy.cli.main import app

    work = tmp_path_factory.mktemp("cpp-engines")
    fp32 = trained_onnx(tiny20, work, request.config.cache.mkdir("alexnet-deploy-quant"))
    out = work / "tiny20.int8.ov.onnx"
    args = ["build", str(fp32), "--int8", "--backend", "openvino", "--export-blob", "--calib-data", str(tiny20),
            "--eval-data", str(tiny20), "--calib-method", "minmax", "--refine", "none", "--num-calib-images", "64",
            "--holdout-images", "60", "--max-top1-drop", "2", "--max-top5-drop", "2", "--probe-batch", "",
            "--no-cache", "-o", str(out)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "tiny20.int8.ov.ovblob and its sidecar" in " ".join(result.output.split())
    return {"fp32": fp32, "int8": out, "blob": out.with_suffix(".ovblob")}


@pytest.fixture(scope="session")
def photos(tiny20, tmp_path_factory) -> list[tuple[Path, Path]]:
    """20 real photos (one per class of tiny20's val), as (JPEG, the same pixels as PPM)."""
    folder = tmp_path_factory.mktemp("cpp-photos")
    pairs = []
    for class_dir in sorted(p for p in (tiny20 / "val").iterdir() if p.is_dir()):
        jpeg = sorted(p for p in class_dir.rglob("*") if p.is_file())[0]
        ppm = folder / f"{class_dir.name}.ppm"
        Image.open(jpeg).convert("RGB").save(ppm)
        pairs.append((jpeg, ppm))
    assert len(pairs) == 20
    return pairs


def run_ov(exe: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.slow
def test_build_export_blob_writes_a_blob_that_states_what_it_was_verified_on(engines, tiny20):
    from alexnet_deploy.backends.openvino import openvino_version, runtime_requirements
    from alexnet_deploy.core.files import sha256_file
    from alexnet_deploy.verify import evaluate

    blob, onnx = engines["blob"], engines["int8"]
    m = load_manifest(blob)
    assert m.kind == "ovblob" and m.precision == "int8" and m.gate["status"] == "passed"
    assert m.sha256 == sha256_file(blob) == m.accuracy["verified_file_sha256"]
    assert m.accuracy["verified_on"].startswith("the exported blob itself, imported and run by openvino")
    assert m.source["path"] == str(onnx) and m.source["sha256"] == sha256_file(onnx) == m.engine["source_onnx_sha256"]
    e = m.engine
    assert e["openvino_version"] == openvino_version() and e["runtime_requirements"] == runtime_requirements("CPU")
    assert e["cpu_isa"] and e["cpu_isa"] in e["runtime_requirements"] and isinstance(e["cpu_features"], list)
    assert e["compiled"]["INFERENCE_PRECISION_HINT"] == "f32" and e["max_abs_diff_vs_onnx"] == 0.0
    assert set(e["load_seconds"]) == {"onnx_read_compile", "blob_import"}
    assert load_manifest(onnx).engine["blob"]["file"] == blob.name  # the engine's sidecar names its blob
    # Re-verifying the blob gives its sidecar's figures.
    again = evaluate(blob, tiny20, reference=engines["fp32"])
    assert again.top1 == m.accuracy["top1"] and again.reference["agreement_top1"] == m.accuracy["agreement_top1"]


@pytest.mark.slow
@pytest.mark.parametrize("which", ["fp32", "int8", "blob"])
def test_cpp_top5_equals_python_predict(ov_program, engines, photos, which):
    from alexnet_deploy.backends import describe_artifact, runner_for
    from alexnet_deploy.predict import predict_files

    model = engines[which]
    proc = run_ov(ov_program, model, *[ppm for _, ppm in photos], "--json")
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["source"] == ("imported blob" if which == "blob" else "ONNX read and compiled")
    assert got["inference_precision"] == "f32" and got["device"] == "CPU"
    info = describe_artifact(model)
    # Python's predict on the same engine: OpenVINO's runner (the FP32 export would default to ONNX Runtime).
    with runner_for(info, "openvino") as runner:
        expected = predict_files(runner, info, [jpeg for jpeg, _ in photos], top_k=5)
    for cpp, py in zip(got["predictions"], expected, strict=True):
        assert [t["index"] for t in cpp["top"]] == [i for i, _, _ in py.top]
        assert [t["class"] for t in cpp["top"]] == [name for _, name, _ in py.top]
        np.testing.assert_allclose([t["probability"] for t in cpp["top"]], [p for _, _, p in py.top], atol=1e-4)
    human = run_ov(ov_program, model, photos[0][1])  # the plain output: a header, the image, five ranked lines
    lines = human.stdout.splitlines()
    assert human.returncode == 0 and len(lines) == 7 and lines[1] == str(photos[0][1])
    assert lines[0].startswith(f"{model.name}: ") and "inference precision f32" in lines[0]
    assert lines[2].split("\t")[2] == expected[0].top[0][1]


@pytest.mark.slow
def test_cpp_bench_prints_latencies_and_throughput(ov_program, engines, photos):
    proc = run_ov(ov_program, engines["blob"], photos[0][1], "--bench", "5", "--batch", "3", "--warmup", "1")
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["batch"] == 3 and r["iterations"] == 5 and len(r["latencies_ms"]) == 5 and r["source"] == "imported blob"
    assert 0 < min(r["latencies_ms"]) <= r["median_ms"] <= r["p90_ms"] <= r["p99_ms"] <= max(r["latencies_ms"])
    assert r["images_per_s"] > 0 and r["load_ms"] > 0
    assert run_ov(ov_program, engines["blob"], "--bench", "2", "--warmup", "0", "--threads", "1").returncode == 0


def _copy_blob(engines, folder: Path) -> Path:
    blob = folder / engines["blob"].name
    shutil.copy(engines["blob"], blob)
    shutil.copy(engines["blob"].with_name(blob.name + ".json"), blob.with_name(blob.name + ".json"))
    return blob


def _python_refusal(path: Path) -> str:
    from alexnet_deploy.backends import describe_artifact, runner_for

    with pytest.raises(ArtifactError) as err, runner_for(describe_artifact(path)):  # activation imports the blob
        pass
    return str(err.value)


def _cpp_refusal(exe: Path, path: Path, photo: Path) -> str:
    proc = run_ov(exe, path, photo)
    assert proc.returncode == 1 and proc.stdout == "" and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("error: ")
    return proc.stderr[len("error: ") : -1]


@pytest.mark.slow
@pytest.mark.parametrize("other", ["release", "cpu"])
def test_blob_from_another_release_or_cpu_is_refused_in_both_languages(ov_program, engines, photos, tmp_path, other):
    from alexnet_deploy.backends.openvino import openvino_version, runtime_requirements
    from alexnet_deploy.cli.main import app

    blob = _copy_blob(engines, tmp_path)
    sidecar = blob.with_name(blob.name + ".json")
    data = json.loads(sidecar.read_text())
    here = runtime_requirements("CPU")
    isa_here = here.split("isa=")[1]
    if other == "release":
        data["engine"]["openvino_version"] = "2025.3.0"
        data["engine"]["runtime_requirements"] = here.replace(f"ov={openvino_version()}", "ov=2025.3.0")
        side, reason = "compiled by OpenVINO 2025.3.0 for " + isa_here, "the OpenVINO release that compiled them"
    else:
        isa = "Intel AVX2" if isa_here != "Intel AVX2" else "Intel AVX-512"
        data["engine"]["runtime_requirements"] = here.replace(f"isa={isa_here}", f"isa={isa}")
        side, reason = f"compiled by OpenVINO {openvino_version()} for {isa};", "the instruction set they were compiled"
    sidecar.write_text(json.dumps(data))
    expected = _python_refusal(blob)
    assert side in expected and f"this machine has OpenVINO {openvino_version()} and {isa_here}" in expected
    assert reason in expected and "Rebuild the blob on this machine" in expected
    assert _cpp_refusal(ov_program, blob, photos[0][1]) == expected
    result = CliRunner().invoke(app, ["predict", str(blob), str(photos[0][0])])
    assert result.exit_code == 1 and result.output.strip() == f"error: {expected}"


@pytest.mark.slow
def test_corrupt_blob_is_one_sentence_in_both_languages(ov_program, engines, photos, tmp_path):
    blob = _copy_blob(engines, tmp_path)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)
    blob.write_bytes(bytes(data))
    # 1. The sidecar no longer describes the bytes: refused before OpenVINO reads them.
    expected = _python_refusal(blob)
    assert expected.startswith(f"The sidecar {blob.name}.json does not describe {blob.name} (their sha256 differ)")
    assert _cpp_refusal(ov_program, blob, photos[0][1]) == expected
    # 2. A sidecar that matches broken bytes (as if the blob was broken when written): OpenVINO's own refusal.
    blob.write_bytes(b"OVBLOB?" + bytes(data[:4096]))
    save_manifest(blob, load_manifest(blob, verify=False))
    python = _python_refusal(blob)
    cpp = _cpp_refusal(ov_program, blob, photos[0][1])
    for sentence in (python, cpp):
        assert sentence.startswith(f"OpenVINO cannot import {blob.name}: ") and sentence.endswith(".")
        assert "\n" not in sentence and "Exception from" not in sentence and "Traceback" not in sentence
    assert cpp == python


@pytest.mark.slow
def test_cpp_program_refuses_bad_input_in_one_sentence(ov_program, engines, photos, tmp_path):
    assert run_ov(ov_program, engines["blob"]).returncode == 64  # no images
    proc = run_ov(ov_program, engines["blob"], photos[0][1], "--batch", "0")
    assert proc.returncode == 64 and proc.stderr.splitlines()[-1] == "error: --batch takes a positive integer, not '0'"
    lone = tmp_path / "lone.onnx"
    shutil.copy(engines["fp32"], lone)
    assert _cpp_refusal(ov_program, lone, photos[0][1]) == f"{lone} has no manifest (lone.onnx.json is missing)."
    (tmp_path / "x.ppm").write_bytes(b"P3\n1 1\n255\n0 0 0\n")
    assert (
        _cpp_refusal(ov_program, engines["int8"], tmp_path / "x.ppm")
        == f"{tmp_path / 'x.ppm'} is not a binary PPM (P6) image"
    )


# -- where TensorRT's C++ SDK and a GPU exist (skipped here) -------------------------------------------------------
@pytest.mark.tensorrt
def test_cpp_tensorrt_program_builds_and_matches_the_python_runner(tmp_path):
    from test_tensorrt_engine import small_onnx  # pytest puts this folder on sys.path

    from alexnet_deploy.backends.tensorrt.builder import TensorRTBuildOptions, build_plan
    from alexnet_deploy.backends.tensorrt.runner import TensorRTRunner

    build = tmp_path / "build"
    configure = _configure(build, "-DALEXNET_REQUIRE_TENSORRT=ON")
    if configure.returncode != 0 and "was not found" in configure.stderr:
        pytest.skip(
            "TensorRT's C++ SDK (headers) or the CUDA toolkit is absent: " + " ".join(configure.stderr.split())[:300]
        )
    assert configure.returncode == 0, configure.stderr
    subprocess.run([CMAKE, "--build", str(build), "--target", "alexnet_trt_infer", "-j", "2"], check=True,
                   capture_output=True)  # fmt: skip

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
