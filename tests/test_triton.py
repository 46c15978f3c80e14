"""``alexnet-deploy triton``: the repository it writes, what it refuses, Triton's schema, and a real server.

ONNX artifacts are real small exports (width-0.25 paper AlexNet, 20 classes, 64 px) with their sidecars. There is
no TensorRT here, so plans are fake bytes with a hand-written sidecar of kind "plan" (TensorRT version, GPU compute
capability, batch profile): the config writer reads only the sidecar, never the plan itself.

The server test needs a ``tritonserver`` binary (``ALEXNET_DEPLOY_TRITONSERVER``, else ``tritonserver`` on PATH)
and skips without one. Where it has only Triton's Python backend (the binary that comes with nvidia-pytriton), it
serves the written model folder (same config, labels, batching) with ``backend: "python"`` running our
ONNX Runtime runner on the written ``model.onnx``; ``ALEXNET_DEPLOY_TRITON_PYTHON`` names the Python environment
(numpy < 2, onnxruntime) for the backend's stub.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from alexnet_deploy.cli.main import app
from alexnet_deploy.core.errors import ArtifactError, ConfigError
from alexnet_deploy.core.manifest import Manifest, load_manifest, save_manifest
from alexnet_deploy.triton import TritonOptions, parse_batch_sizes, validate_config, write_repository

REPO_ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()
model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="tritonclient is not installed")


def _export(tiny20: Path, out: Path, precision: str = "fp32") -> Path:
    import torch

    from alexnet_deploy.core.data import Preprocessing, class_names
    from alexnet_deploy.core.models import alexnet_paper
    from export import export_model

    torch.manual_seed(0)
    model = alexnet_paper(width=0.25, num_classes=20, init="kaiming").eval()
    export_model(model, out, image_size=64, classes=class_names(tiny20 / "train"), precision=precision,
                 preprocessing=Preprocessing.for_crop(64), parity_samples=64, eval_data=tiny20,
                 arch={"name": "alexnet_paper", "num_classes": 20, "width": 0.25, "columns": 2})  # fmt: skip
    return out


@pytest.fixture(scope="session")
def exports(tiny20, tmp_path_factory):
    """A real FP32 and FP16 export of one small network, each with its sidecar."""
    folder = tmp_path_factory.mktemp("triton-onnx")
    return _export(tiny20, folder / "model.fp32.onnx"), _export(tiny20, folder / "model.fp16.onnx", "fp16")


@pytest.fixture
def onnx_file(exports, tmp_path):
    """A private copy of the FP32 export and its sidecar, free to edit."""
    out = tmp_path / "src" / "model.onnx"
    out.parent.mkdir()
    shutil.copyfile(exports[0], out)
    shutil.copyfile(f"{exports[0]}.json", f"{out}.json")
    return out


def fake_plan(onnx: Path, folder: Path, cc: str, *, max_batch: int = 32, classes=None, trt: str = "10.8.0") -> Path:
    """Fake plan bytes with the sidecar a TensorRT build would write (engine facts by hand; see module docstring)."""
    m = load_manifest(onnx)
    plan = folder / f"model.{cc}.plan"
    plan.write_bytes(f"not a real TensorRT plan, for compute capability {cc}".encode())
    chw = m.input["shape"][1:]
    engine = {"tensorrt_version": trt, "gpu": {"name": f"GPU sm{cc}", "compute_capability": cc},
              "profile": {"input": "images", "min": [1, *chw], "opt": [8, *chw], "max": [max_batch, *chw]},
              "io": [], "build_options": {"version_compatible": False}}  # fmt: skip
    save_manifest(plan, Manifest(kind="plan", model=m.model, classes=classes or m.classes, input=m.input,
                                 output=m.output, preprocessing=m.preprocessing, precision="int8", engine=engine,
                                 gate={"status": "passed"}))  # fmt: skip
    return plan


def parse(path: Path):
    config = model_config_pb2.ModelConfig()
    from google.protobuf import text_format

    text_format.Parse(path.read_text(), config)
    return config


def test_onnx_repository_layout_and_config(onnx_file, tmp_path):
    options = ["--kind", "cpu", "--preferred-batch", "16,8", "--max-queue-delay-us", "250", "--instances", "2"]
    result = runner.invoke(app, ["triton", str(onnx_file), "--repo", str(tmp_path / "repo"), *options])
    assert result.exit_code == 0, result.output
    model = tmp_path / "repo" / "alexnet"
    assert sorted(p.relative_to(model).as_posix() for p in model.rglob("*")) == [
        "1", "1/model.onnx", "1/model.onnx.json", "config.pbtxt", "labels.txt"]  # fmt: skip
    assert (model / "1" / "model.onnx").read_bytes() == onnx_file.read_bytes()
    assert json.loads((model / "1" / "model.onnx.json").read_text()) == json.loads(
        Path(f"{onnx_file}.json").read_text()
    )
    classes = load_manifest(onnx_file).classes
    assert (model / "labels.txt").read_text().splitlines() == classes and len(classes) == 20
    c = parse(model / "config.pbtxt")
    assert (c.name, c.platform, c.max_batch_size) == ("alexnet", "onnxruntime_onnx", 64)
    assert (c.input[0].name, c.input[0].data_type, list(c.input[0].dims)) == (
        "images",
        model_config_pb2.TYPE_FP32,
        [3, 64, 64],
    )
    assert (c.output[0].name, list(c.output[0].dims), c.output[0].label_filename) == ("logits", [20], "labels.txt")
    assert list(c.dynamic_batching.preferred_batch_size) == [8, 16]
    assert c.dynamic_batching.max_queue_delay_microseconds == 250
    assert (c.instance_group[0].count, c.instance_group[0].kind) == (2, model_config_pb2.ModelInstanceGroup.KIND_CPU)
    assert "parsed against Triton's ModelConfig schema" in result.output
    assert not [p for p in (tmp_path / "repo").iterdir() if p.name.startswith(".")]  # no staging folder left


def test_several_onnx_files_become_one_model_each(exports, tmp_path):
    result = runner.invoke(
        app, ["triton", str(exports[0]), str(exports[1]), "--repo", str(tmp_path / "repo"), "--json"]
    )
    assert result.exit_code == 0, result.output
    written = json.loads(result.stdout)
    assert [(m["name"], m["precision"], m["max_batch_size"]) for m in written] == [
        ("alexnet_fp32", "fp32", 64), ("alexnet_fp16", "fp16", 64)]  # fmt: skip
    assert written[1]["validation"].startswith("parsed against Triton's ModelConfig schema")
    assert sorted(p.name for p in (tmp_path / "repo").iterdir()) == ["alexnet_fp16", "alexnet_fp32"]
    assert parse(tmp_path / "repo" / "alexnet_fp16" / "config.pbtxt").name == "alexnet_fp16"
    precision = json.loads((tmp_path / "repo" / "alexnet_fp16" / "1" / "model.onnx.json").read_text())["precision"]
    assert precision == "fp16"
    again = runner.invoke(app, ["triton", str(exports[0]), str(exports[0]), "--repo", str(tmp_path / "other")])
    assert again.exit_code == 1 and "would both be model alexnet_fp32" in again.output
    assert not (tmp_path / "other").exists() or not any((tmp_path / "other").iterdir())


def test_plans_for_two_gpus_share_one_model(onnx_file, tmp_path):
    plans = [fake_plan(onnx_file, onnx_file.parent, cc) for cc in ("8.6", "9.0")]
    options = ["--max-batch-size", "16", "--preferred-batch", "8,16", "--instances", "2"]
    result = runner.invoke(app, ["triton", *map(str, plans), "--repo", str(tmp_path / "repo"), *options])
    assert result.exit_code == 0, result.output
    model = tmp_path / "repo" / "alexnet"
    c = parse(model / "config.pbtxt")
    assert (c.platform, c.max_batch_size, list(c.dynamic_batching.preferred_batch_size)) == (
        "tensorrt_plan",
        16,
        [8, 16],
    )
    assert (c.instance_group[0].count, c.instance_group[0].kind) == (2, model_config_pb2.ModelInstanceGroup.KIND_GPU)
    assert dict(c.cc_model_filenames) == {"8.6": "model_8.6.plan", "9.0": "model_9.0.plan"}
    assert (model / "1" / "model_9.0.plan").read_bytes() == plans[1].read_bytes()
    assert (model / "1" / "model_8.6.plan.json").is_file() and not (model / "1" / "model.plan").exists()
    text = (model / "config.pbtxt").read_text()
    assert "# TensorRT plan: needs TensorRT 10.8.0; use the tritonserver container whose TensorRT is 10.8.0" in text
    assert "needs TensorRT 10.8.0: use the tritonserver container whose TensorRT is 10.8.0" in result.output


def test_one_plan_takes_its_profile_max_and_refuses_more(onnx_file, tmp_path):
    plan = fake_plan(onnx_file, onnx_file.parent, "8.9", max_batch=32)
    write_repository([plan], tmp_path / "repo")
    c = parse(tmp_path / "repo" / "alexnet" / "config.pbtxt")
    assert c.max_batch_size == 32 and not c.cc_model_filenames
    assert (tmp_path / "repo" / "alexnet" / "1" / "model.plan").read_bytes() == plan.read_bytes()
    result = runner.invoke(app, ["triton", str(plan), "--repo", str(tmp_path / "r2"), "--max-batch-size", "64"])
    assert result.exit_code == 1
    assert "A max batch size of 64 is more than model.8.9.plan's profile allows (at most 32)" in result.output
    assert not (tmp_path / "r2").exists()
    with pytest.raises(ConfigError, match="must be at most the max batch size 32; got \\[64\\]"):
        write_repository([plan], tmp_path / "r3", TritonOptions(preferred_batch=(8, 64)))
    with pytest.raises(ConfigError, match="TensorRT plans run only on GPU instances"):
        write_repository([plan], tmp_path / "r3", TritonOptions(kind="cpu"))


@pytest.mark.parametrize("case", ["missing sidecar", "failed gate", "sha mismatch", "mixed classes", "mixed kinds"])
def test_refusals_leave_nothing_written(case, onnx_file, tmp_path):
    args = [str(onnx_file)]
    if case == "missing sidecar":
        Path(f"{onnx_file}.json").unlink()
        expected = "model.onnx has no sidecar (model.onnx.json is missing)"
    elif case == "failed gate":
        m = load_manifest(onnx_file)
        m.gate = {"status": "failed", "reason": "top-1 fell 3.00 points"}
        save_manifest(onnx_file, m)
        expected = "model.onnx failed its accuracy gate (top-1 fell 3.00 points); pass --force to serve it anyway"
    elif case == "sha mismatch":
        with open(onnx_file, "ab") as f:
            f.write(b"\0")
        expected = "The sidecar model.onnx.json does not describe model.onnx (their sha256 differ)"
    elif case == "mixed classes":
        classes = [f"other-{i}" for i in range(20)]
        args = [str(fake_plan(onnx_file, onnx_file.parent, "8.6")),
                str(fake_plan(onnx_file, onnx_file.parent, "9.0", classes=classes))]  # fmt: skip
        expected = "model.8.6.plan and model.9.0.plan have different classes"
    else:
        args.append(str(fake_plan(onnx_file, onnx_file.parent, "8.6")))
        expected = "One model cannot mix kinds (onnx and plan)"
    result = runner.invoke(app, ["triton", *args, "--repo", str(tmp_path / "repo")])
    assert result.exit_code == 1 and expected in result.output, result.output
    assert result.output.startswith("error: ") and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "repo").exists() or not any((tmp_path / "repo").iterdir())


def test_force_serves_a_failed_gate_and_replaces_a_model_only_when_asked(onnx_file, tmp_path):
    repo = tmp_path / "repo"
    write_repository([onnx_file], repo, TritonOptions(max_batch_size=8))
    result = runner.invoke(app, ["triton", str(onnx_file), "--repo", str(repo)])
    assert result.exit_code == 1 and "already exists; pass --force to replace it" in result.output
    assert parse(repo / "alexnet" / "config.pbtxt").max_batch_size == 8  # untouched
    m = load_manifest(onnx_file)
    m.gate = {"status": "failed", "reason": "top-1 fell"}
    save_manifest(onnx_file, m)
    result = runner.invoke(app, ["triton", str(onnx_file), "--repo", str(repo), "--force"])
    assert result.exit_code == 0, result.output
    assert parse(repo / "alexnet" / "config.pbtxt").max_batch_size == 64
    assert json.loads((repo / "alexnet" / "1" / "model.onnx.json").read_text())["gate"]["status"] == "failed"
    assert sorted(p.name for p in repo.iterdir()) == ["alexnet"]  # the old folder and the staging one are gone


def test_a_failure_after_staging_keeps_the_old_model(onnx_file, tmp_path, monkeypatch):
    import alexnet_deploy.triton as triton

    repo = tmp_path / "repo"
    write_repository([onnx_file], repo, TritonOptions(max_batch_size=8))
    monkeypatch.setattr(triton, "validate_config", lambda *a, **k: (_ for _ in ()).throw(ArtifactError("no")))
    with pytest.raises(ArtifactError, match="no"):
        write_repository([onnx_file], repo, TritonOptions(force=True))
    assert sorted(p.name for p in repo.iterdir()) == ["alexnet"]
    assert parse(repo / "alexnet" / "config.pbtxt").max_batch_size == 8


def test_without_tritonclient_the_config_is_written_and_validation_skipped(onnx_file, tmp_path, monkeypatch):
    for module in ("tritonclient", "tritonclient.grpc", "tritonclient.grpc.model_config_pb2"):
        monkeypatch.setitem(sys.modules, module, None)  # makes `import` raise ImportError
    result = runner.invoke(app, ["triton", str(onnx_file), "--repo", str(tmp_path / "repo")])
    assert result.exit_code == 0, result.output
    assert "config.pbtxt validation skipped: tritonclient is not installed" in result.output
    assert (tmp_path / "repo" / "alexnet" / "config.pbtxt").is_file()


def test_triton_schema_rejects_what_triton_would(onnx_file, tmp_path):
    write_repository([onnx_file], tmp_path / "repo", TritonOptions(preferred_batch=(4, 8), max_batch_size=8))
    model = tmp_path / "repo" / "alexnet"
    good = (model / "config.pbtxt").read_text()
    assert validate_config(good, model).max_batch_size == 8
    bad_edits = {
        "unknown field": (good.replace("max_batch_size:", "max_batch:"), "not a valid Triton ModelConfig"),
        "unknown type": (good.replace("TYPE_FP32", "TYPE_FLOAT32", 1), "not a valid Triton ModelConfig"),
        "unknown kind": (good.replace("KIND_GPU", "KIND_TPU"), "not a valid Triton ModelConfig"),
        "preferred over max": (good.replace("max_batch_size: 8", "max_batch_size: 6"), "not within 1..6"),
        "zero dim": (good.replace("dims: [ 3, 64, 64 ]", "dims: [ 3, 0, 64 ]"), "each must be -1 or positive"),
        "plan on CPU": (
            good.replace("onnxruntime_onnx", "tensorrt_plan").replace("KIND_GPU", "KIND_CPU"),
            "TensorRT plans cannot run on KIND_CPU",
        ),  # fmt: skip
        "wrong name": (good.replace('name: "alexnet"', 'name: "resnet"'), "must be its folder's name"),
    }
    for label, (text, message) in bad_edits.items():
        with pytest.raises(ArtifactError, match=message):
            validate_config(text, model)
        assert text != good, label
    (model / "labels.txt").unlink()
    with pytest.raises(ArtifactError, match="label file labels.txt is missing"):
        validate_config(good, model)


def test_options_and_batch_sizes():
    assert parse_batch_sizes("16, 8,8") == (8, 16) and parse_batch_sizes(None) == ()
    with pytest.raises(ConfigError, match="whole numbers separated by commas"):
        parse_batch_sizes("8;16")
    with pytest.raises(ConfigError, match="is not a safe name"):
        TritonOptions(name="../alexnet")
    with pytest.raises(ConfigError, match="The instances must be at least 1"):
        TritonOptions(instances=0)


# -- the example client ---------------------------------------------------------------------------------------
def _example():
    spec = importlib.util.spec_from_file_location("triton_client_example", REPO_ROOT / "examples" / "triton_client.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _val_images(tiny20: Path, n: int) -> list[Path]:
    """``n`` validation photos from different classes (the first of each class folder)."""
    return [sorted(folder.iterdir())[0] for folder in sorted((tiny20 / "val").iterdir())[:n]]


def test_example_client_builds_the_request_without_a_server(exports, tiny20):
    client = _example()
    images = _val_images(tiny20, 3)
    args = client.parse_args([*map(str, images), "--sidecar", f"{exports[0]}.json", "--model", "alexnet_fp32"])
    assert (args.url, args.model, args.top, len(args.images)) == ("localhost:8000", "alexnet_fp32", 5, 3)
    sidecar = json.loads(args.sidecar.read_text())
    batch = client.load_batch(sidecar, args.images)
    from alexnet_deploy.core.data import Preprocessing, eval_transform, load_rgb

    expected = eval_transform(Preprocessing.for_crop(64))(load_rgb(images[1])).numpy()
    assert batch.shape == (3, 3, 64, 64) and batch.dtype == np.float32
    np.testing.assert_array_equal(batch[1], expected)
    inputs, outputs = client.build_request(sidecar, batch, args.top)
    assert (inputs[0].name(), inputs[0].shape(), inputs[0].datatype()) == ("images", [3, 3, 64, 64], "FP32")
    assert outputs[0]._get_tensor() == {"name": "logits", "parameters": {"classification": 5, "binary_data": True}}
    parsed = client.parse_classes(np.array([[b"3.5:7:tabby cat", b"1.25:2:a:b"]], dtype=object))
    assert parsed == [[(3.5, 7, "tabby cat"), (1.25, 2, "a:b")]]


# -- a real Triton server -------------------------------------------------------------------------------------
PYTHON_MODEL = '''"""Our ONNX Runtime runner behind Triton's Python backend, standing in for the onnxruntime backend."""
import sys
sys.path.insert(0, {root!r})
import numpy as np
import triton_python_backend_utils as pb_utils
from alexnet_deploy.backends.onnxruntime import OnnxRuntimeRunner


class TritonPythonModel:
    def initialize(self, args):
        self.runner = OnnxRuntimeRunner(f"{{args['model_repository']}}/{{args['model_version']}}/model.onnx", threads=1)
        self.runner.activate()

    def execute(self, requests):
        # The dynamic batcher hands over several requests at once: one inference for all, as a backend does.
        images = [pb_utils.get_input_tensor_by_name(r, "images").as_numpy() for r in requests]
        logits = self.runner.infer(np.concatenate(images))
        ends = np.cumsum([len(i) for i in images])
        return [pb_utils.InferenceResponse([pb_utils.Tensor("logits", part)]) for part in np.split(logits, ends[:-1])]

    def finalize(self):
        self.runner.deactivate()
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TritonServer:
    """A tritonserver process bound to 127.0.0.1 (HTTP only), started for one repository and stopped after."""

    def __init__(self, binary: Path, python_env: Path | None, tmp: Path) -> None:
        self.root = binary.resolve().parent.parent
        self.python_env, self.tmp, self.proc, self.libs = python_env, tmp, None, []
        self.backends = (
            {p.name for p in (self.root / "backends").iterdir()} if (self.root / "backends").is_dir() else set()
        )

    def _install(self) -> Path:
        """nvidia-pytriton's server keeps its Python backend stubs apart (one per Python) and its libraries in
        ``site-packages/nvidia_pytriton.libs``: use a copy with the stub in place, as PyTriton itself does."""
        stubs = self.root / "python_backend_stubs"
        if (self.root / "backends" / "python" / "triton_python_backend_stub").is_file() or not stubs.is_dir():
            return self.root
        python = self.python_env / "bin" / "python" if self.python_env else Path(sys.executable)
        version = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                 capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
        copy = self.tmp / "tritonserver"
        shutil.copytree(self.root, copy, ignore=shutil.ignore_patterns("python_backend_stubs"), symlinks=True)
        shutil.copy2(stubs / version / "triton_python_backend_stub", copy / "backends" / "python")
        self.libs = [str(self.root.parent.parent / "nvidia_pytriton.libs")]
        return copy

    def start(self, repo: Path, timeout_s: float = 90) -> str:
        """Serve ``repo``; return the HTTP endpoint once the server is ready (fail with its log otherwise)."""
        import tritonclient.http as httpclient

        tree, port, env = self._install(), _free_port(), dict(os.environ)
        env["LD_LIBRARY_PATH"] = os.pathsep.join([*self.libs, env.get("LD_LIBRARY_PATH", "")]).rstrip(os.pathsep)
        if self.python_env:  # the Python backend's stub runs the first python3 on PATH
            env["PATH"] = f"{self.python_env / 'bin'}{os.pathsep}{env['PATH']}"
        self.log = self.tmp / "tritonserver.log"
        with open(self.log, "w") as log:
            args = [f"--model-repository={repo}", f"--backend-directory={tree / 'backends'}",
                    f"--cache-directory={tree / 'caches'}", "--http-address=127.0.0.1", f"--http-port={port}",
                    "--allow-grpc=false", "--allow-metrics=false", "--exit-timeout-secs=5"]  # fmt: skip
            self.proc = subprocess.Popen([tree / "bin" / "tritonserver", *args], stdout=log, stderr=subprocess.STDOUT,
                                         env=env, start_new_session=True)  # fmt: skip
        url, deadline = f"127.0.0.1:{port}", time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.proc.poll() is None:
            with contextlib.suppress(Exception):  # not listening yet
                if httpclient.InferenceServerClient(url).is_server_ready():
                    return url
            time.sleep(0.5)
        pytest.fail(f"tritonserver was not ready (exit code {self.proc.poll()}):\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        """Stop the server and its backend stubs (its own process group)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture
def triton_server(tmp_path):
    """A Triton server found through ALEXNET_DEPLOY_TRITONSERVER or PATH; the test is skipped without one."""
    found = os.environ.get("ALEXNET_DEPLOY_TRITONSERVER") or shutil.which("tritonserver")
    if not found or not Path(found).is_file():
        pytest.skip("no Triton server here (set ALEXNET_DEPLOY_TRITONSERVER to a tritonserver binary)")
    pytest.importorskip("tritonclient.http", reason="tritonclient[http] is not installed")
    python_env = os.environ.get("ALEXNET_DEPLOY_TRITON_PYTHON")
    server = TritonServer(Path(found), Path(python_env) if python_env else None, tmp_path)
    yield server
    server.stop()


@pytest.mark.slow
def test_a_real_triton_server_answers_like_the_artifact(exports, tiny20, tmp_path, triton_server, capsys):
    import tritonclient.http as httpclient
    from google.protobuf import text_format

    from alexnet_deploy.backends.onnxruntime import OnnxRuntimeRunner

    options = TritonOptions(kind="cpu", max_batch_size=8, preferred_batch=(4, 8), max_queue_delay_us=300_000)
    (model,) = write_repository([exports[0]], tmp_path / "repo", options)
    if "onnxruntime" not in triton_server.backends:  # e.g. nvidia-pytriton's server, which has only Python
        config = parse(model.path / "config.pbtxt")
        config.ClearField("platform")  # the same model folder, config, labels and batching, run by the Python backend
        config.backend = "python"
        (model.path / "config.pbtxt").write_text(text_format.MessageToString(config))
        (model.path / "1" / "model.py").write_text(PYTHON_MODEL.format(root=str(REPO_ROOT)))
    url = triton_server.start(tmp_path / "repo")

    client = _example()
    sidecar = json.loads((model.path / "1" / "model.onnx.json").read_text())
    images = _val_images(tiny20, 8)
    batch = client.load_batch(sidecar, images)
    with OnnxRuntimeRunner(exports[0]) as ort:
        expected = ort.infer(batch)
    logits = [httpclient.InferRequestedOutput("logits")]
    with httpclient.InferenceServerClient(url, concurrency=8, network_timeout=60) as http:
        inputs, top5_output = client.build_request(sidecar, batch, 5)
        whole = http.infer("alexnet", inputs, outputs=logits)  # one request of 8 images
        top5 = client.parse_classes(http.infer("alexnet", inputs, outputs=top5_output).as_numpy("logits"))
        pending = [http.async_infer("alexnet", client.build_request(sidecar, batch[i : i + 1], 5)[0], outputs=logits)
                   for i in range(8)]  # fmt: skip
        singles = np.concatenate([p.get_result().as_numpy("logits") for p in pending])
        stats = http.get_inference_statistics("alexnet")["model_stats"][0]
    assert np.abs(whole.as_numpy("logits") - expected).max() < 1e-4
    assert np.abs(singles - expected).max() < 1e-4
    names = [[label for _, _, label in row] for row in top5]  # from labels.txt, through label_filename
    assert names == [[sidecar["classes"][k] for k in np.argsort(-row)[:5]] for row in expected]
    # 8 single-image requests at once with a 0.3 s queue delay: the dynamic batcher joined them into fewer runs
    assert stats["inference_count"] == 8 + 8 + 8 and stats["execution_count"] < 2 + 8

    client.main([*map(str, images[:2]), "--sidecar", str(model.path / "1" / "model.onnx.json"), "--url", url])
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 2 and printed[0].startswith(f"{images[0]}: {names[0][0]} (")
