"""``masbench export mlflow|tensorboard``: the store's runs, read back with each tracker's own reader."""

from __future__ import annotations

import importlib.util

import pytest
from typer.testing import CliRunner

from masbench.cli import app
from masbench.store import Store
from masbench.sweep import run_values
from tests.report_fixtures import RUNS, epoch_row, fill, spec_for

RUN_COUNT = sum(len(seeds) for seeds in RUNS.values())  # 16: pending and diverged runs included
EPOCH_COUNT = sum(len(a) if isinstance(a, list) else a == "diverged" for s in RUNS.values() for a in s.values())


@pytest.fixture
def db(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = Store(url)
    fill(store)
    store.close()
    return url


def _export(*args):
    result = CliRunner().invoke(app, ["export", *args])
    assert result.exit_code == 0, result.output
    return result.output


def _grow(db: str) -> str:
    """A fourth run of sgd/mlp seed 3 with two epochs, then its third: a run exported while it trains."""
    store = Store(db)
    run = store.ensure_run(run_values(spec_for("sgd", None, "mlp", 3)))
    store.claim(run.id, "w", stale_after=60)
    for epoch, acc in ((1, 0.5), (2, 0.6)):
        store.record_epoch(run.id, "w", epoch_row(epoch, acc))
    store.close()
    return run.key


def _finish(db: str, key: str) -> None:
    store = Store(db)
    run = store.get_run(key)
    store.record_epoch(run.id, "w", epoch_row(3, 0.7))
    store.finish(run.id, "w", "completed")
    store.close()


# --- MLflow -------------------------------------------------------------------------------------------------

needs_mlflow = pytest.mark.skipif(importlib.util.find_spec("mlflow") is None, reason="needs mlflow")


@pytest.fixture(scope="module")
def mlflow_db(tmp_path_factory):
    """One MLflow database for the module (making its tables takes seconds); each test its own experiment."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def _mlflow_runs(uri: str, experiment: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    return client, client.search_runs([found.experiment_id], max_results=1000)


@needs_mlflow
def test_mlflow_holds_every_run_with_params_metrics_by_step_tags_and_status(db, mlflow_db):
    out = _export("mlflow", "--tracking-uri", mlflow_db, "--experiment", "every", "--db", db)
    assert f"{RUN_COUNT} runs created" in out and f"({EPOCH_COUNT} epochs written)" in out

    client, runs = _mlflow_runs(mlflow_db, "every")
    assert len(runs) == RUN_COUNT
    adam = run_values(spec_for("adam", None, "mlp", 0))
    (run,) = [r for r in runs if r.data.tags["masbench.run_key"] == adam["key"]]
    assert run.info.run_name == "adam[lr=0.01] seed=0" == run.data.tags["mlflow.runName"]
    assert run.data.tags["masbench.config_key"] == adam["config_key"]
    assert run.data.params["optimizer"] == "adam" and float(run.data.params["lr"]) == 0.01
    assert run.data.params["seed"] == "0" and run.data.params["model"] == "mlp"
    assert run.info.status == "FINISHED"
    history = client.get_metric_history(run.info.run_id, "test_acc")
    assert [(m.step, m.value) for m in history] == [(1, 0.80), (2, 0.90), (3, 0.85)]
    assert {m.key for m in history} == {"test_acc"} and set(run.data.metrics) >= {"train_loss", "lr", "seconds"}
    # One cell, three seeds: one config_key.
    seeds = [r for r in runs if r.data.tags["masbench.config_key"] == adam["config_key"]]
    assert sorted(int(r.data.params["seed"]) for r in seeds) == [0, 1, 2]
    statuses = {r.data.tags["masbench.status"]: r.info.status for r in runs}
    assert statuses == {"completed": "FINISHED", "diverged": "FAILED", "pending": "SCHEDULED"}
    diverged = [r for r in runs if r.data.tags["masbench.status"] == "diverged"]
    assert all("train_loss" not in r.data.metrics for r in diverged)  # an infinite loss is left out


@needs_mlflow
def test_mlflow_export_again_adds_no_run_and_no_epoch_twice(db, mlflow_db):
    key = _grow(db)
    args = ("mlflow", "--tracking-uri", mlflow_db, "--experiment", "again", "--db", db)
    _export(*args)
    again = _export(*args)
    assert f"0 runs created, 0 updated, {RUN_COUNT + 1} already up to date (0 epochs written)" in again
    _finish(db, key)
    grown = _export(*args)
    assert "0 runs created, 1 updated" in grown and "(1 epochs written)" in grown

    client, runs = _mlflow_runs(mlflow_db, "again")
    assert len(runs) == RUN_COUNT + 1
    (run,) = [r for r in runs if r.data.tags["masbench.run_key"] == key]
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "test_acc")] == [
        (1, 0.5), (2, 0.6), (3, 0.7)]
    assert run.info.status == "FINISHED" and run.data.tags["masbench.last_epoch"] == "3"


@needs_mlflow
def test_mlflow_export_takes_the_report_filters(db, mlflow_db):
    _export("mlflow", "--tracking-uri", mlflow_db, "--db", db, "--model", "cnn")
    _, runs = _mlflow_runs(mlflow_db, "masbench")
    assert len(runs) == 4 and {r.data.params["model"] for r in runs} == {"cnn"}


# --- TensorBoard --------------------------------------------------------------------------------------------


def _scalars(run_dir, tag):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir))
    events.Reload()
    return [(e.step, round(e.value, 6)) for e in events.Scalars(tag)]


def _run_dirs(root):
    return sorted(p.parent for p in root.rglob("masbench.json"))


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None, reason="needs tensorboard")
def test_tensorboard_holds_every_run_by_epoch_and_export_again_adds_nothing(db, tmp_path):
    root = tmp_path / "tb"
    key = _grow(db)
    out = _export("tensorboard", str(root), "--db", db)
    assert f"{RUN_COUNT + 1} runs created" in out
    dirs = _run_dirs(root)
    assert len(dirs) == RUN_COUNT + 1 and not [p for p in root.iterdir() if p.name.startswith(".")]
    adam = run_values(spec_for("adam", None, "mlp", 0))
    (adam_dir,) = [d for d in dirs if d.name.endswith(adam["key"])]
    assert adam_dir.relative_to(root).parts == ("digits", "mlp", f"adam[lr=0.01] seed=0 {adam['key']}")
    assert _scalars(adam_dir, "test_acc") == [(1, 0.8), (2, 0.9), (3, 0.85)]

    files = sorted(p for p in root.rglob("events.out.tfevents.*"))
    again = _export("tensorboard", str(root), "--db", db)
    assert f"0 runs created, 0 updated, {RUN_COUNT + 1} already up to date" in again
    assert sorted(p for p in root.rglob("events.out.tfevents.*")) == files  # nothing rewritten

    _finish(db, key)
    grown = _export("tensorboard", str(root), "--db", db)
    assert "0 runs created, 1 updated" in grown
    (grown_dir,) = [d for d in _run_dirs(root) if d.name.endswith(key)]
    assert _scalars(grown_dir, "test_acc") == [(1, 0.5), (2, 0.6), (3, 0.7)]  # each epoch once
    assert len(list(grown_dir.glob("events.out.tfevents.*"))) == 1
    assert len(_run_dirs(root)) == RUN_COUNT + 1 and not [p for p in root.iterdir() if p.name.startswith(".")]


# --- without the extras -------------------------------------------------------------------------------------


@pytest.mark.parametrize("args, extra", [
    (["mlflow", "--tracking-uri", "sqlite:///never.db"], "mlflow"),
    (["tensorboard", "never"], "tensorboard"),
])
def test_without_the_tracker_the_export_refuses_in_one_line(db, tmp_path, monkeypatch, args, extra):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == extra else real(name, *a))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["export", *args, "--db", db])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert lines == [f"Error: exporting to {extra} needs the {extra} package: pip install 'masbench[{extra}]'"]
    assert list(tmp_path.iterdir()) == [tmp_path / "store.db"]  # nothing written


# --- the destination: one path check, before anything is written -------------------------------------------


@pytest.mark.parametrize("uri, message", [
    ("{dir}/pipe", "Error: --tracking-uri {dir}/pipe is not a folder (it is a FIFO)"),
    ("file://{dir}/pipe", "Error: --tracking-uri {dir}/pipe is not a folder (it is a FIFO)"),
    ("sqlite:///{dir}/pipe", "Error: --tracking-uri's database file {dir}/pipe is not a regular file (it is a FIFO)"),
    ("sqlite:///file:{dir}/pipe?mode=rwc&uri=true",
     "Error: --tracking-uri's database file {dir}/pipe is not a regular file (it is a FIFO)"),
    ("/dev/null", "Error: --tracking-uri /dev/null is not a folder (it is a character device)"),
])
def test_an_mlflow_tracking_uri_that_is_a_fifo_or_a_device_is_said_so(db, tmp_path, monkeypatch, uri, message):
    import os

    os.mkfifo(tmp_path / "pipe")
    real = importlib.util.find_spec
    # MLflow itself is never reached: the check comes first (so the test runs where mlflow is not installed).
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "mlflow" else real(name, *a))
    result = CliRunner().invoke(app, ["export", "mlflow", "--tracking-uri", uri.format(dir=tmp_path), "--db", db])
    assert result.exit_code == 1 and result.stderr == message.format(dir=tmp_path) + "\n", result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe", "store.db"]
