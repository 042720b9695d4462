"""Grids over a mix's weights, torch-free: ``simplex`` lists the weights that are multiples of a step and sum
to 1, exactly (each weight a decimal: ``0.3``, never ``0.30000000000000004``), counted before they are built.

A mix's text itself (``mix:adam=0.3,sgd=0.5,rmsprop=0.2``: ``parse_mix``, ``mix_text``) is part of a run's spec,
in ``masbench.spec``.
"""

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from itertools import combinations

from masbench.text.shown import shown
from masbench.spec import check_components, is_mix

MAX_SIMPLEX = 100_000  # points a --mix grid may have before the cell cap is even asked


def parse_step(value: object) -> Decimal:
    """A simplex step: a decimal in (0, 1] that divides 1 (0.25, 0.1, 0.2; not 0.3)."""
    try:
        step = Decimal(str(value).strip())
    except InvalidOperation:
        step = Decimal("NaN")
    if not step.is_finite() or not 0 < step <= 1:
        raise ValueError(f"Invalid mix step: {shown(value)} (a number in (0, 1] that divides 1, e.g. 0.25 or 0.1)")
    # Finer than 1/MAX_SIMPLEX is too many mixes for any two components; refusing it here keeps the exact
    # arithmetic below small (1e-999999999 would be a billion-digit integer).
    if step * MAX_SIMPLEX < 1:
        raise ValueError(f"Invalid mix step: {shown(value)} makes more than {MAX_SIMPLEX:,} mixes "
                         f"(at least {Decimal(1) / MAX_SIMPLEX})")
    # Exactly, as a fraction: Decimal's 28 digits would let 0.333...3 (29 digits) "divide" 1.
    if (1 / Fraction(step)).denominator != 1:
        raise ValueError(f"Invalid mix step: {shown(value)} (a number in (0, 1] that divides 1, e.g. 0.25 or 0.1)")
    return step


def simplex_count(names: list[str], step: object) -> int:
    """How many mixes ``simplex(names, step)`` lists, from the arithmetic; ValueError for a bad grid."""
    unit = parse_step(step)
    if len(names) < 2 or len(set(names)) != len(names):
        raise ValueError(f"Invalid mix: {shown(','.join(map(str, names)))} (at least two components, each once)")
    check_components(",".join(names), dict.fromkeys(names, 1.0))
    count = math.comb(int(1 / unit) + len(names) - 1, len(names) - 1)
    if count > MAX_SIMPLEX:
        raise ValueError(f"Invalid mix: {len(names)} components at step {unit} make {count:,} mixes "
                         f"(at most {MAX_SIMPLEX:,})")
    return count


def join_mix_items(items: list[str]) -> list[str]:
    """A comma-split list with its mixes whole again: ``[mix:adam=0.5, sgd=0.5, radam]`` -> two items.

    An item with ``=`` that follows a mix continues it (no optimizer's name holds ``=``).
    """
    out: list[str] = []
    for item in items:
        if out and is_mix(out[-1]) and "=" in item and not is_mix(item):
            out[-1] += "," + item
        else:
            out.append(item)
    return out


def simplex(names: list[str], step: object) -> list[dict[str, float]]:
    """The weights of ``names`` that are multiples of ``step`` and sum to 1, each exact, in a fixed order.

    >>> simplex(["adam", "sgd"], 0.5)
    [{'adam': 0.0, 'sgd': 1.0}, {'adam': 0.5, 'sgd': 0.5}, {'adam': 1.0, 'sgd': 0.0}]
    """
    simplex_count(names, step)
    unit = parse_step(step)
    parts, k = int(1 / unit), len(names)
    points = []
    # Stars and bars: k - 1 bars among parts + k - 1 places, in lexicographic order of the counts reversed.
    for bars in combinations(range(parts + k - 1), k - 1):
        edges = (-1, *bars, parts + k - 1)
        counts = [edges[i + 1] - edges[i] - 1 for i in range(k)]
        points.append({name: float(unit * n) for name, n in zip(names, counts)})
    return sorted(points, key=lambda point: [point[n] for n in names])
