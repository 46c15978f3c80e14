"""Which Triton backend serves an artifact (``--kind cpu``, ``--python-backend``), its parameters checked against
Triton's schema and the OpenVINO backend's rules, and the Python-backend model folder run in isolation.

The isolated run copies nothing from this checkout into the child's path: the child sees only the written version
folder (model.py and its copy of the runner code), numpy and the runtimes, with torch made unimportable, and a
stand-in for Triton's ``triton_python_backend_utils``; so it proves the folder is self-contained without a server.
The real server is in tests/test_triton.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from alexnet_deploy.cli.main import app
from alexnet_deploy.core.errors import ArtifactError, ConfigError
from alexnet_deploy.core.manifest import load_manifest, save_manifest
from alexnet_deploy.triton import TritonOptions, write_repository
from alexnet_deploy.triton_backends import OPENVINO_MAX_BATCH_SIZE, choose_serving, runtime_sources
from alexnet_deploy.triton_config import validate_config

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="tritonclient is not installed")
runner = CliRunner()
OV_ENGINE = {"backend": "openvino", "openvino_version": "2026.4.1", "device": "CPU",
             "options": {"device": "CPU", "inference_precision": None, "performance_hint": "THROUGHPUT",
                         "threads": None, "num_streams": 2, "save_ir": False}}  # fmt: skip


@pytest.fixture(scope="module")
def onnx_export(tiny20, tmp_path_factory):
    """A small real export (random weights) with its sidecar."""
    import torch

    from alexnet_deploy.core.data import Preprocessing, class_names
    from alexnet_deploy.core.models import alexnet_paper
    from export import ExportRequest, ModelDescription, export_model

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("backends") / "model.fp32.onnx"
    model = alexnet_paper(width=0.25, num_classes=20, init="kaiming").eval()
    export_model(
        model,
        out,
        ExportRequest(image_size=64, parity_samples=8),
        ModelDescription(
            classes=class_names(tiny20 / "train"),
            preprocessing=Preprocessing.for_crop(64),
            arch={"name": "alexnet_paper", "num_classes": 20, "width": 0.25, "columns": 2},
        ),
    )
    return out


def _as_openvino_engine(onnx: Path, folder: Path, options: dict | None = None) -> Path:
    """A copy of ``onnx`` whose sidecar says an OpenVINO build made it (the facts a build records)."""
    out = folder / "model.int8.ov.onnx"
    out.write_bytes(onnx.read_bytes())
    m = load_manifest(onnx)
    m.engine = OV_ENGINE | {"options": OV_ENGINE["options"] | (options or {})}
    m.precision = "int8"
    save_manifest(out, m)
    return out


def _parse(path: Path):
    from google.protobuf import text_format

    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def test_an_openvino_engine_on_cpu_is_served_by_tritons_openvino_backend(onnx_export, tmp_path):
    engine = _as_openvino_engine(onnx_export, tmp_path)
    result = runner.invoke(app, ["triton", str(engine), "--repo", str(tmp_path / "repo"), "--kind", "cpu",
                                 "--threads", "2"])  # fmt: skip
    assert result.exit_code == 0, result.output
    model = tmp_path / "repo" / "alexnet"
    c = _parse(model / "config.pbtxt")
    assert (c.backend, c.platform, c.default_model_filename) == ("openvino", "", "model.onnx")
    assert c.max_batch_size == OPENVINO_MAX_BATCH_SIZE  # every execution is padded to it: a small default
    params = {k: v.string_value for k, v in c.parameters.items()}
    assert params == {"ENABLE_BATCH_PADDING": "YES", "PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": "2",
                      "INFERENCE_NUM_THREADS": "2"}  # fmt: skip
    assert (model / "1" / "model.onnx").read_bytes() == engine.read_bytes()
    assert "(openvino, int8, max batch 8)" in result.output
    assert "no parameter that pins f32" in result.output  # said, because it changes what runs on bf16 CPUs
    assert "pads every execution" in (model / "config.pbtxt").read_text()


def test_openvino_engine_options_map_to_the_backends_parameters(onnx_export, tmp_path):
    bf16 = _as_openvino_engine(onnx_export, tmp_path, {"inference_precision": "bf16", "threads": 3})
    (m,) = write_repository([bf16], tmp_path / "r1", TritonOptions(kind="cpu", max_batch_size=16))
    c = _parse(m.path / "config.pbtxt")
    assert (c.max_batch_size, c.parameters["HINT_BF16"].string_value) == (16, "YES")
    assert c.parameters["INFERENCE_NUM_THREADS"].string_value == "3" and not m.notes
    f16 = _as_openvino_engine(onnx_export, tmp_path, {"inference_precision": "f16"})
    with pytest.raises(ConfigError, match="cannot set the inference precision f16.*--python-backend"):
        write_repository([f16], tmp_path / "r2", TritonOptions(kind="cpu"))
    assert not (tmp_path / "r2").exists()


def test_onnx_files_are_served_by_onnxruntime_and_an_openvino_engine_on_gpus_with_a_note(onnx_export, tmp_path):
    (m,) = write_repository([onnx_export], tmp_path / "r1", TritonOptions(kind="cpu", threads=2, instances=2))
    c = _parse(m.path / "config.pbtxt")
    assert (c.platform, c.backend, c.max_batch_size) == ("onnxruntime_onnx", "", 64)
    assert c.parameters["intra_op_thread_count"].string_value == "2" and not m.notes
    engine = _as_openvino_engine(onnx_export, tmp_path)
    (m,) = write_repository([engine], tmp_path / "r2", TritonOptions(kind="gpu", instances=2))
    assert _parse(m.path / "config.pbtxt").platform == "onnxruntime_onnx"
    assert any("OpenVINO backend runs on CPUs only" in n for n in m.notes)
    (m,) = write_repository([onnx_export], tmp_path / "r3", TritonOptions(kind="cpu", instances=2))
    assert any("2 instances each use every core" in n for n in m.notes)


def test_python_backend_layout_and_refusals(onnx_export, tmp_path):
    result = runner.invoke(app, ["triton", str(onnx_export), "--repo", str(tmp_path / "repo"), "--python-backend",
                                 "--threads", "1", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    (written,) = json.loads(result.stdout)
    assert written["platform"] == "python"
    assert written["files"] == ["config.pbtxt", "labels.txt", "1/model.onnx", "1/model.onnx.json", "1/model.py",
                                "1/alexnet_deploy/"]  # fmt: skip
    version = tmp_path / "repo" / "alexnet" / "1"
    c = _parse(version.parent / "config.pbtxt")
    assert c.backend == "python" and c.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    assert {k: v.string_value for k, v in c.parameters.items()} == {"artifact": "model.onnx", "threads": "1"}
    copied = sorted(p.relative_to(version).as_posix() for p in (version / "alexnet_deploy").rglob("*.py"))
    assert copied == sorted(rel.as_posix() for _, rel in runtime_sources())
    assert "alexnet_deploy/backends/openvino.py" in copied and "alexnet_deploy/core/preprocessing.py" in copied
    assert not any(p.startswith(("alexnet_deploy/cli", "alexnet_deploy/bench")) for p in copied)
    assert "numpy < 2 and onnxruntime==" in written["notes"][0]
    gpu = runner.invoke(app, ["triton", str(onnx_export), "--repo", str(tmp_path / "r2"), "--python-backend",
                              "--kind", "gpu"])  # fmt: skip
    assert gpu.exit_code == 1 and "--python-backend runs the artifact on CPU instances" in gpu.output
    with pytest.raises(ConfigError, match="not plans"):
        choose_serving("plan", {}, "int8", instance_kind="gpu", python_backend=True, threads=None, instances=1)
    (version / "model.py").unlink()
    with pytest.raises(ArtifactError, match="1/model.py is missing"):
        validate_config((version.parent / "config.pbtxt").read_text(), version.parent)


def test_the_openvino_backends_rules_are_checked(onnx_export, tmp_path):
    (m,) = write_repository([_as_openvino_engine(onnx_export, tmp_path)], tmp_path / "repo", TritonOptions(kind="cpu"))
    good = (m.path / "config.pbtxt").read_text()
    assert validate_config(good, m.path).backend == "openvino"
    bad = {
        "KIND_GPU": (good.replace("KIND_CPU", "KIND_GPU"), "runs only KIND_CPU"),
        "hint": (good.replace('"THROUGHPUT"', '"FASTEST"'), "PERFORMANCE_HINT cannot be 'FASTEST'"),
        "streams": (good.replace('string_value: "2"', 'string_value: "two"'), "NUM_STREAMS cannot be 'two'"),
        "file": (good.replace('"model.onnx"', '"model.xml"'), "1/model.xml is missing"),
    }
    for label, (text, message) in bad.items():
        assert text != good, label
        with pytest.raises(ArtifactError, match=message):
            validate_config(text, m.path)


CHILD = r"""
import importlib.abc, json, sys, types
version, images_file, site_packages = sys.argv[1], sys.argv[2], sys.argv[3:]
sys.path += site_packages  # numpy and the runtimes, without the .pth files that would put this checkout in reach

class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision", "typer", "onnx"):
            raise ImportError(f"{name} is blocked: a served model must not need it")
        return None

sys.meta_path.insert(0, Blocked())
import numpy as np

class Tensor:  # the parts of triton_python_backend_utils that model.py uses
    def __init__(self, name, array): self.name, self.array = name, array
    def as_numpy(self): return self.array
class InferenceResponse:
    def __init__(self, output_tensors, error=None): self.output_tensors, self.error = output_tensors, error
class TritonError:
    def __init__(self, message): self.message = message
class Request:
    def __init__(self, array): self.array = array
pb = types.ModuleType("triton_python_backend_utils")
pb.Tensor, pb.InferenceResponse, pb.TritonError = Tensor, InferenceResponse, TritonError
pb.get_input_tensor_by_name = lambda request, name: Tensor(name, request.array)
sys.modules["triton_python_backend_utils"] = pb

import importlib.util
spec = importlib.util.spec_from_file_location("model", f"{version}/model.py")
model_py = importlib.util.module_from_spec(spec)
spec.loader.exec_module(model_py)
config = json.load(open(f"{version}/../config.json"))
model = model_py.TritonPythonModel()
model.initialize({"model_config": json.dumps(config), "model_repository": version + "/..", "model_version": "1"})
import alexnet_deploy
x = np.load(images_file)
responses = model.execute([Request(x[:1]), Request(x[1:4]), Request(x[4:])])
bad = model.execute([Request(x[:, :2])])  # a wrong shape: an error answer, not a crash
model.finalize()
print(json.dumps({"runner": model.runner.name, "package": alexnet_deploy.__file__,
                  "shapes": [list(r.output_tensors[0].array.shape) for r in responses],
                  "logits": np.concatenate([r.output_tensors[0].array for r in responses]).tolist(),
                  "error": bad[0].error.message if bad[0].error else None,
                  "torch": "torch" in sys.modules}))
"""


@pytest.mark.parametrize("which", ["onnxruntime", "openvino"])
def test_the_python_backend_model_folder_runs_alone(which, onnx_export, tmp_path):
    from google.protobuf import json_format

    from alexnet_deploy.backends import runner_for

    artifact = onnx_export if which == "onnxruntime" else _as_openvino_engine(onnx_export, tmp_path)
    (m,) = write_repository([artifact], tmp_path / "repo", TritonOptions(kind="cpu", python_backend=True, threads=1))
    config = json_format.MessageToDict(_parse(m.path / "config.pbtxt"), preserving_proto_field_name=True)
    (m.path / "config.json").write_text(json.dumps(config))  # what Triton hands to initialize(), as JSON
    x = np.random.default_rng(0).standard_normal((6, 3, 64, 64)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    site_packages = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    # -I -S: no current folder, no environment variables, no site (so no editable install of this checkout)
    done = subprocess.run([sys.executable, "-I", "-S", "-c", CHILD, str(m.path / "1"), str(tmp_path / "x.npy"),
                           *site_packages], capture_output=True, text=True, timeout=180, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(out["package"]).is_relative_to(m.path / "1")  # the copy, not this checkout
    assert out["runner"] == {"onnxruntime": "onnxruntime fp32", "openvino": "openvino int8"}[which]
    assert out["torch"] is False
    assert out["shapes"] == [[1, 20], [3, 20], [2, 20]]  # one batch of six, split back per request
    assert "failed" in out["error"]
    with runner_for(artifact) as own:
        np.testing.assert_allclose(np.array(out["logits"]), own.infer(x), rtol=1e-5, atol=1e-5)
