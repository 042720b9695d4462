"""Datasets by name: ``digits``, ``cifar10``, ``cifar100``, ``cola``, ``agnews``, ``imagefolder:PATH``, ``csv:PATH``.

``load_dataset(name, data_dir, ...)`` returns an ``ImageDataset`` or a
``TextDataset``: tensors that the engine batches on its device. An unknown name
raises ``MasbenchError`` listing the valid ones.

The registry (``resolve``, ``dataset_kind``) imports no torch: a sweep counts its
cells, and refuses too many, from it before anything heavy is imported.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from masbench.errors import MasbenchError

if TYPE_CHECKING:
    from masbench.data.base import ImageDataset, TextDataset

_FROM_BASE = ("Batch", "ImageDataset", "TextDataset")


@dataclass(frozen=True)
class DatasetEntry:
    kind: str  # "image" or "text"
    description: str
    load: Callable  # (argument, data_dir, options) -> ImageDataset | TextDataset


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
    "imagefolder": DatasetEntry("image", "an ImageFolder tree with train/ and test/", _imagefolder),
    "csv": DatasetEntry("text", "a CSV/TSV text-classification file", _text("csv")),
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
    raise MasbenchError(f"Unknown dataset: {name!r} (valid: {', '.join(valid_names())})")


def dataset_kind(name: str) -> str:
    return resolve(name)[0].kind


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

    entry, argument = resolve(name)
    if base_dir is not None:
        argument = _under(base_dir, argument)
        if options.get("test_file"):
            options["test_file"] = _under(base_dir, options["test_file"])
    data_dir = default_data_dir() if data_dir is None else Path(data_dir).expanduser()
    dataset = entry.load(argument, data_dir, options)
    dataset.train = subset(dataset.train, train_subset)
    dataset.test = subset(dataset.test, test_subset)
    present = [dataset.classes[i] for i in dataset.train.labels.unique().tolist()]
    check_classes(name, present, "its training split" if train_subset is None else f"its training subset of {train_subset}")
    return dataset


def _under(base: Path | str, path: str | None) -> str | None:
    if path is None or Path(path).expanduser().is_absolute():
        return path
    return os.path.normpath(Path(base) / path)


def __getattr__(name: str) -> Any:
    """``Batch``, ``ImageDataset`` and ``TextDataset`` from ``masbench.data.base``, imported (with torch) when asked."""
    if name in _FROM_BASE:
        from masbench.data import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Batch", "DATASETS", "ImageDataset", "TextDataset", "dataset_kind", "default_data_dir", "load_dataset",
           "resolve", "valid_names"]
