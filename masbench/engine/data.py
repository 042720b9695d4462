"""Each member's batches, gathered in one indexing op from the device-resident images.

Member k draws its shuffle from its own order generator and its crops and flips from its own
augmentation generator, as the unpacked engine does (``ImageDataset.batches``: the permutation, then
the crop and flip parameters batch by batch), so it sees the very batches its unpacked cell would see. The K batches are then cut, cropped,
flipped and normalised as one batch of K*B images: each of those operations acts image by image.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

from masbench.data.base import ImageDataset, apply_crop_flip, global_batches, on_device


def member_batches(dataset: ImageDataset, batch_size: int, device: torch.device,
                   generators: Sequence[tuple[torch.Generator, torch.Generator] | None]
                   ) -> Iterator[tuple[Tensor, Tensor]]:
    """Training batches (inputs [K, B, C, H, W], labels [K, B]) for K members.

    ``generators[k]``: member k's (order, augmentation) generators. A member whose entry is ``None`` is
    not training this epoch: it draws nothing and gets a copy of another member's batch (its outputs are
    ignored).
    """
    data = on_device(dataset, "train", device)
    n, k = len(data), len(generators)
    drawing = [g for g in generators if g is not None]
    if not drawing:
        raise ValueError("member_batches needs at least one member that trains")
    plans = {}
    for i, pair in enumerate(generators):
        if pair is not None:
            order = torch.randperm(n, generator=pair[0])
            plans[i] = global_batches(order, batch_size, None, dataset.augment, dataset.crop_padding, pair[1])
    stand_in = next(iter(plans))
    scale, shift = _normalisation(dataset, device)
    for drawn in zip(*plans.values()):
        by_member = dict(zip(plans, drawn))
        rows = [by_member.get(i, by_member[stand_in]) for i in range(k)]
        index = torch.stack([r[0] for r in rows]).view(-1)
        images = data.images[index.to(device)]
        if rows[0][1] is not None:
            shifts = torch.cat([r[1][0] for r in rows])
            flips = torch.cat([r[1][1] for r in rows])
            images = apply_crop_flip(images, dataset.crop_padding, shifts, flips)
        inputs = images.float().mul_(scale).add_(shift)
        b = len(rows[0][0])
        yield inputs.view(k, b, *inputs.shape[1:]), data.labels[index].view(k, b)


def test_batches(dataset: ImageDataset, batch_size: int, device: torch.device,
                 size: int) -> Iterator[tuple[Tensor, Tensor]]:
    """The test split in order, as the unpacked engine evaluates it, each batch shared by ``size`` members."""
    for batch in dataset.batches("test", batch_size, device, None):
        yield batch.inputs.unsqueeze(0).expand(size, *batch.inputs.shape), batch.labels


def _normalisation(dataset: ImageDataset, device: torch.device) -> tuple[Tensor, Tensor]:
    """``ImageDataset.batches``'s scale and shift, computed as it computes them."""
    scale = torch.tensor([1.0 / (255.0 * s) for s in dataset.std], device=device).view(1, -1, 1, 1)
    shift = torch.tensor([-m / s for m, s in zip(dataset.mean, dataset.std)], device=device).view(1, -1, 1, 1)
    return scale, shift
