"""``masbench runs`` (every run of a store, with the report's filters and formats), ``masbench list models``
(torchvision's classifiers by name) and the "did you mean" of unknown names."""

from __future__ import annotations

import csv
import io
import json

import pytest
from report_fixtures import RUNS, fill, spec_for
from typer.testing import CliRunner

from masbench.cli import app
from masbench.store import Store
from masbench.text.shown import did_you_mean

runner = CliRunner()

# report_fixtures: per run, (optimizer, lambda, model, seed) -> its status and best test accuracy (percent).
EXPECTED = {(o, lam, m, seed): ("pending", None) if accs == "pending" else ("diverged", 50.0) if accs == "diverged"
            else ("completed", round(max(accs) * 100, 4))
            for (o, lam, m), seeds in RUNS.items() for seed, accs in seeds.items()}


@pytest.fixture
def db(db_url):
    store = Store(db_url)
    fill(store, environment={"device": "cpu"})
    store.close()
    return db_url


def listed(args, db):
    result = runner.invoke(app, ["runs", "--format", "json", *args, "--db", db])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_every_run_once_with_its_status_seed_and_best(db):
    rows = listed([], db)
    assert len(rows) == len(EXPECTED) and len({row["id"] for row in rows}) == len(rows)
    got = {(row["cell"], row["model"], row["seed"]): (row["status"], row["best_acc"]) for row in rows}
    want = {(spec_for(o, lam, m, seed).name, m, seed): value for (o, lam, m, seed), value in EXPECTED.items()}
    assert got == want
    started = {row["status"]: row["started"] is not None for row in rows}
    assert started == {"completed": True, "diverged": True, "pending": False}


def test_the_filters_are_the_reports(db):
    rows = listed(["--optimizer", "mas", "--where", "lambda_adam=0.7"], db)
    assert [(row["seed"], row["status"]) for row in rows] == [(0, "completed"), (1, "completed"), (2, "diverged")]
    assert listed(["--model", "cnn", "--where", "seed=1"], db)[0]["best_acc"] == 77.0


@pytest.mark.parametrize("fmt, check", [
    ("csv", lambda text: len(list(csv.DictReader(io.StringIO(text)))) == len(EXPECTED)),
    ("markdown", lambda text: "| id | status | cell | seed | best acc | started |" in text
     and "| completed | adam[lr=0.01] digits/mlp | 0 | 90.00 |" in text),
    ("latex", lambda text: r"\toprule" in text and "90.00" in text),
    ("rich", lambda text: "16 runs: 14 completed, 1 pending, 1 diverged" in text and "90.00" in text),
    ("html", lambda text: text.startswith("<!DOCTYPE html>") and text.count('<tr class="cell') == len(EXPECTED)
     and text.count('<tr class="cell flagged"') == 1),
])
def test_every_format_of_the_report(db, fmt, check):
    result = runner.invoke(app, ["runs", "--format", fmt, "--db", db])
    assert result.exit_code == 0, result.output
    assert check(result.stdout), result.stdout


def test_runs_reads_and_never_creates_a_store(tmp_path):
    result = runner.invoke(app, ["runs", "--db", f"sqlite:///{tmp_path / 'none.db'}"])
    assert result.exit_code == 1 and result.stderr.startswith("Error: no database at ")
    assert not (tmp_path / "none.db").exists()


def test_list_models_names_torchvision_classifiers():
    from torchvision import models

    result = runner.invoke(app, ["list", "models"])
    assert result.exit_code == 0, result.output
    names = [line.split()[0] for line in result.stdout.splitlines()[1:]]
    assert [n for n in names if n.startswith("tv:")] == [f"tv:{n}" for n in models.list_models(module=models)]
    assert "tv:resnet18" in names and "tv:NAME" not in names


@pytest.mark.parametrize("args, hint", [
    (["--model", "tv:resnet_18"], "Error: Unknown torchvision model 'tv:resnet_18' (did you mean tv:resnet18? valid:"),
    (["--model", "resnet81"], "Error: Unknown model: 'resnet81' (did you mean resnet18? valid:"),
    (["--dataset", "digts"], "Error: Unknown dataset: 'digts' (did you mean digits? valid:"),
    (["--optimizer", "adamww"], "Error: Unknown optimizer: 'adamww' (did you mean adamw? valid:"),
    (["--optimizer", "zzzz"], "Error: Unknown optimizer: 'zzzz' (valid:"),
])
def test_unknown_names_get_a_did_you_mean(args, hint, tmp_path):
    result = runner.invoke(app, ["run", *(["--dataset", "digits"] if "--dataset" not in args else []), *args,
                                 "--db", f"sqlite:///{tmp_path / 'x.db'}"])
    assert result.exit_code == 1
    assert result.stderr.startswith(hint) and result.stderr.count("\n") == 1, result.stderr
    assert not (tmp_path / "x.db").exists()


def test_did_you_mean_is_one_helper():
    assert did_you_mean("tv:resnet_18", ["tv:resnet18", "tv:resnet34"]) == "did you mean tv:resnet18? "
    assert did_you_mean("qqq", ["adam", "sgd"]) == ""
