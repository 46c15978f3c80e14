"""The memory data path: its validation pixels equal the eval preset's; augmentation is seeded and shaped."""

from __future__ import annotations

import torch

from alexnet_deploy.core.data import ImageFolderDataset, Preprocessing, eval_transform, stratified_indices
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
