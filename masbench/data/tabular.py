"""Tabular data: rows of float features, standardised per feature with the training split's statistics.

A plugin's data set (``masbench.plugins``) may return one: ``TabularDataset.from_arrays(name, x_train,
y_train, x_test, y_test, classes)``. Its ``input_shape`` is ``(features,)``; ``mlp``, import-path models
and plugins' models take it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor

from masbench.data.base import Batch, global_batches, on_device
from masbench.errors import MasbenchError
from masbench.limits import shown


def feature_stats(features: Tensor) -> tuple[Tensor, Tensor]:
    """Per-feature mean and std (unbiased) of ``features`` (N, F); std 1 where a feature is constant."""
    mean = features.mean(0)
    std = features.std(0) if len(features) > 1 else torch.ones_like(mean)
    return mean, torch.where(std > 0, std, torch.ones_like(std))


@dataclass
class TabularSplit:
    features: Tensor  # float32 (N, F)
    labels: Tensor  # int64 (N,)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class TabularDataset:
    name: str
    train: TabularSplit
    test: TabularSplit
    classes: list[str]
    mean: Tensor  # (F,) of the training split
    std: Tensor  # (F,), 1 where a feature is constant
    val: TabularSplit | None = None  # held out of train by masbench.data.validation when a run asks for it
    kind: str = field(default="tabular", init=False)

    @classmethod
    def from_arrays(cls, name: str, x_train, y_train, x_test, y_test, classes: list[str]) -> TabularDataset:
        """Features (N, F) and labels 0..len(classes)-1, as tensors or arrays; MasbenchError for bad shapes."""
        splits = []
        for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
            features = torch.as_tensor(x, dtype=torch.float32)
            labels = torch.as_tensor(y).long()
            if features.ndim != 2 or labels.shape != (len(features),):
                raise MasbenchError(f"dataset {shown(name)}: its {split} features must be (N, F) and labels (N,), "
                                    f"got {tuple(features.shape)} and {tuple(labels.shape)}")
            if not torch.isfinite(features).all():
                raise MasbenchError(f"dataset {shown(name)}: its {split} features hold NaN or infinity")
            if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
                raise MasbenchError(f"dataset {shown(name)}: its {split} labels must be in 0..{len(classes) - 1}")
            splits.append(TabularSplit(features, labels))
        train, test = splits
        if train.features.shape[1] != test.features.shape[1]:
            raise MasbenchError(f"dataset {shown(name)}: train has {train.features.shape[1]} features, test "
                                f"{test.features.shape[1]}")
        return cls(name, train, test, list(classes), *feature_stats(train.features))

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.features.shape[1:])

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
        """Batches of ``split``, standardised; shuffled with a generator (no augmentation: ``augment_generator``
        is unused)."""
        data: TabularSplit = on_device(self, split, device)
        order = torch.randperm(len(data), generator=generator) if generator is not None else torch.arange(len(data))
        mean, std = self.mean.to(device), self.std.to(device)
        for index, _ in global_batches(order, batch_size, shard, False, 0, None):
            index = index.to(device)
            yield Batch((data.features[index] - mean) / std, data.labels[index])
