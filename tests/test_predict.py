from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from alexnet_deploy.backends import describe_artifact, runner_for
from alexnet_deploy.cli.main import app
from alexnet_deploy.core.checkpoint import save_checkpoint
from alexnet_deploy.core.data import ImageFolderDataset, Preprocessing, class_names, eval_transform
from alexnet_deploy.core.models import alexnet_paper
from alexnet_deploy.predict import predict_files, softmax

runner = CliRunner()


@pytest.fixture(scope="module")
def checkpoint(tiny20, tmp_path_factory):
    torch.manual_seed(0)
    model = alexnet_paper(width=0.25, num_classes=20, init="kaiming")
    path = tmp_path_factory.mktemp("ck") / "model.pt"
    save_checkpoint(
        path,
        {
            "model": model.state_dict(),
            "arch": {"name": "alexnet_paper", "num_classes": 20, "width": 0.25, "columns": 2},
            "classes": class_names(tiny20 / "val"),
            "preprocessing": Preprocessing(resize=128, crop=112).to_dict(),
        },
    )
    return path


def test_softmax_rows_sum_to_one():
    p = softmax(np.array([[1.0, 2.0, 3.0], [1000.0, 0.0, 0.0]]))
    np.testing.assert_allclose(p.sum(1), 1.0)
    assert p[1, 0] == pytest.approx(1.0)


def test_predictions_match_the_dataset_path_and_use_the_manifest_preprocessing(checkpoint, tiny20):
    info = describe_artifact(checkpoint)
    assert info.preprocessing.crop == 112 and len(info.classes) == 20
    ds = ImageFolderDataset(tiny20 / "val", transform=eval_transform(info.preprocessing))
    picks = list(range(0, 200, 25))
    paths = [ds.samples[i][0] for i in picks]
    with runner_for(checkpoint) as r:
        results = predict_files(r, info, paths, top_k=5, batch_size=3)
        expected = r.infer(np.stack([ds[i][0].numpy() for i in picks])).argmax(1)
    assert [res.top[0][0] for res in results] == expected.tolist()
    for res in results:
        probs = [p for _, _, p in res.top]
        assert len(res.top) == 5 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0 + 1e-9
        assert res.top[0][1] == info.classes[res.top[0][0]]


def test_cli_reports_a_corrupt_image_and_still_runs_the_rest(checkpoint, tiny20, tmp_path):
    good = sorted((tiny20 / "val").rglob("*.JPEG"))[:2]
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    result = runner.invoke(app, ["predict", str(checkpoint), str(good[0]), str(bad), str(good[1]), "--json"])
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert [("error" in d) for d in data] == [False, True, False]
    assert "broken.jpg" in data[1]["error"] and len(data[0]["top"]) == 5
    text = runner.invoke(app, ["predict", str(checkpoint), str(good[0])])
    assert text.exit_code == 0 and "%" in text.stdout


def test_cli_missing_artifact_is_one_sentence(tmp_path):
    result = runner.invoke(app, ["predict", str(tmp_path / "none.onnx"), str(tmp_path / "x.jpg")])
    assert result.exit_code == 1 and result.stderr.startswith("error: Artifact not found")
