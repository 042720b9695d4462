"""Sweeps over mixes: ``--mix A,B,C --mix-step S`` (and ``mix:``/``mix_step:`` in benchmarks.yaml), mix baselines."""

from __future__ import annotations

import csv
import io
import json

import pytest
from typer.testing import CliRunner

from masbench.grid.benchmarks import plan_sweep
from masbench.cli import app
from masbench.cli.options import split_baselines
from masbench.errors import MasbenchError

runner = CliRunner()
BENCHMARKS = """
defaults: {}
benchmarks:
  simplex:
    dataset: digits
    models: [mlp]
    lambdas: "0.5"
    baselines: [adam, "mix:sgd=0.8,adam=0.2"]
    mix: adam,sgd,rmsprop
    mix_step: 0.25
    epochs: 1
"""


def _plan(tmp_path, **overrides):
    path = tmp_path / "benchmarks.yaml"
    path.write_text(BENCHMARKS)
    return plan_sweep(benchmark="simplex", benchmarks_path=path, overrides=overrides)[1]


def test_a_yaml_mix_grid_is_the_simplex_after_baselines_and_mas(tmp_path):
    specs = [cell.spec for cell in _plan(tmp_path)]
    assert [s.optimizer for s in specs[:3]] == ["adam", "mix", "mas"]
    assert specs[1].weights == {"adam": 0.2, "sgd": 0.8}
    mixes = [s.weights for s in specs[3:]]
    assert len(mixes) == 15  # C(4 + 2, 2)
    assert all(s.optimizer == "mix" for s in specs[3:]) and len({s.config_key for s in specs}) == len(specs)
    assert all(sum(w.values()) == 1.0 and all(v * 4 == int(v * 4) for v in w.values()) for w in mixes)
    assert {"adam": 0.25, "sgd": 0.25, "rmsprop": 0.5} in mixes


def test_flags_override_the_file_and_are_counted_in_the_cap(tmp_path):
    specs = [cell.spec for cell in _plan(tmp_path, mix=["adam", "sgd"], mix_step="0.1")]
    # 11 points; the baseline mix:adam=0.2,sgd=0.8 is one of them, and one cell is run once.
    assert sum(s.optimizer == "mix" for s in specs) == 11
    assert {repr(v) for s in specs if s.weights for v in s.weights.values()} <= {
        "0.0", "0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9", "1.0"}
    path = tmp_path / "benchmarks.yaml"
    with pytest.raises(MasbenchError, match=r"more than the cap of 100.*mix\(es\)|mix\(es\).*more than the cap of 100"):
        plan_sweep(benchmark="simplex", benchmarks_path=path, max_cells=100,
                   overrides=dict(mix=["adam", "sgd", "rmsprop"], mix_step="0.05"))  # 231 mixes


@pytest.mark.parametrize("overrides, message", [
    (dict(mix=["adam", "sgd"], mix_step="0.3"), "Invalid mix step: '0.3'"),
    (dict(mix=["adam"], mix_step="0.5"), "at least two components"),
    (dict(mix=["adam", "adam"], mix_step="0.5"), "at least two components, each once"),
    (dict(mix=["adam", "bogus"], mix_step="0.5"), "unknown component 'bogus'"),
    (dict(baselines=["mix"]), "give its weights"),
    (dict(baselines=["mix:adam=1,adam=1"]), "given twice"),
])
def test_bad_mix_grids_are_one_line(tmp_path, overrides, message):
    with pytest.raises(MasbenchError) as error:
        _plan(tmp_path, **overrides)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_mix_step_needs_mix(tmp_path):
    path = tmp_path / "benchmarks.yaml"
    path.write_text(BENCHMARKS.replace("    mix: adam,sgd,rmsprop\n", ""))
    with pytest.raises(MasbenchError, match="give mix .* and mix_step together"):
        plan_sweep(benchmark="simplex", benchmarks_path=path)


def test_baselines_flag_keeps_each_mix_whole():
    assert split_baselines("adam, mix:adam=0.5,sgd=0.5,radam,mix:adam=0.3,sgd=0.5") == [
        "adam", "mix:adam=0.5,sgd=0.5", "radam", "mix:adam=0.3,sgd=0.5"]
    with pytest.raises(MasbenchError, match="gives 'mix:adam=1' twice"):
        split_baselines("mix:adam=1,mix:adam=1")


def test_a_three_component_simplex_sweep_produces_a_report(tmp_path):
    db = f"sqlite:///{tmp_path / 's.db'}"
    result = runner.invoke(app, ["sweep", "--dataset", "digits", "--models", "mlp", "--lambdas", "0.5",
                                 "--no-baselines", "--mix", "adam,sgd,rmsprop", "--mix-step", "0.5", "--epochs", "1",
                                 "--train-subset", "64", "--test-subset", "64", "--db", db])
    assert result.exit_code == 0, result.output
    report = runner.invoke(app, ["report", "--format", "csv", "--db", db])
    assert report.exit_code == 0, report.output
    rows = list(csv.DictReader(io.StringIO(report.stdout)))
    mixes = [row for row in rows if row["name"].startswith("mix:")]
    assert len(rows) == 7 and len(mixes) == 6
    weights = sorted(tuple(sorted(json.loads(row["weights"]).items())) for row in mixes)
    # Each point of the simplex, less its components of weight 0 (they move nothing: not part of the cell).
    assert weights == sorted(tuple(sorted((k, v) for k, v in {"adam": a, "sgd": s, "rmsprop": r}.items() if v))
                             for a, s, r in [(0, 0, 1), (0, .5, .5), (0, 1, 0), (.5, 0, .5), (.5, .5, 0), (1, 0, 0)])
    assert all(row["n"] == "1" and float(row["avg_acc"]) >= 0 for row in mixes)
    assert [row["weights"] for row in rows if row["name"].startswith("mas[")] == [""]
    markdown = runner.invoke(app, ["report", "--format", "markdown", "--db", db]).stdout
    assert "| mix:adam=0.5,sgd=0.5 |" in markdown and "| mix:sgd=1.0 |" in markdown  # weight-0 parts left out
