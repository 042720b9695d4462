"""Tabular data sets (plugins' rows of features): standardised with the training split's statistics, and
refused in one line when their arrays cannot be a data set."""

from __future__ import annotations

import pytest
import torch

from masbench.data.tabular import TabularDataset
from masbench.errors import MasbenchError


def blobs(n=40, features=3):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, features, generator=g) * torch.tensor([1.0, 10.0, 0.1])[:features] + 5
    x[:, -1] = 7.0  # a constant feature: std 0, kept as it is (shifted to 0), never divided by 0
    return x, torch.arange(n) % 2


def test_batches_are_standardised_by_the_training_split_and_cover_it_once():
    x, y = blobs()
    data = TabularDataset.from_arrays("t", x[:30], y[:30], x[30:], y[30:], ["a", "b"])
    assert data.input_shape == (3,) and data.num_classes == 2 and data.kind == "tabular"
    batches = list(data.batches("train", 8, torch.device("cpu"), torch.Generator().manual_seed(3)))
    features = torch.cat([b.inputs for b in batches])
    assert [len(b) for b in batches] == [8, 8, 8, 6]
    assert torch.allclose(features[:, :2].mean(0), torch.zeros(2), atol=1e-5)
    assert torch.allclose(features[:, :2].std(0), torch.ones(2), atol=1e-5)
    assert torch.equal(features[:, 2], torch.zeros(30))
    # Shuffled, yet the same rows: each label goes with its own features.
    order = torch.cat([b.labels for b in batches])
    assert sorted(order.tolist()) == sorted(y[:30].tolist())
    test = next(data.batches("test", 100, torch.device("cpu")))
    expected = (x[30:, :2] - x[:30, :2].mean(0)) / x[:30, :2].std(0)
    assert torch.allclose(test.inputs[:, :2], expected, atol=1e-5)


@pytest.mark.parametrize("change, message", [
    (lambda x, y: (x[:, :, None], y), "its train features must be (N, F) and labels (N,), got (30, 3, 1) and (30,)"),
    (lambda x, y: (x, y[:-1]), "its train features must be (N, F) and labels (N,), got (30, 3) and (29,)"),
    (lambda x, y: (x.index_fill(0, torch.tensor([4]), float("nan")), y), "its train features hold NaN or infinity"),
    (lambda x, y: (x, y + 1), "its train labels must be in 0..1"),
    (lambda x, y: (x, y - 1), "its train labels must be in 0..1"),
])
def test_arrays_that_are_no_data_set_are_refused_in_one_line(change, message):
    x, y = blobs()
    train_x, train_y = change(x[:30], y[:30])
    with pytest.raises(MasbenchError) as error:
        TabularDataset.from_arrays("t", train_x, train_y, x[30:], y[30:], ["a", "b"])
    assert str(error.value) == f"dataset 't': {message}"


def test_a_validation_split_is_held_out_of_the_training_rows():
    """--val-fraction on a plugin's tabular data: stratified rows out of train, standardised as train's were."""
    from masbench.data.validation import with_validation

    x, y = blobs()
    data = TabularDataset.from_arrays("t", x[:30], y[:30], x[30:], y[30:], ["a", "b"])
    split = with_validation(data, 0.2, seed=0)
    assert len(split.train) + len(split.val) == 30 and len(split.val) == 6
    assert sorted(split.val.labels.tolist()) == [0, 0, 0, 1, 1, 1]  # 20% of each class's 15 rows
    rows = {tuple(r) for r in x[:30].tolist()}
    val_rows = {tuple(r) for r in split.val.features.tolist()}
    assert val_rows <= rows and not val_rows & {tuple(r) for r in split.train.features.tolist()}
    # Standardised with the statistics of the rows left for training (tests/test_validation_stats.py).
    val = next(split.batches("val", 100, torch.device("cpu")))
    assert torch.allclose(val.inputs[:, :2], (split.val.features[:, :2] - split.mean[:2]) / split.std[:2])
