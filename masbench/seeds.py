"""A run's random streams, each derived from its cell seed on its own (``stream_seed``).

A run (one cell, one seed: ``--seed`` or a value of ``--seed-list``) draws its random numbers from
three streams that never share a generator:

- ``weights``: seeds python's ``random``, numpy's and torch's global RNGs (CPU and CUDA) right before
  the model is built, so the initial weights, and whatever the model draws from the global RNG while it
  trains (dropout), follow from it;
- ``order``: a ``torch.Generator`` of its own that draws each epoch's batch permutation;
- ``augment``: a ``torch.Generator`` of its own that draws the random crops and flips of image sets.

The validation split (``masbench.data.validation``) is a fourth, ``val_split``. Each stream's seed is
the first 8 bytes of ``sha256("masbench.<stream>:<seed>")`` (63 bits): no ``hash()``, which Python
salts per process, so every process and machine derives the same seeds, and two seeds of a cell differ
in every stream. Changing how one stream is drawn leaves the others' numbers as they were.

Example:
    >>> stream_seed(0, "order") != stream_seed(0, "augment") != stream_seed(1, "order")
    True
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

STREAMS = ("weights", "order", "augment", "val_split")


def stream_seed(seed: int, stream: str) -> int:
    """The seed of ``stream`` (one of ``STREAMS``) for the run of cell seed ``seed``: an int in [0, 2**63)."""
    if stream not in STREAMS:
        raise ValueError(f"Invalid stream: {stream!r} (valid: {', '.join(STREAMS)})")
    digest = hashlib.sha256(f"masbench.{stream}:{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def order_generator(seed: int) -> torch.Generator:
    """The run's generator of batch order (a CPU generator: the same batches on every device)."""
    import torch

    return torch.Generator().manual_seed(stream_seed(seed, "order"))


def augment_generator(seed: int) -> torch.Generator:
    """The run's generator of augmentation (random crop and flip)."""
    import torch

    return torch.Generator().manual_seed(stream_seed(seed, "augment"))
