"""Filters of the reading commands (``report``, ``compare``, ``plot``, ``runs``): ``--optimizer`` (SQL, on the runs'
column) and ``--where NAME=VALUE`` (on each run's canonical config), on the store of ``report_fixtures``."""

from __future__ import annotations

import csv
import io

import pytest
from report_fixtures import RUNS, fill, spec_for
from typer.testing import CliRunner

from masbench.cli import app
from masbench.store import Store
from masbench.store.queries import run_accuracy_query

runner = CliRunner()


@pytest.fixture
def db(db_url):
    store = Store(db_url)
    fill(store)
    store.close()
    return db_url


def cells(args, db):
    result = runner.invoke(app, ["report", "--format", "csv", *args, "--db", db])
    assert result.exit_code == 0, result.output
    return {(row["model"], row["name"]) for row in csv.DictReader(io.StringIO(result.stdout))}


def expected(keep):
    return {(model, spec_for(optimizer, lam, model, 0).name) for optimizer, lam, model in RUNS
            if keep(optimizer, lam, model)}


@pytest.mark.parametrize("args, keep", [
    (["--optimizer", "adam,mas"], lambda o, lam, m: o in ("adam", "mas")),
    (["--optimizer", "sgd"], lambda o, lam, m: o == "sgd"),
    (["--where", "lambda_adam=0.3"], lambda o, lam, m: lam == 0.3),
    (["--where", "lambda_adam=3e-1", "--where", "lambda_sgd=0.70"], lambda o, lam, m: lam == 0.3),
    (["--where", "lr=0.01", "--optimizer", "mas", "--model", "mlp"], lambda o, lam, m: o == "mas" and m == "mlp"),
    (["--where", "epochs=3", "--where", "optimizer=adam"], lambda o, lam, m: o == "adam"),
])
def test_report_keeps_exactly_the_runs_the_filters_name(db, args, keep):
    assert cells(args, db) == expected(keep)


def test_the_optimizer_filter_is_sql_on_the_runs_column():
    text = str(run_accuracy_query(optimizer=("adam", "mas")))
    assert "runs.optimizer IN" in text


@pytest.mark.parametrize("args, error", [
    (["--where", "lrr=0.01"], "Error: Invalid --where lrr=0.01: no run has a setting 'lrr' (valid: amsgrad, "),
    (["--where", "lr"], "Error: Invalid --where 'lr' (NAME=VALUE, a setting of the runs, e.g. lr=0.003)"),
    (["--optimizer", "adam,,mas"], "Error: Invalid --optimizer 'adam,,mas' (optimizer names, comma-separated"),
    (["--where", "lr=0.02"], "Error: no runs in "),
])
def test_bad_or_empty_filters_are_one_line(db, args, error):
    result = runner.invoke(app, ["report", *args, "--db", db])
    assert result.exit_code == 1
    assert result.stderr.startswith(error) and result.stderr.count("\n") == 1, result.stderr
    if args[0] == "--where" and "=" in args[1] and args[1] != "lr=0.02":
        assert "lambda_adam, " in result.stderr and "lr, " in result.stderr  # the valid names are listed


def test_compare_and_plot_take_the_filters(db, tmp_path, monkeypatch):
    import matplotlib

    monkeypatch.setitem(matplotlib.rcParams, "svg.fonttype", "none")  # the legend as text, to be read
    both = runner.invoke(app, ["compare", "adam", "sgd", "--optimizer", "adam,sgd", "--where", "lr=0.01",
                               "--db", db])
    assert both.exit_code == 0, both.output
    assert "sgd[lr=0.01]" in both.stdout
    one = runner.invoke(app, ["compare", "adam", "sgd", "--optimizer", "adam", "--db", db])
    assert one.exit_code == 1 and "has all of adam, sgd" in one.stderr, one.output  # sgd's runs filtered out
    out = tmp_path / "curves.svg"
    result = runner.invoke(app, ["plot", "--output", str(out), "--model", "mlp", "--optimizer", "sgd", "--db", db])
    assert result.exit_code == 0, result.output
    svg = out.read_text()
    assert ">SGD<" in svg and ">Adam<" not in svg and "MAS" not in svg  # the legend: the filtered cell alone


def test_the_gate_refuses_the_filters(db, tmp_path):
    result = runner.invoke(app, ["compare", "--baseline", str(tmp_path / "b.csv"), "--optimizer", "adam", "--db", db])
    assert result.exit_code == 1 and "give it without them" in result.stderr


def test_html_shows_only_the_filtered_cells(db):
    result = runner.invoke(app, ["report", "--format", "html", "--optimizer", "sgd", "--db", db])
    assert result.exit_code == 0, result.output
    assert result.stdout.count('<tr class="cell') == 1 and "sgd[lr=0.01]" in result.stdout
