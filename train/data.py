"""Training and validation batches: from JPEG folders (workers decode each epoch) or from memory.

The memory path is for small sets (Tiny ImageNet: 55,000 photos of 64 px, ~0.7 GB as uint8) on a machine
with few cores. The photos are decoded once (with the same PIL decoder the eval preset uses) into one uint8
tensor, and each batch is augmented as a tensor: crops are cut at the stored resolution and the batch is then
resized in a handful of ``interpolate`` calls, so the cores spend their time on the network, not on decoding.

Both paths yield ``(images, labels)`` with float32 images normalised by the ImageNet mean and std, shard their
samples over DDP ranks with :class:`~torch.utils.data.DistributedSampler` (training) or a strided split without
padding (validation, so every image counts once), and derive every random choice from (seed, epoch, rank), so an
epoch's batches do not depend on what ran before it: that is what makes resume bit-exact.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, DistributedSampler, default_collate
from torchvision.transforms import v2

from alexnet_deploy.core.data import (
    IMAGENET_PCA_EIGVAL,
    IMAGENET_PCA_EIGVEC,
    ImageFolderDataset,
    PCALighting,
    Preprocessing,
    eval_transform,
    load_rgb,
    stratified_indices,
    train_transform,
)
from alexnet_deploy.core.errors import ConfigError, DataError

log = logging.getLogger(__name__)

__all__ = [
    "FolderLoader",
    "MemoryImageSet",
    "MemoryLoader",
    "TensorAugment",
    "epoch_seed",
    "ten_crop_batch",
]

MEMORY_LIMIT_BYTES = 8 << 30  # beyond this the memory path is the wrong tool; use loader=folder


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """The seed of everything random in one epoch on one rank (augmentation, dropout, worker seeds)."""
    return (seed * 1_000_003 + epoch * 10_007 + rank * 101) % (2**63 - 1)


# ----------------------------------------------------------------------------------------------- memory path


@dataclass
class MemoryImageSet:
    """A set of equally sized square images held as one uint8 tensor ``(N, 3, S, S)`` with int64 labels."""

    images: torch.Tensor
    targets: torch.Tensor
    classes: list[str]
    root: str = ""
    skipped: list[str] = field(default_factory=list)  # unreadable files left out

    def __len__(self) -> int:
        return int(self.targets.numel())

    @property
    def size(self) -> int:
        return int(self.images.shape[-1])

    @classmethod
    def from_folder(
        cls,
        root: str | Path,
        size: int | None = None,
        max_images: int = 0,
        seed: int = 0,
        on_progress: Callable[[int, int], None] | None = None,
        pool_images: int = 0,
        pool_seed: int = 0,
    ) -> MemoryImageSet:
        """Decode an ImageFolder into memory.

        Args:
            root: ``root/<class>/<image>``.
            size: store every image as its central square resized to ``size`` (antialiased); None keeps the
                images as they are when they are all square and of one size (Tiny ImageNet), else uses the
                shorter side of the first readable image.
            max_images: 0 for all, else a class-stratified subset of that many images.
            seed: chooses the subset.
            on_progress: called with (done, total) now and then.
            pool_images, pool_seed: draw the ``max_images`` subset from inside the subset that
                ``max_images=pool_images, seed=pool_seed`` would load (e.g. a probe of a training subset's own
                images); 0 draws from the whole folder.

        Every unreadable image, the first one included, is left out with a warning and listed in ``skipped``.

        Raises:
            DataError: the folder is missing, empty, holds no readable image, or is too large to hold in memory.
        """
        folder = ImageFolderDataset(root, check_files=False)
        indices = list(range(len(folder.samples)))
        if pool_images and pool_images < len(indices):
            indices = stratified_indices(folder.targets, pool_images, seed=pool_seed)
        if max_images and max_images < len(indices):
            inner = stratified_indices([folder.targets[i] for i in indices], max_images, seed=seed)
            indices = [indices[j] for j in inner]
        images = targets = to_square = None
        skipped: list[str] = list(folder.skipped)  # what the walk left out (non-images, FIFOs), then the undecodable
        kept = 0
        for n, i in enumerate(indices):
            path, label = folder.samples[i]
            try:
                img = torch.from_numpy(np.array(load_rgb(path))).permute(2, 0, 1)
            except DataError as exc:
                log.warning("%s Skipping it.", exc)
                skipped.append(str(path))
                continue
            if images is None:  # the first readable image sets the stored side
                side = size or min(img.shape[1:])
                need = len(indices) * 3 * side * side
                if need > MEMORY_LIMIT_BYTES:
                    raise DataError(
                        f"{root} would take {need / 2**30:.1f} GiB in memory at {side} px; use the folder loader."
                    )
                images = torch.empty((len(indices), 3, side, side), dtype=torch.uint8)
                targets = torch.empty(len(indices), dtype=torch.int64)
                to_square = v2.Compose([v2.Resize(side, antialias=True), v2.CenterCrop(side)])
            if img.shape[1:] != (side, side):
                img = to_square(img)
            images[kept] = img
            targets[kept] = label
            kept += 1
            if on_progress and (n % 2000 == 0 or n + 1 == len(indices)):
                on_progress(n + 1, len(indices))
        if kept == 0:
            raise DataError(f"{root} holds no readable image files.")
        if skipped:
            log.warning("Skipped %d unreadable or non-image file(s) in %s; %d images loaded.", len(skipped), root, kept)
        return cls(
            images=images[:kept].clone() if kept < len(indices) else images,
            targets=targets[:kept],
            classes=list(folder.classes),
            root=str(root),
            skipped=skipped,
        )


class TensorAugment:
    """Augment a uint8 batch ``(B, 3, S, S)`` into a normalised float batch ``(B, 3, out, out)``.

    Modes (``crop_fraction`` = crop / resize of the preset, e.g. 224/256):

    * ``paper``: a random square of ``crop_fraction`` of the side (the paper's random 224 crop of the 256
      square), a horizontal flip with probability 1/2, PCA lighting, normalisation;
    * ``rrc``: random-resized crops (area in ``scale``, aspect ratio 3/4 to 4/3) drawn per group of
      ``group`` images, otherwise as ``paper``;
    * ``none``: the central square of ``crop_fraction`` of the side, no flip and no lighting (deterministic).

    Crops are cut from the stored uint8 images and resized per group (bilinear, in uint8); the lighting shift
    and the normalisation follow as one multiply-add on the float batch.
    """

    def __init__(
        self,
        mode: str,
        out_size: int,
        crop_fraction: float,
        scale: tuple[float, float] = (0.08, 1.0),
        pca_sigma: float = 0.1,
        pre: Preprocessing | None = None,
        group: int = 16,
    ) -> None:
        pre = pre or Preprocessing()
        if mode not in ("paper", "rrc", "none"):
            raise ConfigError(f"Unknown augmentation '{mode}'.")
        self.mode, self.out_size, self.crop_fraction, self.scale = mode, out_size, crop_fraction, scale
        self.pca_sigma = pca_sigma if mode != "none" else 0.0
        self.group = group
        self.scale_vec = (1.0 / (255.0 * torch.tensor(pre.std))).view(1, 3, 1, 1)
        self.mean = torch.tensor(pre.mean)
        self.std = torch.tensor(pre.std)
        self.eigval = torch.tensor(IMAGENET_PCA_EIGVAL)
        self.eigvec = torch.tensor(IMAGENET_PCA_EIGVEC)

    def _boxes(self, b: int, side: int, gen: torch.Generator) -> list[tuple[int, int, int, int]]:
        """Groups ``(start, stop, h, w)``: one crop size per group of images; offsets are drawn per image."""
        groups = []
        for start in range(0, b, self.group):
            stop = min(b, start + self.group)
            if self.mode == "rrc":
                area = float(torch.empty(1).uniform_(*self.scale, generator=gen))
                log_r = float(torch.empty(1).uniform_(math.log(3 / 4), math.log(4 / 3), generator=gen))
                w = round(side * math.sqrt(area * math.exp(log_r)))
                h = round(side * math.sqrt(area / math.exp(log_r)))
                h, w = min(max(h, 4), side), min(max(w, 4), side)
            else:
                h = w = min(side, max(1, round(side * self.crop_fraction)))
            groups.append((start, stop, h, w))
        return groups

    def __call__(self, images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        b, _, side, _ = images.shape
        flips = torch.rand(b, generator=gen) < 0.5 if self.mode != "none" else torch.zeros(b, dtype=torch.bool)
        resized = torch.empty((b, 3, self.out_size, self.out_size), dtype=torch.uint8)
        for start, stop, h, w in self._boxes(b, side, gen):
            n = stop - start
            if self.mode == "none":
                oy = [(side - h) // 2] * n
                ox = [(side - w) // 2] * n
            else:
                oy = torch.randint(0, side - h + 1, (n,), generator=gen).tolist()
                ox = torch.randint(0, side - w + 1, (n,), generator=gen).tolist()
            crops = torch.stack([images[start + k, :, oy[k] : oy[k] + h, ox[k] : ox[k] + w] for k in range(n)])
            f = flips[start:stop]
            if f.any():
                crops[f] = crops[f].flip(-1)
            # uint8 channels-last bilinear resize: torch's vectorised kernel, ~20x faster than float32 here.
            resized[start:stop] = F.interpolate(
                crops.contiguous(memory_format=torch.channels_last),
                size=(self.out_size, self.out_size),
                mode="bilinear",
                antialias=True,
                align_corners=False,
            )
        shift = (-self.mean / self.std).expand(b, 3)
        if self.pca_sigma > 0:  # the paper's lighting: add eigvec @ (alpha * eigval) in [0, 1] units
            alpha = torch.randn(b, 3, generator=gen) * self.pca_sigma
            shift = shift + (alpha * self.eigval) @ self.eigvec.T / self.std
        # (x / 255 + lighting - mean) / std, as one multiply and one add.
        return resized.float().mul_(self.scale_vec).add_(shift.reshape(b, 3, 1, 1))


def ten_crop_batch(images: torch.Tensor, crop: int) -> torch.Tensor:
    """The paper's 10-crop test: four corners and the centre of ``images`` (B, C, H, W), and their mirrors.

    Returns:
        ``(B, 10, C, crop, crop)``.
    """
    _, _, h, w = images.shape
    top, left = int(round((h - crop) / 2.0)), int(round((w - crop) / 2.0))
    corners = [(0, 0), (0, w - crop), (h - crop, 0), (h - crop, w - crop), (top, left)]
    crops = [images[:, :, y : y + crop, x : x + crop] for y, x in corners]
    crops += [c.flip(-1) for c in crops]
    return torch.stack(crops, dim=1)


class MemoryLoader:
    """Batches from a :class:`MemoryImageSet`.

    Training (``augment`` given): DistributedSampler order, last partial batch dropped, batches augmented.
    Validation (``augment`` None): images are expected already resized to the preset's ``resize``; each batch is
    centre-cropped (or 10-cropped) and normalised exactly as the eval preset does it.
    """

    def __init__(
        self,
        data: MemoryImageSet,
        batch_size: int,
        *,
        augment: TensorAugment | None = None,
        pre: Preprocessing | None = None,
        ten_crop: bool = False,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
    ) -> None:
        pre = pre or Preprocessing()
        self.data, self.batch_size, self.augment, self.pre, self.ten_crop = data, batch_size, augment, pre, ten_crop
        self.rank, self.world_size, self.seed, self.epoch = rank, world_size, seed, 0
        if augment is not None:
            self.sampler = DistributedSampler(
                range(len(data)), num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True
            )
            if len(self.sampler) < batch_size:
                raise DataError(f"{data.root} has too few images ({len(data)}) for a batch of {batch_size}.")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if self.augment is not None:
            self.sampler.set_epoch(epoch)

    def _indices(self) -> list[int]:
        if self.augment is not None:
            return list(self.sampler)
        return list(range(self.rank, len(self.data), self.world_size))

    def __len__(self) -> int:
        if self.augment is not None:
            return len(self.sampler) // self.batch_size
        return math.ceil(len(range(self.rank, len(self.data), self.world_size)) / self.batch_size)

    def _eval_batch(self, images: torch.Tensor) -> torch.Tensor:
        crop = self.pre.crop
        if self.ten_crop:
            images = ten_crop_batch(images, crop)
        else:
            _, _, h, w = images.shape
            top, left = int(round((h - crop) / 2.0)), int(round((w - crop) / 2.0))
            images = images[:, :, top : top + crop, left : left + crop]
        # torchvision's own kernels, so that the pixels equal the eval preset's to the last bit.
        x = v2.functional.to_dtype(images, torch.float32, scale=True)
        return v2.functional.normalize(x, list(self.pre.mean), list(self.pre.std))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.tensor(self._indices(), dtype=torch.int64)
        gen = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch, self.rank))
        for k in range(len(self)):
            idx = order[k * self.batch_size : (k + 1) * self.batch_size]
            images, labels = self.data.images[idx], self.data.targets[idx]
            x = self.augment(images, gen) if self.augment is not None else self._eval_batch(images)
            yield x, labels


# ----------------------------------------------------------------------------------------------- folder path


class _TenCrop(torch.nn.Module):
    def __init__(self, crop: int) -> None:
        super().__init__()
        self.crop = crop

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return ten_crop_batch(img.unsqueeze(0), self.crop)[0]


def folder_transform(mode: str, pre: Preprocessing, scale: tuple[float, float], pca_sigma: float) -> v2.Compose:
    """The per-image training transform of the folder path for an augmentation mode."""
    if mode == "paper":
        return train_transform(pre, pca_sigma=pca_sigma)
    if mode == "rrc":
        return v2.Compose(
            [
                v2.ToImage(),
                v2.RandomResizedCrop(pre.crop, scale=scale, antialias=True),
                v2.RandomHorizontalFlip(),
                v2.ToDtype(torch.float32, scale=True),
                PCALighting(pca_sigma),
                v2.Normalize(pre.mean, pre.std),
            ]
        )
    return eval_transform(pre)


def ten_crop_transform(pre: Preprocessing) -> v2.Compose:
    """Resize the shorter side, then the 10 crops stacked as ``(10, 3, crop, crop)``, normalised."""
    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize(pre.resize, antialias=True),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(pre.mean, pre.std),
            _TenCrop(pre.crop),
        ]
    )


def _collate_readable(batch: list):
    """Collate the samples that could be read (an evaluation dataset gives ``None`` for the others)."""
    kept = [b for b in batch if b is not None]
    return default_collate(kept) if kept else None


class FolderLoader:
    """A DataLoader over an :class:`ImageFolderDataset`, with per-epoch seeds and DDP sharding.

    For evaluation (``train=False``) the dataset should be built with ``replace_unreadable=False``: an image
    that fails to decode is then dropped from its batch rather than replaced, so every image counts at most once.
    """

    def __init__(
        self,
        dataset: ImageFolderDataset,
        batch_size: int,
        *,
        train: bool,
        workers: int = 4,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        indices: list[int] | None = None,
        pin_memory: bool = False,
    ) -> None:
        self.dataset, self.batch_size, self.train, self.workers = dataset, batch_size, train, workers
        self.rank, self.world_size, self.seed, self.epoch, self.pin_memory = rank, world_size, seed, 0, pin_memory
        base = dataset if indices is None else torch.utils.data.Subset(dataset, indices)
        self.base = base
        if train:
            self.sampler = DistributedSampler(
                base, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True
            )
            if len(self.sampler) < batch_size:
                raise DataError(f"{dataset.root} has too few images ({len(base)}) for a batch of {batch_size}.")
        else:
            self.sampler = list(range(rank, len(base), world_size))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if self.train:
            self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.train else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        gen = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch, self.rank))
        loader = DataLoader(
            self.base,
            batch_size=self.batch_size,
            sampler=self.sampler,
            num_workers=self.workers,
            drop_last=self.train,
            pin_memory=self.pin_memory,
            generator=gen,
            persistent_workers=False,
            collate_fn=None if self.train else _collate_readable,
        )
        for batch in loader:
            if batch is not None:  # None: no image of the batch could be read
                yield batch
