"""``masbench tune``: search spaces, the quasi-random sampler, trials as cells, the choice on validation only,
final seeds, and the tune as a sweep is (a rerun trains nothing, concurrent tunes share the trials, packs)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from masbench.cli import app
from masbench.errors import MasbenchError
from masbench.grid.search import Dimension, parse_search, parse_search_mapping
from masbench.report.choice import choose, final_scores
from masbench.tune.plan import TuneSettings, plan_tune
from masbench.tune.samplers import DIGITS, derived_seed, quasirandom
from masbench.tune.space import default_space, entry_space

runner = CliRunner()

TINY = """
benchmarks:
  tiny:
    dataset: digits
    models: [mlp]
    lambdas: "0.3,0.7"
    baselines: [adam, sgd]
    lr: 0.003
    momentum: 0.9
    batch_size: 128
    epochs: 2
    train_subset: 300
    seeds: 2
"""


@pytest.fixture
def bench_file(tmp_path) -> Path:
    path = tmp_path / "bench.yaml"
    path.write_text(TINY)
    return path


def tune_args(bench_file: Path, db: str, *extra: str) -> list[str]:
    return ["tune", "--benchmark", "tiny", "--benchmarks", str(bench_file), "--db", db, "--device", "cpu",
            "--workers", "1", *extra]


def query(url: str, sql: str) -> list[tuple]:
    from reliability import rows

    return rows(url, sql)


# --- the sampler -----------------------------------------------------------------------------------

def test_quasirandom_trials_are_pinned():
    """The same trials on every run and machine: SGD's default space, tune seed 0."""
    assert derived_seed(0, "sgd") == 2154836444
    trials = quasirandom(entry_space("sgd"), 4, derived_seed(0, "sgd"))
    assert trials == [{"lr": 0.05945, "momentum": 0.14}, {"lr": 0.002861, "momentum": 0.8678},
                      {"lr": 0.012, "momentum": 0.4002}, {"lr": 0.6071, "momentum": 0.631}]


def test_a_smaller_budget_is_the_start_of_a_larger_one_and_labels_draw_apart():
    space = entry_space("mas")
    eight = quasirandom(space, 8, derived_seed(0, "mas"))
    assert quasirandom(space, 3, derived_seed(0, "mas")) == eight[:3]
    assert quasirandom(space, 8, derived_seed(0, "mas[lambda_adam=0.3]")) != eight
    assert quasirandom(space, 8, derived_seed(1, "mas")) != eight


def test_sampled_values_stay_in_their_dimension_with_few_digits():
    space = {"a": Dimension("a", "log", 1e-5, 3e-2), "b": Dimension("b", "uniform", 0.0, 0.99),
             "c": Dimension("c", "int", 2.0, 5.0), "d": Dimension("d", "choice", choices=(0.9, 0.99, "x"))}
    points = quasirandom(space, 64, 3)
    assert all(1e-5 <= p["a"] <= 3e-2 and 0 <= p["b"] <= 0.99 and p["c"] in (2, 3, 4, 5) and p["d"] in (0.9, 0.99, "x")
               for p in points)
    assert all(float(f"{p['a']:.{DIGITS}g}") == p["a"] for p in points)
    assert {p["c"] for p in points} == {2, 3, 4, 5} and {p["d"] for p in points} == {0.9, 0.99, "x"}
    logs = sorted(p["a"] for p in points)  # log-uniform: as many below the geometric middle as above it
    assert sum(a < (1e-5 * 3e-2) ** 0.5 for a in logs) == 32


# --- spaces ----------------------------------------------------------------------------------------

def test_default_spaces():
    sgd, adam, mas = default_space("sgd"), default_space("adam"), default_space("mas")
    assert sgd["lr"].low > adam["lr"].low and sgd["lr"].high > adam["lr"].high
    assert set(sgd) == {"lr", "momentum"} and set(adam) == {"lr"} and set(mas) == {"lr", "momentum", "lambda_adam"}
    assert mas["lambda_adam"] == Dimension("lambda_adam", "uniform", 0.0, 1.0)
    # Any other optimizer: lr around its signature's default (RMSprop's 0.01), over 3 decades.
    assert default_space("rmsprop") == {"lr": Dimension("lr", "log", 1e-4, 0.1)}
    assert entry_space("mas", held={"lambda_adam"}).keys() == {"lr", "momentum"}
    overridden = entry_space("sgd", parse_search(["sgd:lr=log:0.01:1", "sgd:weight_decay=log:1e-6:1e-3"]))
    assert overridden["lr"] == Dimension("lr", "log", 0.01, 1.0) and list(overridden) == ["lr", "momentum",
                                                                                           "weight_decay"]


@pytest.mark.parametrize("item, message", [
    ("sgd=lr", "Invalid --search: 'sgd=lr' (OPTIMIZER:PARAM=DIMENSION"),
    ("sgd:lr=log:0:1", "a log dimension needs 0 < LOW"),
    ("sgd:lr=log:1:0.1", "LOW must be below HIGH"),
    ("sgd:lr=cubic:1:2", "unknown kind 'cubic'"),
    ("sgd:lr=log:1e-3", "Invalid search dimension for lr: 'log:1e-3'"),
    ("sgd:momentum=uniform:0:2", "Invalid momentum: 2.0 (must be <= 1)"),
    ("mas:lambda_sgd=uniform:0:1", "lambda_sgd cannot be searched (it is 1 - lambda_adam"),
    ("sgd:lr=int:1:x", "'x' is not an integer"),
    ("sgd:momentum=choice:0.9,0.95", "choices are separated by ':', not ','"),
])
def test_bad_search_text_is_one_line_naming_it_and_the_valid_form(item, message):
    with pytest.raises(MasbenchError, match="^--search: |^Invalid --search") as raised:
        parse_search([item])
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_a_benchmarks_search_goes_through_the_same_parser(tmp_path):
    assert parse_search_mapping({"sgd": {"lr": "log:1e-2:1"}}) == parse_search(["sgd:lr=log:1e-2:1"])
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY + '    search: {sgd: {lr: "log:0:1"}}\n')
    result = runner.invoke(app, tune_args(bad, f"sqlite:///{tmp_path / 'x.db'}", "--show-space"))
    assert result.exit_code == 1
    assert "search dimension for lr: 'log:0:1': a log dimension needs 0 < LOW" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "x.db").exists()


def test_show_space_prints_the_file_and_the_flags_overrides(tmp_path):
    path = tmp_path / "bench.yaml"
    path.write_text(TINY + '    search: {sgd: {lr: "log:1e-2:1"}, adam: {lr: "log:1e-4:1e-2"}}\n')
    result = runner.invoke(app, tune_args(path, "sqlite:///unused.db", "--show-space", "--search",
                                          "adam:lr=log:1e-3:1e-1"))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[1].split() == ["adam", "lr=log:0.001:0.1"]
    assert lines[2].split() == ["sgd", "lr=log:0.01:1", "momentum=uniform:0:0.99"]
    assert lines[3].split() == ["mas", "lambda_adam=uniform:0:1", "lr=log:0.0001:0.1", "momentum=uniform:0:0.99"]
    held = runner.invoke(app, tune_args(path, "sqlite:///unused.db", "--show-space", "--lambdas", "0.3,0.7"))
    assert [line.split()[0] for line in held.stdout.splitlines()[1:]] == [
        "adam", "sgd", "mas[lambda_adam=0.3]", "mas[lambda_adam=0.7]"]
    assert held.stdout.splitlines()[3].split()[1:] == ["lr=log:0.0001:0.1", "momentum=uniform:0:0.99"]
    assert not Path("unused.db").exists()


@pytest.mark.parametrize("item, message", [
    ("radam:lr=log:1e-4:1e-2", "Invalid --search for 'radam': it is not an optimizer of the tune (its optimizers: "
                               "adam, sgd, mas)"),
    ("adam:nonsense=log:1:2", "nonsense"),
])
def test_a_search_the_grid_cannot_take_is_refused_in_one_line(bench_file, tmp_path, item, message):
    result = runner.invoke(app, tune_args(bench_file, f"sqlite:///{tmp_path / 'x.db'}", "--search", item))
    assert result.exit_code == 1 and message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert not (tmp_path / "x.db").exists()


# --- the plan --------------------------------------------------------------------------------------

def test_trials_are_the_grids_cells_with_the_trials_hyperparameters(bench_file):
    from masbench.spec import make_spec

    tune = plan_tune(benchmark="tiny", benchmarks_path=bench_file, settings=TuneSettings(budget=3, final_seeds=2))
    assert [e.label for e in tune.entries] == ["adam", "sgd", "mas"]
    assert [(t.label, t.number) for t in tune.search] == [(e, n) for e in ("adam", "sgd", "mas") for n in range(3)]
    trial = next(t for t in tune.search if t.label == "mas" and t.number == 1)
    lam = trial.params["lambda_adam"]
    made = make_spec(benchmark="tiny", dataset="digits", model="mlp", optimizer="mas", batch_size=128, epochs=2,
                     train_subset=300, seed=0, val_fraction=0.1, lr=trial.params["lr"],
                     momentum=trial.params["momentum"], lambda_adam=lam, lambda_sgd=round(1 - lam, 10),
                     betas=(0.9, 0.999), eps=1e-8, amsgrad=False, dampening=0.0, nesterov=False)
    assert trial.cell.spec.key == made.key
    finals = tune.final_trials({"sgd": tune.search[3].params})
    assert [(t.label, t.phase, t.number, t.cell.spec.seed) for t in finals] == [("sgd", "final", 1, 1),
                                                                                ("sgd", "final", 2, 2)]
    assert all(t.cell.spec.val_fraction == 0.1 and t.params == tune.search[3].params for t in finals)
    assert finals[0].cell.spec.config_key == tune.search[3].cell.spec.config_key  # the chosen cell, another seed


def test_the_same_command_is_the_same_tune(bench_file):
    def key(**settings):
        return plan_tune(benchmark="tiny", benchmarks_path=bench_file, settings=TuneSettings(**settings)).key

    assert key(budget=3) == key(budget=3) and len(key(budget=3)) == 64
    assert len({key(budget=3), key(budget=4), key(budget=3, final_seeds=1), key(budget=3, val_fraction=0.2),
                key(budget=3, seed=1)}) == 5


@pytest.mark.parametrize("settings, message", [
    (dict(budget=0), "Invalid --budget: 0"), (dict(final_seeds=-1), "Invalid --final-seeds: -1"),
    (dict(val_fraction=0.9), "--val-fraction: Invalid val_fraction: 0.9"), (dict(sampler="grid"), "Invalid --sampler"),
])
def test_bad_tune_settings(settings, message):
    with pytest.raises(MasbenchError, match=message):
        TuneSettings(**settings)


# --- the choice: validation only -------------------------------------------------------------------

def trials_frame(val, test, status=None) -> pd.DataFrame:
    """Search trials of two optimizers, three each, with the validation and test accuracies given."""
    n = len(val)
    return pd.DataFrame(dict(optimizer=["adam"] * 3 + ["sgd"] * 3, phase="search", number=[0, 1, 2] * 2,
                             params=[{"lr": i / 100} for i in range(n)], run_key=[f"k{i}" for i in range(n)],
                             status=status or ["completed"] * n, best_val_acc=val, test_acc=test,
                             best_test_acc=test))


def chosen_numbers(frame) -> dict[str, int]:
    return {label: choice.number for label, choice in choose(frame).items()}


def test_the_choice_is_the_best_validation_accuracy_ties_to_the_earliest():
    frame = trials_frame([0.8, 0.9, 0.9, 0.5, 0.7, 0.6], [0.1] * 6)
    assert chosen_numbers(frame) == {"adam": 1, "sgd": 1}
    assert choose(frame)["sgd"].params == {"lr": 0.04} and choose(frame)["sgd"].val_acc == 0.7


def test_test_labels_never_take_part_and_validation_labels_do():
    import numpy as np

    val = [0.8, 0.9, 0.7, 0.5, 0.7, 0.6]
    base = chosen_numbers(trials_frame(val, [0.95, 0.1, 0.2, 0.99, 0.3, 0.4]))
    for seed in range(20):  # test accuracies of noise, however they fall: the same choice
        noise = np.random.default_rng(seed).random(6).tolist()
        assert chosen_numbers(trials_frame(val, noise)) == base
    assert chosen_numbers(trials_frame([0.9, 0.8, 0.7, 0.5, 0.6, 0.7], [0.95, 0.1, 0.2, 0.99, 0.3, 0.4])) != base


def test_runs_not_completed_are_never_chosen():
    frame = trials_frame([0.99, 0.5, float("nan"), 0.99, 0.6, 0.7],
                         [0.5] * 6, status=["pruned", "completed", "completed", "diverged", "failed", "completed"])
    assert chosen_numbers(frame) == {"adam": 1, "sgd": 2}
    nothing = trials_frame([0.9] * 6, [0.5] * 6, status=["running"] * 6)
    assert choose(nothing) == {}


def test_final_scores_read_each_runs_test_accuracy_at_its_best_validation_epoch():
    frame = pd.DataFrame(dict(optimizer=["sgd"] * 3, phase="final", number=[1, 2, 3], status=["completed"] * 2 + ["failed"],
                              test_acc=[0.9, 0.8, 0.99]))
    score = final_scores(frame)["sgd"]
    assert score.test_accs == {1: 0.9, 2: 0.8} and score.planned == 3 and score.mean == pytest.approx(0.85)


def test_the_store_scores_a_run_at_its_earliest_best_validation_epoch(tmp_path):
    from masbench.store import Store
    from masbench.sweep import run_values
    from masbench.spec import make_spec

    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    spec = make_spec(optimizer="sgd", lr=0.1, epochs=3, val_fraction=0.1)
    run = store.ensure_run(run_values(spec))
    assert store.claim(run.id, "w")
    for epoch, (val, test) in enumerate([(0.5, 0.9), (0.7, 0.6), (0.7, 0.8)], start=1):
        store.record_epoch(run.id, "w", dict(epoch=epoch, train_loss=1.0, train_acc=0.5, test_loss=1.0, test_acc=test,
                                             lr=0.1, lambda_adam=None, lambda_sgd=None, seconds=1.0,
                                             samples_per_second=1.0, val_loss=1.0, val_acc=val))
    store.finish(run.id, "w", "completed")
    tune = store.ensure_tune("k" * 64, "t", {})
    store.record_trials(tune, [dict(optimizer="sgd", phase="search", number=0, params={"lr": 0.1}, run_key=spec.key)])
    row = store.trials_frame(tune).iloc[0]
    assert (row.best_val_acc, row.val_epoch, row.test_acc, row.best_test_acc, row.epochs) == (0.7, 2, 0.6, 0.9, 3)
    assert store.trials_frame("k" * 64).equals(store.trials_frame(tune))


# --- end to end ------------------------------------------------------------------------------------

def test_a_tune_runs_end_to_end_and_a_rerun_trains_nothing(bench_file, tmp_path):
    url = f"sqlite:///{tmp_path / 'tune.db'}"
    args = tune_args(bench_file, url, "--budget", "2", "--final-seeds", "1")
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "tune tiny (search): 6 runs, 6 finished now" in first.stdout
    assert "tune tiny (final): 3 runs, 3 finished now" in first.stdout
    for label in ("adam", "sgd", "mas"):
        line = next(line for line in first.stdout.splitlines() if line.startswith(f"  {label}:"))
        assert "2/2 trials completed; chosen trial" in line and ": lr=" in line and "(mean of 1/1 seeds)" in line
    runs = query(url, "select key, attempts, finished_at from runs order by key")
    assert len(runs) == 9 and all(attempts == 1 for _, attempts, _ in runs)
    assert query(url, "select count(*) from epochs") == [(18,)]
    assert query(url, "select count(*), count(distinct run_key) from trials") == [(9, 9)]

    second = runner.invoke(app, args)
    assert second.exit_code == 0, second.output
    assert "6 runs, 0 finished now; 6 completed" in second.stdout and "3 runs, 0 finished now" in second.stdout
    assert query(url, "select key, attempts, finished_at from runs order by key") == runs
    assert query(url, "select count(*) from trials") == [(9,)] and query(url, "select count(*) from tunes") == [(1,)]
    chosen = [line for line in first.stdout.splitlines() if line.startswith("  ")]
    assert [line for line in second.stdout.splitlines() if line.startswith("  ")] == chosen


def test_dry_run_lists_the_trials_and_writes_nothing(bench_file, tmp_path):
    result = runner.invoke(app, tune_args(bench_file, f"sqlite:///{tmp_path / 'x.db'}", "--budget", "2", "--dry-run"))
    assert result.exit_code == 0, result.output
    assert "6 search trials: 0 completed, 6 to run" in result.stdout
    assert "lr=0.05945 momentum=0.14" in result.stdout  # SGD's first trial, pinned above
    assert not (tmp_path / "x.db").exists()


def _noisy(monkeypatch, split: str) -> None:
    """Replace the labels of ``split`` (val or test) of every data set the runs load with noise."""
    import torch

    from masbench.data import validation

    original = validation.with_validation

    def with_noise(dataset, fraction, seed):
        made = original(dataset, fraction, seed)
        part = getattr(made, split)
        noise = torch.randint(0, 10, part.labels.shape, generator=torch.Generator().manual_seed(7))
        return dataclasses.replace(made, **{split: dataclasses.replace(part, labels=noise)})

    monkeypatch.setattr(validation, "with_validation", with_noise)


def test_noise_in_the_test_labels_leaves_every_choice_and_noise_in_validation_changes_them(bench_file, tmp_path,
                                                                                             monkeypatch):
    from masbench.store import Store

    def chosen(name: str, split: str | None) -> tuple[dict, pd.DataFrame]:
        with monkeypatch.context() as patch:
            if split is not None:
                _noisy(patch, split)
            url = f"sqlite:///{tmp_path / name}"
            result = runner.invoke(app, tune_args(bench_file, url, "--budget", "3", "--final-seeds", "0",
                                                  "--epochs", "1", "--baselines", "sgd"))
            assert result.exit_code == 0, result.output
        frame = Store(url).trials_frame()
        return {label: c.number for label, c in choose(frame).items()}, frame

    clean, clean_frame = chosen("clean.db", None)
    test_noise, test_frame = chosen("test.db", "test")
    val_noise, _ = chosen("val.db", "val")
    assert len(clean) == 2 and test_noise == clean
    assert not test_frame["test_acc"].equals(clean_frame["test_acc"])  # the noise reached the test accuracies
    assert test_frame["best_val_acc"].tolist() == clean_frame["best_val_acc"].tolist()
    assert val_noise != clean


def test_packed_trials_give_the_unpacked_numbers(bench_file, tmp_path):
    """With --pack 4 each optimizer's 4 trials train as one pack (they differ only in their hyperparameters),
    and every epoch's numbers are the unpacked ones, bit for bit."""
    from reliability import metrics

    from masbench.grid.packs import pack_cells

    tune = plan_tune(benchmark="tiny", benchmarks_path=bench_file, overrides={"pack": 4, "baselines": ["sgd"]},
                     settings=TuneSettings(budget=4))
    label = {trial.cell.spec.key: trial.label for trial in tune.search}
    packs = pack_cells([trial.cell for trial in tune.search], "cpu")
    assert [[label[cell.spec.key] for cell in pack] for pack in packs] == [["sgd"] * 4, ["mas"] * 4]
    urls = {}
    for pack in ("4", "off"):
        urls[pack] = f"sqlite:///{tmp_path / f'{pack}.db'}"
        result = runner.invoke(app, tune_args(bench_file, urls[pack], "--budget", "4", "--final-seeds", "0",
                                              "--pack", pack, "--epochs", "1", "--baselines", "sgd"))
        assert result.exit_code == 0, result.output
    packed = query(urls["4"], "select optimizer, config from runs")
    assert len(packed) == 8 and all(json.loads(c)["execution"].get("packed") == 4 for _, c in packed)
    assert all("packed" not in json.loads(c)["execution"] for _, c in query(urls["off"], "select optimizer, config from runs"))
    val = "select r.key, e.epoch, e.val_loss, e.val_acc from epochs e join runs r on r.id = e.run_id order by r.key"
    assert metrics(urls["4"]) == metrics(urls["off"]) and query(urls["4"], val) == query(urls["off"], val)


def _tune_process(bench_file: Path, url: str, workdir: Path) -> subprocess.Popen:
    from reliability import environment

    workdir.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-m", "masbench.cli", *tune_args(bench_file, url, "--budget", "2", "--final-seeds", "1",
                                                          "--checkpoint-dir", str(workdir / "ckpt"))],
        cwd=workdir, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_concurrent_tunes_run_no_trial_twice(bench_file, db_url, tmp_path):
    from reliability import finish

    processes = [_tune_process(bench_file, db_url, tmp_path / f"w{i}") for i in range(2)]
    outs = [finish(process, timeout=600)[0] for process in processes]
    runs = query(db_url, "select r.key, r.attempts, r.status, count(e.id) from runs r join epochs e on e.run_id = r.id "
                         "group by r.key, r.attempts, r.status")
    assert len(runs) == 9  # 3 optimizers x (2 search trials + 1 final seed)
    assert all(attempts == 1 and status == "completed" and epochs == 2 for _, attempts, status, epochs in runs)
    assert query(db_url, "select count(*), count(distinct run_key) from trials") == [(9, 9)]
    summaries = [[line for line in out.splitlines() if line.startswith("  ")] for out in outs]
    assert summaries[0] == summaries[1]  # both choose the same trials and report the same finals
