"""CIFAR-10 and CIFAR-100 through torchvision, downloaded (checksum-verified) when online."""

from __future__ import annotations

from pathlib import Path

import torch

from masbench.data.base import ImageDataset, ImageSplit, channel_stats
from masbench.data.fetch import reachable
from masbench.errors import MasbenchError


def load_cifar(name: str, data_dir: Path) -> ImageDataset:
    import torchvision

    cls = {"cifar10": torchvision.datasets.CIFAR10, "cifar100": torchvision.datasets.CIFAR100}[name]
    root = Path(data_dir)
    archive = root / cls.filename
    probe = cls.__new__(cls)
    probe.root = str(root)
    have_files = probe._check_integrity()
    # With the archive present, torchvision verifies its md5 and extracts it without the network.
    download = not have_files and (archive.exists() or reachable("www.cs.toronto.edu"))
    if not have_files and not download:
        raise MasbenchError(
            f"{name} not found in {root}: put {cls.filename} ({cls.url}) or its extracted {cls.base_folder}/ there, "
            f"or run once with internet access"
        )
    try:
        splits = [cls(str(root), train=train, download=download) for train in (True, False)]
    except Exception as error:  # a corrupt archive or a failed download: say which, in one line
        raise MasbenchError(f"{name} could not be loaded from {root}: {error}") from error

    def to_split(ds) -> ImageSplit:
        images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
        return ImageSplit(images, torch.tensor(ds.targets, dtype=torch.long))

    train, test = (to_split(ds) for ds in splits)
    mean, std = channel_stats(train.images)
    return ImageDataset(name, train, test, list(splits[0].classes), mean, std, augment=True)
