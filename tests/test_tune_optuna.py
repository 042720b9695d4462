"""A tune's Optuna side (``masbench.tune.studies``, ``optimize``, ``pruning``): TPE, pruning, their storage."""

from __future__ import annotations

import builtins
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from masbench.cli import app
from masbench.engine import Callback, ExecOptions
from masbench.errors import MasbenchError
from masbench.grid.benchmarks import Cell
from masbench.spec import RunSpec
from masbench.store import Store
from masbench.sweep import SweepSettings, run_sweep
from masbench.tune import studies
from masbench.tune.optimize import Search, optimize
from test_tune import bench_file, query, tune_args  # noqa: F401 (bench_file: a fixture)

optuna = pytest.importorskip("optuna")
cli = CliRunner()

TESTS = Path(__file__).parent
KEY = "k" * 64


@dataclass(frozen=True)
class Dim:  # masbench.grid.search.Dimension's fields, which is all the Optuna side reads
    name: str
    kind: str
    low: float = 0.0
    high: float = 0.0
    choices: tuple = ()


SPACE = {"lr": Dim("lr", "log", 1e-3, 1.0)}


def cell(params: dict, number: int, epochs: int = 2) -> Cell:
    return Cell(RunSpec(dataset="digits", model="mlp", optimizer="sgd", momentum=0.9, batch_size=256, epochs=epochs,
                        val_fraction=0.1, seed=0, lr=params["lr"], train_subset=600))


class Count(Callback):
    def __init__(self) -> None:
        self.epochs = 0

    def on_epoch(self, metrics) -> None:
        self.epochs += 1


def runner(store: Store, tmp: Path, extra: tuple = (), pack: bool = False, stale_after: float = 60.0):
    def run(cells, callbacks):
        if pack:
            cells = [Cell(c.spec, pack=len(cells)) for c in cells]
        settings = SweepSettings(options=ExecOptions(device="cpu", checkpoint_dir=tmp / "ckpt"),
                                 callbacks=tuple(callbacks) + extra, stale_after=stale_after,
                                 heartbeat_every=min(10.0, stale_after / 4), poll=0.2)
        return run_sweep(cells, store, settings)
    return run


def tune(store: Store, search: Search, run, **settings):
    """``optimize`` of one search in the tune ``KEY``."""
    return optimize([search], store, store.ensure_tune(KEY, "test", {}), KEY, run, **settings)


def tpe(url: str, tmp: str, stale_after: float = 60.0, budget: int = 3) -> None:
    """A TPE tune of SGD's lr, ``budget`` trials of 2 epochs (the subprocess of the SIGKILL test runs it)."""
    store = Store(url)
    tune(store, Search("sgd", SPACE, cell, 2), runner(store, Path(tmp), stale_after=stale_after), sampler="tpe",
         budget=budget, seed=0)
    store.close()


# --- packaging and storage -------------------------------------------------------------------------------


def block_optuna(monkeypatch) -> None:
    real = builtins.__import__

    def blocked(name, *args, **kwargs):
        if name == "optuna" or name.startswith("optuna."):
            raise ImportError("No module named 'optuna'")
        return real(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "optuna", raising=False)
    monkeypatch.setattr(builtins, "__import__", blocked)


@pytest.mark.parametrize("what", ["--sampler tpe", "--prune"])
def test_without_optuna_tpe_and_prune_say_what_to_install(monkeypatch, what):
    block_optuna(monkeypatch)
    with pytest.raises(MasbenchError) as error:
        studies.require_optuna(what)
    assert str(error.value) == f"{what} needs optuna: pip install 'masbench[tune]'"


@pytest.mark.parametrize("extra, what", [(["--sampler", "tpe"], "--sampler tpe"), (["--prune"], "--prune")])
def test_the_tune_command_without_optuna_is_one_line_and_writes_nothing(bench_file, tmp_path, monkeypatch, extra,
                                                                        what):
    block_optuna(monkeypatch)
    result = cli.invoke(app, tune_args(bench_file, f"sqlite:///{tmp_path / 'x.db'}", *extra))
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"Error: {what} needs optuna: pip install 'masbench[tune]'"]
    assert not (tmp_path / "x.db").exists()


def test_the_study_of_an_sqlite_store_lives_in_its_own_file_beside_it(tmp_path):
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    assert studies.study_url(url)[0] == f"sqlite:///{tmp_path / 'runs.optuna.db'}"
    store = Store(url)
    storage = studies.storage_for(store.url)
    study = studies.open_study(storage, KEY, "sgd")
    assert study.study_name == f"masbench:{KEY}:sgd"
    from sqlalchemy import inspect

    assert "trial_params" not in inspect(store.engine).get_table_names()  # nothing of Optuna's in the store
    assert (tmp_path / "runs.optuna.db").exists()
    again = studies.open_study(studies.storage_for(store.url), KEY, "sgd")  # a second tune finds the same study
    assert again._study_id == study._study_id
    store.close()


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "mysql://u:secret@host/db"])
def test_a_store_the_studies_cannot_live_beside_is_refused_in_one_line(url):
    with pytest.raises(MasbenchError, match="keep their studies beside the store") as error:
        studies.study_url(url)
    assert "secret" not in str(error.value)


def test_the_study_of_a_postgresql_store_lives_in_its_own_schema():
    from conftest import postgres_database
    from sqlalchemy import inspect

    with postgres_database() as url:
        store = Store(url)
        storage = studies.storage_for(store.url)
        study = studies.open_study(storage, KEY, "sgd")
        studies.add_running_trial(storage, study, {"lr": 0.1}, SPACE, "abc")
        assert "trial_params" in inspect(store.engine).get_table_names(schema=studies.SCHEMA)
        assert "trial_params" not in inspect(store.engine).get_table_names()  # the store's schema: its own tables
        found = studies.trial_of(studies.open_study(studies.storage_for(store.url), KEY, "sgd"), "abc")
        assert found.params == {"lr": 0.1} and found.state.name == "RUNNING"
        store.close()


# --- TPE -----------------------------------------------------------------------------------------------


def test_a_tpe_tune_runs_its_budget_and_a_rerun_trains_nothing(sqlite_url, tmp_path):
    tpe(sqlite_url, str(tmp_path))
    store = Store(sqlite_url)
    study = studies.open_study(studies.storage_for(store.url), KEY, "sgd")
    states = [t.state for t in study.trials]
    assert states == [optuna.trial.TrialState.COMPLETE] * 3
    runs = store.runs_frame()
    assert len(runs) == 3 and set(runs["status"]) == {"completed"}
    for trial in study.trials:  # each trial's value is its run's best validation accuracy
        run = store.get_run(trial.user_attrs["run_key"])
        assert trial.value == max(e.val_acc for e in store.epochs_of(run.id))
        assert run.lr == trial.params["lr"]
    count = Count()
    tune(store, Search("sgd", SPACE, cell, 2), runner(store, tmp_path, (count,)), sampler="tpe", budget=3)
    assert count.epochs == 0 and len(store.runs_frame()) == 3 and list(store.runs_frame()["attempts"]) == [1, 1, 1]
    store.close()


def test_a_fresh_tpe_tune_asks_the_same_trials(tmp_path):
    params = []
    for name in ("a", "b"):
        url = f"sqlite:///{tmp_path / name}.db"
        (tmp_path / name).mkdir()
        tpe(url, str(tmp_path / name), budget=2)  # one random start (seeded), then one of TPE's
        store = Store(url)
        params.append([t.params for t in studies.open_study(studies.storage_for(store.url), KEY, "sgd").trials])
        store.close()
    assert params[0] == params[1]


def test_a_tpe_tune_killed_mid_trial_carries_on_its_study(sqlite_url, tmp_path):
    # Killed by SIGKILL at the third epoch saved: trial 0 (2 epochs) complete, trial 1 one epoch in.
    env = {**os.environ, "MASBENCH_FAULT": "epoch.saved:3", "PYTHONPATH": os.pathsep.join([str(TESTS), *sys.path])}
    code = f"import test_tune_optuna as t; t.tpe({sqlite_url!r}, {str(tmp_path)!r}, stale_after=1.0)"
    killed = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, timeout=120, capture_output=True)
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    store = Store(sqlite_url)
    study = studies.open_study(studies.storage_for(store.url), KEY, "sgd")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "RUNNING"]
    first, second = (store.get_run(t.user_attrs["run_key"]) for t in study.trials)
    assert first.status == "completed" and second.status == "running"
    assert len(store.epochs_of(second.id)) == 1
    count = Count()
    tune(store, Search("sgd", SPACE, cell, 2), runner(store, tmp_path, (count,), stale_after=1.0), sampler="tpe",
         budget=3)
    study = studies.open_study(studies.storage_for(store.url), KEY, "sgd")
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    assert study.trials[1].params == {"lr": second.lr}  # the killed trial resumed, not replaced
    runs = store.runs_frame().set_index("key")
    assert len(runs) == 3 and set(runs["status"]) == {"completed"}
    keys = [t.user_attrs["run_key"] for t in study.trials]
    assert [runs.loc[k, "attempts"] for k in keys] == [1, 2, 1]  # the killed one claimed again, the others once
    assert count.epochs == 1 + 2  # the killed trial's second epoch (its first from its checkpoint), the third's two
    store.close()


def test_two_tpe_tunes_on_one_store_share_the_study_and_train_no_trial_twice(db_url, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), *sys.path])}
    code = f"import test_tune_optuna as t; t.tpe({db_url!r}, {str(tmp_path)!r}, budget=4)"
    tunes = [subprocess.Popen([sys.executable, "-c", code], env=env, cwd=tmp_path, stderr=subprocess.PIPE)
             for _ in range(2)]
    for tune in tunes:
        assert tune.wait(timeout=300) == 0, tune.stderr.read().decode()[-2000:]
    store = Store(db_url)
    study = studies.open_study(studies.storage_for(store.url), KEY, "sgd")
    counted = [t for t in study.trials if not t.user_attrs.get("uncounted")]
    assert [t.state.name for t in counted] == ["COMPLETE"] * 4
    assert all(t.state.name == "FAIL" for t in study.trials if t.user_attrs.get("uncounted"))
    runs = store.runs_frame()
    assert sorted(runs["key"]) == sorted(t.user_attrs["run_key"] for t in counted)
    assert set(runs["status"]) == {"completed"} and set(runs["attempts"]) == {1}
    store.close()


# --- pruning -------------------------------------------------------------------------------------------


def quasirandom_points(n: int) -> list[dict]:
    """Stand-in points: a good learning rate first, then a slow one (pruned at its first rung)."""
    return [{"lr": lr} for lr in (0.1, 0.001, 0.03, 0.002, 0.05, 0.003, 0.2, 0.004, 0.02, 0.006)[:n]]


@pytest.mark.parametrize("sampler, pack, pruner", [("quasirandom", False, "halving"), ("quasirandom", True, "halving"),
                                                   ("tpe", True, "halving"), ("quasirandom", False, "hyperband")])
def test_pruned_trials_are_stored_pruned_with_their_epochs_and_the_budget_is_in_epochs(sqlite_url, tmp_path, sampler,
                                                                                        pack, pruner):
    store = Store(sqlite_url)
    search = Search("sgd", SPACE, lambda p, n: cell(p, n, epochs=3), 3, quasirandom_points)
    outcome = tune(store, search, runner(store, tmp_path, pack=pack), sampler=sampler, budget=3, prune=pruner,
                   per_round=3)
    spent = outcome.spent["sgd"]
    runs = store.runs_frame()
    epochs = {key: len(store.epochs_of(run_id)) for key, run_id in zip(runs["key"], runs["id"])}
    assert spent.unit == "epochs" and spent.budget == 9 and spent.epochs == sum(epochs.values()) <= 9
    pruned = runs[runs["status"] == "pruned"]
    assert spent.pruned == len(pruned) and spent.trials == len(runs)
    # Halving over the quasirandom stand-ins prunes the slow second one; TPE's points and Hyperband's brackets
    # (trials split by a hash of their number) may leave none to prune in 9 epochs.
    assert len(pruned) >= 1 or sampler == "tpe" or pruner == "hyperband"
    assert all(f"by {pruner}" in error for error in pruned["error"])
    for row in pruned.itertuples():
        assert 1 <= epochs[row.key] < 3 and row.error.startswith(f"pruned after epoch {epochs[row.key]} ")
    assert set(runs["status"]) <= {"pruned", "completed", "diverged"} and (runs["status"] == "completed").any()
    study = studies.open_study(studies.storage_for(store.url), KEY, "sgd")
    by_key = {t.user_attrs["run_key"]: t for t in study.trials}
    assert set(by_key) == set(runs["key"])
    for row in runs.itertuples():
        assert by_key[row.key].state.name == {"pruned": "PRUNED", "completed": "COMPLETE"}.get(row.status, "COMPLETE")
        assert sorted(by_key[row.key].intermediate_values) == list(range(1, epochs[row.key] + 1))
    if sampler == "quasirandom" and pack:  # the first round's pack of 3: one member pruned alone, the others went on
        first = [store.get_run(key) for key in runs["key"][:3]]
        assert [run.config["execution"].get("packed") for run in first] == [3, 3, 3]
        assert {run.status for run in first} == {"pruned", "completed"}
    store.close()


def pruned_tune(url: str, tmp: str, stale_after: float = 60.0) -> None:
    """A quasirandom tune with pruning, unpacked (the subprocess of the SIGKILL test runs it)."""
    store = Store(url)
    search = Search("sgd", SPACE, lambda p, n: cell(p, n, epochs=3), 3, quasirandom_points)
    tune(store, search, runner(store, Path(tmp), stale_after=stale_after), sampler="quasirandom", budget=3,
         prune="halving", per_round=3)
    store.close()


def test_a_pruned_tune_killed_mid_trial_resumes_it_under_the_same_trial(sqlite_url, tmp_path):
    # Killed at the second epoch saved: trial 0, reported to its study for epochs 1 and 2, is one epoch short.
    env = {**os.environ, "MASBENCH_FAULT": "epoch.saved:2", "PYTHONPATH": os.pathsep.join([str(TESTS), *sys.path])}
    code = f"import test_tune_optuna as t; t.pruned_tune({sqlite_url!r}, {str(tmp_path)!r}, stale_after=1.0)"
    killed = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, timeout=120, capture_output=True)
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    pruned_tune(sqlite_url, str(tmp_path), stale_after=1.0)
    store = Store(sqlite_url)
    study = studies.open_study(studies.storage_for(store.url), KEY, "sgd")
    runs = store.runs_frame().set_index("key")
    assert sorted(t.user_attrs["run_key"] for t in study.trials) == sorted(runs.index)  # one trial per cell
    first = store.get_run(cell(quasirandom_points(1)[0], 0, epochs=3).spec.key)
    assert (first.status, first.attempts, len(store.epochs_of(first.id))) == ("completed", 2, 3)
    for trial in study.trials:
        run = store.get_run(trial.user_attrs["run_key"])
        assert trial.state.name == ("PRUNED" if run.status == "pruned" else "COMPLETE")
        assert sorted(trial.intermediate_values) == [e.epoch for e in store.epochs_of(run.id)]
    store.close()


# --- the command ------------------------------------------------------------------------------------------


def test_a_tpe_tune_runs_end_to_end_and_a_rerun_trains_nothing(bench_file, tmp_path):
    url = f"sqlite:///{tmp_path / 'tune.db'}"
    args = tune_args(bench_file, url, "--sampler", "tpe", "--budget", "2", "--final-seeds", "1")
    first = cli.invoke(app, args)
    assert first.exit_code == 0, first.output
    for label in ("adam", "sgd", "mas"):
        line = next(line for line in first.stdout.splitlines() if line.startswith(f"  {label}:"))
        assert "2/2 trials completed; chosen trial" in line and "(mean of 1/1 seeds)" in line
    assert query(url, "select phase, count(*) from trials group by phase order by phase") == [("final", 3),
                                                                                               ("search", 6)]
    runs = query(url, "select key, attempts from runs order by key")
    assert len(runs) == 9 and all(attempts == 1 for _, attempts in runs)
    store = Store(url)
    key = store.tunes_frame()["key"][0]
    storage = studies.storage_for(store.url)
    frame = store.trials_frame(key)
    for label in ("adam", "sgd", "mas"):  # the study's trials are the store's, value for value
        study = studies.open_study(storage, key, label)
        search = frame[(frame["optimizer"] == label) & (frame["phase"] == "search")].sort_values("number")
        assert [t.state.name for t in study.trials] == ["COMPLETE"] * 2
        assert [t.value for t in study.trials] == list(search["best_val_acc"])
        assert [t.params for t in study.trials] == list(search["params"])
    store.close()
    second = cli.invoke(app, args)
    assert second.exit_code == 0, second.output
    assert query(url, "select key, attempts from runs order by key") == runs
    chosen = [line for line in first.stdout.splitlines() if line.startswith("  ")]
    assert [line for line in second.stdout.splitlines() if line.startswith("  ")] == chosen


def test_a_pruned_tune_reports_its_epochs_per_optimizer(bench_file, tmp_path):
    url = f"sqlite:///{tmp_path / 'tune.db'}"
    args = tune_args(bench_file, url, "--prune", "--budget", "3", "--final-seeds", "0", "--baselines", "sgd",
                     "--lambdas", "0.5", "--epochs", "3")
    result = cli.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "tune tiny: 3 trials' epochs per optimizer, pruned by halving (quasirandom, seed 0)" in result.stdout
    store = Store(url)
    frame = store.trials_frame()
    for label in ("sgd", "mas[lambda_adam=0.5]"):
        line = next(line for line in result.stdout.splitlines() if line.startswith(f"  {label}:"))
        trials = frame[frame["optimizer"] == label]
        spent, pruned = int(trials["epochs"].sum()), int((trials["status"] == "pruned").sum())
        assert f", {pruned} pruned, {spent}/9 epochs" in line and spent <= 9
    store.close()
    runs = query(url, "select key, status, attempts from runs order by key")
    again = cli.invoke(app, args)  # a rerun trains nothing: no pruned trial again, no new trial
    assert again.exit_code == 0, again.output
    assert query(url, "select key, status, attempts from runs order by key") == runs
    assert [line for line in again.stdout.splitlines() if line.startswith("  ")] == \
        [line for line in result.stdout.splitlines() if line.startswith("  ")]


def test_a_bad_pruner_is_one_line(bench_file, tmp_path):
    result = cli.invoke(app, tune_args(bench_file, f"sqlite:///{tmp_path / 'x.db'}", "--prune", "--pruner", "nope"))
    assert result.exit_code == 1
    assert result.output.strip() == "Error: Invalid --pruner: 'nope' (valid: halving, hyperband)"
    assert not (tmp_path / "x.db").exists()


def test_a_pruner_without_prune_is_one_line(bench_file, tmp_path):
    result = cli.invoke(app, tune_args(bench_file, f"sqlite:///{tmp_path / 'x.db'}", "--pruner", "hyperband"))
    assert result.exit_code == 1
    assert result.output.strip() == "Error: --pruner hyperband goes with --prune"
    assert not (tmp_path / "x.db").exists()


@pytest.mark.parametrize("extra, says", [
    (["--sampler", "tpe"], "tune tiny: 3 optimizer(s), 2 trials each; TPE asks its trials as the tune goes"),
    (["--prune"], "with --prune, these are the first trials: the epochs that pruning saves buy more"),
])
def test_dry_run_of_tpe_or_pruning_writes_nothing(bench_file, tmp_path, extra, says):
    result = cli.invoke(app, tune_args(bench_file, f"sqlite:///{tmp_path / 'x.db'}", "--budget", "2", "--dry-run",
                                       *extra))
    assert result.exit_code == 0, result.output
    assert says in result.stdout
    assert list(tmp_path.iterdir()) == [bench_file]  # neither the store nor the studies' file
