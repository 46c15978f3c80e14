from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alexnet_deploy.cli.main import app
from alexnet_deploy.core.files import sha256_file
from alexnet_deploy.core.manifest import load_manifest

runner = CliRunner()

ARTIFACTS = [
    "train/best.pt",
    "model.fp32.onnx",
    "model.fp16.onnx",
    "model.int8.onnx",
    "report.md",
    "report.html",
    "results.json",
    "bench.png",
    "curves.png",
]


@pytest.fixture(scope="module")
def first_run(tiny20, tmp_path_factory):
    out = tmp_path_factory.mktemp("qs") / "out"
    args = ["quickstart", "--data", str(tiny20), "--out", str(out), "--epochs", "3", "--train-minutes", "2",
            "--calib-images", "64", "--holdout-images", "40", "--bench-seconds", "0.3", "--threads", "2"]  # fmt: skip
    result = runner.invoke(app, args)
    return out, args, result


@pytest.mark.slow
def test_quickstart_writes_every_artifact_and_a_report_that_matches_the_sidecars(first_run):
    out, _, result = first_run
    assert result.exit_code == 0, result.output
    for name in ARTIFACTS:
        assert (out / name).is_file(), name
    results = json.loads((out / "results.json").read_text())
    assert results["data"]["synthetic"] is False and results["data"]["classes"] == 20
    assert results["training"]["epochs"] == 3
    rows = {Path(r["artifact"]).name: r for r in results["accuracy"]}
    assert set(rows) == {"model.fp32.onnx", "model.fp16.onnx", "model.int8.onnx"}

    int8 = load_manifest(out / "model.int8.onnx")
    assert int8.precision == "int8" and int8.gate["passed"] is True
    assert int8.source["sha256"] == sha256_file(out / "model.fp32.onnx")
    # The report's numbers are the sidecar's numbers (same images, same engines).
    assert rows["model.int8.onnx"]["top1"] == pytest.approx(int8.accuracy["top1"])
    assert rows["model.int8.onnx"]["top5"] == pytest.approx(int8.accuracy["top5"])
    assert rows["model.int8.onnx"]["agreement"] == pytest.approx(int8.accuracy["agreement_top1"])
    assert rows["model.fp32.onnx"]["top1"] == pytest.approx(int8.accuracy["fp32"]["top1"])
    assert results["gate"]["passed"] is True
    assert results["gate"]["top1_drop"] == pytest.approx(int8.gate["top1_drop"])
    for name in ("model.fp32.onnx", "model.fp16.onnx"):
        assert load_manifest(out / name).source["sha256"] == sha256_file(out / "train" / "best.pt")

    md = (out / "report.md").read_text()
    engine = int8.engine["backend"]  # auto: the fastest gate-passing engine measured here (ONNX Runtime or OpenVINO)
    assert engine in ("onnxruntime", "openvino") and int8.extra["selection"]["chosen"].startswith(engine)
    assert f"| model.int8.onnx | {engine} | int8 | {rows['model.int8.onnx']['top1']:.2f}% |" in md
    assert "SYNTHETIC" not in md
    # the report is printed as it reads: its line breaks are line breaks on the console, not "\n" escapes
    assert "\n## Accuracy\n" in result.output and "\\n" not in result.output
    labels = {r["name"] for r in results["bench"]["rows"]}
    assert {"torch eager fp32", "onnxruntime fp32", "onnxruntime fp16", f"{engine} int8"} <= labels
    assert {"onnxruntime int8", "openvino int8", "openvino fp32"} <= labels  # both CPU runtimes, side by side
    assert "## INT8 engine choice" in md and f"Chosen: {int8.extra['selection']['chosen']}" in md
    assert all(f"Warning: {note}" in md for note in int8.extra["notes"])  # slower than FP32: said in the report
    assert {m["method"] for m in results["calibration"]} == {"minmax", "entropy", "percentile"}
    # Every figure carries the others' CPU use while it was timed, and the report says whether to trust them.
    contention = results["bench"]["contention"]
    assert {"others_cpu_fraction", "threshold", "reliable"} <= set(contention)
    assert all(r["reliable"] in (True, False) for r in results["bench"]["rows"])
    assert ("UNRELIABLE" in md) == any(r["reliable"] is False for r in results["bench"]["rows"])
    assert rows["model.int8.onnx"]["num_images"] > 0 and rows["model.int8.onnx"]["unreadable_skipped"] == 0
    assert f"{rows['model.int8.onnx']['num_images']} validation images evaluated; 0 unreadable skipped." in md
    assert isinstance(results["system"]["simd"], list) and "| simd |" in md


@pytest.mark.slow
def test_second_run_rebuilds_nothing(first_run):
    out, args, first = first_run
    assert first.exit_code == 0, first.output
    before = {name: (out / name).stat().st_mtime_ns for name in ARTIFACTS[:4]}
    second = runner.invoke(app, args)
    assert second.exit_code == 0, second.output
    stages = json.loads((out / "results.json").read_text())["stages"]
    assert set(stages) == {"train", "export-fp32", "export-fp16", "build-int8", "verify", "bench"}
    assert all(v == "cached" for v in stages.values()), stages
    assert {name: (out / name).stat().st_mtime_ns for name in ARTIFACTS[:4]} == before


def test_quickstart_bad_data_is_one_sentence(tmp_path):
    (tmp_path / "flat").mkdir()
    result = runner.invoke(app, ["quickstart", "--data", str(tmp_path / "flat"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert (
        result.stderr.strip()
        == f"error: {tmp_path / 'flat'} must hold train/ and val/ ImageFolders (ImageNet's layout)."
    )


def test_quickstart_bad_checkpoint_is_refused_before_work(tmp_path, tiny20):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"junk")  # 4 bytes: torch.load fails with struct.error
    result = runner.invoke(
        app, ["quickstart", "--data", str(tiny20), "--checkpoint", str(bad), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 1 and "not a readable PyTorch checkpoint" in result.stderr
    assert not (tmp_path / "o" / "model.fp32.onnx").exists()
