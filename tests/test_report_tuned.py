"""``report --tuned`` and ``plot --kind tuning``: the expected maximum against brute force, the tuned table on a
hand-made trials frame (the frame ``Store.trials_frame`` returns), every format, the figure's data, the HTML."""

from __future__ import annotations

import itertools
import json
import math
import random
from statistics import mean

import pandas as pd
import pytest
from scipy import stats

from masbench.errors import MasbenchError
from masbench.report.multiple import holm
from masbench.report.render import FORMATS, render_tuned
from masbench.report.tuning import expected_max, pick_tune, tuned_table, tuning_curve

# ---------------------------------------------------------------- expected_max


def brute_force(values, k):
    """The mean, over every order of the trials, of the best of the first k."""
    orders = list(itertools.permutations(values))
    return sum(max(order[:k]) for order in orders) / len(orders)


@pytest.mark.parametrize("values", [
    [0.5], [0.2, 0.9], [0.3, 0.1, 0.2], [0.7, 0.7, 0.1, 0.7], [0.9, 0.9, 0.9],
    [0.1, 0.5, 0.5, 0.2, 0.8, 0.3], [random.Random(4).random() for _ in range(7)],
])
def test_expected_max_is_the_mean_over_every_order(values):
    for k in range(1, len(values) + 1):
        assert expected_max(values, k) == pytest.approx(brute_force(values, k), abs=1e-12), k


def test_the_curve_runs_from_the_mean_to_the_max_and_never_falls():
    values = [random.Random(1).uniform(50, 100) for _ in range(40)]
    curve = tuning_curve(values)
    assert len(curve) == 40
    assert curve[0] == pytest.approx(mean(values), abs=1e-9)
    assert curve[-1] == max(values)
    assert all(b >= a - 1e-12 for a, b in zip(curve, curve[1:]))


def test_large_budgets_stay_finite_and_exact_at_the_ends():
    values = list(range(500))  # C(500, 250) is far beyond a float: the weights are integer ratios
    assert expected_max(values, 1) == pytest.approx(249.5)
    assert expected_max(values, 500) == 499
    assert expected_max(values, 250) == pytest.approx(250 * 501 / 251 - 1)  # k(N+1)/(k+1) for 1..N, less 1


@pytest.mark.parametrize("values, k", [([0.1, 0.2], 0), ([0.1, 0.2], 3), ([], 1), ([0.1, math.nan], 1)])
def test_expected_max_refuses_what_it_cannot_mean(values, k):
    with pytest.raises(ValueError):
        expected_max(values, k)


# ---------------------------------------------------------------- the tuned table

# (optimizer, number, lr, status, best_val_acc, test_acc): search trials. The test accuracies of search trials
# are made to disagree with validation, so that a choice reading them would choose otherwise.
SEARCH = [
    ("adam", 0, 1e-4, "completed", 0.80, 0.99), ("adam", 1, 1e-3, "completed", 0.95, 0.90),
    ("adam", 2, 1e-2, "completed", 0.95, 0.97), ("adam", 3, 1e-1, "pruned", 0.50, 0.50),
    ("sgd", 0, 1e-2, "completed", 0.85, 0.99), ("sgd", 1, 1e-1, "completed", 0.93, 0.80),
    ("sgd", 2, 1.0, "failed", math.nan, math.nan), ("sgd", 3, 0.3, "pruned", 0.60, 0.60),
    ("mas", 0, 1e-3, "completed", 0.90, 0.90), ("mas", 1, 3e-3, "pending", math.nan, math.nan),
    ("mas", 2, 1e-2, "completed", 0.96, 0.92), ("mas", 3, 3e-2, "diverged", 0.40, 0.40),
]
FINAL = {"adam": [0.95, 0.96, 0.94], "sgd": [0.90, 0.92, 0.91]}  # seeds 1..3; MAS has none


def trials_frame(search=SEARCH, final=FINAL, tune="t"):
    rows = [dict(tune=tune, optimizer=o, phase="search", number=n, params={"lr": lr, "momentum": 0.9},
                 run_key=f"{o}{n}", run_id=i, status=s, seed=0, best_val_acc=v, test_acc=t, best_test_acc=t,
                 epochs=5) for i, (o, n, lr, s, v, t) in enumerate(search)]
    chosen_lr = {"adam": 1e-3, "sgd": 1e-1, "mas": 1e-2}
    for o, accs in final.items():
        rows += [dict(tune=tune, optimizer=o, phase="final", number=seed, params={"lr": chosen_lr[o]},
                      run_key=f"{o}f{seed}", run_id=100 + seed, status="completed", seed=seed, best_val_acc=0.9,
                      test_acc=acc, best_test_acc=acc, epochs=5) for seed, acc in enumerate(accs, start=1)]
    return pd.DataFrame(rows)


@pytest.fixture
def table():
    return tuned_table(trials_frame(), budgets=4).set_index("optimizer")


def test_the_chosen_trial_is_the_best_validation_ties_to_the_earliest(table):
    assert table.loc["adam", "chosen"] == 1  # trials 1 and 2 tie at 0.95: the earliest
    assert table.loc["adam", "params"] == {"lr": 1e-3, "momentum": 0.9}
    assert table.loc["adam", "val_acc"] == pytest.approx(95.0)
    assert table.loc["sgd", "chosen"] == 1 and table.loc["sgd", "params"]["lr"] == 0.1
    assert table.loc["mas", "chosen"] == 2  # a diverged or pending trial is never chosen


def test_test_accuracies_of_search_trials_take_no_part_in_the_choice():
    frame = trials_frame()
    noisy = frame.assign(test_acc=[random.Random(i).random() for i in range(len(frame))])
    assert tuned_table(noisy)["chosen"].tolist() == tuned_table(frame)["chosen"].tolist()
    flipped = frame.copy()
    flipped.loc[(flipped["optimizer"] == "adam") & (flipped["number"] == 0), "best_val_acc"] = 0.99
    assert tuned_table(flipped).set_index("optimizer").loc["adam", "chosen"] == 0


def test_budget_trials_pruned_and_failed_are_counted(table):
    assert table["budget"].tolist() == [4, 4, 4]
    assert table.loc["adam", ["trials", "pruned", "failed"]].tolist() == [4, 1, 0]
    assert table.loc["sgd", ["trials", "pruned", "failed"]].tolist() == [4, 1, 1]
    assert table.loc["mas", ["trials", "pruned", "failed"]].tolist() == [3, 0, 1]  # one still pending
    assert table["search_epochs"].tolist() == [20, 20, 20]  # 5 written by each search trial of the frame
    assert tuned_table(trials_frame())["budget"].tolist() == [4, 4, 4]  # no budget given: the trials planned
    assert tuned_table(trials_frame(), budgets={"adam": 8})["budget"].tolist() == [8, 4, 4]


def test_final_seeds_give_mean_ci_and_n(table):
    assert table.loc["adam", "n"] == 3 and table.loc["adam", "seeds"] == (1, 2, 3)
    assert table.loc["adam", "test_acc"] == pytest.approx(95.0)
    half = stats.t.ppf(0.975, 2) * stats.tstd([95, 96, 94]) / math.sqrt(3)  # report --table's ±CI95: half-width
    assert table.loc["adam", "ci95_half"] == pytest.approx(half)
    assert table.loc["mas", "n"] == 0 and table.loc["mas", "note"] == "no final seeds"
    assert math.isnan(table.loc["mas", "test_acc"]) and math.isnan(table.loc["mas", "p"])


def test_significance_is_paired_by_seed_against_the_best_other(table):
    p = stats.ttest_rel([95, 96, 94], [90, 92, 91]).pvalue  # two-sided
    assert table.loc["adam", "vs"] == "sgd" and table.loc["sgd", "vs"] == "adam"
    assert table.loc["adam", "p"] == pytest.approx(p) and table.loc["sgd", "p"] == pytest.approx(p)
    assert table.loc["adam", "test"] == "paired"
    assert table.loc["adam", "p_holm"] == pytest.approx(p)  # one pair: nothing to correct
    assert table.loc["adam", "diff"] == pytest.approx(4.0) and table.loc["sgd", "diff"] == pytest.approx(-4.0)
    assert bool(table.loc["adam", "significant"]) == (p < 0.05)


def test_holm_runs_over_the_distinct_pairs():
    final = {**FINAL, "mas": [0.97, 0.965, 0.955]}
    table = tuned_table(trials_frame(final=final)).set_index("optimizer")
    assert table.loc["adam", "vs"] == "mas" and table.loc["sgd", "vs"] == "mas" and table.loc["mas", "vs"] == "adam"
    p_adam = stats.ttest_rel([95, 96, 94], [97, 96.5, 95.5]).pvalue
    p_sgd = stats.ttest_rel([90, 92, 91], [97, 96.5, 95.5]).pvalue
    assert table.loc["adam", "p_holm"] == pytest.approx(holm([p_adam, p_sgd])[0])
    assert table.loc["sgd", "p_holm"] == pytest.approx(holm([p_adam, p_sgd])[1])
    assert table.loc["mas", "p_holm"] == table.loc["adam", "p_holm"]  # the same pair, counted once
    assert tuned_table(trials_frame(final=final)).attrs["tests"] == 2


def test_seeds_that_differ_fall_back_to_welch():
    frame = trials_frame()
    frame.loc[(frame["optimizer"] == "sgd") & (frame["phase"] == "final") & (frame["seed"] == 3), "status"] = "failed"
    table = tuned_table(frame).set_index("optimizer")
    p = stats.ttest_ind([95, 96, 94], [90, 92], equal_var=False).pvalue
    assert table.loc["adam", "test"] == "Welch" and table.loc["adam", "p"] == pytest.approx(p)
    assert table.loc["sgd", ["n", "final_planned", "seeds"]].tolist() == [2, 3, (1, 2)]
    assert table.loc["sgd", "note"] == "1 final seed(s) not completed" and table.loc["adam", "note"] == ""


def test_one_example_apart_on_every_seed_is_no_variance_not_p_zero():
    """n_correct / 359 on each seed, SGD one example behind MAS every time: the differences are one number, which
    floating point rounds two ways; a t-test of that noise gave p = 0 (seen on the quick tune)."""
    final = {"adam": [355 / 359, 354 / 359, 350 / 359], "sgd": [353 / 359, 353 / 359, 352 / 359],
             "mas": [354 / 359, 354 / 359, 353 / 359]}
    table = tuned_table(trials_frame(final=final)).set_index("optimizer")
    assert table.loc["sgd", "vs"] == "mas" and math.isnan(table.loc["sgd", "p"]) and not table.loc["sgd", "significant"]
    assert table.loc["sgd", "note"] == "not tested: the differences have no variance"
    assert table.loc["adam", "p"] > 0.5 and table.loc["mas", "vs"] == "adam" and tuned_table(trials_frame(final=final)).attrs["tests"] == 1
    one = tuned_table(trials_frame(final={"adam": [0.95], "sgd": [0.90, 0.92]})).set_index("optimizer")
    assert one.loc["sgd", "note"] == "not tested: under 2 seeds" and math.isnan(one.loc["sgd", "p"])


# ---------------------------------------------------------------- formats


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_shows_the_chosen_lr(fmt):
    table = tuned_table(trials_frame(), budgets=4)
    rendered = render_tuned(table, "quick-tune", fmt)
    if rendered.rich is not None:
        from rich.console import Console

        console = Console(record=True, width=250, file=open("/dev/null", "w"))
        for item in rendered.rich:
            console.print(item)
        text = console.export_text()
    else:
        text = rendered.text
    if fmt == "json":
        records = {r["optimizer"]: r for r in json.loads(text)["optimizers"]}
        assert records["adam"]["params"]["lr"] == 1e-3 and records["sgd"]["params"]["lr"] == 0.1
        assert records["mas"]["note"] == "no final seeds" and records["mas"]["test_acc"] is None
        assert records["adam"]["seeds"] == [1, 2, 3]
    elif fmt == "csv":
        rows = {r["optimizer"]: r for r in pd.read_csv(__import__("io").StringIO(text)).to_dict("records")}
        assert json.loads(rows["adam"]["params"])["lr"] == 1e-3 and json.loads(rows["sgd"]["params"])["lr"] == 0.1
        assert rows["adam"]["n"] == 3 and rows["adam"]["pruned"] == 1
    else:
        assert "lr=0.001" in text and "lr=0.1," in text
        assert "no final seeds" in text and "quick-tune" in text


def test_unknown_format_is_refused():
    with pytest.raises(MasbenchError, match="Invalid format"):
        render_tuned(tuned_table(trials_frame()), "t", "yaml")


# ---------------------------------------------------------------- picking a tune


def tunes(*names):
    return pd.DataFrame({"id": range(1, len(names) + 1), "key": [f"{i}{name}" * 8 for i, name in enumerate(names)],
                         "name": list(names), "settings": [{"budget": 4}] * len(names)},
                        columns=["id", "key", "name", "settings"])


def test_pick_tune():
    assert pick_tune(tunes("a"), None, "db")["name"] == "a"
    assert pick_tune(tunes("a", "b"), "b", "db")["name"] == "b"
    with pytest.raises(MasbenchError, match=r"^no tune in db"):
        pick_tune(tunes(), None, "db")
    with pytest.raises(MasbenchError, match=r"2 tunes in db: a, b \(give --tune NAME\)"):
        pick_tune(tunes("a", "b"), None, "db")
    with pytest.raises(MasbenchError, match=r"Invalid --tune: 'c' \(the store has: a, b\)"):
        pick_tune(tunes("a", "b"), "c", "db")
    twins = tunes("a", "a", "b")  # one name, other settings: told by key
    with pytest.raises(MasbenchError, match=r"3 tunes in db: a \(0a0a0a0a\), a \(1a1a1a1a\), b \(give"):
        pick_tune(twins, None, "db")
    with pytest.raises(MasbenchError, match=r"2 tunes match --tune 'a': a \(0a0a0a0a\), a \(1a1a1a1a\)"):
        pick_tune(twins, "a", "db")
    assert pick_tune(twins, "1a1a", "db")["id"] == 2


# ---------------------------------------------------------------- the figure and the HTML


def test_the_figure_holds_the_curves_finals_and_chosen_trials(tmp_path):
    from masbench.report.plot_tuning import plot_tuning, tuning_figure

    frame = trials_frame()
    table = tuned_table(frame)
    fig = tuning_figure(frame, table, tune="t")
    curve_ax, lr_ax = fig.axes
    lines = {line.get_gid(): line for line in curve_ax.get_lines() if line.get_gid()}
    # Adam's scored trials: 80, 95, 95 and the pruned 50; SGD's failed trial has no score; MAS's diverged one has.
    for optimizer, values in (("adam", [80, 95, 95, 50]), ("sgd", [85, 93, 60]), ("mas", [90, 96, 40])):
        assert list(lines[f"curve-{optimizer}"].get_xdata()) == list(range(1, len(values) + 1))
        assert list(lines[f"curve-{optimizer}"].get_ydata()) == pytest.approx(tuning_curve(values))
    assert list(lines["final-adam"].get_xdata()) == [4 - 0.06] and list(lines["final-adam"].get_ydata()) == [95.0]
    assert list(lines["final-sgd"].get_xdata()) == [3] and list(lines["final-sgd"].get_ydata()) == [91.0]
    low, high = curve_ax.get_ylim()  # the curves and Adam's interval (95 ± 2.48), no more than a margin past them
    assert tuning_curve([90, 96, 40])[0] - 2 < low < tuning_curve([90, 96, 40])[0] and 97.5 < high < 99
    assert "final-mas" not in lines  # no final seeds: no mark
    points = {c.get_gid(): c.get_offsets().tolist() for c in lr_ax.collections if c.get_gid()}
    assert points["chosen-adam"][0] == pytest.approx([1e-3, 95.0])
    assert points["chosen-sgd"][0] == pytest.approx([0.1, 93.0]) and points["chosen-mas"][0] == pytest.approx([1e-2, 96.0])
    assert len(points["trials-adam"]) == 4 and len(points["trials-sgd"]) == 3 and lr_ax.get_xscale() == "log"
    __import__("masbench.report.plots", fromlist=["pyplot"]).pyplot().close(fig)
    path = plot_tuning(frame, table, tmp_path / "tuning.png", tune="t")
    assert path.stat().st_size > 1000 and path.read_bytes()[:4] == b"\x89PNG"


def test_a_tune_without_scored_trials_is_refused(tmp_path):
    from masbench.report.plot_tuning import plot_tuning

    frame = trials_frame(search=[("adam", 0, 1e-3, "pending", math.nan, math.nan)], final={})
    with pytest.raises(MasbenchError, match="no scored search trial"):
        plot_tuning(frame, tuned_table(frame), tmp_path / "x.png", tune="t")
    assert not (tmp_path / "x.png").exists()


def test_the_html_page_holds_the_table_and_the_figure():
    from masbench.report.html import render_tuned_html

    hostile = "<script>alert(1)</script>"
    frame = trials_frame(tune=hostile)
    page = render_tuned_html(frame, tuned_table(frame), tune=hostile, store_url="sqlite:///x.db")
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and "Tuning curves" in page
    assert "lr=0.001" in page and "no final seeds" in page
    rows = [line for line in page.splitlines() if line.startswith('<tr class="cell')]
    assert [('flagged' in row) for row in rows] == [False, False, True]  # MAS: no final seeds
    assert hostile not in page and "&lt;script&gt;" in page
    assert "http://" not in page.split("<svg", 1)[1]  # self-contained, as the report's other figures
    assert "mathdefault" not in page and ">0.001<" in page  # the lr axis's labels are numbers, not TeX source


# ---------------------------------------------------------------- the CLI, on a store that only answers for tunes


class TuneStore:
    """What ``report --tuned`` and ``plot --kind tuning`` read: ``tunes_frame`` and ``trials_frame(tune=NAME)``."""

    masked_url = "sqlite:///fake.db"
    is_sqlite = False

    def __init__(self, frames: dict[str, pd.DataFrame]):
        self.frames = frames

    def tunes_frame(self):
        return tunes(*self.frames)

    def trials_frame(self, tune=None):
        return list(self.frames.values())[tune - 1]  # by id, as the store's


@pytest.fixture
def cli(monkeypatch):
    from typer.testing import CliRunner

    from masbench.cli import app, results

    def run(frames, *args):
        monkeypatch.setattr(results, "_open_for_reading", lambda db: TuneStore(frames))
        return CliRunner().invoke(app, list(args))

    return run


@pytest.mark.parametrize("fmt, adam, sgd", [
    ("rich", "lr=0.001", "lr=0.1,"), ("csv", '""lr"": 0.001', '""lr"": 0.1,'), ("json", '"lr": 0.001', '"lr": 0.1,'),
    ("markdown", "lr=0.001", "lr=0.1,"), ("latex", "lr=0.001", "lr=0.1,"), ("html", "lr=0.001", "lr=0.1,"),
])
def test_report_tuned_in_each_format(cli, fmt, adam, sgd):
    result = cli({"quick": trials_frame()}, "report", "--tuned", "--format", fmt)
    assert result.exit_code == 0, result.output
    assert adam in result.output and sgd in result.output
    if fmt == "html":
        assert "<svg" in result.output


@pytest.mark.parametrize("frames, args, message", [
    ({}, [], "no tune in sqlite:///fake.db (run masbench tune first)"),
    ({"a": trials_frame(), "b": trials_frame()}, [], "2 tunes in sqlite:///fake.db: a, b (give --tune NAME)"),
    ({"a": trials_frame()}, ["--tune", "c"], "Invalid --tune: 'c' (the store has: a)"),
    ({"a": trials_frame()}, ["--leaderboard"], "give it without --leaderboard"),
    ({"a": trials_frame()}, ["--format", "yaml"], "Invalid --format: 'yaml'"),
])
def test_report_tuned_refusals_are_one_line(cli, frames, args, message):
    result = cli(frames, "report", "--tuned", *args)
    assert result.exit_code != 0
    assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert "Traceback" not in result.output


def test_tune_without_tuned_is_refused(cli):
    result = cli({"a": trials_frame()}, "report", "--tune", "a")
    assert result.exit_code != 0 and "--tune NAME goes with --tuned" in result.output


def test_plot_kind_tuning_picks_the_named_tune(cli, tmp_path):
    frames = {"a": trials_frame(), "b": trials_frame(search=SEARCH[:4], final={})}
    result = cli(frames, "plot", "--kind", "tuning", "--tune", "b", "--output", str(tmp_path / "b.svg"))
    assert result.exit_code == 0, result.output
    svg = (tmp_path / "b.svg").read_text()
    assert "tune b" in svg and "SGD" not in svg  # tune b holds Adam's trials alone
    result = cli(frames, "plot", "--kind", "tuning", "--output", str(tmp_path / "x.png"))
    assert result.exit_code != 0 and "give --tune NAME" in result.output and not (tmp_path / "x.png").exists()


# ---------------------------------------------------------------- a real store: the tune's tables, read back


def stored_tune(store, name="quick", search=SEARCH, final=FINAL):
    """The trials of ``search`` and ``final`` as runs of ``store`` (two epochs each: the first with a higher test
    accuracy and a lower validation accuracy, so that only a read at the best validation epoch gives the table's
    numbers) and as the trials of a tune ``name``."""
    from masbench.spec import RunSpec
    from masbench.sweep import run_values

    trials = []

    def add(optimizer, phase, number, lr, seed, status, val, test):
        spec = RunSpec(benchmark="quick", dataset="digits", model="mlp", optimizer=optimizer, lr=lr, epochs=2,
                       seed=seed, val_fraction=0.1)
        run = store.ensure_run(run_values(spec))
        trials.append(dict(optimizer=optimizer, phase=phase, number=number, params={"lr": lr}, run_key=spec.key))
        if status == "pending":
            return
        store.claim(run.id, "w", stale_after=60)
        if not math.isnan(val):
            for epoch, (v, t) in enumerate(((val - 0.05, 0.99), (val, test)), start=1):
                store.record_epoch(run.id, "w", dict(epoch=epoch, train_loss=1.0, train_acc=0.5, test_loss=1.0,
                                                      test_acc=t, val_loss=1.0, val_acc=v, seconds=1.0, lr=lr,
                                                      lambda_adam=None, lambda_sgd=None, samples_per_second=1.0))
        store.finish(run.id, "w", status)

    for optimizer, number, lr, status, val, test in search:
        add(optimizer, "search", number, lr, 0, status, val, test)
    chosen_lr = {"adam": 1e-3, "sgd": 1e-1, "mas": 1e-2}
    for optimizer, accs in final.items():
        for seed, acc in enumerate(accs, start=1):
            add(optimizer, "final", seed, chosen_lr[optimizer], seed, "completed", 0.9, acc)
    store.record_trials(store.ensure_tune(name * 64 if len(name) == 1 else f"{name:x<64}", name, {"budget": 4}),
                        trials)


@pytest.fixture
def tuned_db(tmp_path):
    from masbench.store import Store

    url = f"sqlite:///{tmp_path / 'tune.db'}"
    store = Store(url)
    stored_tune(store)
    store.close()
    return url


def test_the_store_frame_gives_the_hand_made_table(tuned_db):
    from masbench.store import open_for_reading

    store = open_for_reading(tuned_db)
    stored = tuned_table(store.trials_frame(tune=1), budgets=4).set_index("optimizer")
    expected = tuned_table(trials_frame(), budgets=4).set_index("optimizer")
    columns = ["budget", "trials", "pruned", "failed", "chosen", "n", "seeds", "vs", "test", "note"]
    assert stored[columns].equals(expected[columns])
    for column in ("val_acc", "test_acc", "ci95_half", "p", "p_holm"):
        assert stored[column].tolist() == pytest.approx(expected[column].tolist(), nan_ok=True), column
    assert stored.loc["adam", "params"] == {"lr": 1e-3}


def test_report_tuned_and_plot_from_a_store(tuned_db, tmp_path):
    from typer.testing import CliRunner

    from masbench.cli import app

    result = CliRunner().invoke(app, ["report", "--tuned", "--format", "json", "--db", tuned_db])
    assert result.exit_code == 0, result.output
    records = {r["optimizer"]: r for r in json.loads(result.output)["optimizers"]}
    assert records["sgd"]["params"] == {"lr": 0.1} and records["adam"]["test_acc"] == pytest.approx(95.0)
    result = CliRunner().invoke(app, ["plot", "--kind", "tuning", "--output", str(tmp_path / "t.svg"), "--db", tuned_db])
    assert result.exit_code == 0, result.output
    assert "expected best validation accuracy" in (tmp_path / "t.svg").read_text()


def test_the_sweeps_table_and_curves_leave_out_a_tunes_runs(tuned_db):
    """A tune's trials (one seed of one setting each) and final runs are read by report --tuned alone: the
    sweep's table, compare and the curves leave them out, and a store holding only a tune says where they are."""
    from typer.testing import CliRunner

    from masbench.cli import app
    from masbench.spec import RunSpec
    from masbench.store import Store, open_for_reading
    from masbench.store.queries import run_accuracy_frame
    from masbench.sweep import run_values

    result = CliRunner().invoke(app, ["report", "--table", "--db", tuned_db])
    assert result.exit_code == 1
    assert result.output.strip() == (f"Error: no runs in {tuned_db} but a tune's (masbench report --tuned reads "
                                     f"them)")
    store = Store(tuned_db)
    spec = RunSpec(benchmark="quick", dataset="digits", model="mlp", optimizer="adam", lr=3e-3, epochs=1, seed=0)
    run = store.ensure_run(run_values(spec))
    store.claim(run.id, "w", stale_after=60)
    store.record_epoch(run.id, "w", dict(epoch=1, train_loss=1.0, train_acc=0.5, test_loss=1.0, test_acc=0.97,
                                         val_loss=None, val_acc=None, seconds=1.0, lr=3e-3, lambda_adam=None,
                                         lambda_sgd=None, samples_per_second=1.0))
    store.finish(run.id, "w", "completed")
    store.close()
    store = open_for_reading(tuned_db)
    assert run_accuracy_frame(store)["id"].tolist() == [run.id]
    assert set(store.epochs_frame()["run_id"]) == {run.id}
    assert len(store.trials_frame()) > 1 and len(store.runs_frame()) == len(store.trials_frame()) + 1


def test_report_tuned_on_a_store_without_tunes_is_one_line(tmp_path):
    from typer.testing import CliRunner

    from masbench.cli import app
    from masbench.store import Store

    url = f"sqlite:///{tmp_path / 'runs.db'}"
    Store(url).close()
    result = CliRunner().invoke(app, ["report", "--tuned", "--db", url])
    assert result.exit_code != 0 and result.output.strip() == f"Error: no tune in {url} (run masbench tune first)"


# ---------------------------------------------------------------- end to end: masbench tune, then the report

TINY = """
benchmarks:
  tiny:
    dataset: digits
    models: [mlp]
    lambdas: "0.3,0.7"
    baselines: [sgd]
    lr: 0.003
    momentum: 0.9
    batch_size: 128
    epochs: 2
    train_subset: 300
    seeds: 2
"""


@pytest.mark.slow  # 8 one-epoch runs: seconds on an idle CPU
def test_tune_then_report_and_plot(tmp_path):
    from typer.testing import CliRunner

    from masbench.cli import app
    from masbench.store import open_for_reading
    from masbench.report.choice import choose

    bench = tmp_path / "bench.yaml"
    bench.write_text(TINY)
    url = f"sqlite:///{tmp_path / 'tune.db'}"
    runner = CliRunner()
    done = runner.invoke(app, ["tune", "--benchmark", "tiny", "--benchmarks", str(bench), "--db", url, "--device",
                               "cpu", "--workers", "1", "--budget", "2", "--final-seeds", "2", "--epochs", "1"])
    assert done.exit_code == 0, done.output
    result = runner.invoke(app, ["report", "--tuned", "--format", "json", "--db", url])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["tune"] == "tiny" and shown["tests"] >= 1
    records = {r["optimizer"]: r for r in shown["optimizers"]}
    store = open_for_reading(url)
    frame = store.trials_frame(tune=1)
    chosen = choose(frame)
    assert set(records) == set(chosen) == {"sgd", "mas"}
    for label, record in records.items():
        assert record["budget"] == 2 and record["trials"] == 2 and record["n"] == 2 and record["seeds"] == [1, 2]
        assert record["params"] == chosen[label].params and record["chosen"] == chosen[label].number
        finals = frame[(frame["optimizer"] == label) & (frame["phase"] == "final")]
        assert record["test_acc"] == pytest.approx(100 * finals["test_acc"].astype(float).mean())
    text = runner.invoke(app, ["report", "--tuned", "--db", url])
    assert text.exit_code == 0 and f"lr={records['sgd']['params']['lr']:.3g}" in text.output
    page = runner.invoke(app, ["report", "--tuned", "--format", "html", "--output", str(tmp_path / "t.html"),
                               "--db", url])
    assert page.exit_code == 0 and "<svg" in (tmp_path / "t.html").read_text()
    plot = runner.invoke(app, ["plot", "--kind", "tuning", "--output", str(tmp_path / "t.png"), "--db", url])
    assert plot.exit_code == 0, plot.output
    assert (tmp_path / "t.png").stat().st_size > 1000


@pytest.mark.parametrize("where, said", [("a-folder.png", "Error: Invalid --output: {path} is not a regular file (it is a directory)"),
                                         ("tune.db/x.png", "Error: Invalid --output: folder {path.parent} is not a folder "
                                                           "(it is a regular file)")])
def test_a_plot_that_cannot_be_written_is_one_line(tuned_db, tmp_path, where, said):
    from typer.testing import CliRunner

    from masbench.cli import app

    (tmp_path / "a-folder.png").mkdir()
    result = CliRunner().invoke(app, ["plot", "--kind", "tuning", "--output", str(tmp_path / where), "--db", tuned_db])
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(said.format(path=tmp_path / where)) and result.stderr.count("\n") == 1
