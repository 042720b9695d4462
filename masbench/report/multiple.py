"""Multiple comparisons: Holm's step-down correction of a family of p-values (Holm 1979).

With m p-values sorted ascending, p(1) <= ... <= p(m), the adjusted p-values are

    p~(i) = max_{j <= i} min(1, (m - j + 1) * p(j)),

and rejecting every hypothesis with p~ <= alpha is Holm's procedure at level alpha: it controls the
family-wise error rate, under any dependence between the tests, and never rejects less than Bonferroni.
NaN p-values (no test was possible) are left out of the family and stay NaN.

>>> holm([0.01, 0.04, 0.03])
[0.03, 0.06, 0.06]
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def holm(p_values: Sequence[float]) -> list[float]:
    """The Holm-adjusted p-values of ``p_values``, in their order (NaN stays NaN and is not counted in m)."""
    tested = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
    m = len(tested)
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (m - rank) * p))  # the max keeps the adjusted values monotone
        adjusted[i] = running
    return adjusted


def family_size(p_values: Sequence[float]) -> int:
    """How many p-values of ``p_values`` a correction counts: those of tests that were made (not NaN)."""
    return sum(not math.isnan(p) for p in p_values)
