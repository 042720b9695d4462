"""A data set's registry entry: how it loads and how its data are identified. The built-ins' are listed in
``masbench.data``, a plugin's is made in ``masbench.data.plugins``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetEntry:
    kind: str  # "image" or "text"
    description: str
    load: Callable  # (argument, data_dir, options) -> ImageDataset | TextDataset
    identify: Callable | None = None  # path-based sets: (argument, options, base_dir, cache) -> fingerprint
    source: str = "built-in"
