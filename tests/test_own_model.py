"""The README's "Bring your own model": torchvision's 1000-class AlexNet and a plain ``torch.onnx.export`` file
through the whole tool on ImageNet-layout data (fixture-imagenette-10: 10 of ImageNet's classes, 224 px).

Random weights (seeded, no download): the figures are near chance, which is what the assertions allow for; what is
checked is that the classes match by wnid, the subset is named and scored on all 1000 logits, the engines pass
their gate, and the fixed-batch graph runs everywhere at its batch.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torchvision
from imagenet_layouts import flat_copy
from typer.testing import CliRunner

from alexnet_deploy.cli.main import app
from alexnet_deploy.core.accuracy import EvalRequest
from alexnet_deploy.core.imagenet import imagenet1k
from alexnet_deploy.core.manifest import load_manifest

runner = CliRunner()
pytestmark = pytest.mark.slow
SMALL_CALIB = ["--num-calib-images", "16", "--holdout-images", "8", "--calib-method", "minmax", "--refine", "none"]


def cli(*args: str):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="session")
def tv1000(tmp_path_factory):
    """torchvision's AlexNet with 1000 classes and random weights, saved as a plain state dict."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("own") / "alexnet.pth"
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), path)
    return path


@pytest.fixture(scope="session")
def tv1000_onnx(tv1000):
    out = tv1000.with_name("alexnet.fp32.onnx")
    cli("export", tv1000, "-o", out, "--parity-samples", "4")
    return out


def test_export_carries_wnids_and_verify_names_the_imagenette_subset(tv1000_onnx, imagenette10):
    m = load_manifest(tv1000_onnx)
    assert m.classes == list(imagenet1k().ids) and m.class_names[:2] == ["tench", "goldfish"]
    res = cli("verify", tv1000_onnx, "--data", imagenette10 / "val", "--limit", "20", "--json")
    d = json.loads(res.stdout)
    assert (d["classes_present"], d["model_classes"], d["subset"], d["num_images"]) == (10, 1000, True, 20)
    imagenette = set((imagenette10 / "classes.txt").read_text().split())
    assert set(d["per_class_top1"]) == imagenette  # per-class figures only for the classes present
    table = cli("verify", tv1000_onnx, "--data", imagenette10 / "val", "--limit", "10").stdout
    assert "10 of 1000 classes of the model" in " ".join(table.split())


def test_a_subset_is_scored_on_all_1000_logits(tv1000_onnx, imagenette10):
    from alexnet_deploy.verify import evaluate

    report = evaluate(tv1000_onnx, imagenette10 / "val", EvalRequest(limit=30))
    logits = report.logits
    assert logits.shape == (30, 1000)
    # The targets are ImageNet-1k indices of the folders' wnids; top-1/top-5 are taken among all 1000 logits.
    wnids = sorted((imagenette10 / "classes.txt").read_text().split())
    index = [imagenet1k().ids.index(w) for w in wnids]
    per_class = dict(report.present(report.accuracy["per_class_top1"]))
    assert set(per_class) == set(wnids) and report.coverage.describe() == "10 of 1000 classes"
    top5 = np.argsort(-logits, axis=1)[:, :5]
    targets = np.repeat(index, 3)  # 3 images per class, in class order (the stratified pick is sorted)
    assert report.top1 == pytest.approx(100 * float((logits.argmax(1) == targets).mean()))
    assert report.top5 == pytest.approx(100 * float((top5 == targets[:, None]).any(1).mean()))


def test_build_int8_auto_writes_a_gated_engine(tv1000_onnx, imagenette10, tmp_path):
    out = tmp_path / "alexnet.int8.onnx"
    cli("build", tv1000_onnx, "--int8", "--backend", "auto", "--calib-data", imagenette10, "--eval-data",
        imagenette10, *SMALL_CALIB, "--eval-limit", "20", "--probe-batch", "1", "-o", out)  # fmt: skip
    m = load_manifest(out)
    assert m.precision == "int8" and m.gate["status"] == "passed" and m.gate["forced"] is False
    assert m.classes == list(imagenet1k().ids) and m.class_names[1] == "goldfish"
    assert m.accuracy["classes_present"] == 10 and len(m.accuracy["per_class_top1"]) == 10


def test_a_flat_val_folder_verifies_to_the_same_figures_as_wnid_folders(tv1000_onnx, imagenette10, tmp_path):
    from alexnet_deploy.verify import evaluate

    folders = tmp_path / "folders" / "val"
    for wnid_dir in sorted((imagenette10 / "val").iterdir()):
        (folders / wnid_dir.name).mkdir(parents=True)
        for photo in sorted(wnid_dir.iterdir())[:3]:
            (folders / wnid_dir.name / photo.name).symlink_to(photo)
    flat = flat_copy(imagenette10 / "val", tmp_path / "flat" / "val", per_class=3)
    a, b = evaluate(tv1000_onnx, folders), evaluate(tv1000_onnx, flat)
    assert a.accuracy["num_images"] == b.accuracy["num_images"] == 30
    assert (a.top1, a.top5) == (b.top1, b.top5) and a.accuracy["per_class_top1"] == b.accuracy["per_class_top1"]
    np.testing.assert_array_equal(a.logits, b.logits)  # the same images in the same order


@pytest.fixture(scope="session")
def plain_onnx(tmp_path_factory):
    """A plain torch.onnx.export of torchvision's AlexNet: fixed batch 1, input 'x', weights in a .data file."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("plain") / "plain.onnx"
    torch.onnx.export(torchvision.models.alexnet(weights=None).eval(), (torch.randn(1, 3, 224, 224),), str(path))
    return path


def test_a_plain_onnx_export_goes_through_every_command(plain_onnx, imagenette10, tmp_path, caplog):
    single = tmp_path / "plain.single.onnx"
    res = cli("describe", plain_onnx, "--classes", "imagenet1k", "--resize", "256", "--crop", "224", "-o", single)
    assert "fixed batch of 1" in " ".join(res.stdout.split())
    assert load_manifest(single).input["shape"] == [1, 3, 224, 224]
    int8 = tmp_path / "plain.int8.onnx"
    cli("calibrate", single, "--calib-data", imagenette10, "--target", "onnxruntime", "-o", int8,
        "--num-images", "16", "--holdout-images", "8", "--method", "minmax", "--refine", "none")  # fmt: skip
    assert load_manifest(int8).input["shape"] == [1, 3, 224, 224]
    engine = tmp_path / "eng" / "plain.int8.onnx"
    cli("build", single, "--int8", "--backend", "onnxruntime", "--calib-data", imagenette10, "--eval-data",
        imagenette10, *SMALL_CALIB, "--eval-limit", "10", "--probe-batch", "1,8", "-o", engine)  # fmt: skip
    assert load_manifest(engine).gate["status"] == "passed"
    d = json.loads(cli("verify", engine, "--data", imagenette10 / "val", "--reference", single, "--limit", "10",
                       "--json").stdout)  # fmt: skip
    assert d["num_images"] == 10 and d["gate"]["passed"] and d["classes_present"] == 10
    photos = sorted((imagenette10 / "val" / "n01440764").iterdir())[:3]
    top = json.loads(cli("predict", engine, *photos, "--json").stdout)  # three images through a batch-1 graph
    assert len(top) == 3 and all(len(p["top"]) == 5 for p in top)
    space = imagenet1k()
    assert all(space.names[space.ids.index(t["id"])] == t["class"] for p in top for t in p["top"])
    bench_json = tmp_path / "bench.json"
    res = cli("bench", engine, single, "--batch", "1,8", "--duration-s", "0.2", "--warmup-s", "0.1", "--rounds",
              "1", "--no-ceiling", "--baseline", "onnxruntime fp32", "--json", bench_json)  # fmt: skip
    assert "has a fixed batch of 1" in " ".join(res.output.split())
    measured = json.loads(bench_json.read_text())["results"]
    assert sorted({m["batch"] for m in measured}) == [1] and len(measured) == 2
    assert all(m["speedup_throughput"] for m in measured)  # ratios against the FP32 file, at batch 1
    repo = tmp_path / "repo"
    res = cli("triton", engine, "--repo", repo, "--kind", "cpu")
    config = (repo / "alexnet" / "config.pbtxt").read_text()
    assert "max_batch_size: 0" in config and "dims: [ 1, 3, 224, 224 ]" in config
    assert "dynamic_batching" not in config and "serves it unbatched" in " ".join(res.stdout.split())
    assert (repo / "alexnet" / "labels.txt").read_text().splitlines()[:1] == ["n01440764"]
