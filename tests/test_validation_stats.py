"""Normalisation statistics under ``--val-fraction``: those of the rows left for training, never the held-out ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from masbench.data import load_dataset
from masbench.data.base import ImageDataset, ImageSplit
from masbench.data.tabular import TabularDataset
from masbench.data.validation import val_indices, with_validation
from masbench.engine import prepare
from masbench.spec import make_spec
from masbench.engine import ExecOptions


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _kept(split, fraction, seed):
    keep = torch.ones(len(split), dtype=torch.bool)
    keep[val_indices(split.labels, fraction, seed)] = False
    return keep


def _pixel_stats(images):
    """Per-channel mean and unbiased std in float64, the plain way (no histograms)."""
    pixels = images.double().transpose(0, 1).reshape(images.shape[1], -1) / 255.0
    return pixels.mean(1).tolist(), pixels.std(1).tolist()


@pytest.mark.parametrize("fraction, seed", [(0.1, 0), (0.5, 3)])
def test_image_statistics_are_those_of_the_kept_rows(digits, fraction, seed):
    split = with_validation(digits, fraction, seed)
    mean, std = _pixel_stats(digits.train.images[_kept(digits.train, fraction, seed)])
    assert split.mean == pytest.approx(mean, rel=1e-9) and split.std == pytest.approx(std, rel=1e-9)
    whole_mean, _ = _pixel_stats(digits.train.images)
    assert split.mean != pytest.approx(whole_mean, rel=1e-9)  # the held-out rows moved them: the test can fail
    assert digits.mean == pytest.approx(whole_mean, rel=1e-9)  # the loaded (cached) set keeps its own


def test_batches_of_a_split_set_are_normalised_with_the_kept_statistics(digits):
    split = with_validation(digits, 0.3, seed=1)
    mean, std = _pixel_stats(digits.train.images[_kept(digits.train, 0.3, 1)])
    mean, std = torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)
    for name in ("train", "val"):
        batch = next(split.batches(name, 64, torch.device("cpu")))
        expected = (getattr(split, name).images[:64].double() / 255.0 - mean) / std
        assert torch.allclose(batch.inputs.double(), expected, atol=1e-5)


def test_a_run_without_a_split_normalises_bitwise_as_before(digits, tmp_path):
    spec = make_spec(dataset="digits", model="mlp", epochs=1, seed=0)
    p = prepare([spec], ExecOptions(device="cpu", checkpoint_dir=tmp_path), datasets={}).members[0]
    assert p.dataset.val is None
    assert p.dataset.mean == digits.mean and p.dataset.std == digits.std  # the loader's own, unchanged
    scale = torch.tensor([1.0 / (255.0 * s) for s in digits.std]).view(1, -1, 1, 1)
    shift = torch.tensor([-m / s for m, s in zip(digits.mean, digits.std)]).view(1, -1, 1, 1)
    batch = next(p.dataset.batches("train", 100, torch.device("cpu")))
    assert torch.equal(batch.inputs, digits.train.images[:100].float().mul_(scale).add_(shift))


def test_tabular_statistics_are_those_of_the_kept_rows():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3)) * [1.0, 5.0, 0.1] + [0.0, 3.0, -2.0]
    y = np.arange(60) % 3
    data = TabularDataset.from_arrays("t", x[:45], y[:45], x[45:], y[45:], ["a", "b", "c"])
    split = with_validation(data, 0.4, seed=2)
    kept = torch.as_tensor(x[:45], dtype=torch.float32)[_kept(data.train, 0.4, 2)]
    assert torch.equal(split.train.features, kept)
    assert torch.allclose(split.mean, kept.double().mean(0).float())
    assert torch.allclose(split.std, kept.double().std(0).float())
    assert not torch.allclose(split.mean, data.mean)  # the test can fail
    assert torch.equal(data.mean, torch.as_tensor(x[:45], dtype=torch.float32).mean(0))  # the original untouched


def test_an_image_set_s_own_statistics_are_kept():
    """A plugin may normalise with constants of its choice; only statistics of the whole split are recomputed."""
    images = torch.randint(0, 256, (40, 3, 4, 4), dtype=torch.uint8)
    labels = torch.arange(40) % 2
    data = ImageDataset("plugin", ImageSplit(images, labels), ImageSplit(images[:4], labels[:4]), ["a", "b"],
                        (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    split = with_validation(data, 0.25, seed=0)
    assert (split.mean, split.std) == ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


@pytest.mark.parametrize("fraction, seed", [(0.3, 0), (0.2, 5)])
def test_a_run_on_a_train_subset_normalises_with_its_kept_rows(tmp_path, fraction, seed):
    """--train-subset with --val-fraction: the loader's statistics are the whole split's, computed before the
    cut, so they no longer equal the subset's own; they must still be replaced by the kept rows'."""
    spec = make_spec(dataset="digits", model="mlp", epochs=1, seed=seed, train_subset=400, val_fraction=fraction)
    p = prepare([spec], ExecOptions(device="cpu", checkpoint_dir=tmp_path), datasets={}).members[0]
    subset = load_dataset("digits", train_subset=400)
    kept = subset.train.images[_kept(subset.train, fraction, seed)]
    assert len(p.dataset.train) == len(kept) and torch.equal(p.dataset.train.images, kept)
    mean, std = _pixel_stats(kept)
    assert p.dataset.mean == pytest.approx(mean, rel=1e-9) and p.dataset.std == pytest.approx(std, rel=1e-9)
    assert subset.mean != pytest.approx(mean, rel=1e-9)  # the whole split's: what the run used before


def test_a_train_subset_without_a_split_keeps_the_whole_splits_statistics():
    whole, cut = load_dataset("digits"), load_dataset("digits", train_subset=400)
    assert (cut.mean, cut.std) == (whole.mean, whole.std)
