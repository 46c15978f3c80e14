"""``alexnet-deploy bench`` through Typer's CliRunner: a real small run, and one sentence for each bad input."""

from __future__ import annotations

import json

import pytest
from bench_fakes import FakeClock, ScriptedRunner
from typer.testing import CliRunner

import alexnet_deploy.bench as bench_lib
from alexnet_deploy.bench import BenchTarget
from alexnet_deploy.cli.main import app

cli = CliRunner()
QUICK = ["--warmup-s", "0", "--iterations", "4", "--rounds", "2", "--no-ceiling"]


def _error_line(result) -> str:
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.mark.slow
def test_bench_compares_checkpoint_and_onnx(small_artifacts, tmp_path):
    out_json, out_png = tmp_path / "r.json", tmp_path / "r.png"
    args = ["bench", str(small_artifacts["ckpt"]), str(small_artifacts["onnx"]), "--batch", "1,4", *QUICK]
    result = cli.invoke(
        app, [*args, "--threads", "1", "--json", str(out_json), "--plot", str(out_png)], env={"COLUMNS": "160"}
    )
    assert result.exit_code == 0, result.output
    assert "torch eager fp32" in result.output and "onnxruntime fp32" in result.output
    d = json.loads(out_json.read_text())
    assert d["baseline"] == "torch eager fp32"
    assert [t["label"] for t in d["targets"]] == ["torch eager fp32", "onnxruntime fp32"]
    assert {t["threads"] for t in d["targets"]} == {1}
    # 2 x the profile's multiply-adds of a width-0.25 AlexNet at 64 px
    assert d["targets"][0]["gflop_per_image"] > 0
    assert d["targets"][1]["gflop_per_image"] == pytest.approx(d["targets"][0]["gflop_per_image"])
    base = [r for r in d["results"] if r["label"] == "torch eager fp32"]
    assert [r["speedup_throughput"] for r in base] == [1.0, 1.0]
    assert all(r["latency_ms"]["n"] == 4 for r in d["results"])
    assert out_png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_onnx_alone_gets_a_random_weight_baseline_with_compare(small_artifacts):
    targets, base = bench_lib.build_targets([bench_lib.parse_spec(str(small_artifacts["onnx"]))], compare=True)
    assert base == "torch eager fp32" and [t.label for t in targets] == ["torch eager fp32", "onnxruntime fp32"]
    assert targets[0].notes.startswith("weights from")  # the sidecar's source checkpoint exists
    assert targets[1].image_shape == (3, 64, 64) and targets[0].image_shape == (3, 64, 64)


def test_missing_artifact(tmp_path):
    result = cli.invoke(app, ["bench", str(tmp_path / "nope.onnx"), *QUICK])
    assert result.exit_code == 1
    assert _error_line(result) == f"error: Artifact not found: {tmp_path / 'nope.onnx'}."


def test_unknown_backend(small_artifacts):
    result = cli.invoke(app, ["bench", f"{small_artifacts['onnx']}@tensorflow", *QUICK])
    assert result.exit_code == 1
    assert "Unknown backend or option 'tensorflow'" in _error_line(result)


def test_backend_that_cannot_run_the_artifact(small_artifacts):
    result = cli.invoke(app, ["bench", f"{small_artifacts['onnx']}@torch", *QUICK])
    assert result.exit_code == 1
    assert "The torch backend cannot run small.fp32.onnx" in _error_line(result)


def test_batch_outside_a_plans_profile(monkeypatch):
    clock = FakeClock()
    plan = ScriptedRunner(clock, [0.001], name="tensorrt fp16", max_batch=8)

    def fake_targets(specs, **kw):
        return [BenchTarget("tensorrt fp16", plan)], None

    monkeypatch.setattr(bench_lib, "build_targets", fake_targets)
    result = cli.invoke(app, ["bench", "model.plan", "--batch", "1,32", *QUICK])
    assert result.exit_code == 1
    assert _error_line(result) == (
        "error: Batch 32 is outside the profile of tensorrt fp16 (largest batch 8); "
        "rebuild it with a larger maximum or bench smaller batches."
    )
    assert plan.calls == 0


def test_onnx_without_a_manifest_cannot_get_a_torch_baseline(small_artifacts):
    result = cli.invoke(app, ["bench", str(small_artifacts["bare"]), "--compare", *QUICK])
    assert result.exit_code == 1
    assert "Cannot build the PyTorch baseline" in _error_line(result)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch", "1,x"], "--batch takes positive integers"),
        (["--duration-s", "1"], "Give --duration-s or --iterations, not both."),
        (["--plot", "out.jpg"], "--plot writes a PNG"),
        (["--concurrency", "0"], "--concurrency"),
    ],
)
def test_bad_options(small_artifacts, args, message):
    result = cli.invoke(app, ["bench", str(small_artifacts["bare"]), *QUICK, *args])
    assert result.exit_code == 1
    assert message in _error_line(result)
