"""benchmarks/claims/trainer.py: the chunked trainer's stream, crossings and ratios, and the CIFAR extraction."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest
import torch
from claims.trainer import _Stream, crossings, extract_cifar10, first_crossing, spread
from PIL import Image

from train.data import MemoryImageSet, MemoryLoader, TensorAugment


def _hist(errors, steps_per_chunk=10, images_per_epoch=1280):
    return [
        {
            "steps": (i + 1) * steps_per_chunk,
            "epochs": (i + 1) * steps_per_chunk * 128 / images_per_epoch,
            "train_error": e,
        }
        for i, e in enumerate(errors)
    ]


def test_first_crossing_and_ratio_of_steps():
    relu, tanh = _hist([80, 50, 24, 10]), _hist([90, 80, 60, 40, 30, 25])
    assert first_crossing(relu, 25)["steps"] == 30 and first_crossing(relu, 5) is None
    rows = {r["level"]: r for r in crossings(relu, tanh, [50, 25, 20])}
    assert rows[50]["ratio"] == pytest.approx(40 / 20)
    assert rows[25]["ratio"] == pytest.approx(60 / 30) and rows[25]["b_epochs"] == pytest.approx(6.0)
    assert "ratio" not in rows[20] and rows[20]["ratio_at_least"] == pytest.approx(60 / 40)  # tanh never got there
    reverse = {r["level"]: r for r in crossings(tanh, relu, [20, 5])}
    assert reverse[20]["ratio_at_most"] == pytest.approx(40 / 60) and "ratio_at_most" not in reverse[5]


def test_spread():
    s = spread([1.0, 2.0, 3.0])
    assert s["mean"] == 2.0 and s["sd"] == pytest.approx(1.0) and (s["min"], s["max"], s["n"]) == (1.0, 3.0, 3)
    assert spread([4.0])["sd"] == 0.0 and spread([]) == {"n": 0}


def test_stream_runs_across_epochs_and_reshuffles():
    n = 40
    data = MemoryImageSet(
        torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, 8, 8).contiguous(), torch.arange(n), ["c"] * 1
    )
    loader = MemoryLoader(data, 10, augment=TensorAugment("none", 8, 1.0), seed=0)
    stream = _Stream(loader, steps=3)  # 4 batches per epoch, 3 per chunk
    labels = [y.tolist() for _ in range(4) for _x, y in stream]
    assert len(labels) == 12 and len(stream) == 3
    first, second, third = (sorted(sum(labels[i : i + 4], [])) for i in (0, 4, 8))
    assert first == second == third == list(range(n))  # each epoch sees every image once
    assert labels[0:4] != labels[4:8]  # and a new order each epoch
    assert stream.epoch == 3


def _jpeg(colour) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((32, 32, 3), colour, dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def test_extract_cifar10_takes_per_class_subsets_once(tmp_path):
    archive = tmp_path / "c.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for split in ("train", "val"):
            for cls in ("cat", "dog"):
                for i in range(3):
                    payload = _jpeg(40 * i)
                    info = tarfile.TarInfo(f"cifar10/{split}/{cls}/{i}.jpg")
                    info.size = len(payload)
                    tar.addfile(info, io.BytesIO(payload))
    root = extract_cifar10(archive, tmp_path / "cache", per_class=2)
    assert sorted(p.name for p in (root / "train" / "cat").iterdir()) == ["0.jpg", "1.jpg"]
    assert len(list((root / "val").rglob("*.jpg"))) == 4
    archive.unlink()  # the second call reads the cache, not the archive
    assert extract_cifar10(archive, tmp_path / "cache", per_class=2) == root


def test_the_probe_is_drawn_from_the_training_subset_itself(tiny20):
    # A probe of other images of the training folder would measure held-out error, not training error,
    # and the "train/val gap" would be no gap at all.
    from claims.trainer import load_claim_data

    from train.config import TrainConfig

    cfg = TrainConfig(data=str(tiny20), max_train_images=60, image_size=64, resize=72, seed=3)
    data = load_claim_data(cfg, probe_images=20)
    assert len(data.train) == 60 and len(data.probe) == 20
    train_at_eval_size = MemoryImageSet.from_folder(tiny20 / "train", size=72, max_images=60, seed=3)
    seen = {bytes(img.numpy().tobytes()) for img in train_at_eval_size.images}
    assert all(bytes(img.numpy().tobytes()) in seen for img in data.probe.images)
    assert len(set(data.probe.targets.tolist())) == 20  # class-stratified: one image of each of the 20 classes
    everything = MemoryImageSet.from_folder(tiny20 / "train", size=72, max_images=20, seed=4)
    assert not all(bytes(img.numpy().tobytes()) in seen for img in everything.images)  # what the old code drew
