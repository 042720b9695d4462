"""Datasets held as tensors, batched, augmented and normalised on the training device.

An image set is one uint8 tensor (N, C, H, W) plus int64 labels; a text set is
token ids and attention masks padded to the longest sequence. ``batches`` moves
a split to the device once, then cuts, augments (random crop with padding and
horizontal flip) and normalises each batch there: no per-image work in Python
and no DataLoader workers. The random numbers come from CPU generators, so a
seed gives the same batches on every device and a checkpoint can save their states.

``batches(split, batch_size, device, generator=None, channels_last=False, shard=None,
augment_generator=None)`` is the protocol every data set follows: ``generator`` draws the order,
``augment_generator`` the augmentation. The engine hands a run its two streams (``masbench.seeds``);
``augment_generator=None`` means the augmentation draws from ``generator`` after the order (one stream,
as masbench did before it derived separate streams). A data set whose ``batches`` takes no
``augment_generator`` (a plugin's subclass written before) is still called, with the order's generator
alone (``train_batches``).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor

from masbench.errors import MasbenchError
from masbench.limits import shown


@dataclass
class ImageSplit:
    images: Tensor  # uint8 (N, C, H, W)
    labels: Tensor  # int64 (N,)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class TextSplit:
    input_ids: Tensor  # int32 (N, L), padded to the longest sequence
    attention_mask: Tensor  # uint8 (N, L)
    labels: Tensor  # int64 (N,)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Batch:
    inputs: Tensor | dict[str, Tensor]
    labels: Tensor

    def __len__(self) -> int:
        return len(self.labels)


def subset(split, size: int | None, seed: int = 0):
    """The same ``size`` examples of ``split`` for every run (a fixed seed, not the run's)."""
    if size is None or size >= len(split):
        return split
    generator = torch.Generator().manual_seed(seed)
    index = torch.randperm(len(split), generator=generator)[:size].sort().values
    return type(split)(**{name: getattr(split, name)[index] for name in split.__dataclass_fields__})


def check_classes(name: str, classes: list[str], where: str = "its training split") -> None:
    """Refuse a data set whose training split holds fewer than two classes.

    With one class, every prediction is right: a run would report 100% test accuracy and mean nothing.
    """
    if len(classes) < 2:
        found = f"one class ({shown(classes[0])})" if classes else "no class"
        raise MasbenchError(f"dataset {shown(name)} has {found} in {where}: accuracy would be 100% by "
                            f"construction; a classifier needs two classes or more")


@dataclass
class ImageDataset:
    """Images: ``augment`` turns on random crop (padding ``crop_padding``) and flips for training."""

    name: str
    train: ImageSplit
    test: ImageSplit
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: bool = True
    crop_padding: int = 4
    val: ImageSplit | None = None  # held out of train by masbench.data.validation when a run asks for it
    kind: str = field(default="image", init=False)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.images.shape[1:])

    def batches(
        self,
        split: str,
        batch_size: int,
        device: torch.device,
        generator: torch.Generator | None = None,
        channels_last: bool = False,
        shard: tuple[int, int] | None = None,
        augment_generator: torch.Generator | None = None,
    ) -> Iterator[Batch]:
        """Batches of ``split``; with a generator they are shuffled and (train only) augmented.

        ``generator`` draws the order, ``augment_generator`` the crops and flips (``None``: ``generator``
        draws them too, after the order); with neither, the split in order, unaugmented.
        ``shard=(rank, world_size)``: this process's share of every global batch (DDP). Every rank draws
        the same random numbers, so the shares are disjoint and together make the global batch.
        """
        data: ImageSplit = on_device(self, split, device)
        n = len(data)
        order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
        scale = torch.tensor([1.0 / (255.0 * s) for s in self.std], device=device).view(1, -1, 1, 1)
        shift = torch.tensor([-m / s for m, s in zip(self.mean, self.std)], device=device).view(1, -1, 1, 1)
        drawing = augment_generator if augment_generator is not None else generator
        augment = self.augment and split == "train" and drawing is not None
        for index, params in global_batches(order, batch_size, shard, augment, self.crop_padding, drawing):
            images = data.images[index.to(device)]
            if params is not None:
                images = apply_crop_flip(images, self.crop_padding, *params)
            inputs = images.float().mul_(scale).add_(shift)
            if channels_last:
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            yield Batch(inputs, data.labels[index])


def train_batches(dataset, batch_size: int, device: torch.device, generator: torch.Generator,
                  augment_generator: torch.Generator, channels_last: bool = False,
                  shard: tuple[int, int] | None = None) -> Iterator[Batch]:
    """``dataset``'s training batches, order and augmentation each from its own generator.

    A ``batches`` without an ``augment_generator`` parameter (written for the one-stream protocol) gets
    the order's generator alone, and draws its augmentation from it as it always did.
    """
    if "augment_generator" in inspect.signature(dataset.batches).parameters:
        return dataset.batches("train", batch_size, device, generator, channels_last, shard,
                               augment_generator=augment_generator)
    return dataset.batches("train", batch_size, device, generator, channels_last, shard)


def global_batches(order: Tensor, batch_size: int, shard: tuple[int, int] | None, augment: bool, padding: int,
                    generator: torch.Generator | None):
    """(indices, augmentation parameters or None) per batch, on the CPU: this rank's share under ``shard``."""
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        params = crop_flip_params(len(index), padding, generator) if augment else None
        if shard is not None:
            rank, world = shard
            # A share may be empty (a last batch smaller than the world): every rank still takes the step.
            index = index[rank::world]
            params = None if params is None else tuple(t[rank::world] for t in params)
        yield index, params


def crop_flip_params(n: int, padding: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """For n images: crop offsets in [0, 2 * padding] (rows, columns) and whether to flip."""
    shifts = torch.randint(0, 2 * padding + 1, (n, 2), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5
    return shifts, flips


def random_crop_flip(images: Tensor, padding: int, generator: torch.Generator) -> Tensor:
    """Random crop of the original size from the zero-padded batch, then a random horizontal flip."""
    return apply_crop_flip(images, padding, *crop_flip_params(len(images), padding, generator))


def apply_crop_flip(images: Tensor, padding: int, shifts: Tensor, flips: Tensor) -> Tensor:
    b, c, h, w = images.shape
    device = images.device
    shifts, flips = shifts.to(device), flips.to(device)
    padded = torch.nn.functional.pad(images, (padding, padding, padding, padding))
    rows = (shifts[:, 0, None] + torch.arange(h, device=device)).view(b, 1, h, 1)
    cols = shifts[:, 1, None] + torch.arange(w, device=device)
    cols = torch.where(flips[:, None], cols.flip(1), cols).view(b, 1, 1, w)
    batch = torch.arange(b, device=device).view(b, 1, 1, 1)
    channel = torch.arange(c, device=device).view(1, c, 1, 1)
    return padded[batch, channel, rows, cols]


@dataclass
class TextDataset:
    name: str
    train: TextSplit
    test: TextSplit
    classes: list[str]
    val: TextSplit | None = None  # held out of train by masbench.data.validation when a run asks for it
    kind: str = field(default="text", init=False)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def batches(
        self,
        split: str,
        batch_size: int,
        device: torch.device,
        generator: torch.Generator | None = None,
        channels_last: bool = False,
        shard: tuple[int, int] | None = None,
        augment_generator: torch.Generator | None = None,
    ) -> Iterator[Batch]:
        """Batches of ``split``, shuffled with a generator; text is not augmented (``augment_generator`` unused)."""
        data: TextSplit = on_device(self, split, device)
        n = len(data)
        order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
        lengths = data.attention_mask.sum(1).cpu()
        for cpu_index, _ in global_batches(order, batch_size, shard, False, 0, None):
            index = cpu_index.to(device)
            # Trim the padding to the longest sequence of the batch.
            width = int(lengths[cpu_index].max()) if len(cpu_index) else 1
            inputs = {
                "input_ids": data.input_ids[index, :width].long(),
                "attention_mask": data.attention_mask[index, :width].long(),
            }
            yield Batch(inputs, data.labels[index])


def on_device(dataset, split: str, device: torch.device):
    """The split's tensors on ``device``, moved once and kept."""
    cache = dataset.__dict__.setdefault("_device_cache", {})
    key = (split, str(device))
    if key not in cache:
        data = getattr(dataset, split)
        cache[key] = type(data)(**{name: getattr(data, name).to(device) for name in data.__dataclass_fields__})
    return cache[key]


def channel_stats(images: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (unbiased) of uint8 images, as fractions of 255.

    Computed exactly from per-channel histograms, which is fast and needs no float copy of the set.
    """
    values = torch.arange(256, dtype=torch.float64) / 255.0
    means, stds = [], []
    for c in range(images.shape[1]):
        counts = torch.bincount(images[:, c].reshape(-1), minlength=256).double()
        n = counts.sum()
        mean = (counts * values).sum() / n
        var = (counts * (values - mean) ** 2).sum() / (n - 1)
        means.append(mean.item())
        # A channel of one value (every image's blue at 0) has std 0: scaled by 1 rather than divided by zero.
        stds.append(var.sqrt().item() or 1.0)
    return tuple(means), tuple(stds)
