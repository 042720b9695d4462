"""Thresholds are exact (issue 21): a stored accuracy k/N against a threshold typed in decimal, at every boundary.

Each test walks every k/1000 and k/10000 (k from 0 to N): a target, a drop or a width typed with the exact
decimal digits of the boundary must count as reached (met, allowed), one example past it must not.
"""

from __future__ import annotations

import random
from decimal import Decimal
from fractions import Fraction

import pandas as pd
import pytest

from masbench.grid.seed_budget import ci95_half_width, seeds_wanted, width_met
from masbench.report.gate import gate_drop, is_regression
from masbench.report.target import run_times
from masbench.text import numbers

SIZES = [1000, 10000]


def typed_percent(k: int, n: int) -> str:
    """k/n as a percent, with exactly its decimal digits, as a user would type it: 566/1000 -> '56.6'."""
    text = format((Decimal(k) * 100 / Decimal(n)).normalize(), "f")
    return text


@pytest.mark.parametrize("n", SIZES)
def test_every_accuracy_reaches_a_target_typed_as_itself_and_one_example_less_does_not(n):
    """--target (report's time to target and the performance profile: both read ``run_times``)."""
    ks = range(1, n + 1)  # a target is in (0, 100]
    targets = {f"c{k}": float(typed_percent(k, n)) for k in ks}  # what typer and YAML hand over
    rows = [dict(run_id=2 * k + below, config_key=f"c{k}", seed=below, status="completed", epoch=1,
                 test_acc=(k - below) / n, seconds=1.0) for k in ks for below in (0, 1)]
    times = run_times(pd.DataFrame(rows), targets).set_index("run_id")
    at = times.loc[[2 * k for k in ks], "reached"]
    under = times.loc[[2 * k + 1 for k in ks], "reached"]
    assert at.all(), [typed_percent(k, n) for k in ks if not at[2 * k]][:10]
    assert not under.any(), [typed_percent(k, n) for k in ks if under[2 * k + 1]][:10]


def test_the_issue_case_566_of_1000_reaches_56_6():
    assert 56.6 / 100 != 0.566  # the double rounding that lost it
    assert numbers.reaches([0.566], 56.6).tolist() == [True]
    assert numbers.reaches([0.566], "56.6").tolist() == [True]
    assert numbers.reaches([0.565, float("nan")], 56.6).tolist() == [False, False]


@pytest.mark.parametrize("n", SIZES)
def test_a_drop_equal_to_the_typed_tolerance_is_allowed_and_one_example_more_is_not(n):
    """The gate (compare --baseline FILE --tolerance T): the baseline's accuracies as its file writes them."""
    for k in range(0, n + 1):
        tolerance = numbers.number(typed_percent(k, n))  # --tolerance's parser
        assert not _regressed(1.0, (n - k) / n, tolerance), k
        assert not _regressed(k / n, 0.0, tolerance), k
        if k < n:
            assert _regressed(1.0, (n - k - 1) / n, tolerance), k


def _regressed(base: float, current: float, tolerance: float) -> bool:
    """The gate's verdict on one seed: ``base`` and ``current`` stored accuracies (k/N), the baseline through
    its file (report --format csv writes it, the gate reads it back), the current one from the store."""
    from masbench.report.gate import _check_cell

    written = numbers.number(numbers.acc_text(base * 100.0))
    cell = dict(dataset="digits", model="mlp", shown="adam", config_key="k", avg_acc=written, seeds=(0,),
                accs=(written,))
    return _check_cell(cell, dict(n=1, seeds=(0,), accs=(current * 100.0,)), floor=tolerance, alpha=0.01).regressed


def test_the_drop_is_exact_where_doubles_are_not():
    assert 0.566 * 100 - 0.556 * 100 != 1.0  # 0.9999999999999858
    drop = gate_drop((0.566 * 100,), (0.556 * 100,))
    assert drop == 1 and not is_regression(drop, 1.0, 0.0)
    assert gate_drop((55.555556,), (200 / 360 * 100,)) == 0  # a baseline from the same store: no drop


def test_one_example_of_ten_million_past_the_tolerance_is_a_regression():
    """At the baseline's resolution (6 decimals of a percent), not 4: one example of 10^7 is 1e-5 points."""
    assert _regressed(1.0, (10**7 - 10**5 - 1) / 10**7, 1.0)
    assert not _regressed(1.0, (10**7 - 10**5) / 10**7, 1.0)


@pytest.mark.parametrize("n", SIZES)
def test_a_width_typed_as_printed_meets_until_ci_and_a_narrower_bound_does_not(n):
    """--until-ci: two seeds k/N apart (width = t_{0.975,1} |a1 - a2|), the width typed back as printed."""
    for k in range(1, n + 1):
        accs = [50.0, (n // 2 + k) / n * 100]  # stored k/N, in percent as the report reads it
        width = ci95_half_width(accs)
        for printed in (repr(width), f"{width:.10g}"):
            bound = numbers.number(printed)
            assert width_met(width, bound), (k, printed)
            assert seeds_wanted(accs, 2, bound, 10) == 2, (k, printed)
        narrower = numbers.number(f"{width * (1 - 1e-8):.17g}")
        assert not width_met(width, narrower), k
        assert seeds_wanted(accs, 2, narrower, 10) > 2, k


def test_no_interval_meets_nothing():
    assert not width_met(float("nan"), 1.0)


def test_a_stored_accuracy_names_its_fraction_for_any_test_set_up_to_ten_million():
    rng = random.Random(0)
    for _ in range(20000):
        n = rng.randint(1, numbers.MAX_EXAMPLES)
        k = rng.randint(0, n)
        assert numbers.examples(k / n) == Fraction(k, n)
        assert numbers.examples(k / n * 100, 100) == Fraction(k, n)


@pytest.mark.parametrize("typed, value", [("56.6", Fraction(283, 5)), (56.6, Fraction(283, 5)), ("0.30", Fraction(3, 10)),
                                          (Decimal("1e-3"), Fraction(1, 1000)), (3, Fraction(3))])
def test_a_typed_number_is_taken_exactly(typed, value):
    assert numbers.exact(typed) == value
