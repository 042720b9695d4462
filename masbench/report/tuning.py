"""``report --tuned`` and ``plot --kind tuning``: a tune's trials (``Store.trials_frame``) as a table per optimizer
and as tuning curves. Pure functions on the frame; no I/O.

The frame has one row per trial: ``tune, optimizer, phase ('search' | 'final'), number, params (dict), run_key,
run_id, status, seed, best_val_acc, test_acc`` (at the epoch of best validation accuracy, the earliest of ties),
``best_test_acc, epochs``; accuracies are fractions, as the store records them, and percent here.

- A search trial's score is its best validation accuracy. It is *scored* once it has one and is done
  (completed, pruned or diverged): those are the trials of the tuning curve. The chosen trial is the tune's
  own (``masbench.report.choice.choose``): the completed trial with the best score, ties to the earliest trial
  number; the test set takes no part in it.
- The curve is exact for trials that do not depend on one another (quasi-random ones). With ``--prune`` a pruned
  trial counts with the validation accuracy it had reached when stopped, and since a stop is decided against
  the trials before it, the curve is then an approximation.
- The final runs (the chosen trial on fresh seeds) give the table's test accuracy: mean, ``ci95_half`` (the half-width
  of the 95% t-interval of the mean, t s / sqrt(n), as in ``report --table``; NaN under 3 seeds) and n.
- Significance: each optimizer against the best other one (highest mean final test accuracy), a two-sided
  t-test paired by seed (Welch where the seeds differ: ``significance.one_sided_p``), Holm over the distinct
  pairs the table tests.

>>> expected_max([0.1, 0.2, 0.3], 2)  # (0.2 + 0.3 + 0.3) / 3
0.26666666666666666
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from masbench.errors import MasbenchError
from masbench.report.aggregate import BASELINE_ORDER, LABELS, ci95_half_widths
from masbench.report.multiple import holm
from masbench.report.significance import ALPHA, one_sided_p

SCORED = ("completed", "pruned", "diverged")  # a search trial done with a validation accuracy counts as tried
TUNED_COLUMNS = ["optimizer", "label", "budget", "trials", "pruned", "failed", "search_epochs", "chosen", "params",
                 "val_acc", "final_planned", "n", "test_acc", "std", "ci95_half", "seeds", "accs", "vs", "diff", "p",
                 "p_holm", "significant", "test", "note"]


def expected_max(values: Sequence[float], k: int) -> float:
    """The expected best of ``k`` trials drawn without replacement, in uniformly random order, from ``values``.

    With v_(1) <= ... <= v_(N) sorted ascending, the best of a random k-subset is v_(i) exactly when the subset
    holds i and k - 1 of the i - 1 below it (ties are no exception: a tied value is the same number whichever
    copy is the maximum), so

        E[max of k] = sum_{i=k}^{N} v_(i) C(i-1, k-1) / C(N, k).

    Dodge et al. (EMNLP 2019, "Show your work") give the expected maximum for k draws *with* replacement from
    the N observed trials, sum_i v_(i) [(i/N)^k - ((i-1)/N)^k]. Dodge et al. (Findings of EMNLP 2021,
    "Expected validation performance and estimation of a random variable's maximum") study its bias and compare
    it with this unbiased estimator (a U-statistic over the k-subsets of the trials), which is the one used
    here: the mean over every order of the N trials actually run, k = 1 the mean and k = N the maximum (the
    with-replacement form never reaches the maximum). The weights are ratios of exact integers (``math.comb``),
    each rounded once.

    >>> expected_max([3.0, 1.0, 2.0], 1), expected_max([3.0, 1.0, 2.0], 3)
    (2.0, 3.0)
    """
    ordered = sorted(float(v) for v in values)
    n = len(ordered)
    if not 1 <= k <= n:
        raise ValueError(f"Invalid k: {k} (valid: 1 to the number of trials, {n})")
    if any(math.isnan(v) for v in ordered):
        raise ValueError("Invalid values: NaN (a trial without a score is no trial of the curve)")
    total = math.comb(n, k)
    return math.fsum(v * (math.comb(i - 1, k - 1) / total) for i, v in enumerate(ordered, start=1) if i >= k)


def tuning_curve(values: Sequence[float]) -> list[float]:
    """``expected_max(values, k)`` for k = 1..N."""
    return [expected_max(values, k) for k in range(1, len(values) + 1)]


def search_trials(frame: pd.DataFrame, optimizer: str) -> pd.DataFrame:
    rows = frame[(frame["optimizer"] == optimizer) & (frame["phase"] == "search")]
    return rows.sort_values("number", kind="stable")


def scored(trials: pd.DataFrame) -> pd.DataFrame:
    """The trials of the tuning curve: done (``SCORED``), with a validation accuracy."""
    return trials[trials["status"].isin(SCORED) & trials["best_val_acc"].notna()]


def optimizers(frame: pd.DataFrame) -> list[str]:
    """The frame's optimizer labels, baselines first (Adam, SGD, AdamW, MAS), then by name."""
    return sorted(frame["optimizer"].unique(), key=lambda o: (BASELINE_ORDER.get(o, 9), o))


def label(optimizer: str) -> str:
    return LABELS.get(optimizer, optimizer)


def tuned_table(frame: pd.DataFrame, budgets: Mapping[str, int] | int | None = None,
                alpha: float = ALPHA) -> pd.DataFrame:
    """One row per optimizer (``TUNED_COLUMNS``).

    ``budget``: the trials planned (``budgets``, one number for all or per optimizer, else the search trials
    in the frame); ``trials``: search trials done (completed, pruned, diverged or failed); ``pruned``,
    ``failed`` (failed or diverged); ``search_epochs``: the epochs its search trials trained (with ``--prune``,
    the budget that counts); ``chosen``: the chosen trial's number, its ``params`` and ``val_acc``;
    ``n`` of ``final_planned`` final runs completed, their ``seeds`` and ``accs`` (test accuracy at the epoch
    of best validation accuracy), ``test_acc`` (mean), ``std``, ``ci95_half`` (half-width; NaN under 3 seeds); ``vs``: the best other
    optimizer, ``diff`` (this minus that, points), ``p`` (two-sided), ``p_holm``, ``significant`` (p_holm
    below ``alpha``), ``test`` (paired or Welch); ``note``: why a number is missing.
    """
    from masbench.report.choice import choose

    choices = choose(frame)
    rows = []
    for optimizer in optimizers(frame):
        trials = search_trials(frame, optimizer)
        chosen = choices.get(optimizer)
        finals = frame[(frame["optimizer"] == optimizer) & (frame["phase"] == "final")]
        done = finals[finals["status"] == "completed"].sort_values("seed")
        seeds = tuple(int(s) for s in done["seed"])
        accs = tuple(float(a) * 100 for a in done["test_acc"])
        budget = budgets.get(optimizer) if isinstance(budgets, Mapping) else budgets
        note = ("no completed search trial" if chosen is None
                else "no final seeds" if finals.empty
                else "no completed final seed" if not accs
                else f"{len(finals) - len(accs)} final seed(s) not completed" if len(accs) < len(finals) else "")
        rows.append({
            "optimizer": optimizer, "label": label(optimizer),
            "budget": int(budget) if budget is not None else len(trials),
            "trials": int(trials["status"].isin(("completed", "pruned", "diverged", "failed")).sum()),
            "pruned": int((trials["status"] == "pruned").sum()),
            "failed": int(trials["status"].isin(("failed", "diverged")).sum()),
            "search_epochs": int(pd.to_numeric(trials["epochs"]).fillna(0).sum()),
            "chosen": None if chosen is None else chosen.number,
            "params": {} if chosen is None else dict(chosen.params),
            "val_acc": math.nan if chosen is None else chosen.val_acc * 100,
            "final_planned": len(finals), "n": len(accs), "seeds": seeds, "accs": accs,
            "test_acc": sum(accs) / len(accs) if accs else math.nan,
            "std": pd.Series(accs, dtype=float).std() if len(accs) > 1 else math.nan,
            "note": note,
        })
    table = pd.DataFrame(rows, columns=[c for c in TUNED_COLUMNS if c not in ("ci95_half", "vs", "diff", "p", "p_holm",
                                                                              "significant", "test")])
    table["chosen"] = pd.Series([row["chosen"] for row in rows], dtype=object)  # a number or None, never 3.0
    table["ci95_half"] = ci95_half_widths(table["std"], table["n"])
    return _with_significance(table, alpha)[TUNED_COLUMNS]


def _with_significance(table: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """Each row against the optimizer with the best mean test accuracy among the others; Holm over the pairs."""
    table = table.copy()
    table["vs"], table["test"] = "", ""
    table["diff"], table["p"], table["p_holm"] = math.nan, math.nan, math.nan
    table["significant"] = False
    ranked = table[table["n"] > 0].sort_values("test_acc", ascending=False, kind="stable")
    pairs: dict[frozenset, tuple[float, str | None]] = {}
    for index, row in table.iterrows():
        others = ranked[ranked["optimizer"] != row["optimizer"]]
        if row["n"] == 0 or others.empty:
            continue
        best = others.iloc[0]
        pair = frozenset((row["optimizer"], best["optimizer"]))
        if pair not in pairs:
            greater, test = one_sided_p(dict(zip(row["seeds"], row["accs"])), dict(zip(best["seeds"], best["accs"])))
            # t is symmetric: the two-sided p from the one-sided (NaN stays NaN: min(1.0, nan) would be 1.0)
            pairs[pair] = (greater if math.isnan(greater) else min(1.0, 2 * min(greater, 1 - greater)), test)
        table.at[index, "vs"] = best["optimizer"]
        table.at[index, "diff"] = row["test_acc"] - best["test_acc"]
        table.at[index, "p"], table.at[index, "test"] = pairs[pair][0], pairs[pair][1] or ""
        if math.isnan(pairs[pair][0]) and not row["note"]:
            table.at[index, "note"] = ("not tested: under 2 seeds" if min(row["n"], best["n"]) < 2
                                       else "not tested: the differences have no variance")
    tested = [pair for pair, (p, _) in pairs.items() if not math.isnan(p)]
    adjusted = dict(zip(tested, holm([pairs[pair][0] for pair in tested])))
    for index, row in table.iterrows():
        pair = frozenset((row["optimizer"], row["vs"]))
        if row["vs"] and pair in adjusted:
            table.at[index, "p_holm"] = adjusted[pair]
            table.at[index, "significant"] = adjusted[pair] < alpha
    table.attrs["tests"] = len(tested)  # the family's size, which the legend states
    return table


def shown_params(params: Mapping[str, Any]) -> str:
    """``lr=0.0316, lambda_adam=0.3, momentum=0.9``: lr first, then the others by name; 3 significant digits."""
    ordered = sorted(params.items(), key=lambda item: (item[0] != "lr", item[0]))
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in ordered)


def tuned_legend(table: pd.DataFrame, alpha: float = ALPHA) -> str:
    m = table.attrs.get("tests", 0)
    return (f"chosen: the completed search trial with the best validation accuracy (ties: the earliest); test acc: "
            f"the final seeds' test accuracy at their best validation epoch, mean, ±CI95 = half-width of "
            f"the 95% t-interval (n<3: too few seeds to inform), n seeds; * differs from the best other optimizer: "
            f"two-sided t-test paired by seed (Welch where the seeds differ), p < {alpha:g} after Holm over {m} "
            f"pair(s)")


def curves(frame: pd.DataFrame) -> dict[str, list[float]]:
    """Per optimizer, the expected best validation accuracy (percent) after k = 1..N of its scored trials."""
    out = {}
    for optimizer in optimizers(frame):
        values = scored(search_trials(frame, optimizer))["best_val_acc"] * 100
        if len(values):
            out[optimizer] = tuning_curve(list(values))
    return out


def pick_tune(tunes: pd.DataFrame, wanted: str | None, where: str) -> pd.Series:
    """The tune to report (``tunes``: ``Store.tunes_frame()``): the one ``wanted`` names (its name, or the start
    of its key), else the only one.

    Several tunes and no ``--tune`` is refused, listing them: a report that silently took the latest could
    show another tune than the one meant. Tunes that share a name (other settings) are told by key. ``where``:
    the store, for the messages.
    """
    if tunes.empty:
        raise MasbenchError(f"no tune in {where} (run masbench tune first)")
    tunes = tunes.sort_values("id")
    if wanted is None:
        if len(tunes) > 1:
            raise MasbenchError(f"{len(tunes)} tunes in {where}: {tune_names(tunes)} (give --tune NAME)")
        return tunes.iloc[0]
    found = tunes[(tunes["name"] == wanted) | tunes["key"].str.startswith(wanted)]
    if found.empty:
        raise MasbenchError(f"Invalid --tune: {wanted!r} (the store has: {tune_names(tunes)})")
    if len(found) > 1:
        raise MasbenchError(f"{len(found)} tunes match --tune {wanted!r}: {tune_names(found, keys=True)} "
                            f"(give the start of a key)")
    return found.iloc[0]


def tune_names(tunes: pd.DataFrame, keys: bool = False) -> str:
    """``quick, nightly``; a name that several tunes share (or all, with ``keys``) followed by its key's start."""
    shared = tunes["name"].duplicated(keep=False) | keys
    return ", ".join(f"{name} ({key[:8]})" if twice else name
                     for name, key, twice in zip(tunes["name"], tunes["key"], shared))


def budgets_of(settings: Mapping[str, Any] | None) -> int | None:
    """The trials planned per optimizer, from a tune's settings (``budget``), if recorded."""
    budget = (settings or {}).get("budget")
    return int(budget) if budget is not None else None
