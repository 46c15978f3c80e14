from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from alexnet_deploy.core.data import ImageFolderDataset, Preprocessing, eval_transform
from alexnet_deploy.core.errors import DataError
from calib.reader import ImageReader, load_calibration_data, split_calibration
from calib.request import CalibrationRequest

PRE = Preprocessing.for_crop(64)


def test_split_is_stratified_disjoint_and_deterministic():
    targets = [c for c in range(10) for _ in range(30)]  # 10 classes x 30 images
    a = split_calibration(targets, 50, 100, seed=3)
    b = split_calibration(targets, 50, 100, seed=3)
    assert a == b
    assert len(a.calibration) == 50 and len(a.holdout) == 75  # the held-out part is capped at a quarter
    assert not set(a.calibration) & set(a.holdout)
    assert np.bincount([targets[i] for i in a.calibration]).tolist() == [5] * 10
    assert sorted(np.bincount([targets[i] for i in a.holdout]))[0] >= 7
    assert split_calibration(targets, 50, 100, seed=4).calibration != a.calibration


def test_small_folder_calibrates_with_what_it_has():
    s = split_calibration([0, 0, 1, 1, 1, 0, 1, 0], 512, 1000)
    assert len(s.holdout) == 2 and len(s.calibration) == 6


def test_reader_serves_exactly_the_eval_preset_in_batches(tiny20):
    data = load_calibration_data(CalibrationRequest(data=tiny20, num_images=40, holdout_images=20, seed=0), PRE)
    assert data.root == tiny20 / "train" and len(data.calibration) == 40 and len(data.holdout) == 20
    reader = data.reader("images", batch_size=16)
    batches = list(iter(reader.get_next, None))
    assert [b["images"].shape[0] for b in batches] == [16, 16, 8] and len(reader) == 3
    assert reader.get_next() is None
    reader.rewind()
    first = reader.get_next()["images"]
    # Image 0 of the selection, through torchvision's eval preset one image at a time: bit-identical.
    dataset = ImageFolderDataset(tiny20 / "train", transform=eval_transform(PRE))
    index = split_calibration(dataset.targets, 40, 20, 0).calibration[0]
    expected = dataset[index][0].numpy()
    assert first.dtype == np.float32 and first.shape == (16, 3, 64, 64)
    np.testing.assert_array_equal(first[0], expected)
    assert data.describe()["data_sha256"] == data.fingerprint and len(data.fingerprint) == 64


def test_fingerprint_changes_with_the_selection(tiny20):
    a = load_calibration_data(CalibrationRequest(data=tiny20, num_images=8, seed=0, holdout_images=0), PRE)
    b = load_calibration_data(CalibrationRequest(data=tiny20, num_images=8, seed=1, holdout_images=0), PRE)
    c = load_calibration_data(
        CalibrationRequest(data=tiny20, num_images=8, seed=0, holdout_images=0), Preprocessing.for_crop(56)
    )
    assert len({a.fingerprint, b.fingerprint, c.fingerprint}) == 3


def test_empty_and_non_image_folders_are_refused(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no class subfolders"):
        load_calibration_data(CalibrationRequest(data=empty, holdout_images=0), PRE)
    texts = tmp_path / "texts" / "a"
    texts.mkdir(parents=True)
    (texts / "notes.txt").write_text("not an image")
    (texts / "fake.jpg").write_bytes(b"not a jpeg either")
    with pytest.raises(DataError, match="no readable image"):
        load_calibration_data(CalibrationRequest(data=tmp_path / "texts", holdout_images=0), PRE)


def test_image_reader_on_tensor_pixels():
    from alexnet_deploy.core.images import PreparedImages

    pixels = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8).numpy()
    images = PreparedImages(pixels, np.zeros(5, np.int64), Preprocessing(resize=8, crop=8), ["a"], Path("."))
    reader = ImageReader(images, "x", batch_size=2)
    got = np.concatenate([b["x"] for b in reader])
    mean = np.array(images.preprocessing.mean, np.float32)[:, None, None]
    std = np.array(images.preprocessing.std, np.float32)[:, None, None]
    np.testing.assert_allclose(got, (pixels / np.float32(255) - mean) / std, rtol=1e-6, atol=1e-6)
