"""Samplers: where a tune's trials come from.

``quasirandom`` draws scrambled Sobol points (``scipy.stats.qmc.Sobol``) as AlgoPerf's external tuning
ruleset draws quasi-random ones (AlgoPerf uses Halton; Sobol is scipy's recommended sequence and, taken as
the first points of a power-of-two run, every budget's trials are the first trials of a larger budget, so a
tune of 16 trials reuses the runs of a tune of 8). The scramble's seed comes from the tune's seed and the
optimizer's label through SHA-256 (``derived_seed``): the same on every run and machine, and independent per
optimizer. Values are rounded to ``DIGITS`` significant digits, so that run keys and names stay readable and
the same everywhere.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from typing import Any

from masbench.grid.search import Dimension

DIGITS = 4  # significant digits of a sampled value


def derived_seed(seed: int, label: str) -> int:
    """A 32-bit seed from the tune's ``seed`` and an optimizer's ``label`` (SHA-256, not ``hash()``, which
    Python salts per process).

    >>> derived_seed(0, "sgd") == derived_seed(0, "sgd") != derived_seed(0, "adam")
    True
    """
    return int.from_bytes(hashlib.sha256(f"{seed}:{label}".encode()).digest()[:4], "big")


def scale(dimension: Dimension, u: float) -> Any:
    """The value at ``u`` in [0, 1) of ``dimension``: log: ``10**(log10 lo + u (log10 hi - log10 lo))``,
    uniform: ``lo + u (hi - lo)``, int: ``floor(lo + u (hi - lo + 1))``, choice: the ``floor(u n)``-th;
    numbers rounded to ``DIGITS`` significant digits and kept within [lo, hi]."""
    if dimension.kind == "choice":
        return dimension.choices[min(int(u * len(dimension.choices)), len(dimension.choices) - 1)]
    low, high = dimension.low, dimension.high
    if dimension.kind == "int":
        return int(min(math.floor(low + u * (high - low + 1)), high))
    if dimension.kind == "log":
        value = 10 ** (math.log10(low) + u * (math.log10(high) - math.log10(low)))
    else:
        value = low + u * (high - low)
    return min(max(float(f"{value:.{DIGITS}g}"), low), high) + 0.0


def quasirandom(space: Mapping[str, Dimension], n: int, seed: int) -> list[dict[str, Any]]:
    """The first ``n`` points of a scrambled Sobol sequence over ``space`` (scrambled with ``seed``), each a
    ``{param: value}`` in the space's order.

    >>> quasirandom({"lr": Dimension("lr", "log", 1e-3, 1.0)}, 2, 7)
    [{'lr': 0.05467}, {'lr': 0.002086}]
    """
    if n < 1:
        raise ValueError(f"Invalid budget: {n} (at least 1 trial)")
    names = list(space)
    if not names:
        return [{} for _ in range(n)]
    from scipy.stats import qmc

    sampler = qmc.Sobol(d=len(names), scramble=True, seed=seed)
    points = sampler.random_base2(max(0, math.ceil(math.log2(n))))[:n]  # a power of two: Sobol's balanced prefix
    return [{name: scale(space[name], float(u)) for name, u in zip(names, point)} for point in points]
