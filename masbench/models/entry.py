"""A model's registry entry: the data kinds it takes and how it is built. The built-ins' are listed in
``masbench.models``, the others' (``tv:``, import paths, plugins) are made in ``masbench.models.external``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class ModelEntry:
    kinds: tuple[str, ...]  # the dataset kinds it takes: "image", "tabular", "text"
    description: str
    build: Callable[..., nn.Module]  # (dataset, pretrained) -> module
    source: str = "built-in"
    # (pretrained) -> its resolved name, for models whose --pretrained is part of the cell (tv:); else None
    weights: Callable[[str], str] | None = None
