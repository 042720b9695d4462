"""Adaptive seeds: the 95% confidence interval of a cell's mean accuracy, and how many seeds a cell needs.

A cell's runs share its config and differ by seed. Over its n completed runs, with accuracies a_i in
percent, mean m and sample standard deviation s (ddof 1), the 95% t-interval of the mean is
m +- h; its half-width, the number the report's CI95 column shows (``mean ± h``) and ``--until-ci W``
is compared with, is

    h = t_{0.975, n-1} s / sqrt(n)        (undefined for n < 2)

``sweep --until-ci W`` adds seeds to a cell until h <= W or the cell has tried ``max_seeds`` seeds
(``seeds_wanted``). Seeds continue the cell's sequence (``seed_sequence``), so that every sweep that plans
a cell's k-th seed plans the same run. No torch here: the grids import it to count and check.

h <= W is decided by ``width_met``: W as typed, and a half-width within 1e-9 of it (relative) counts as equal.
The half-width holds a t quantile and a square root, so none equals a typed decimal exactly; its last
digits are rounding (about 1e-15), and a half-width printed to 10 significant digits and typed back is met.

>>> round(ci95_half_width([90.0, 91.0, 92.0]), 4)
2.4841
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

from masbench.text.numbers import at_most
from masbench.text.shown import shown

DEFAULT_MAX_SEEDS = 10  # --max-seeds unless given: above the paper's 5 to 7 seeds per cell
MIN_INITIAL_SEEDS = 2  # an interval needs two completed runs
INT32_MAX = 2**31 - 1  # a seed's ceiling (limits.INT_RANGES["seed"])


@lru_cache(maxsize=1024)
def ci95_factor(n: int) -> float:
    """t_{0.975, n-1} / sqrt(n): the half-width of the interval per unit of standard deviation (NaN for n < 2)."""
    if n < 2:
        return math.nan
    # stdtrit is the function behind scipy.stats.t.ppf (the same double), without the 1 to 3 s that importing
    # scipy.stats adds to every report's start-up.
    from scipy.special import stdtrit

    return float(stdtrit(n - 1, 0.975)) / math.sqrt(n)


def ci95_half_width(accs: Sequence[float]) -> float:
    """The half-width of the 95% t-interval of the mean of ``accs`` (mean ± this; NaN for fewer than two)."""
    n = len(accs)
    if n < 2:
        return math.nan
    mean = sum(accs) / n
    std = math.sqrt(sum((a - mean) ** 2 for a in accs) / (n - 1))
    return ci95_factor(n) * std


def width_met(width: float, until_ci: float) -> bool:
    """Whether a CI95 width (NaN: none yet) meets ``--until-ci``: at most the typed width (``numbers.at_most``)."""
    return at_most(width, until_ci)


def seeds_wanted(accs: Sequence[float], tried: int, until_ci: float, max_seeds: int) -> int:
    """How many seeds of its sequence a cell should have tried by the end of the next round.

    ``accs``: the accuracies of its completed runs among the ``tried`` seeds (failed and diverged seeds
    are tried but have none). ``tried`` itself when the cell is done: its half-width is at most
    ``until_ci`` (``width_met``), or it has tried ``max_seeds``. Otherwise more: as many as its standard deviation
    says it needs (the smallest n with t s / sqrt(n) <= W; two completed runs when it has fewer), at least
    one, at most ``tried`` more (a round at most doubles a cell, as s from few seeds is rough), and never
    past ``max_seeds``. It depends only on the stored results, so a rerun plans the same seeds.
    """
    if tried >= max_seeds:
        return tried
    n = len(accs)
    width = ci95_half_width(accs)
    if n >= 2 and width_met(width, until_ci):
        return tried
    if n < 2:
        more = MIN_INITIAL_SEEDS - n
    else:
        std = width / ci95_factor(n)
        more = next((m - n for m in range(n + 1, n + max_seeds + 1) if width_met(ci95_factor(m) * std, until_ci)),
                    max_seeds)
    return min(max_seeds, tried + min(max(more, 1), tried))


def seed_sequence(initial: Sequence[int], count: int) -> list[int]:
    """A cell's first ``count`` seeds: its initial seeds, then on from the largest of them, one by one.

    >>> seed_sequence([0, 1], 4), seed_sequence([7, 3], 4)
    ([0, 1, 2, 3], [7, 3, 8, 9])
    """
    initial = list(initial)
    start = max(initial) + 1
    return initial[:count] + list(range(start, start + max(0, count - len(initial))))


def check_until_ci(value: object, what: str = "until_ci") -> float:
    """``--until-ci`` (``until_ci:``): a finite half-width in accuracy points, > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"Invalid {what}: {shown(value)} (a finite half-width of the CI95 in accuracy points, > 0; "
                         f"e.g. 1.0)")
    return float(value)


def check_max_seeds(max_seeds: object, initial: Sequence[int], what: str = "max_seeds") -> int:
    """``--max-seeds`` (``max_seeds:``): an integer >= the initial seeds, whose last seed is a valid seed."""
    count = len(initial)
    if count < MIN_INITIAL_SEEDS:
        raise ValueError(f"Invalid seeds for until_ci: {count} initial seed(s) (an interval needs at least "
                         f"{MIN_INITIAL_SEEDS}: give seeds: 2 or more)")
    if isinstance(max_seeds, bool) or not isinstance(max_seeds, int) or max_seeds < count:
        raise ValueError(f"Invalid {what}: {shown(max_seeds)} (an integer >= the {count} initial seeds)")
    if max(initial) + (max_seeds - count) > INT32_MAX:
        raise ValueError(f"Invalid {what}: {shown(max_seeds)} (seeds would pass {INT32_MAX}, the largest seed)")
    return max_seeds
