"""``alexnet-deploy triton``: the repository it writes, what it refuses, Triton's schema, and a real server.

ONNX artifacts are real small exports (width-0.25 paper AlexNet, 20 classes, 64 px) with their sidecars. There is
no TensorRT here, so plans are fake bytes with a hand-written sidecar of kind "plan" (TensorRT version, GPU compute
capability, batch profile): the config writer reads only the sidecar, never the plan itself.

The served tests run a real ``tritonserver`` (2.51, from nvidia-pytriton, Python backend only) in its own
environment, built once and cached by the ``triton_env`` fixture (tests/conftest.py): it serves the repository the
``triton`` command writes with ``--python-backend`` (FP32 and FP16 through ONNX Runtime, INT8 through OpenVINO).
Where that environment cannot be built they skip with the reason; under CI they fail.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from alexnet_deploy.cli.main import app
from alexnet_deploy.core.errors import ArtifactError, ConfigError
from alexnet_deploy.core.manifest import Manifest, load_manifest, save_manifest
from alexnet_deploy.core.values import parse_batch_sizes
from alexnet_deploy.triton import TritonOptions, validate_config, write_repository

REPO_ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()
model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="tritonclient is not installed")


def _export(tiny20: Path, out: Path, precision: str = "fp32") -> Path:
    import torch

    from alexnet_deploy.core.data import Preprocessing, class_names
    from alexnet_deploy.core.models import alexnet_paper
    from export import ExportRequest, ModelDescription, export_model

    torch.manual_seed(0)
    model = alexnet_paper(width=0.25, num_classes=20, init="kaiming").eval()
    export_model(
        model,
        out,
        ExportRequest(image_size=64, precision=precision, parity_samples=64, parity_data=tiny20),
        ModelDescription(
            classes=class_names(tiny20 / "train"),
            preprocessing=Preprocessing.for_crop(64),
            arch={"name": "alexnet_paper", "num_classes": 20, "width": 0.25, "columns": 2},
        ),
    )
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
    save_manifest(
        plan,
        Manifest(
            kind="plan",
            model=m.model,
            classes=classes or m.classes,
            input=m.input,
            output=m.output,
            preprocessing=m.preprocessing,
            precision="int8",
            engine=engine,
            gate={"status": "passed"},
        ),
    )
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


@pytest.mark.parametrize(
    "case", ["missing sidecar", "failed gate", "sha mismatch", "mixed classes", "mixed kinds", "openvino blob"]
)
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
    elif case == "mixed kinds":
        args.append(str(fake_plan(onnx_file, onnx_file.parent, "8.6")))
        expected = "One model cannot mix kinds (onnx and plan)"
    else:
        blob = onnx_file.with_suffix(".ovblob")
        blob.write_bytes(b"blob")
        save_manifest(blob, replace(load_manifest(onnx_file), kind="ovblob", engine={"backend": "openvino"}))
        args = [str(blob)]
        expected = "model.ovblob is an OpenVINO compiled blob, which Triton cannot load (its OpenVINO backend reads"
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
    assert parse_batch_sizes("16, 8,8") == (8, 16) and parse_batch_sizes(None, allow_empty=True) == ()
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
def _cli_int8_openvino_engine(fp32: Path, tiny20: Path, out: Path) -> Path:
    """An INT8 OpenVINO engine built by the CLI (random weights: the gate is opened wide, it is not the subject)."""
    args = ["build", str(fp32), "--int8", "--backend", "openvino", "--calib-data", str(tiny20), "--eval-data",
            str(tiny20), "--calib-method", "minmax", "--refine", "none", "--num-calib-images", "32",
            "--holdout-images", "16", "--eval-limit", "40", "--max-fallback-layers", "0", "--max-top1-drop", "100",
            "--max-top5-drop", "100", "--probe-batch", "", "-o", str(out)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert load_manifest(out).engine["backend"] == "openvino"
    return out


@pytest.fixture(scope="module")
def served(exports, tiny20, triton_env, tmp_path_factory):
    """A real tritonserver serving a repository written by ``alexnet-deploy triton --python-backend``: FP32 and
    FP16 exports (ONNX Runtime) and an INT8 OpenVINO engine, with a 0.3 s queue delay so the batcher has time."""
    from alexnet_deploy.triton_local import LocalTritonServer

    folder = tmp_path_factory.mktemp("served")
    int8 = _cli_int8_openvino_engine(exports[0], tiny20, folder / "model.int8.ov.onnx")
    artifacts = {"alexnet_fp32": exports[0], "alexnet_fp16": exports[1], "alexnet_int8": int8}
    options = ["--python-backend", "--max-batch-size", "8", "--preferred-batch", "4,8", "--max-queue-delay-us",
               "300000", "--threads", "1"]  # fmt: skip
    result = runner.invoke(app, ["triton", *map(str, artifacts.values()), "--repo", str(folder / "repo"), *options])
    assert result.exit_code == 0, result.output
    with LocalTritonServer(triton_env, folder / "repo") as server:
        yield server, artifacts, folder / "repo"


def test_the_server_environment_has_no_torch_and_no_alexnet_deploy(triton_env, tmp_path):
    for module in ("torch", "alexnet_deploy"):  # the served model runs on its own copy of the runner code
        done = subprocess.run([triton_env.python, "-c", f"import {module}"], capture_output=True, timeout=60,
                              cwd=tmp_path)  # fmt: skip
        assert done.returncode != 0, module
    numpy = subprocess.run([triton_env.python, "-c", "import numpy; print(numpy.__version__)"], capture_output=True,
                           text=True, timeout=60).stdout  # fmt: skip
    assert numpy.startswith("1.")


@pytest.mark.slow
def test_a_real_triton_server_answers_like_the_artifact(served, tiny20, capsys):
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    from alexnet_deploy.backends import runner_for

    server, artifacts, repo = served
    client = _example()
    images = _val_images(tiny20, 8)
    logits, top_names = [httpclient.InferRequestedOutput("logits")], {}
    with httpclient.InferenceServerClient(server.http_url, concurrency=8, network_timeout=60) as http:
        for name, artifact in artifacts.items():
            sidecar = json.loads((repo / name / "1" / "model.onnx.json").read_text())
            batch = client.load_batch(sidecar, images)
            with runner_for(artifact) as own:  # the runner alexnet-deploy itself picks (OpenVINO for the INT8 one)
                expected = own.infer(batch)
            inputs, top5_output = client.build_request(sidecar, batch, 5)
            whole = http.infer(name, inputs, outputs=logits).as_numpy("logits")  # one request of 8 images
            np.testing.assert_allclose(whole, expected, rtol=1e-5, atol=1e-5, err_msg=name)
            top5 = client.parse_classes(http.infer(name, inputs, outputs=top5_output).as_numpy("logits"))
            top_names[name] = [[label for _, _, label in row] for row in top5]  # labels.txt, via label_filename
            assert top_names[name] == [[sidecar["classes"][k] for k in np.argsort(-row)[:5]] for row in expected]
        # 8 single-image requests at once with a 0.3 s queue delay: the dynamic batcher joins them into fewer runs
        sidecar = json.loads((repo / "alexnet_fp32" / "1" / "model.onnx.json").read_text())
        batch = client.load_batch(sidecar, images)
        before = http.get_inference_statistics("alexnet_fp32")["model_stats"][0]
        pending = [http.async_infer("alexnet_fp32", client.build_request(sidecar, batch[i : i + 1], 5)[0],
                                    outputs=logits) for i in range(8)]  # fmt: skip
        singles = np.concatenate([p.get_result().as_numpy("logits") for p in pending])
        after = http.get_inference_statistics("alexnet_fp32")["model_stats"][0]
    with runner_for(artifacts["alexnet_fp32"]) as own:
        np.testing.assert_allclose(singles, own.infer(batch), rtol=1e-5, atol=1e-5)
    assert after["inference_count"] - before["inference_count"] == 8
    assert after["execution_count"] - before["execution_count"] < 8  # some requests were run together
    with grpcclient.InferenceServerClient(server.grpc_url) as grpc:  # the same answer over gRPC
        inp = grpcclient.InferInput("images", list(batch.shape), "FP32")
        inp.set_data_from_numpy(batch)
        np.testing.assert_allclose(grpc.infer("alexnet_fp32", [inp]).as_numpy("logits"), singles, rtol=1e-5, atol=1e-5)

    client.main([*map(str, images[:2]), "--sidecar", str(repo / "alexnet_fp32" / "1" / "model.onnx.json"), "--url",
                 server.http_url, "--model", "alexnet_fp32"])  # fmt: skip
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 2 and printed[0].startswith(f"{images[0]}: {top_names['alexnet_fp32'][0][0]} (")
