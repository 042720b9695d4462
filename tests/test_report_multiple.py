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
    from report_fixtures import fill

    from masbench.store import Store

    url = f"sqlite:///{tmp_path / 'r.db'}"
    fill(Store(url))
    return url


def raw_p_values():
    """digits/mlp of report_fixtures.RUNS, best accuracy, against adam: paired where the seeds match, else Welch."""
    from report_fixtures import RUNS

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


# --- report --table --significance ------------------------------------------------------------------------------

# One epoch per run, so a run's accuracy is that epoch's. mlp: adam is the best baseline; mas 0.3 beats it on every
# seed (paired), mas 0.7 holds other seeds (Welch). cnn: sgd is the best baseline, and mas 0.5 is below it.
SIG_RUNS = {
    ("adam", None, "mlp"): {0: [0.80], 1: [0.82], 2: [0.79], 3: [0.81]},
    ("sgd", None, "mlp"): {0: [0.70], 1: [0.72], 2: [0.69], 3: [0.71]},
    ("mas", 0.3, "mlp"): {0: [0.85], 1: [0.88], 2: [0.84], 3: [0.86]},
    ("mas", 0.7, "mlp"): {0: [0.81], 1: [0.84], 2: [0.80]},
    ("adam", None, "cnn"): {0: [0.60], 1: [0.61], 2: [0.59]},
    ("sgd", None, "cnn"): {0: [0.66], 1: [0.64], 2: [0.65]},
    ("mas", 0.5, "cnn"): {0: [0.63], 1: [0.65], 2: [0.62]},
}


def _one_sided_by_hand(mas, base):
    """p for H1 mean(mas) > mean(base), from the t statistic written out (paired when the seeds match, else Welch)."""
    import statistics

    if set(mas) == set(base):
        d = [mas[s] - base[s] for s in mas]
        t = statistics.mean(d) / (statistics.stdev(d) / math.sqrt(len(d)))
        return stats.t.sf(t, len(d) - 1)
    a, b = list(mas.values()), list(base.values())
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    t = (statistics.mean(a) - statistics.mean(b)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return stats.t.sf(t, df)


@pytest.fixture
def sig_db(tmp_path):
    from report_fixtures import fill

    from masbench.store import Store

    url = f"sqlite:///{tmp_path / 's.db'}"
    fill(Store(url), SIG_RUNS)
    return url


def test_significance_matches_a_computation_by_hand(sig_db):
    import csv
    import io

    result = runner.invoke(app, ["report", "--table", "--significance", "--format", "csv", "--db", sig_db])
    assert result.exit_code == 0, result.output
    rows = {(r["model"], r["name"]): r for r in csv.DictReader(io.StringIO(result.stdout))}

    def accs(key):
        return {s: 100 * a[0] for s, a in SIG_RUNS[key].items()}

    tests = {("mlp", 0.3): ("adam", None, "mlp"), ("mlp", 0.7): ("adam", None, "mlp"), ("cnn", 0.5): ("sgd", None, "cnn")}
    raw = {k: _one_sided_by_hand(accs(("mas", k[1], k[0])), accs(base)) for k, base in tests.items()}
    order = sorted(raw, key=raw.get)
    adjusted, running = {}, 0.0
    for rank, key in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * raw[key]))
        adjusted[key] = running
    for (model, lam), base in tests.items():
        row = next(r for (m, name), r in rows.items() if m == model and f"lambda_adam={lam}," in name)
        assert row["vs_baseline"].startswith(base[0] + "[")
        assert float(row["p_vs_baseline"]) == pytest.approx(raw[(model, lam)], rel=1e-6)
        assert float(row["p_holm"]) == pytest.approx(adjusted[(model, lam)], rel=1e-6)
        assert (row["beats_baseline"] == "True") == (adjusted[(model, lam)] < 0.05)
        assert int(row["significance_tests"]) == 3
    assert adjusted[("mlp", 0.3)] < 0.05 and adjusted[("cnn", 0.5)] > 0.05  # the table marks one and not the other


@pytest.mark.parametrize("fmt, mark, best", [("markdown", "\\*", "**85.75**"), ("rich", "*", "85.75"),
                                             ("latex", "$^*$", r"\textbf{85.75}")])
def test_significance_marks_and_legend_in_each_format(sig_db, fmt, mark, best):
    result = runner.invoke(app, ["report", "--significance", "--format", fmt, "--db", sig_db])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert best + mark in out  # mlp's MAS 0.3: mean 85.75, beats adam on every seed
    assert "81.67" + mark not in out and "63.33" + mark not in out  # the Welch cell and cnn's MAS: not marked
    assert out.count(mark) == 2  # the one mark and the legend's
    assert "over 3 MAS cell(s)" in " ".join(out.split())


def test_cells_without_variance_or_seeds_are_not_tested_nor_counted():
    import warnings

    import pandas as pd

    from masbench.report.significance import with_significance

    def cell(model, optimizer, accs):
        return dict(benchmark="", dataset="d", model=model, optimizer=optimizer, name=f"{optimizer}-{model}",
                    seeds=tuple(range(len(accs))), accs=tuple(accs),
                    avg_acc=sum(accs) / len(accs) if accs else float("nan"))

    cells = pd.DataFrame([
        cell("a", "adam", [80.0, 81.0]), cell("a", "mas", [81.0, 82.0]),  # a constant +1 on each seed: no variance
        cell("b", "adam", [70.0, 71.0, 69.0]), cell("b", "mas", [75.0]),  # one seed: no test
        cell("c", "sgd", [60.0, 61.0, 62.0]), cell("c", "mas", [66.0, 64.0, 65.0]),  # paired, testable
    ])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no scipy warning reaches the user
        marked, m = with_significance(cells)
    assert m == 1
    tested = marked[marked["p_holm"].notna()]
    assert list(tested["model"]) == ["c"]
    d = [6.0, 3.0, 3.0]
    t = statistics_t(d)
    assert tested["p_holm"].iloc[0] == pytest.approx(stats.t.sf(t, 2))  # m = 1: Holm leaves p as it is
    assert not marked.loc[marked["model"] != "c", "beats_baseline"].any()


def statistics_t(d):
    import statistics

    return statistics.mean(d) / (statistics.stdev(d) / math.sqrt(len(d)))


def test_significance_with_a_leaderboard_is_one_line(sig_db):
    result = runner.invoke(app, ["report", "--leaderboard", "--significance", "--db", sig_db])
    assert result.exit_code == 1 and "--significance goes with --table" in result.output, result.output


def test_significance_json_agrees_with_csv(sig_db):
    import csv
    import io
    import json

    rows = {}
    for fmt in ("csv", "json"):
        result = runner.invoke(app, ["report", "--significance", "--format", fmt, "--db", sig_db])
        assert result.exit_code == 0, result.output
        records = json.loads(result.stdout) if fmt == "json" else list(csv.DictReader(io.StringIO(result.stdout)))
        rows[fmt] = {r["config_key"]: r for r in records}
    assert rows["csv"].keys() == rows["json"].keys()
    for key, row in rows["json"].items():
        text = rows["csv"][key]["p_holm"]
        assert (row["p_holm"] is None) == (text == "")
        if text:
            assert row["p_holm"] == pytest.approx(float(text)) and row["beats_baseline"] == (text and float(text) < 0.05)


def test_one_example_apart_on_every_seed_is_no_variance_in_compare_and_significance():
    """Accuracies n_correct / 359 * 100, one example apart on every seed: the differences are one number that
    floating point rounds two ways (they are not ==). A t-test of that rounding noise read p = 2.9e-28."""
    import pandas as pd

    from masbench.report.compare import Side, _difference
    from masbench.report.significance import with_significance

    mas = {1: 354 / 359 * 100, 2: 354 / 359 * 100, 3: 353 / 359 * 100}
    sgd = {1: 353 / 359 * 100, 2: 353 / 359 * 100, 3: 352 / 359 * 100}
    assert len({mas[s] - sgd[s] for s in mas}) == 2  # the rounding this is about
    difference = _difference(Side("SGD", "sgd", sgd), Side("MAS", "mas", mas))
    assert math.isnan(difference.p_value) and "differ by exactly +0.28 points on every seed" in difference.verdict
    assert difference.low == difference.high == pytest.approx(100 / 359)
    cells = pd.DataFrame([dict(benchmark="", dataset="d", model="m", optimizer=o, name=o, seeds=tuple(accs),
                               accs=tuple(accs.values()), avg_acc=sum(accs.values()) / 3)
                          for o, accs in (("sgd", sgd), ("mas", mas))])
    marked, m = with_significance(cells)
    assert m == 0 and not marked["beats_baseline"].any()
