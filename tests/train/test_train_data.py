"""The memory data path: its validation pixels equal the eval preset's; augmentation is seeded and shaped."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from image_faults import copy_folder, garble, photos, truncate

from alexnet_deploy.core.data import ImageFolderDataset, Preprocessing, eval_transform, load_rgb, stratified_indices
from alexnet_deploy.core.errors import DataError
from train.data import MemoryImageSet, MemoryLoader, TensorAugment, ten_crop_batch


def test_memory_validation_batches_equal_the_eval_preset_exactly(tiny20):
    pre = Preprocessing(resize=72, crop=64)
    val = MemoryImageSet.from_folder(tiny20 / "val", size=pre.resize, max_images=12)
    loader = MemoryLoader(val, batch_size=5, pre=pre)
    x, y = torch.cat([b[0] for b in loader]), torch.cat([b[1] for b in loader])
    assert x.shape == (12, 3, 64, 64) and len(loader) == 3
    # The same class-stratified subset, through the per-image PIL eval preset that verify and calib use.
    reference = ImageFolderDataset(tiny20 / "val", transform=eval_transform(pre))
    idx = stratified_indices(reference.targets, 12, seed=0)
    assert torch.equal(torch.tensor([reference.targets[i] for i in idx]), y)
    assert torch.equal(x, torch.stack([reference[i][0] for i in idx]))


def test_augmentation_is_seeded_shaped_and_normalised():
    torch.manual_seed(0)
    images = torch.randint(0, 256, (20, 3, 64, 64), dtype=torch.uint8)
    pre = Preprocessing(resize=128, crop=112)
    for mode in ("paper", "rrc", "none"):
        aug = TensorAugment(mode, 112, 112 / 128, scale=(0.3, 1.0), pre=pre, group=8)
        a = aug(images, torch.Generator().manual_seed(1))
        b = aug(images, torch.Generator().manual_seed(1))
        c = aug(images, torch.Generator().manual_seed(2))
        assert a.shape == (20, 3, 112, 112) and a.dtype == torch.float32
        assert torch.equal(a, b)
        assert torch.equal(a, c) == (mode == "none")
        assert -2.5 < float(a.min()) and float(a.max()) < 3.0  # ImageNet-normalised range


def test_none_mode_of_a_flat_image_is_the_normalised_colour():
    images = torch.full((2, 3, 64, 64), 128, dtype=torch.uint8)
    pre = Preprocessing(resize=64, crop=64)
    out = TensorAugment("none", 64, 1.0, pre=pre)(images, torch.Generator())
    expected = (128 / 255 - torch.tensor(pre.mean)) / torch.tensor(pre.std)
    torch.testing.assert_close(out[0, :, 10, 10], expected, rtol=1e-5, atol=1e-5)


def test_ten_crop_is_corners_centre_and_mirrors():
    images = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).view(2, 1, 6, 6)
    crops = ten_crop_batch(images, 4)
    assert crops.shape == (2, 10, 1, 4, 4)
    assert torch.equal(crops[:, 0], images[:, :, :4, :4]) and torch.equal(crops[:, 3], images[:, :, 2:, 2:])
    assert torch.equal(crops[:, 4], images[:, :, 1:5, 1:5])
    assert torch.equal(crops[:, 9], crops[:, 4].flip(-1))


def test_an_unreadable_first_image_is_skipped_and_counted_like_the_others(tmp_path, tiny20):
    folder = copy_folder(tiny20 / "train", tmp_path / "train", classes=2, per_class=5)
    files = photos(folder)
    first, later = garble(files[0]), truncate(files[6])  # ImageFolder's first sample, and one that passes verify()
    images = MemoryImageSet.from_folder(folder)
    assert len(images) == 8 and images.skipped == [str(first), str(later)]
    assert images.targets.tolist() == [0] * 4 + [1] * 4 and images.size == 64
    # The images kept are the readable ones, in order.
    first_kept = torch.from_numpy(np.array(load_rgb(files[1]))).permute(2, 0, 1)
    assert torch.equal(images.images[0], first_kept)
    # With a stored size, the first readable image does not decide it.
    assert MemoryImageSet.from_folder(folder, size=32).images.shape == (8, 3, 32, 32)


def test_a_folder_of_only_unreadable_images_is_one_sentence(tmp_path, tiny20):
    folder = copy_folder(tiny20 / "train", tmp_path / "train", classes=1, per_class=2)
    for p in photos(folder):
        garble(p)
    with pytest.raises(DataError, match="holds no readable image files"):
        MemoryImageSet.from_folder(folder)


def test_folder_validation_drops_an_unreadable_image_instead_of_counting_a_neighbour_twice(tmp_path, tiny20):
    from train.data import FolderLoader

    folder = copy_folder(tiny20 / "val", tmp_path / "val", classes=2, per_class=4)
    files = photos(folder)
    truncate(files[2])  # passes the dataset's check, fails to decode
    pre = Preprocessing(resize=72, crop=64)
    ds = ImageFolderDataset(folder, transform=eval_transform(pre), replace_unreadable=False)
    assert len(ds) == 8 and ds[2] is None
    loader = FolderLoader(ds, batch_size=3, train=False, workers=0)
    labels = torch.cat([y for _, y in loader]).tolist()
    assert labels == [0, 0, 0, 1, 1, 1, 1]  # 7 images, each once
    # Training keeps its fixed batch shape: the bad file is replaced by the next good sample.
    assert torch.equal(ImageFolderDataset(folder, transform=eval_transform(pre))[2][0], ds[3][0])
