"""Optimizers by name or import path, with their arguments (issue 13): identity, typing, CLI, sweeps.

The cells masbench had before keep their keys: the committed baselines and every store join on them.
"""

from __future__ import annotations

import csv
import io
import sqlite3
import textwrap
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from masbench.grid.benchmarks import plan_sweep
from masbench.cli import app
from masbench.errors import MasbenchError
from masbench.optim import build_optimizer, resolve_optimizer, typed_arguments
from masbench.spec import RunSpec, make_spec

runner = CliRunner()
REPO = Path(__file__).resolve().parent.parent


class SignSGD(torch.optim.Optimizer):
    """p <- p - lr * scale * sign(grad): an optimizer outside torch, named by its import path."""

    def __init__(self, params, lr: float = 1e-3, scale: float = 1.0, repeats: int = 1, flip: bool = False,
                 pair: tuple[float, float] = (1.0, 50)) -> None:
        if scale <= 0:
            raise ValueError(f"Invalid scale: {scale}")
        super().__init__(params, dict(lr=lr, scale=-scale if flip else scale, repeats=repeats, pair=pair))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad.sign(), alpha=-group["lr"] * group["scale"] * group["repeats"])


# --- the cells of before keep their keys ---------------------------------------------------------------

# (spec values, key, config_key) as masbench computed them before optimizers were opened (main at d9a7542).
KNOWN_KEYS = [
    (dict(), "f1ba02a918a86a407d08", "e407807699fb010df430"),
    (dict(optimizer="adam", lr=0.003), "df427e585be6bdc6c238", "152be81d13f497173a36"),
    (dict(optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4),
     "1eb6817467c23cb790d7", "f869152b7a2c41db87bd"),
    (dict(optimizer="adamw", dataset="cola", model="bert", lr=2e-4, batch_size=100, epochs=50),
     "86bb82db923bed474db4", "935abca63b8b67e96189"),
    (dict(lambda_adam=0.3, lambda_sgd=0.7, momentum=0.95, lr=0.008, batch_size=512, epochs=200, dataset="cifar100",
          model="resnet18", seed=3), "fd816fa5a16a49f3d0b4", "e5031b2461e8daafe237"),
    (dict(lambda_schedule="linear:1:0:100", epochs=100), "e10985f86b2453642dc1", "8f9680ee36817d1b9d52"),
    (dict(optimizer="adam", amsgrad=True, betas=(0.8, 0.99), eps=1e-6), "01ac784b6a9e2b1d52e0", "49681170a60bd3c90ff8"),
]


@pytest.mark.parametrize("values, key, config_key", KNOWN_KEYS)
def test_the_cells_of_before_keep_their_keys(values, key, config_key):
    spec = make_spec(**values)
    assert (spec.key, spec.config_key) == (key, config_key)
    # A constant lr schedule and no optimizer arguments, written out, are the same cell.
    assert make_spec(**values, lr_schedule="constant", optimizer_args={}).key == key


@pytest.mark.parametrize("benchmark", ["quick", "nightly"])
def test_the_committed_baselines_name_cells_the_benchmarks_still_plan(benchmark):
    with open(REPO / "benchmarks" / "baselines" / f"{benchmark}.csv", newline="") as file:
        committed = {row["config_key"]: row["name"] for row in csv.DictReader(file)}
    _, cells = plan_sweep(benchmark=benchmark, benchmarks_path=REPO / "benchmarks.yaml")  # as the CSVs were made
    planned = {cell.spec.config_key: cell.spec.name for cell in cells}
    assert committed and {key: planned.get(key) for key in committed} == committed


# --- names and import paths ---------------------------------------------------------------------------


def test_the_torch_free_list_of_names_is_the_registry():
    from masbench.optim import OPTIMIZERS
    from masbench.optimizer_names import OPTIMIZER_NAMES

    assert tuple(OPTIMIZERS) == OPTIMIZER_NAMES


@pytest.mark.parametrize(
    "text, name",
    [
        ("radam", "radam"),
        ("torch.optim.RAdam", "radam"),
        ("torch.optim:RAdam", "radam"),
        ("torch.optim.radam.RAdam", "radam"),
        ("torch.optim.NAdam", "nadam"),
        ("masbench.optim.MAS", "mas"),
        ("masbench.optim.mas:MAS", "mas"),
        ("test_open_axes:SignSGD", "test_open_axes:SignSGD"),
        ("test_open_axes.SignSGD", "test_open_axes:SignSGD"),
    ],
)
def test_an_optimizer_has_one_name_however_it_is_written(text, name):
    from masbench.optimizer_names import stored_optimizer

    assert resolve_optimizer(text) == name
    assert make_spec(optimizer=text).key == make_spec(optimizer=name).key
    assert stored_optimizer(text) == name  # what a reading command's --optimizer matches, found importing nothing


def test_the_torch_free_classes_are_the_registrys():
    from masbench.optim import OPTIMIZERS
    from masbench.optimizer_names import CLASSES

    assert CLASSES == {name: f"{cls.__module__}:{cls.__qualname__}" for name, cls in OPTIMIZERS.items()}


@pytest.mark.parametrize(
    "values, message",
    [
        (dict(optimizer="lion"), "Unknown optimizer: 'lion' (valid: mas, sgd, adam, adamw, radam, nadam, adamax, "
                                 "rmsprop, adagrad, adadelta, asgd, rprop, mix, or an import path"),
        (dict(optimizer="torch.optim.Lion"), "Invalid optimizer 'torch.optim.Lion': module torch.optim has no Lion"),
        (dict(optimizer="no_such_pkg:Lion"), "no module of that path can be imported"),
        (dict(optimizer="torch.nn.Linear"), "is <class 'torch.nn.modules.linear.Linear'>, not a torch.optim.Optimizer"),
        (dict(optimizer="test_open_axes:KNOWN_KEYS"), "not a torch.optim.Optimizer subclass"),
        (dict(optimizer="torch.optim.../x"), "Unknown optimizer"),
        (dict(optimizer="test_open_axes:SignSGD.__init__.__globals__"), "not a torch.optim.Optimizer subclass"),
    ],
)
def test_bad_optimizers_are_one_line(values, message):
    with pytest.raises(MasbenchError) as error:
        make_spec(**values)
    assert message in str(error.value) and "\n" not in str(error.value)


# --- optimizer arguments ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, given, typed",
    [
        ("radam", {"decoupled_weight_decay": "true"}, {"decoupled_weight_decay": True}),
        ("radam", {"decoupled_weight_decay": "True", "weight_decay": "1e-2"},
         {"decoupled_weight_decay": True, "weight_decay": 0.01}),
        ("radam", {"decoupled_weight_decay": True, "betas": [0.8, 0.99]},  # as YAML gives them
         {"betas": (0.8, 0.99), "decoupled_weight_decay": True}),
        ("radam", {"betas": "0.9,0.999", "decoupled_weight_decay": "false"}, {}),  # defaults, written out
        ("radam", {"weight_decay": "-0.0"}, {}),  # -0.0 is 0.0, the default
        ("rprop", {"step_sizes": "1e-6,50"}, {}),  # its default (1e-06, 50), as floats
        ("rmsprop", {"momentum": "0.9", "centered": "1"}, {"centered": True, "momentum": 0.9}),
        ("adagrad", {"eps": "1e-8"}, {"eps": 1e-8}),
        ("adam", {"decoupled_weight_decay": "true"}, {"decoupled_weight_decay": True}),
        ("test_open_axes:SignSGD", {"repeats": "2", "scale": "0.5", "flip": "false", "pair": "2,3"},
         {"pair": (2.0, 3.0), "repeats": 2, "scale": 0.5}),
    ],
)
def test_optimizer_arguments_are_typed_by_the_signature(name, given, typed):
    assert typed_arguments(name, given, RunSpec.model_fields) == typed
    spec = make_spec(optimizer=name, optimizer_args=given)
    assert spec.optimizer_args == typed
    assert spec.key == make_spec(optimizer=name, optimizer_args=typed).key


@pytest.mark.parametrize(
    "name, given, message",
    [
        ("radam", {"momentum": "0.9"}, "Unknown optimizer argument 'momentum' for radam (valid: betas, eps, "
                                       "weight_decay, decoupled_weight_decay, maximize)"),
        ("radam", {"lr": "0.1"}, "Invalid optimizer argument 'lr' for radam: it is set by --lr"),
        ("radam", {"foreach": "true"}, "Unknown optimizer argument 'foreach'"),
        ("sgd", {"momentum": "0.9"}, "it is set by --momentum"),
        ("mas", {"lambda_adam": "0.3"}, "it is set by --lambda-adam"),
        ("mas", {"anything": "1"}, "(valid: none)"),
        ("radam", {"weight_decay": "inf"}, "weight_decay='inf' for radam (must be a finite number"),
        ("radam", {"weight_decay": "1e400"}, "must be a finite number"),
        ("radam", {"weight_decay": "x"}, "(expected a number)"),
        ("radam", {"weight_decay": True}, "(expected a number)"),
        ("radam", {"betas": "0.9"}, "(expected 2 numbers, comma-separated"),
        ("radam", {"betas": "0.9,nan"}, "must be a finite number"),
        ("radam", {"betas": "0.9,1.5"}, "Invalid settings for optimizer radam: Invalid beta parameter at index 1: 1.5"),
        ("radam", {"decoupled_weight_decay": "maybe"}, "(expected true or false)"),
        ("radam", {"decoupled_weight_decay": 1}, "(expected true or false)"),
        ("test_open_axes:SignSGD", {"repeats": "2.5"}, "repeats='2.5' for test_open_axes:SignSGD (expected an integer"),
        ("test_open_axes:SignSGD", {"scale": "-1"}, "Invalid settings for optimizer test_open_axes:SignSGD: "
                                                    "Invalid scale: -1.0"),
    ],
)
def test_bad_optimizer_arguments_are_one_line(name, given, message):
    with pytest.raises(MasbenchError) as error:
        make_spec(optimizer=name, optimizer_args=given)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_arguments_are_part_of_the_cell_and_its_name():
    plain = make_spec(optimizer="radam")
    decoupled = make_spec(optimizer="radam", optimizer_args={"decoupled_weight_decay": "true"})
    assert decoupled.key != plain.key and decoupled.config_key != plain.config_key
    assert decoupled.name == "radam[decoupled_weight_decay=True,lr=0.001]"
    assert plain.name == "radam[lr=0.001]"
    # Nested in the canonical config: an argument can never stand in for a field of the cell.
    assert decoupled.canonical()["optimizer_args"] == {"decoupled_weight_decay": True}
    assert "optimizer_args" not in plain.canonical()
    assert len({plain, decoupled, make_spec(optimizer="torch.optim.RAdam")}) == 2  # hashable, as specs always were


def test_the_other_optimizers_take_lr_from_the_spec_and_keep_their_own_defaults():
    """The spec's eps=1e-8 and weight_decay must not replace Adagrad's eps=1e-10 and Adadelta's rho and eps."""
    for name, defaults in [("adagrad", dict(eps=1e-10, lr_decay=0)), ("adadelta", dict(eps=1e-6, rho=0.9)),
                           ("rmsprop", dict(alpha=0.99, momentum=0))]:
        spec = make_spec(optimizer=name, lr=0.05)
        assert spec.optimizer_hparams() == {"lr": 0.05}
        group = build_optimizer(name, [torch.zeros(2, requires_grad=True)], **spec.optimizer_hparams()).param_groups[0]
        assert {k: group[k] for k in defaults} == defaults and group["lr"] == 0.05
    spec = make_spec(optimizer="rmsprop", optimizer_args={"momentum": "0.9", "eps": "1e-6"})
    group = build_optimizer("rmsprop", [torch.zeros(2, requires_grad=True)], **spec.optimizer_hparams()).param_groups[0]
    assert (group["momentum"], group["eps"], group["lr"]) == (0.9, 1e-6, 1e-3)


def test_other_optimizers_record_no_lambdas():
    spec = make_spec(optimizer="nadam")
    assert spec.lambdas == (0.0, 0.0)
    assert make_spec(optimizer="adam").lambdas == (1.0, 0.0)  # the endpoints stay


def test_a_long_import_path_is_refused_before_it_reaches_the_store_column():
    # runs.optimizer is VARCHAR(32); PostgreSQL would refuse the row only once the cell had been claimed.
    with pytest.raises(MasbenchError, match=r"'test_open_axes:SignSGDUnderALongerName' is 38 characters "
                                            r"\(the store holds 32\)"):
        make_spec(optimizer="test_open_axes.SignSGDUnderALongerName")


class SignSGDUnderALongerName(SignSGD):
    pass


# --- the command line ----------------------------------------------------------------------------------


def stored(db: Path) -> list[tuple]:
    return sqlite3.connect(db).execute("select optimizer, name, status from runs order by id").fetchall()


def test_run_trains_an_optimizer_given_by_import_path_and_report_shows_it(tmp_path):
    db = tmp_path / "store.db"
    url = f"sqlite:///{db}"
    ran = runner.invoke(app, ["run", "--dataset", "digits", "--model", "mlp", "--optimizer", "torch.optim.RAdam",
                              "--epochs", "2", "--db", url])
    assert ran.exit_code == 0, ran.output
    assert "completed radam[lr=0.001] on digits/mlp seed 0" in ran.stdout
    decoupled = runner.invoke(app, ["run", "--dataset", "digits", "--optimizer", "radam", "--optimizer-arg",
                                    "decoupled_weight_decay=true", "--optimizer-arg", "weight_decay=0.01",
                                    "--epochs", "2", "--db", url])
    assert decoupled.exit_code == 0, decoupled.output
    assert stored(db) == [("radam", "radam[lr=0.001]", "completed"),
                          ("radam", "radam[decoupled_weight_decay=True,lr=0.001,weight_decay=0.01]", "completed")]
    report = runner.invoke(app, ["report", "--db", url, "--format", "csv"])
    assert report.exit_code == 0, report.output
    rows = list(csv.DictReader(io.StringIO(report.stdout)))
    assert sorted(row["name"] for row in rows) == ["radam[decoupled_weight_decay=True,lr=0.001,weight_decay=0.01]",
                                                   "radam[lr=0.001]"]
    assert all(row["n"] == "1" and float(row["avg_acc"]) > 0 for row in rows)
    table = runner.invoke(app, ["report", "--db", url])
    assert "radam (decoupled_weight_decay=True" in table.stdout, table.stdout


def test_run_trains_an_optimizer_from_outside_torch(tmp_path):
    ran = runner.invoke(app, ["run", "--dataset", "digits", "--optimizer", "test_open_axes.SignSGD", "--optimizer-arg",
                              "scale=0.5", "--epochs", "1", "--lr", "0.01", "--db", f"sqlite:///{tmp_path / 's.db'}"])
    assert ran.exit_code == 0, ran.output
    assert "completed test_open_axes:SignSGD[lr=0.01,scale=0.5]" in ran.stdout


def spec_of_run(monkeypatch, args: list[str]):
    """The spec `masbench run ARGS` would train, or its one-line refusal."""
    seen = []

    def stop(spec, *_, **__):
        seen.append(spec)
        raise MasbenchError("stopped by the test")

    monkeypatch.setattr("masbench.sweep.run_cell", stop)
    result = runner.invoke(app, ["run", *args])
    assert result.exit_code == 1, result.output
    return seen[0] if seen else result.stderr


def test_settings_that_would_not_reach_the_optimizer(monkeypatch):
    # The four of before ignore what they do not take, as they always have.
    assert spec_of_run(monkeypatch, ["--optimizer", "adam", "--momentum", "0.9"]).optimizer == "adam"
    refused = spec_of_run(monkeypatch, ["--optimizer", "rmsprop", "--momentum", "0.9"])
    assert refused.strip() == ("Error: --momentum does not reach optimizer rmsprop: only --lr and --optimizer-arg set "
                               "its hyperparameters (give --optimizer-arg momentum=VALUE)")
    assert "nadam has no amsgrad" in spec_of_run(monkeypatch, ["--optimizer", "nadam", "--amsgrad"])
    assert "radam has no lambda_adam" in spec_of_run(monkeypatch, ["--optimizer", "radam", "--lambda-adam", "0.3"])
    spec = spec_of_run(monkeypatch, ["--optimizer", "rmsprop", "--optimizer-arg", "momentum=0.9", "--lr", "0.01"])
    assert spec.optimizer_hparams() == {"lr": 0.01, "momentum": 0.9}


def cells_of_sweep(args: list[str], tmp_path) -> list[RunSpec]:
    seen = []

    def listed(cells, url):
        seen.extend(cells)
        return [(cell, "new") for cell in cells]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("masbench.sweep.dry_run", listed)
        result = runner.invoke(app, ["sweep", *args, "--dry-run", "--db", f"sqlite:///{tmp_path / 'plan.db'}"])
    assert result.exit_code == 0, result.output
    return [cell.spec for cell in seen]


def test_a_sweep_takes_baselines_by_name_and_path_with_their_arguments(tmp_path):
    cells = cells_of_sweep(["--dataset", "digits", "--lambdas", "0.5", "--baselines", "radam,torch.optim.NAdam,adam",
                            "--optimizer-arg", "torch.optim.RAdam:decoupled_weight_decay=true"], tmp_path)
    assert [cell.name for cell in cells] == ["radam[decoupled_weight_decay=True,lr=0.001]", "nadam[lr=0.001]",
                                             "adam[lr=0.001]", "mas[lambda_adam=0.5,lambda_sgd=0.5,lr=0.001]"]
    # A sweep's cell is the run of the same flags.
    assert cells[0] == make_spec(dataset="digits", optimizer="radam", optimizer_args={"decoupled_weight_decay": True})


def test_a_sweep_trains_other_baselines_and_report_shows_them(tmp_path):
    url = f"sqlite:///{tmp_path / 'sweep.db'}"
    swept = runner.invoke(app, ["sweep", "--dataset", "digits", "--lambdas", "0.5", "--baselines",
                                "radam,torch.optim.NAdam", "--seed-list", "0", "--epochs", "1", "--workers", "1",
                                "--train-subset", "400", "--db", url])
    assert swept.exit_code == 0, swept.output
    assert "3 runs, 3 finished now; 3 completed" in swept.stdout
    report = runner.invoke(app, ["report", "--db", url, "--format", "csv"])
    names = sorted(row["name"] for row in csv.DictReader(io.StringIO(report.stdout)))
    assert names == ["mas[lambda_adam=0.5,lambda_sgd=0.5,lr=0.001]", "nadam[lr=0.001]", "radam[lr=0.001]"]


def test_a_benchmarks_file_gives_arguments_per_baseline_and_schedules(tmp_path):
    bench = tmp_path / "bench.yaml"
    bench.write_text(textwrap.dedent("""
        benchmarks:
          open:
            dataset: digits
            lambdas: "0.3,0.7"
            lambda_schedule: [constant, "linear:1:0:100"]
            lr_schedule: "multistep:100,150:0.10"
            epochs: 200
            baselines: [sgd, torch.optim.Adagrad]
            optimizer_args: {adagrad: {lr_decay: 0.01, eps: 1.0e-8}}
    """))
    cells = cells_of_sweep(["--benchmark", "open", "--benchmarks", str(bench)], tmp_path)
    assert [cell.name for cell in cells] == [
        "sgd[lr=0.001,lr_schedule='multistep:100,150:0.1']",
        "adagrad[eps=1e-08,lr=0.001,lr_decay=0.01,lr_schedule='multistep:100,150:0.1']",
        "mas[lambda_adam=0.3,lambda_sgd=0.7,lr=0.001,lr_schedule='multistep:100,150:0.1']",
        "mas[lambda_adam=0.7,lambda_sgd=0.3,lr=0.001,lr_schedule='multistep:100,150:0.1']",
        "mas[lambda_schedule='linear:1:0:100',lr=0.001,lr_schedule='multistep:100,150:0.1']",
    ]
    # Flags override the file: an optimizer's --optimizer-arg replaces its arguments there.
    flagged = cells_of_sweep(["--benchmark", "open", "--benchmarks", str(bench), "--optimizer-arg", "adagrad:eps=1e-6",
                              "--lambda-schedule", "linear:1:0:100", "--lr-schedule", "constant"], tmp_path)
    assert [cell.name for cell in flagged] == ["sgd[lr=0.001]", "adagrad[eps=1e-06,lr=0.001]",
                                               "mas[lambda_schedule='linear:1:0:100',lr=0.001]"]


def test_the_authors_dynamic_variant_is_sweepable_and_is_the_run_of_its_flags(tmp_path, monkeypatch):
    cells = cells_of_sweep(["--dataset", "digits", "--no-baselines", "--lambdas", "0.3..0.7", "--seed-list", "0",
                            "--epochs", "100", "--lambda-schedule", "constant,linear:1:0:100"], tmp_path)
    assert len(cells) == 6 and [cell.lambda_schedule for cell in cells].count("linear:1:0:100") == 1
    run = spec_of_run(monkeypatch, ["--dataset", "digits", "--epochs", "100", "--lambda-schedule", "linear:1:0:100"])
    assert cells[-1] == run and cells[-1].key == run.key


def test_an_optimizer_without_a_packed_form_is_not_packed():
    """The fused model's optimizer steps MAS, SGD, Adam and AdamW members; another optimizer's cell trains unpacked."""
    from masbench.engine import Unpackable
    from masbench.engine.packed_optim import PackedOptimizer, member_views

    w = torch.nn.Parameter(torch.zeros(2, 3))
    members = [build_optimizer("radam", member_views([w], k), lr=0.1) for k in range(2)]
    with pytest.raises(Unpackable, match="optimizer RAdam has no packed form"):
        PackedOptimizer([w], members)


@pytest.mark.parametrize("body, kind", [("import sys\nsys.exit(0)\n", "SystemExit"), ("1 / 0\n", "ZeroDivisionError"),
                                        ("raise SystemExit(3)\n", "SystemExit")])
def test_a_module_that_exits_or_fails_at_import_is_one_error_line(tmp_path, monkeypatch, body, kind):
    """``sys.exit(0)`` at import used to end ``masbench run`` with exit 0 and nothing said."""
    (tmp_path / "bye_module.py").write_text(body)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["run", "--optimizer", "bye_module:X", "--epochs", "1",
                                 "--db", f"sqlite:///{tmp_path / 'b.db'}"])
    assert result.exit_code != 0
    assert "Invalid optimizer 'bye_module:X': importing bye_module failed" in result.output and kind in result.output
    assert not (tmp_path / "b.db").exists()
