"""A validation split held out of the training set: stratified, seeded, reproducible anywhere.

``with_validation(dataset, fraction, seed)`` returns a copy of ``dataset`` whose ``train`` has lost, in
every class, ``round(fraction * n_class)`` examples (half up) to its ``val``. The examples are chosen by
a generator of their own, seeded from the run's seed through a hash (``split_seed``): the split draws
nothing from the global RNG that seeds the weights, nor from the generator that orders the batches,
so a run with a validation split starts from the same weights as one without, and the split is the
same in every process (no ``hash()``, which Python salts per process). Both splits keep the examples
in their original order. The normalisation statistics (images' channel mean and std, tabular features')
are those of the rows left for training, not of the whole training split.

A fraction outside (0, 0.5], or a class that would be left without a training or a validation example,
is refused in one line: a validation accuracy over missing classes would select on a different task.

Example:
    >>> from masbench.data import load_dataset
    >>> data = with_validation(load_dataset("digits"), 0.1, seed=0)  # doctest: +SKIP
    >>> len(data.train), len(data.val)  # doctest: +SKIP
    (1293, 144)
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from masbench.errors import MasbenchError
from masbench.seeds import stream_seed
from masbench.text.shown import shown

if TYPE_CHECKING:
    import torch

MAX_VAL_FRACTION = 0.5


def check_val_fraction(fraction: float) -> None:
    """Raise ``ValueError`` unless ``fraction`` is in (0, 0.5] (no torch import: a spec checks it before any)."""
    if not 0.0 < fraction <= MAX_VAL_FRACTION:  # NaN fails too
        raise ValueError(f"Invalid val_fraction: {shown(fraction)} (must be in (0, {MAX_VAL_FRACTION:g}])")


def split_seed(seed: int) -> int:
    """The split's own seed, derived from the run's: a stream apart from the weights' and the batches'."""
    return stream_seed(seed, "val_split")


def val_indices(labels: torch.Tensor, fraction: float, seed: int, classes: list[str] | None = None) -> torch.Tensor:
    """The sorted indices of the validation examples among ``labels`` (int64, one per training example).

    Per class present: a random ``round(fraction * n)`` of its examples (half up). Raises ``MasbenchError``
    if a class would have none in either split.
    """
    import torch

    try:
        check_val_fraction(fraction)
    except ValueError as error:
        raise MasbenchError(str(error)) from None
    generator = torch.Generator().manual_seed(split_seed(seed))
    chosen = []
    for label in labels.unique().tolist():  # ascending: the same draws in the same order everywhere
        members = (labels == label).nonzero().flatten()
        take = int(fraction * len(members) + 0.5)
        if take == 0 or take == len(members):
            name = classes[label] if classes is not None and 0 <= label < len(classes) else label
            where = "validation" if take == 0 else "training"
            raise MasbenchError(f"Invalid val_fraction {fraction:g}: class {shown(name)} has {len(members)} training "
                                f"example(s), which leaves it none for {where}; use another fraction or more data")
        chosen.append(members[torch.randperm(len(members), generator=generator)[:take]])
    return torch.cat(chosen).sort().values


def _take(split, index: torch.Tensor):
    return type(split)(**{name: getattr(split, name)[index] for name in split.__dataclass_fields__})


def with_validation(dataset, fraction: float, seed: int):
    """A copy of ``dataset`` (train and test shared, not copied) with ``val`` held out of ``train``.

    Normalisation statistics that masbench computed over the whole training split are computed again over
    the rows left for training, so nothing of the held-out rows reaches training.
    """
    import torch

    train = dataset.train
    val = val_indices(train.labels, fraction, seed, dataset.classes)
    keep = torch.ones(len(train), dtype=torch.bool)
    keep[val] = False
    kept = _take(train, keep.nonzero().flatten())
    # replace() builds a new object: the original's device cache (its train on the GPU) is not carried over.
    return dataclasses.replace(dataset, train=kept, val=_take(train, val), **_statistics_of(dataset, kept))


def _statistics_of(dataset, kept) -> dict:
    """``mean`` and ``std`` over ``kept`` where ``dataset``'s are masbench's over its training split, else {}."""
    from masbench.data.base import channel_stats
    from masbench.data.tabular import feature_stats

    if not computed_statistics(dataset):
        return {}  # a plugin's constants, or a text set (no statistics)
    if dataset.kind == "image":
        mean, std = channel_stats(kept.images)
    else:
        mean, std = feature_stats(kept.features)
    return {"mean": mean, "std": std}


# Set by ``load_dataset`` on a data set cut to ``--train-subset`` whose statistics were computed over the whole
# split before the cut: the test below cannot see that on the subset, yet the held-out rows are in them.
FROM_WHOLE_SPLIT = "_masbench_statistics_of_whole_split"


def computed_statistics(dataset) -> bool:
    """Whether ``dataset``'s normalisation statistics are masbench's, computed over its training split.

    masbench's loaders (and ``TabularDataset.from_arrays``) compute them over the training split; a plugin's
    image set may give its own constants instead, which are its choice and stay. The statistics are
    recognised by computing them again: the functions are deterministic, so equality is exact.
    """
    import torch

    from masbench.data.base import channel_stats
    from masbench.data.tabular import feature_stats

    if getattr(dataset, FROM_WHOLE_SPLIT, False):
        return True
    if dataset.kind == "image":
        return (dataset.mean, dataset.std) == channel_stats(dataset.train.images)
    if dataset.kind == "tabular":
        whole = feature_stats(dataset.train.features)
        return torch.equal(dataset.mean, whole[0]) and torch.equal(dataset.std, whole[1])
    return False
