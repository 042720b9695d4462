"""Adaptive seeds (``sweep --until-ci W [--max-seeds M]``): the interval, the rounds, and what they leave.

The sweeps train digits/mlp for one epoch: two cells (Adam, MAS 0.5), each with two initial seeds.
The CI95 the report shows is checked against one computed here from the epochs table with scipy's
own t-interval, not through masbench's code.
"""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

import pytest
from scipy import stats
from typer.testing import CliRunner

from masbench.cli import app
from masbench.grid.seed_budget import check_max_seeds, check_until_ci, ci95_half_width, seed_sequence, seeds_wanted
from reliability import finish, rows, sweep

runner = CliRunner()

BENCHMARKS = textwrap.dedent("""
    benchmarks:
      adaptive:
        dataset: digits
        models: [mlp]
        lambdas: "0.5"
        baselines: [adam]
        lr: 0.01
        batch_size: 64
        epochs: 1
        seeds: 2
        until_ci: 1.0e-9
        max_seeds: 4
""")


def t_width(accs: list[float]) -> float:
    """scipy's 95% t-interval of the mean, its half-width (the mean ± it)."""
    n = len(accs)
    mean, sem = sum(accs) / n, stats.sem(accs)
    low, high = stats.t.interval(0.95, n - 1, loc=mean, scale=sem)
    return (high - low) / 2


# --- the interval and the rule --------------------------------------------------------------------


@pytest.mark.parametrize("accs", [[90.0, 91.0], [90.0, 91.0, 95.5], [50.0, 60.0, 70.0, 80.0, 65.5, 71.0]])
def test_ci95_half_width_is_half_the_t_interval(accs):
    assert ci95_half_width(accs) == pytest.approx(t_width(accs), rel=1e-12)


@pytest.mark.parametrize("accs", [[], [90.0]])
def test_ci95_half_width_needs_two_runs(accs):
    assert math.isnan(ci95_half_width(accs))


@pytest.mark.parametrize(
    "accs, tried, until_ci, max_seeds, wanted",
    [
        ([90.0, 91.0], 2, 100.0, 10, 2),  # half-width 6.4 < 100: done
        ([90.0, 91.0], 2, 1.0, 2, 2),  # at its max seeds: done
        ([90.0, 91.0], 2, 1.0, 10, 4),  # needs many: at most doubles
        ([90.0, 90.0], 2, 1e-9, 10, 2),  # no spread at all: width 0 is within any W
        ([90.0], 2, 1.0, 10, 3),  # one diverged: one more seed for a second completed run
        ([], 2, 1.0, 10, 4),  # both failed: two more
        ([], 3, 1.0, 4, 4),  # never past max seeds
        ([90.0, 91.0, 90.5, 90.7], 4, 0.6, 10, 5),  # the spread says one more seed is enough (half-width 0.52 at 5)
    ],
)
def test_seeds_wanted(accs, tried, until_ci, max_seeds, wanted):
    assert seeds_wanted(accs, tried, until_ci, max_seeds) == wanted


def test_the_projection_of_the_last_case_above():
    accs = [90.0, 91.0, 90.5, 90.7]
    std = stats.tstd(accs)
    assert t_width(accs) >= 0.6  # the half-width, at 4 seeds
    assert stats.t.ppf(0.975, 4) * std / 5**0.5 < 0.6  # and at 5


def test_seed_sequence_continues_after_the_largest_initial_seed():
    assert seed_sequence([0, 1], 5) == [0, 1, 2, 3, 4]
    assert seed_sequence([10, 3], 4) == [10, 3, 11, 12]
    assert seed_sequence([0, 1, 2], 2) == [0, 1]


@pytest.mark.parametrize("value", [0, -1.0, math.nan, math.inf, True, "1"])
def test_until_ci_must_be_a_finite_positive_width(value):
    with pytest.raises(ValueError, match="Invalid until_ci"):
        check_until_ci(value)


@pytest.mark.parametrize("max_seeds, initial, message", [
    (1, [0, 1], "initial seeds"), (3, [0], "at least 2"), (2.5, [0, 1], "an integer"),
    (4, [2**31 - 2, 0], "largest seed"),
])
def test_max_seeds_is_checked(max_seeds, initial, message):
    with pytest.raises(ValueError, match=message):
        check_max_seeds(max_seeds, initial)


def test_a_later_seed_is_the_run_that_run_would_train():
    from masbench.grid.benchmarks import plan_sweep
    from masbench.spec import make_spec
    from masbench.sweep.adaptive import adaptive_cells

    _, cells = plan_sweep(dataset="digits", overrides=dict(models=["mlp"], baselines=["adam"], lambdas="0.5",
                                                           seeds=2, until_ci=1.0, max_seeds=5))
    group = adaptive_cells(cells)[0]
    group.tried = 5
    later = group.cells(2)
    assert [c.spec.seed for c in later] == [2, 3, 4]
    for cell in later:
        fresh = make_spec(**{**group.first.spec.model_dump(), "seed": cell.spec.seed})
        assert (cell.spec.key, cell.spec.config_key) == (fresh.key, fresh.config_key)


def test_the_cap_counts_max_seeds_up_front():
    result = runner.invoke(app, ["sweep", "--dataset", "digits", "--seeds", "2", "--until-ci", "1",
                                 "--max-seeds", "2000", "--max-cells", "1000", "--dry-run"])
    assert result.exit_code == 1
    assert "14,000 runs" in result.output and "2,000 seed(s) at most" in result.output


# --- sweeps ---------------------------------------------------------------------------------------


@pytest.fixture
def bench_file(tmp_path) -> Path:
    path = tmp_path / "benchmarks.yaml"
    path.write_text(BENCHMARKS)
    return path


def stored(url: str) -> list[tuple]:
    return rows(url, "select name, seed, status, attempts from runs order by name, seed")


def best_accs(url: str) -> dict[str, list[float]]:
    """Each cell's completed runs' best test accuracy, percent, from the epochs table."""
    out: dict[str, list[float]] = {}
    for key, best in rows(url, "select r.config_key, max(e.test_acc) from runs r join epochs e on e.run_id = r.id "
                               "where r.status = 'completed' group by r.id, r.config_key order by r.id"):
        out.setdefault(key, []).append(100 * best)
    return out


def run_sweep(bench_file: Path, url: str, *extra: str):
    return runner.invoke(app, ["sweep", "--benchmark", "adaptive", "--benchmarks", str(bench_file), "--db", url,
                               "--checkpoint-dir", str(bench_file.parent / "ckpt"), *extra])


@pytest.mark.slow
def test_a_tiny_width_stops_each_cell_at_max_seeds_and_a_rerun_does_nothing(bench_file, sqlite_url):
    result = run_sweep(bench_file, sqlite_url)  # until_ci 1e-9 and max_seeds 4 from the file
    assert result.exit_code == 0, result.output
    assert "round 2 of adaptive seeds" in result.output
    accs = best_accs(sqlite_url)
    for key, values in accs.items():
        spread = len(set(values)) > 1
        assert len(values) == (4 if spread else 2), (key, values)  # no spread: width 0 after round 1
    assert any(len(values) == 4 for values in accs.values())
    for name, seed, status, attempts in stored(sqlite_url):
        assert status == "completed" and attempts == 1 and seed < 4

    before = stored(sqlite_url)
    again = run_sweep(bench_file, sqlite_url)
    assert again.exit_code == 0, again.output
    assert "0 finished now" in again.output
    assert stored(sqlite_url) == before

    report = runner.invoke(app, ["report", "--format", "json", "--db", sqlite_url])
    assert report.exit_code == 0, report.output
    for cell in json.loads(report.stdout):
        n = len(accs[cell["config_key"]])  # the report shows no interval under 3 seeds; --until-ci used it
        assert cell["ci95_half"] == (pytest.approx(t_width(accs[cell["config_key"]]), abs=1e-4) if n >= 3 else None)


@pytest.mark.slow
def test_a_huge_width_stops_after_the_initial_seeds(bench_file, sqlite_url):
    result = run_sweep(bench_file, sqlite_url, "--until-ci", "1e6", "--max-seeds", "6")
    assert result.exit_code == 0, result.output
    assert "round 2" not in result.output
    assert "2 with CI95 half-width at most the one asked" in result.output
    assert sorted(seed for _, seed, _, _ in stored(sqlite_url)) == [0, 0, 1, 1]


@pytest.mark.slow
def test_two_adaptive_sweeps_at_once_never_train_a_run_twice(bench_file, db_url, tmp_path):
    first = sweep(bench_file, db_url, tmp_path / "a", benchmark="adaptive")
    second = sweep(bench_file, db_url, tmp_path / "b", benchmark="adaptive")
    finish(first)
    finish(second)
    runs = stored(db_url)
    assert all(status == "completed" and attempts == 1 for _, _, status, attempts in runs)
    assert len(runs) == len(set((name, seed) for name, seed, _, _ in runs))
    assert rows(db_url, "select count(*) from epochs") == [(len(runs),)]  # one epoch per run, stored once


@pytest.mark.parametrize("args, message", [
    (["--until-ci", "0"], "Invalid until_ci: 0.0"),
    (["--until-ci", "nan"], "Invalid until_ci: nan"),
    (["--until-ci", "-2"], "Invalid until_ci: -2.0"),
    (["--until-ci", "1", "--max-seeds", "1"], "Invalid max_seeds: 1"),
    (["--until-ci", "1", "--seeds", "1"], "Invalid seeds for until_ci"),
    (["--until-ci", "1", "--seeds", "11"], "Invalid max_seeds (default"),
    (["--max-seeds", "5"], "it goes with until_ci"),
])
def test_bad_values_are_one_line_and_write_nothing(args, message, tmp_path):
    url = f"sqlite:///{tmp_path / 'none.db'}"
    result = runner.invoke(app, ["sweep", "--dataset", "digits", "--seeds", "2", "--db", url, *args])
    assert result.exit_code == 1
    assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "none.db").exists()


@pytest.mark.parametrize("key, value, message", [
    ("until_ci", "0", "Invalid until_ci: 0"), ("until_ci", '"wide"', "Invalid until_ci: 'wide'"),
    ("max_seeds", "1", "Invalid max_seeds: 1"), ("max_seeds", "3.5", "Invalid max_seeds: 3.5"),
])
def test_bad_values_in_the_benchmarks_file_are_one_line(key, value, message, tmp_path):
    path = tmp_path / "benchmarks.yaml"
    path.write_text(BENCHMARKS.replace(f"{key}: ", f"{key}: {value} #"))
    result = runner.invoke(app, ["sweep", "--benchmark", "adaptive", "--benchmarks", str(path), "--dry-run"])
    assert result.exit_code == 1
    assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output


@pytest.mark.slow
def test_diverged_runs_use_up_seeds_and_are_named_not_averaged(tmp_path, sqlite_url):
    path = tmp_path / "benchmarks.yaml"
    path.write_text(BENCHMARKS.replace("baselines: [adam]", "baselines: [sgd]\n    momentum: 0.9")
                    .replace("lr: 0.01", "lr: 1.0e+12").replace("max_seeds: 4", "max_seeds: 3"))
    result = runner.invoke(app, ["sweep", "--benchmark", "adaptive", "--benchmarks", str(path), "--db", sqlite_url,
                                 "--checkpoint-dir", str(tmp_path / "ckpt")])
    assert result.exit_code == 0, result.output
    runs = stored(sqlite_url)
    assert [(name.split("[")[0], seed, status) for name, seed, status, _ in runs] == [
        (optimizer, seed, "diverged") for optimizer in ("mas", "sgd") for seed in (0, 1, 2)]
    assert "0 with CI95 half-width at most the one asked, 2 stopped at their max seeds" in result.output
    assert result.output.count("over 0 completed of 3 seeds (max 3), 3 not completed") == 2


def test_a_dry_run_lists_round_one_and_says_more_may_follow(bench_file, sqlite_url):
    result = runner.invoke(app, ["sweep", "--benchmark", "adaptive", "--benchmarks", str(bench_file), "--db",
                                 sqlite_url, "--dry-run", "--until-ci", "0.5"])
    assert result.exit_code == 0, result.output
    assert "4 runs: 0 completed, 4 to run" in result.output
    assert "half-width (±) is at most 0.5 points, up to 4 seeds" in result.output


@pytest.mark.parametrize("max_seeds, interrupted", [(4, True), (2, False)])
def test_a_signal_between_rounds_stops_the_sweep_unless_nothing_is_left(sqlite_url, max_seeds, interrupted):
    """The signal lands while round 1 is finishing (recorded, not raised): round 2 must not start, and the
    sweep is interrupted; with no round 2 to run (max_seeds = the initial seeds) it finished, as one round."""
    import os
    import signal

    from masbench.grid.benchmarks import plan_sweep
    from masbench.store import Store
    from masbench import signals
    from masbench.signals import stop_on_signals
    from masbench.sweep import SweepSummary
    from masbench.sweep.adaptive import run_adaptive

    _, cells = plan_sweep(dataset="digits", overrides=dict(models=["mlp"], baselines=["adam"], lambdas="0.5",
                                                           seeds=2, until_ci=1.0, max_seeds=max_seeds))
    rounds = []

    def run_round(round_cells, number):
        rounds.append(number)
        signals.finishing()  # as run_sweep ends
        os.kill(os.getpid(), signal.SIGINT)
        return SweepSummary(len(round_cells), {}, 0)

    with stop_on_signals():
        summary, _ = run_adaptive(cells, Store(sqlite_url), run_round)
    assert rounds == [1]
    assert summary.interrupted is interrupted
    assert summary.exit_code == (130 if interrupted else 0)
