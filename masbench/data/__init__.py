"""Datasets by name: ``digits``, ``cifar10``, ``cifar100``, ``cola``, ``agnews``, ``imagefolder:PATH``, ``csv:PATH``.

``load_dataset(name, data_dir, ...)`` returns an ``ImageDataset``, a ``TextDataset``
or (plugins' sets, ``masbench.data.plugins``) a ``TabularDataset``: tensors that the engine batches on its device. An unknown name
raises ``MasbenchError`` listing the valid ones. ``data_fingerprint`` identifies
the data of a path-based set by content (``masbench.data.identity``), for its run's key.

The registry (``resolve``, ``dataset_kind``) imports no torch: a sweep counts its
cells, and refuses too many, from it before anything heavy is imported.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from masbench.data.entry import DatasetEntry
from masbench.data.identity import MISSING, csv_fingerprint, imagefolder_fingerprint, under
from masbench.errors import MasbenchError
from masbench.text.shown import shown

if TYPE_CHECKING:
    from masbench.data.base import ImageDataset, TextDataset

_FROM_BASE = ("Batch", "ImageDataset", "TextDataset")


def _digits(_, data_dir, options):
    from masbench.data.digits import load_digits_dataset

    return load_digits_dataset()


def _cifar(name):
    def load(_, data_dir, options):
        from masbench.data.cifar import load_cifar

        return load_cifar(name, data_dir)

    return load


def _imagefolder(path, data_dir, options):
    from masbench.data.images import load_imagefolder

    return load_imagefolder(path, data_dir)


def _text(reader_name):
    def load(argument, data_dir, options):
        from masbench.data import text

        if reader_name == "csv":
            raw = text.raw_csv(argument, data_dir, text_column=options.get("text_column"),
                               label_column=options.get("label_column"), test_file=options.get("test_file"),
                               test_fraction=options.get("test_fraction", 0.2))
            name = f"csv:{argument}"
        else:
            raw = getattr(text, f"raw_{reader_name}")(data_dir)
            name = reader_name
        pretrained = options.get("pretrained")
        if not pretrained:
            raise MasbenchError(f"dataset {name!r} is text: it needs the model's tokenizer (--pretrained NAME_OR_PATH)")
        return text.tokenize(name, raw, pretrained, options.get("max_length", 128), data_dir)

    return load


DATASETS: dict[str, DatasetEntry] = {
    "digits": DatasetEntry("image", "scikit-learn's 8x8 digits (bundled, offline)", _digits),
    "cifar10": DatasetEntry("image", "CIFAR-10 (torchvision)", _cifar("cifar10")),
    "cifar100": DatasetEntry("image", "CIFAR-100 (torchvision)", _cifar("cifar100")),
    "cola": DatasetEntry("text", "CoLA (GLUE), validation as test", _text("cola")),
    "agnews": DatasetEntry("text", "AG News", _text("agnews")),
}
PARAMETRIC: dict[str, DatasetEntry] = {
    "imagefolder": DatasetEntry("image", "an ImageFolder tree with train/ and test/", _imagefolder,
                                imagefolder_fingerprint),
    "csv": DatasetEntry("text", "a CSV/TSV text-classification file", _text("csv"), csv_fingerprint),
}


def valid_names() -> list[str]:
    return list(DATASETS) + [f"{prefix}:PATH" for prefix in PARAMETRIC]


def resolve(name: str) -> tuple[DatasetEntry, str | None]:
    """The registry entry for ``name`` and its argument (the PATH of ``csv:PATH``)."""
    if name in DATASETS:
        return DATASETS[name], None
    prefix, sep, argument = name.partition(":")
    if sep and prefix in PARAMETRIC and argument:
        return PARAMETRIC[prefix], argument
    if not sep and name not in PARAMETRIC:  # a built-in's prefix (csv) is no plugin's name either
        from masbench.data.plugins import plugin_entry

        entry = plugin_entry(name)
        if entry is not None:
            return entry, None
    from masbench.text.shown import did_you_mean

    hint = did_you_mean(name, [*DATASETS, *PARAMETRIC])
    raise MasbenchError(f"Unknown dataset: {name!r} ({hint}valid: {', '.join(valid_names())}, or a plugin's: see "
                        f"masbench list datasets)")


def dataset_kind(name: str) -> str:
    return resolve(name)[0].kind


def data_fingerprint(name: str, options: dict, base_dir: Path | str | None = None,
                     cache: dict | None = None) -> str | None:
    """The content fingerprint of a path-based set (``options``: its ``data_options``); ``None`` for named sets.

    Relative paths are relative to ``base_dir``, else the working directory, as in ``load_dataset``.
    ``cache`` (a dict) computes each path's fingerprint once across the calls that share it.
    """
    entry, argument = resolve(name)
    if entry.identify is None:
        return None
    return entry.identify(argument, options, base_dir, cache)


def check_fingerprint(name: str, options: dict, base_dir: Path | str | None, planned: str | None) -> None:
    """Refuse data that are not the ones a run was planned with: its results would go to another data set's cell."""
    now = data_fingerprint(name, options, base_dir)
    if now == planned:
        return
    where = under(base_dir, resolve(name)[1] or "")
    if planned == MISSING:
        problem = f"was missing when this run was planned and is there now ({where})"
    else:
        problem = f"changed since this run was planned ({where}: {planned} then, {now} now)"
    raise MasbenchError(f"dataset {shown(name)} {problem}: start the run or sweep again, so that its cells are "
                        f"those of the data it trains on")


def default_data_dir() -> Path:
    return Path(os.environ.get("MASBENCH_DATA") or Path.home() / ".cache" / "masbench" / "data").expanduser()


def load_dataset(
    name: str,
    data_dir: Path | str | None = None,
    *,
    base_dir: Path | str | None = None,
    train_subset: int | None = None,
    test_subset: int | None = None,
    **options,
) -> ImageDataset | TextDataset:
    """Load dataset ``name``; ``train_subset``/``test_subset`` keep a fixed random subset of each split.

    Text sets take ``pretrained`` (the tokenizer), ``max_length``, and for ``csv:``
    ``text_column``, ``label_column``, ``test_file`` and ``test_fraction``. Relative paths
    (``imagefolder:PATH``, ``csv:PATH``, ``test_file``) are relative to ``base_dir``, else the working directory.
    """
    from masbench.data.base import check_classes, subset
    from masbench.data.validation import FROM_WHOLE_SPLIT, computed_statistics

    entry, argument = resolve(name)
    if base_dir is not None:
        argument = under(base_dir, argument)
        if options.get("test_file"):
            options["test_file"] = under(base_dir, options["test_file"])
    data_dir = default_data_dir() if data_dir is None else Path(data_dir).expanduser()
    dataset = entry.load(argument, data_dir, options)
    whole = train_subset is not None and computed_statistics(dataset)
    dataset.train = subset(dataset.train, train_subset)
    if whole:  # a validation split of the subset must normalise with its kept rows' statistics, not these
        setattr(dataset, FROM_WHOLE_SPLIT, True)
    dataset.test = subset(dataset.test, test_subset)
    present = [dataset.classes[i] for i in dataset.train.labels.unique().tolist()]
    check_classes(name, present, "its training split" if train_subset is None else f"its training subset of {train_subset}")
    return dataset


def __getattr__(name: str) -> Any:
    """``Batch``, ``ImageDataset`` and ``TextDataset`` from ``masbench.data.base``, imported (with torch) when asked."""
    if name in _FROM_BASE:
        from masbench.data import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Batch", "DATASETS", "ImageDataset", "TextDataset", "check_fingerprint", "data_fingerprint", "dataset_kind",
           "default_data_dir", "load_dataset", "resolve", "valid_names"]
