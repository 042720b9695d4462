"""``report --table --significance``: which MAS cells beat the best baseline of their model, significantly.

For each MAS cell, the best baseline is the non-MAS cell of its (benchmark, data set, model) with the
highest avg acc. The test is one-sided (H1: MAS's mean accuracy is higher): a paired t-test over seeds
when both cells hold the same seeds (two or more), else Welch's t-test (two seeds or more on each side).
The p-values of every MAS cell tested in the report are corrected together with Holm-Bonferroni, and a
cell is marked when its adjusted p is below ``alpha``. A cell that cannot be tested (too few seeds, no
baseline, or no variance at all) is not marked and does not count in the family.
"""

from __future__ import annotations

import math
import warnings

import pandas as pd

from masbench.report.aggregate import TABLE
from masbench.report.multiple import holm

ALPHA = 0.05
# Accuracies (percent) that differ by less than this are one number: n_correct / n * 100 computed twice rounds
# differently in the last bit, and a t statistic of such noise would be astronomically large.
SAME = 1e-9
SIGNIFICANCE_COLUMNS = ["vs_baseline", "p_vs_baseline", "p_holm", "beats_baseline", "significance_tests"]


def one_sided_p(mas: dict[int, float], baseline: dict[int, float]) -> tuple[float, str | None]:
    """(p, test) for H1: mean of ``mas`` > mean of ``baseline`` (seed -> accuracy); (NaN, None) when untestable."""
    from scipy import stats

    if set(mas) == set(baseline) and len(mas) >= 2:
        seeds = sorted(mas)
        if constant([mas[s] - baseline[s] for s in seeds]):  # no variance: t is undefined (or rounding noise)
            return math.nan, None
        result = stats.ttest_rel([mas[s] for s in seeds], [baseline[s] for s in seeds], alternative="greater")
        return float(result.pvalue), "paired"
    if len(mas) >= 2 and len(baseline) >= 2:
        if constant(list(mas.values())) and constant(list(baseline.values())):
            return math.nan, None
        with warnings.catch_warnings():
            # One side without variance is exact (its variance is 0.0); scipy warns of a precision loss anyway.
            warnings.filterwarnings("ignore", "Precision loss occurred", RuntimeWarning)
            result = stats.ttest_ind(list(mas.values()), list(baseline.values()), equal_var=False,
                                     alternative="greater")
        return float(result.pvalue), "Welch"
    return math.nan, None


def constant(values: list[float]) -> bool:
    """Whether ``values`` (percent points) are one number, up to ``SAME``: a sample without variance.

    >>> constant([98.60724233983287 - 98.32869080779945, 98.32869080779945 - 98.05013927576601])  # 1 of 359, twice
    True
    """
    return max(values) - min(values) <= SAME


def with_significance(cells: pd.DataFrame, alpha: float = ALPHA) -> tuple[pd.DataFrame, int]:
    """``cells`` with ``SIGNIFICANCE_COLUMNS`` (MAS cells only; NaN/empty elsewhere) and the family size m."""
    cells = cells.copy()
    cells["vs_baseline"], cells["p_vs_baseline"], cells["p_holm"] = "", math.nan, math.nan
    cells["beats_baseline"] = False
    tested = []
    for _, group in cells.groupby(TABLE, sort=False):
        baselines = group[(group["optimizer"] != "mas") & group["avg_acc"].notna()]
        if baselines.empty:
            continue
        best = baselines.loc[baselines["avg_acc"].idxmax()]
        reference = dict(zip(best["seeds"], best["accs"]))
        for index, row in group[group["optimizer"] == "mas"].iterrows():
            p, _ = one_sided_p(dict(zip(row["seeds"], row["accs"])), reference)
            cells.at[index, "vs_baseline"] = best["name"]
            cells.at[index, "p_vs_baseline"] = p
            if not math.isnan(p):
                tested.append(index)
    adjusted = holm([cells.at[i, "p_vs_baseline"] for i in tested])
    for index, p in zip(tested, adjusted):
        cells.at[index, "p_holm"] = p
        cells.at[index, "beats_baseline"] = p < alpha
    cells["significance_tests"] = len(tested)  # the family's size, which the legend states
    return cells, len(tested)


def has_significance(cells: pd.DataFrame) -> bool:
    return "beats_baseline" in cells


def mark(row) -> str:
    return "*" if row.get("beats_baseline") else ""


def legend(frame: pd.DataFrame, alpha: float = ALPHA) -> str:
    m = int(frame["significance_tests"].iloc[0])
    return (f"* MAS beats the best baseline of its model: one-sided t-test, paired by seed where the seeds "
            f"match (else Welch), p < {alpha:g} after Holm–Bonferroni over {m} MAS cell(s)")
