"""scikit-learn's bundled 8x8 digits: real data, offline, seconds per epoch on CPU."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from masbench.data.base import ImageDataset, ImageSplit, channel_stats

TEST_FRACTION = 0.2


def _read_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """(images 0..16 as float64 (N, 8, 8), labels): read from scikit-learn's data file without importing
    sklearn.datasets, which alone takes seconds to import."""
    import numpy as np

    spec = importlib.util.find_spec("sklearn")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            data = np.loadtxt(path, delimiter=",")
            return torch.from_numpy(data[:, :-1]).view(-1, 8, 8), torch.from_numpy(data[:, -1]).long()
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return torch.from_numpy(bunch.images), torch.from_numpy(bunch.target).long()


def stratified_split(labels: torch.Tensor, test_fraction: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Train and test indices with each class split in the same proportion, fixed by ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    train, test = [], []
    for c in labels.unique(sorted=True).tolist():
        members = (labels == c).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        n_test = round(len(members) * test_fraction)
        test.append(members[:n_test])
        train.append(members[n_test:])
    return torch.cat(train).sort().values, torch.cat(test).sort().values


def load_digits_dataset() -> ImageDataset:
    """1797 images, a fixed stratified split (seed 0): 1438 train, 359 test; pixels 0..16 scaled to 0..240."""
    pixels, labels = _read_digits()
    images = (pixels * 15).round().to(torch.uint8).unsqueeze(1)
    train_idx, test_idx = stratified_split(labels, TEST_FRACTION)
    train = ImageSplit(images[train_idx], labels[train_idx])
    test = ImageSplit(images[test_idx], labels[test_idx])
    mean, std = channel_stats(train.images)
    return ImageDataset("digits", train, test, [str(d) for d in range(10)], mean, std, augment=False)
