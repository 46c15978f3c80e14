from __future__ import annotations

import logging
import shutil

import pytest
import torch
from PIL import Image

from alexnet_deploy.core.data import (
    ImageFolderDataset,
    PCALighting,
    Preprocessing,
    class_names,
    eval_transform,
    is_synthetic,
    make_synthetic_imagefolder,
    split_dir,
    stratified_indices,
    train_transform,
)
from alexnet_deploy.core.errors import DataError


@pytest.fixture()
def photo(tiny20):
    path = next((tiny20 / "val").rglob("*.JPEG"))
    return Image.open(path).convert("RGB")


def test_eval_preset_shape_and_determinism(photo):
    t = eval_transform(Preprocessing())
    a, b = t(photo), t(photo)
    assert a.shape == (3, 224, 224) and a.dtype == torch.float32
    assert torch.equal(a, b)
    # normalised: roughly zero-centred, not in [0, 1]
    assert a.min() < 0


def test_preprocessing_for_crop_keeps_the_paper_ratio_and_roundtrips():
    pre = Preprocessing.for_crop(112)
    assert (pre.resize, pre.crop) == (128, 112)
    assert Preprocessing.from_dict(pre.to_dict()) == pre


def test_train_preset_random_crops_and_shape(photo):
    torch.manual_seed(0)
    t = train_transform(Preprocessing())
    outs = [t(photo) for _ in range(4)]
    assert all(o.shape == (3, 224, 224) for o in outs)
    assert not all(torch.equal(outs[0], o) for o in outs[1:])


def test_pca_lighting_statistics():
    torch.manual_seed(0)
    lighting = PCALighting(sigma=0.1)
    img = torch.full((3, 4, 4), 0.5)
    shifts = torch.stack([lighting(img)[:, 0, 0] - 0.5 for _ in range(20000)])
    # The shift is eigvec @ (alpha * eigval): zero mean, covariance eigvec diag((0.1*eigval)^2) eigvec^T.
    assert shifts.mean(0).abs().max() < 1e-3
    expected = lighting.eigvec @ torch.diag((0.1 * lighting.eigval) ** 2) @ lighting.eigvec.T
    cov = torch.cov(shifts.T)
    assert torch.allclose(cov, expected, atol=3e-5)
    # The whole image is shifted by one colour vector.
    out = lighting(img)
    assert torch.allclose(out, out[:, :1, :1].expand_as(out))
    assert torch.equal(PCALighting(sigma=0)(img), img)


def test_imagefolder_loads_fixture_with_class_names(tiny20):
    ds = ImageFolderDataset(tiny20 / "val", transform=eval_transform(Preprocessing.for_crop(64)))
    assert len(ds.classes) == 20 and len(ds) == 200 and ds.skipped == []
    x, y = ds[0]
    assert x.shape == (3, 64, 64) and y == 0
    names = class_names(tiny20 / "val")
    assert len(names) == 20 and names != ds.classes  # human-readable names from classes.tsv
    assert split_dir(tiny20, "val") == tiny20 / "val"


def test_corrupt_and_non_image_files_are_skipped_with_a_warning(tiny20, tmp_path, caplog):
    root = tmp_path / "val"
    shutil.copytree(tiny20 / "val", root)
    first_class = sorted(p for p in root.iterdir() if p.is_dir())[0]
    (first_class / "broken.JPEG").write_bytes(b"this is not a jpeg")
    (first_class / "notes.txt").write_text("hello")
    good = next(first_class.glob("*.JPEG"))
    truncated = first_class / "truncated.JPEG"
    truncated.write_bytes(good.read_bytes()[:200])
    with caplog.at_level(logging.WARNING):
        ds = ImageFolderDataset(root)
    skipped_names = sorted(p.split("/")[-1] for p in ds.skipped)
    assert "broken.JPEG" in skipped_names and "notes.txt" in skipped_names
    assert len(ds) == 200 + 3 - len(ds.skipped)
    assert "broken.JPEG" in caplog.text
    # Whatever passed the cheap check but cannot be decoded is replaced, never a crash.
    for i, (path, _) in enumerate(ds.samples):
        if path.endswith("truncated.JPEG"):
            img, label = ds[i]
            assert isinstance(img, Image.Image)


def test_an_empty_class_folder_is_named_in_a_warning_and_listed(tmp_path, tiny20, caplog):
    from image_faults import copy_folder, garble, photos

    root = copy_folder(tiny20 / "val", tmp_path / "val", classes=3, per_class=2)
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    (root / "zz-empty").mkdir()
    for p in photos(folders[1]):
        garble(p)  # a class whose every file is unreadable is as empty as one without files
    with caplog.at_level(logging.WARNING):
        ds = ImageFolderDataset(root)
    assert ds.empty_classes == [folders[1].name, "zz-empty"] and len(ds.classes) == 4 and len(ds) == 4
    assert f"2 class folder(s) of {root} hold no readable image: {folders[1].name}, zz-empty." in caplog.text


def test_a_folder_given_as_an_image_says_it_is_a_folder(tmp_path):
    from alexnet_deploy.core.data import load_rgb

    with pytest.raises(DataError) as info:
        load_rgb(tmp_path)
    assert str(info.value) == f"{tmp_path} is a folder, not an image file."


def test_empty_or_missing_folder_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="not found"):
        ImageFolderDataset(tmp_path / "nope")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.txt").write_text("x")
    with pytest.raises(DataError, match="no readable image"):
        ImageFolderDataset(tmp_path)


def test_stratified_indices_cover_classes_evenly_and_reproducibly():
    targets = [c for c in range(5) for _ in range(10)]
    a = stratified_indices(targets, 15, seed=1)
    assert a == stratified_indices(targets, 15, seed=1)
    assert a != stratified_indices(targets, 15, seed=2)
    counts = [sum(targets[i] == c for i in a) for c in range(5)]
    assert counts == [3] * 5
    assert len(stratified_indices(targets, 1000)) == 50


def test_synthetic_set_is_deterministic_and_marked(tmp_path):
    a = make_synthetic_imagefolder(tmp_path / "a", num_classes=3, train_per_class=2, val_per_class=1, size=32)
    b = make_synthetic_imagefolder(tmp_path / "b", num_classes=3, train_per_class=2, val_per_class=1, size=32)
    files_a = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    assert len(files_a) == 9
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes()
    assert is_synthetic(a) and is_synthetic(a / "val")
    ds = ImageFolderDataset(a / "train")
    assert ds.classes == ["synthetic-00", "synthetic-01", "synthetic-02"]
