from __future__ import annotations

import json
import logging

import onnx
import pytest
from quant_models import trained_onnx

import calib.cache
from alexnet_deploy.core.manifest import load_manifest, save_manifest
from calib import CacheKey, RangeCache, calibrate
from calib.methods import CalibrationMethod, Ranges
from calib.request import CalibrationRequest


@pytest.fixture(scope="session")
def fp32_onnx(tiny20, tmp_path_factory, request):
    return trained_onnx(tiny20, tmp_path_factory.mktemp("qmodel"), request.config.cache.mkdir("alexnet-deploy-quant"))


@pytest.fixture
def counted(monkeypatch):
    calls = []
    real = calib.cache.compute_ranges

    def spy(*args, **kwargs):
        calls.append(args[2].value)
        return real(*args, **kwargs)

    monkeypatch.setattr(calib.cache, "compute_ranges", spy)
    return calls


def test_key_differences_name_what_changed():
    key = CacheKey("m", "d", {"method": "minmax"}, "t", "1.0")
    assert key.differences(key.to_dict()) == []
    assert key.differences({**key.to_dict(), "model_sha256": "other", "onnxruntime": "0.9"}) == [
        "model_sha256",
        "onnxruntime",
    ]


def test_hit_miss_and_stale(fp32_onnx, tiny20, tmp_path, counted, caplog):
    cache_dir = tmp_path / "cache"
    kw = dict(method="minmax", num_images=32, cache_dir=cache_dir)
    first = calibrate(fp32_onnx, CalibrationRequest(data=tiny20, **kw))
    assert first.trials[0].cache == "miss" and counted == ["minmax"]
    files = list(cache_dir.glob("minmax-*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text())["key"]["data_sha256"]

    second = calibrate(fp32_onnx, CalibrationRequest(data=tiny20, **kw))
    assert second.trials[0].cache == "hit" and counted == ["minmax"]  # no second calibration
    assert second.ranges == first.ranges

    # Other calibration images: the same cache file holds a stale key -> said, recomputed, replaced.
    with caplog.at_level(logging.WARNING, logger="calib.cache"):
        third = calibrate(fp32_onnx, CalibrationRequest(data=tiny20, **{**kw, "num_images": 40}))
    assert third.trials[0].cache == "stale" and counted == ["minmax", "minmax"]
    assert "stale (the calibration images changed)" in caplog.text

    # Another model (same graph and tensors, other bytes) in the same cache: stale, because the model changed.
    other = tmp_path / "other.onnx"
    proto = onnx.load(str(fp32_onnx))
    proto.doc_string = "re-exported"
    onnx.save(proto, str(other))
    save_manifest(other, load_manifest(fp32_onnx))  # its own sidecar (a copied one would be refused: other sha256)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="calib.cache"):
        fourth = calibrate(other, CalibrationRequest(data=tiny20, **{**kw, "num_images": 40}))
    assert fourth.trials[0].cache == "stale" and "the model changed" in caplog.text
    assert len(counted) == 3


def test_stale_model_is_reported(tmp_path, caplog):
    cache = RangeCache(tmp_path)
    ranges = Ranges(CalibrationMethod.MINMAX, {"x": (0.0, 1.0)})
    key = CacheKey("model-a", "data", {"method": "minmax"}, "tensors", "1.32.0")
    cache.save(key, ranges)
    assert cache.load(key).status == "hit" and cache.load(key).ranges == ranges
    with caplog.at_level(logging.WARNING, logger="calib.cache"):
        found = cache.load(CacheKey("model-b", "data", {"method": "minmax"}, "tensors", "1.32.0"))
    assert found.status == "stale" and found.reason == "the model changed" and found.ranges is None
    assert "the model changed" in caplog.text
    cache.path(key).write_text("{not json")
    assert cache.load(key).status == "stale"


def test_no_cache_never_writes(fp32_onnx, tiny20, tmp_path):
    result = calibrate(
        fp32_onnx, CalibrationRequest(data=tiny20, method="minmax", num_images=16, cache_dir=tmp_path, use_cache=False)
    )
    assert result.trials[0].cache == "off" and not list(tmp_path.iterdir())


def test_cli_json_stays_clean_when_the_cache_logs(fp32_onnx, tiny20, tmp_path):
    from typer.testing import CliRunner

    from alexnet_deploy.cli.main import app

    args = ["calibrate", str(fp32_onnx), "--calib-data", str(tiny20), "--method", "minmax", "--num-images", "16",
            "--cache-dir", str(tmp_path / "c"), "-o", str(tmp_path / "q.onnx"), "--json"]  # fmt: skip
    runner = CliRunner()
    assert runner.invoke(app, args).exit_code == 0
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "come from the cache" in again.stderr
    assert json.loads(again.stdout)["candidates"][0]["cache"] == "hit"
