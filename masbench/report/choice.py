"""The choice of a tune, on validation data only, and the final seeds' test accuracy.

A search trial's score is its run's best validation accuracy over its epochs (``best_val_acc``, from
``Store.trials_frame``). Per optimizer label the chosen trial is the completed one with the highest score;
ties go to the earliest trial number. Runs not completed (pending, failed, diverged, pruned) are never
chosen. No test accuracy is read here until the final runs report: ``choose`` looks at ``best_val_acc`` alone.
A final run's test accuracy is ``test_acc``: its test accuracy at its epoch of best validation accuracy
(the earliest such epoch), so that the final runs are read as the choice was made.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Choice:
    """The chosen search trial of one optimizer label."""

    optimizer: str
    number: int
    params: dict[str, Any]
    val_acc: float  # its run's best validation accuracy (a fraction, as stored)
    run_key: str


def choose(trials) -> dict[str, Choice]:
    """Per optimizer label of ``trials`` (``Store.trials_frame``'s frame, or any frame with its columns
    optimizer, phase, number, params, run_key, status, best_val_acc), the chosen search trial; a label with no
    completed trial with a validation accuracy has none.

    >>> import pandas as pd
    >>> frame = pd.DataFrame(dict(optimizer=["sgd"] * 3, phase="search", number=[0, 1, 2], run_key=["a", "b", "c"],
    ...                           params=[{"lr": 0.1}, {"lr": 0.01}, {"lr": 1.0}], status="completed",
    ...                           best_val_acc=[0.9, 0.95, 0.95]))
    >>> choose(frame)["sgd"].params
    {'lr': 0.01}
    """
    chosen: dict[str, Choice] = {}
    for row in trials.itertuples(index=False):
        if row.phase != "search" or row.status != "completed" or not _is_number(row.best_val_acc):
            continue
        best = chosen.get(row.optimizer)
        score = float(row.best_val_acc)
        if best is None or score > best.val_acc or (score == best.val_acc and row.number < best.number):
            chosen[row.optimizer] = Choice(row.optimizer, int(row.number), dict(row.params), score, row.run_key)
    return chosen


@dataclass(frozen=True)
class FinalScore:
    """The final runs of one optimizer label: their test accuracies (at each run's best validation epoch), by seed."""

    optimizer: str
    test_accs: dict[int, float]
    planned: int

    @property
    def mean(self) -> float | None:
        return sum(self.test_accs.values()) / len(self.test_accs) if self.test_accs else None


def final_scores(trials) -> dict[str, FinalScore]:
    """Per optimizer label, its final trials' test accuracies (completed runs only), from ``trials_frame``."""
    out: dict[str, FinalScore] = {}
    for row in trials.itertuples(index=False):
        if row.phase != "final":
            continue
        score = out.setdefault(row.optimizer, FinalScore(row.optimizer, {}, 0))
        accs = dict(score.test_accs)
        if row.status == "completed" and _is_number(row.test_acc):
            accs[int(row.number)] = float(row.test_acc)
        out[row.optimizer] = FinalScore(row.optimizer, accs, score.planned + 1)
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)
