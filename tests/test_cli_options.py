"""The options ``run`` and ``sweep`` share: one set, one spec builder, so a flag means the same in both."""

from __future__ import annotations

import sqlite3
import textwrap
import typing

import pytest
import typer
from typer.testing import CliRunner

from masbench.grid.grids import RUN_FIELDS
from masbench.cli import app, train
from masbench.cli.options import spec_values
from masbench.errors import MasbenchError
from masbench.spec import RunSpec

runner = CliRunner()

# RunSpec fields that are a sweep's grid axes: `run` takes one value, `sweep` these options instead.
GRID_AXES = {
    "benchmark": ["benchmark"],
    "dataset": ["dataset"],
    "model": ["models"],
    "optimizer": ["baselines", "no_baselines", "lambdas"],
    "optimizer_args": ["optimizer_args"],  # per baseline: OPTIMIZER:KEY=VALUE
    "weights": ["mix", "mix_step", "baselines"],  # a grid over the simplex; a baseline mix:adam=0.5,sgd=0.5
    "lambda_adam": ["lambdas"],
    "lambda_sgd": ["lambdas"],
    "lambda_schedule": ["lambda_schedule"],  # a list: constant (the lambdas grid) and linear ones
    "seed": ["seeds", "seed_list"],
    # An axis (1e-3,3e-3) or a value per optimizer (adam=1e-3,sgd=0.1): a sweep's option takes text (issue 20).
    "lr": ["lr"],
    "momentum": ["momentum"],
    "weight_decay": ["weight_decay"],
}
NOT_IN_SWEEP: set[str] = set()
EXEC_OPTIONS = ["device", "db", "data_dir", "amp", "channels_last", "compile", "checkpoint_dir", "claim_timeout"]


def options_of(command: str) -> dict[str, object]:
    return {param.name: param for param in typer.main.get_command(app).commands[command].params}


def described(param) -> tuple:
    return param.opts, param.secondary_opts, param.help, param.default, param.is_flag


def annotations_of(command) -> dict[str, object]:
    return typing.get_type_hints(command, include_extras=True)


# Set through another option: a mix's weights are the text of --optimizer mix:adam=0.3,sgd=0.7.
THROUGH = {"weights": "optimizer"}


def test_every_spec_field_is_a_run_option():
    run = set(options_of("run"))
    assert set(RunSpec.model_fields) - set(THROUGH) <= run and set(THROUGH.values()) <= run


def test_every_spec_option_of_run_is_the_same_option_of_sweep():
    run, sweep = options_of("run"), options_of("sweep")
    for name in RunSpec.model_fields:
        if name in GRID_AXES:
            assert set(GRID_AXES[name]) <= set(sweep), name
        elif name in NOT_IN_SWEEP:
            assert name not in sweep, f"sweep takes --{name} now: drop it from NOT_IN_SWEEP"
        else:
            assert name in sweep, f"run takes --{name} and sweep does not"
            assert described(sweep[name]) == described(run[name]), name
            assert annotations_of(train.sweep)[name] is annotations_of(train.run)[name], f"--{name}: one shared type"


def test_every_execution_option_is_the_same_in_run_and_sweep():
    run, sweep = options_of("run"), options_of("sweep")
    for name in EXEC_OPTIONS:
        assert described(sweep[name]) == described(run[name]), name
        assert annotations_of(train.sweep)[name] is annotations_of(train.run)[name], f"--{name}: one shared type"


def test_every_setting_of_a_grid_can_be_overridden_by_a_sweep_flag():
    assert set(RUN_FIELDS) <= set(options_of("sweep"))


@pytest.mark.parametrize(
    "params, fields, values",
    [
        (dict(lr=0.01, momentum=None, device="cpu"), ["lr", "momentum"], dict(lr=0.01)),
        (dict(betas="0.8, 0.99", amsgrad=False), ["betas", "amsgrad"], dict(betas=(0.8, 0.99), amsgrad=False)),
        (dict(dataset="digits", lr=0.1), RUN_FIELDS, dict(lr=0.1)),  # a sweep's --dataset is not a cell value
        (dict(dataset="digits", seed=0), RunSpec.model_fields, dict(dataset="digits", seed=0)),
    ],
)
def test_spec_values_keeps_the_given_fields_and_parses_them(params, fields, values):
    assert spec_values(params, fields) == values


def test_spec_values_rejects_bad_betas_in_one_line():
    with pytest.raises(MasbenchError, match=r"^Invalid --betas: '0.9' \(expected two numbers, B1,B2"):
        spec_values(dict(betas="0.9"), ["betas"])


# --- the same flags give the same cell ----------------------------------------------------------------


def spec_of_run(monkeypatch, args: list[str]) -> RunSpec:
    """The spec `masbench run ARGS` would train (stopped before any training)."""
    seen = []

    def stop(spec, *_, **__):
        seen.append(spec)
        raise MasbenchError("stopped by the test")

    monkeypatch.setattr("masbench.sweep.run_cell", stop)
    monkeypatch.setattr("masbench.sweep.preflight", lambda *_, **__: {})  # run loads its data first: no data here
    result = runner.invoke(app, ["run", *args])
    assert result.exit_code == 1 and "stopped by the test" in result.stderr, result.output
    return seen[0]


def specs_of_sweep(monkeypatch, args: list[str]) -> list[RunSpec]:
    """The cells of `masbench sweep ARGS --dry-run`."""
    seen = []

    def listed(cells, url):
        seen.extend(cells)
        return [(cell, "new") for cell in cells]

    monkeypatch.setattr("masbench.sweep.dry_run", listed)
    result = runner.invoke(app, ["sweep", *args, "--dry-run"])
    assert result.exit_code == 0, result.output
    return [cell.spec for cell in seen]


@pytest.mark.parametrize(
    "flags, values",
    [
        (["--lr", "0.01", "--momentum", "0.9", "--epochs", "1"], dict(lr=0.01, momentum=0.9, epochs=1)),
        (["--betas", "0.8,0.99", "--eps", "1e-6", "--amsgrad", "--weight-decay", "0.001"],
         dict(betas=(0.8, 0.99), eps=1e-6, amsgrad=True, weight_decay=0.001)),
        (["--momentum", "0.9", "--nesterov", "--dampening", "0"], dict(momentum=0.9, nesterov=True, dampening=0.0)),
        (["--no-amsgrad", "--bias-correction", "constant", "--batch-size", "32", "--train-subset", "100",
          "--test-subset", "50"],
         dict(amsgrad=False, bias_correction="constant", batch_size=32, train_subset=100, test_subset=50)),
    ],
)
def test_run_and_sweep_make_the_same_spec_from_the_same_flags(flags, values, monkeypatch):
    run = spec_of_run(monkeypatch, ["--dataset", "digits", "--model", "mlp", "--seed", "0", *flags])
    cells = specs_of_sweep(monkeypatch, ["--dataset", "digits", "--models", "mlp", "--seed-list", "0",
                                         "--lambdas", "0.5", "--no-baselines", *flags])
    assert {name: getattr(run, name) for name in values} == values
    assert cells == [run]
    assert cells[0].key == run.key


@pytest.mark.parametrize(
    "flags",
    [
        ["--pretrained", "some-bert", "--max-length", "16", "--text-column", "text", "--label-column", "label",
         "--test-fraction", "0.3"],
        ["--text-column", "1", "--label-column", "0", "--test-file", "held-out.csv"],
    ],
)
def test_a_csv_sweep_takes_the_csv_options_of_run(flags, monkeypatch, tmp_path):
    dataset = f"csv:{tmp_path / 'reviews.csv'}"
    run = spec_of_run(monkeypatch, ["--dataset", dataset, "--model", "bert", *flags])
    cells = specs_of_sweep(monkeypatch, ["--dataset", dataset, "--models", "bert", "--lambdas", "0.5",
                                         "--no-baselines", *flags])
    assert cells == [run]
    assert run.data_options()["text_column"] in ("text", "1")


def test_flags_override_the_benchmarks_file_and_the_rest_of_it_stays(monkeypatch, tmp_path):
    bench = tmp_path / "bench.yaml"
    bench.write_text(textwrap.dedent("""
        benchmarks:
          tiny:
            dataset: digits
            lambdas: "0.5"
            baselines: []
            lr: 0.1
            momentum: 0.5
            batch_size: 64
    """))
    (cell,) = specs_of_sweep(monkeypatch, ["--benchmark", "tiny", "--benchmarks", str(bench), "--lr", "0.01",
                                           "--batch-size", "32"])
    assert (cell.lr, cell.batch_size, cell.momentum) == (0.01, 32, 0.5)


def test_a_run_is_the_cell_of_a_sweep_with_the_same_flags(tmp_path):
    """End to end: the sweep finds the run in the store under its key and does not train it again."""
    db = tmp_path / "masbench.db"
    flags = ["--lr", "0.01", "--momentum", "0.9", "--epochs", "1"]
    ran = runner.invoke(app, ["run", "--dataset", "digits", "--seed", "0", *flags])
    assert ran.exit_code == 0, ran.output
    swept = runner.invoke(app, ["sweep", "--dataset", "digits", "--lambdas", "0.5", "--seed-list", "0",
                                "--baselines", "adam", *flags])
    assert swept.exit_code == 0, swept.output
    assert "2 runs, 1 finished now; 2 completed" in swept.stdout
    rows = sqlite3.connect(db).execute("select optimizer, attempts from runs order by id").fetchall()
    assert rows == [("mas", 1), ("adam", 1)]


def test_max_cells_caps_a_sweep_and_raises_the_cap(tmp_path):
    """7 cells: refused under --max-cells 6 in one line, writing nothing; planned under --max-cells 7."""
    runner = CliRunner()
    db = tmp_path / "store.db"
    args = ["sweep", "--dataset", "digits", "--dry-run", "--db", f"sqlite:///{db}"]
    refused = runner.invoke(app, [*args, "--max-cells", "6"])
    assert refused.exit_code == 1
    assert "7 runs" in refused.output and "cap of 6" in refused.output and len(refused.output.splitlines()) == 1
    assert not db.exists()
    planned = runner.invoke(app, [*args, "--max-cells", "7"])
    assert planned.exit_code == 0, planned.output
    assert planned.output.count("new") == 7
