"""Holm–Bonferroni in ``compare``: adjusted p-values against Holm's step-down procedure, run by hand."""

from __future__ import annotations

import math
import re

import pytest
from scipy import stats
from typer.testing import CliRunner

from masbench.cli import app
from masbench.report.multiple import holm

runner = CliRunner()


def step_down_rejects(p_values, alpha):
    """Holm's procedure as he states it: test the sorted p-values against alpha/m, alpha/(m-1), ...; stop at the
    first that fails. Returns the indices rejected."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    rejected = set()
    for k, i in enumerate(order):
        if p_values[i] > alpha / (len(p_values) - k):
            break
        rejected.add(i)
    return rejected


@pytest.mark.parametrize("p_values", [
    [0.01, 0.04, 0.03], [0.001, 0.2, 0.011, 0.04, 0.5], [0.3, 0.3, 0.3], [0.02], [0.9, 0.0001, 0.012, 0.0125],
])
def test_adjusted_p_values_reject_exactly_what_the_step_down_rejects(p_values):
    adjusted = holm(p_values)
    for alpha in (0.001, 0.01, 0.025, 0.04, 0.05, 0.1, 0.5, 1.0):
        assert {i for i, a in enumerate(adjusted) if a <= alpha + 1e-12} == step_down_rejects(p_values, alpha)
    assert all(p <= a <= 1 for p, a in zip(p_values, adjusted))


def test_nan_is_left_out_of_the_family():
    adjusted = holm([0.01, math.nan, 0.02])
    assert math.isnan(adjusted[1])
    assert adjusted[0] == pytest.approx(0.02) and adjusted[2] == pytest.approx(0.02)  # m = 2, not 3


@pytest.fixture
def db(tmp_path):
    from test_report import fill

    from masbench.store import Store

    url = f"sqlite:///{tmp_path / 'r.db'}"
    fill(Store(url))
    return url


def raw_p_values():
    """digits/mlp of test_report.RUNS, best accuracy, against adam: paired where the seeds match, else Welch."""
    from test_report import RUNS

    def best(key):
        return {s: 100 * max(a) for s, a in RUNS[key].items() if isinstance(a, list)}

    adam = best(("adam", None, "mlp"))
    out = []
    for key in [("mas", 0.3, "mlp"), ("mas", 0.7, "mlp"), ("sgd", None, "mlp")]:
        other = best(key)
        if set(other) == set(adam):
            out.append(stats.ttest_rel([other[s] for s in sorted(adam)], [adam[s] for s in sorted(adam)]).pvalue)
        else:
            out.append(stats.ttest_ind(list(other.values()), list(adam.values()), equal_var=False).pvalue)
    return out


def test_compare_shows_raw_and_holm_adjusted_p(db):
    result = runner.invoke(app, ["compare", "adam", "mas:0.3", "mas:0.7", "sgd", "--model", "mlp", "--db", db])
    assert result.exit_code == 0, result.output
    assert "Holm–Bonferroni over 3 comparisons" in result.output
    raw = raw_p_values()
    m = len(raw)
    order = sorted(range(m), key=lambda i: raw[i])
    expected = [0.0] * m
    running = 0.0
    for k, i in enumerate(order):  # the textbook formula, written out again here
        running = max(running, min(1.0, (m - k) * raw[i]))
        expected[i] = running
    rows = [line for line in result.output.splitlines() if re.match(r"│ (mas:0\.3|mas:0\.7|sgd) ", line)]
    assert len(rows) == 3
    for line, p, adjusted in zip(rows, raw, expected):
        cells = [c.strip() for c in line.split("│")]
        assert float(cells[5]) == pytest.approx(p, rel=2e-3)
        assert float(cells[6]) == pytest.approx(adjusted, rel=2e-3)
    assert "Holm-adjusted over 3" in result.output


def test_one_comparison_is_not_corrected(db):
    result = runner.invoke(app, ["compare", "adam", "sgd", "--model", "mlp", "--db", db])
    assert result.exit_code == 0, result.output
    assert "Holm" not in result.output.split("p (Holm)")[-1]
