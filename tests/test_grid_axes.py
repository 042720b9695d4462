"""lr, momentum and weight_decay per optimizer and as axes of a grid (issue 20, part 1): flags, YAML, keys, counts.

A value given per optimizer or on an axis makes the same cell, and key, as the same value given alone; the
grids masbench had keep their keys, so that a store written before is still found done.
"""

from __future__ import annotations

import csv
import hashlib
import io
import textwrap
from pathlib import Path

import pytest
from report_fixtures import epoch_row
from typer.testing import CliRunner

from masbench.cli import app
from masbench.errors import MasbenchError
from masbench.grid.benchmarks import load_benchmarks, plan_sweep
from masbench.grid.grids import GridSpec, expand_grid
from masbench.grid.settings import layer, parse_setting, per_optimizer
from masbench.spec import RunSpec, make_spec
from masbench.store import Store
from masbench.sweep import run_values

runner = CliRunner()
REPO = Path(__file__).resolve().parent.parent
# The benchmarks file as it was at 3dc8f2b, before settings could be axes (quick: one lr 0.003 for every optimizer,
# momentum 0.9, adam, sgd and MAS at 0.3..0.7, 2 seeds): the keys pinned below are that file's, and the live
# file's quick has since taken an lr per optimizer (chosen by masbench tune).
BEFORE = REPO / "tests" / "fixtures" / "benchmarks_3dc8f2b.yaml"
QUICK_LR = 0.003


def plan(overrides=None, benchmark="quick", path=BEFORE, **kwargs):
    return plan_sweep(benchmark=benchmark, benchmarks_path=path, overrides=overrides, **kwargs)[1]


def keys(cells):
    return [cell.spec.key for cell in cells]


def by_optimizer(cells, what="lr"):
    """{optimizer: sorted values of ``what``} over the cells."""
    out: dict[str, set] = {}
    for cell in cells:
        out.setdefault(cell.spec.optimizer, set()).add(getattr(cell.spec, what))
    return {name: sorted(values) for name, values in out.items()}


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "benchmarks.yaml"
    path.write_text(textwrap.dedent(text))
    return path


# --- the grids of before keep their keys ---------------------------------------------------------------

# sha256 of the benchmark's run keys in plan order, first 16 hex digits, computed on main at 3dc8f2b before
# settings could be axes (nightly is left out: its csv grid's key holds its data's fingerprint, and so
# depends on the checkout's data).
BENCHMARK_KEYS = {"quick": (14, "597ea1c4e5f6e1a3"), "cifar10": (84, "720614ca68751877"),
                  "cifar100": (98, "dff2202ac5f80fa8"), "cola": (40, "4d2b7466fecdd490"),
                  "agnews": (40, "6ab9fa2fc1b8feb2")}
# A few of quick's cells, (name, seed, key, config_key), on main at 3dc8f2b.
QUICK_CELLS = [
    ("adam[lr=0.003]", 0, "920bd6f89d146c3c00cc", "7102a8bc22b66288a6a6"),
    ("sgd[lr=0.003,momentum=0.9]", 1, "8556485f55fecde1d8cc", "2589a823fd032914823a"),
    ("mas[lambda_adam=0.3,lambda_sgd=0.7,lr=0.003,momentum=0.9]", 0, "7868b859bb8db1986bcc", "f9bb448caab028d2124d"),
    ("mas[lambda_adam=0.7,lambda_sgd=0.3,lr=0.003,momentum=0.9]", 1, "d0848f1c34980f140e03", "0099d26f17284f4e8f17"),
]


@pytest.mark.parametrize("benchmark", list(BENCHMARK_KEYS))
def test_the_benchmarks_keep_their_keys(benchmark):
    cells = plan(benchmark=benchmark, max_cells=100_000)
    count, digest = BENCHMARK_KEYS[benchmark]
    assert (len(cells), hashlib.sha256(" ".join(keys(cells)).encode()).hexdigest()[:16]) == (count, digest)


def test_quicks_cells_keep_their_keys_and_names():
    found = {(c.spec.name, c.spec.seed): (c.spec.key, c.spec.config_key) for c in plan()}
    for name, seed, key, config_key in QUICK_CELLS:
        assert found[(name, seed)] == (key, config_key)


# --- an axis -------------------------------------------------------------------------------------------

def test_an_lr_axis_is_every_optimizer_at_every_value_with_the_keys_of_each_value_alone():
    cells = plan(dict(lr=[1e-3, QUICK_LR, 1e-2]))
    assert len(cells) == 3 * 14
    assert by_optimizer(cells) == {name: [1e-3, QUICK_LR, 1e-2] for name in ("adam", "sgd", "mas")}
    alone = [key for lr in (1e-3, QUICK_LR, 1e-2) for key in keys(plan(dict(lr=lr)))]
    assert sorted(keys(cells)) == sorted(alone)
    assert set(keys(plan())) <= set(keys(cells))  # the store's done cells at quick's lr are found done
    assert len({cell.spec.name for cell in cells}) == 3 * 7  # one name per cell: the lr is in it


def test_axes_of_two_settings_multiply():
    cells = plan(dict(lr=[1e-3, 1e-2], weight_decay=[0.0, 1e-4], baselines=["sgd"], lambdas="0.5"))
    assert len(cells) == 2 * 2 * 2 * 2  # (sgd + one MAS) x 2 lrs x 2 weight decays x 2 seeds
    assert {(c.spec.optimizer, c.spec.lr, c.spec.weight_decay) for c in cells} == {
        (name, lr, wd) for name in ("sgd", "mas") for lr in (1e-3, 1e-2) for wd in (0.0, 1e-4)}


def test_the_count_and_the_cap_include_the_axes_before_any_cell_is_built(monkeypatch):
    grid = GridSpec(lambdas="0.3,0.5", baselines=["adam", "sgd"], lr=[1e-3, 1e-2, 1e-1], momentum=[0.0, 0.9],
                    seeds=2)
    assert grid.cell_count() == 1 * (2 + 2) * 3 * 2 * 2
    assert grid.describe_count() == "1 model(s) x (2 baseline(s) + 2 lambda(s)) x 3 lr(s) x 2 momentum(s) x 2 seed(s)"
    built = []
    monkeypatch.setattr("masbench.grid.grids.make_spec", lambda *a, **k: built.append(k))
    with pytest.raises(MasbenchError, match=r"^sweep 'quick': 42 runs \(1 model\(s\) x \(2 baseline\(s\) \+ 5 "
                                            r"lambda\(s\)\) x 3 lr\(s\) x 2 seed\(s\)\), more than the cap of 40"):
        plan(dict(lr=[1e-3, 3e-3, 1e-2]), max_cells=40)
    assert built == []


def test_an_axis_on_a_setting_an_optimizer_does_not_take_gives_it_one_cell():
    cells = plan(dict(momentum=[0.0, 0.9], lambdas="0.5"))
    assert by_optimizer(cells, "momentum") == {"adam": [0.9], "sgd": [0.0, 0.9], "mas": [0.0, 0.9]}
    assert len([c for c in cells if c.spec.optimizer == "adam"]) == 2  # adam has no momentum: one cell x 2 seeds


# --- values per optimizer -------------------------------------------------------------------------------

def test_a_value_per_optimizer_keeps_the_benchmarks_lr_for_the_others_and_the_keys_of_each_value_alone():
    cells = plan(dict(lr={"adam": 1e-3, "sgd": 0.1}))
    assert by_optimizer(cells) == {"adam": [1e-3], "sgd": [0.1], "mas": [QUICK_LR]}
    alone = {c.spec.key for lr, name in ((1e-3, "adam"), (0.1, "sgd"), (QUICK_LR, "mas"))
             for c in plan(dict(lr=lr)) if c.spec.optimizer == name}
    assert set(keys(cells)) == alone


def test_others_and_mas_and_import_paths_name_optimizers_as_baselines_do():
    cells = plan(dict(lr={"torch.optim.SGD": 0.1, "mas": 0.01, "others": 2e-3}))
    assert by_optimizer(cells) == {"adam": [2e-3], "sgd": [0.1], "mas": [0.01]}


def test_mas_names_its_schedules_and_a_mix_is_named_by_its_weights():
    cells = plan(dict(lambdas="0.5", lambda_schedule=["constant", "linear:1:0"], mix=["adam", "sgd"],
                      mix_step=0.5, lr={"mas": 0.01, "mix:sgd=0.5,adam=0.5": 0.02}))
    lrs = {(c.spec.optimizer, c.spec.lambda_schedule, tuple(sorted((c.spec.weights or {}).items()))): c.spec.lr
           for c in cells}
    assert lrs[("mas", "constant", ())] == lrs[("mas", "linear:1:0", ())] == 0.01
    assert lrs[("mix", "constant", (("adam", 0.5), ("sgd", 0.5)))] == 0.02
    assert lrs[("mix", "constant", (("sgd", 1.0),))] == QUICK_LR
    assert lrs[("adam", "constant", ())] == QUICK_LR


def test_a_name_that_is_not_an_optimizer_of_the_grid_is_one_line_naming_it_and_them():
    with pytest.raises(MasbenchError, match=r"^sweep 'quick': lr for 'rmsprop': it is not an optimizer of the sweep "
                                            r"\(its optimizers: adam, sgd, mas; others names the rest\)$"):
        plan(dict(lr={"adam": 1e-3, "rmsprop": 0.1}))
    with pytest.raises(MasbenchError, match=r"^sweep 'quick': Unknown optimizer in lr: 'adan' \(did you mean adam\? valid: mas, sgd"):
        plan(dict(lr={"adan": 0.1}))


def test_a_value_per_optimizer_must_reach_it():
    with pytest.raises(MasbenchError, match=r"^Invalid momentum for 'adam': it does not reach adam \(adam has no "
                                            r"momentum\)$"):
        plan(dict(momentum={"adam": 0.9}))
    with pytest.raises(MasbenchError, match=r"it does not reach rmsprop \(give it as an argument: --optimizer-arg "
                                            r"rmsprop:momentum=VALUE"):
        plan(dict(momentum={"rmsprop": 0.9}, baselines=["rmsprop"]))


def test_an_axis_under_a_map_is_refused_in_one_line(tmp_path):
    path = write(tmp_path, """
        benchmarks:
          b: {dataset: digits, lambdas: "0.5", epochs: 1, lr: [0.001, 0.01]}
    """)
    with pytest.raises(MasbenchError, match=r"^sweep 'b': Invalid lr: \{'sgd': 0.1\} gives values per optimizer "
                                            r"over the axis \[0.001, 0.01\]: give an axis or values per optimizer, "
                                            r"not both"):
        plan(dict(lr={"sgd": 0.1}), benchmark="b", path=path)
    # Naming every optimizer (others=) leaves nothing of the axis; a number or an axis replaces it.
    assert by_optimizer(plan(dict(lr={"sgd": 0.1, "others": 0.02}), benchmark="b", path=path)) == {
        "adam": [0.02], "sgd": [0.1], "mas": [0.02]}
    assert by_optimizer(plan(dict(lr=[0.5]), benchmark="b", path=path))["sgd"] == [0.5]


# --- YAML ---------------------------------------------------------------------------------------------

def test_yaml_takes_axes_and_maps_and_a_grids_map_keeps_its_benchmarks_lr(tmp_path):
    path = write(tmp_path, """
        defaults: {lr: 0.003}
        benchmarks:
          axes: {dataset: digits, lambdas: "0.5", epochs: 1, lr: [0.001, 0.01], weight_decay: {sgd: 0.0005}}
          maps:
            dataset: digits
            lambdas: "0.5"
            momentum: 0.9
            grids:
              - {models: [mlp], lr: {sgd: 0.1}, momentum: {mas: 0.5}}
              - {models: [cnn], lr: {sgd: 0.2}, baselines: [sgd]}
          over_defaults: {dataset: digits, lambdas: "0.5", lr: {sgd: 0.1}}
    """)
    axes = plan(benchmark="axes", path=path)
    assert by_optimizer(axes) == {name: [0.001, 0.01] for name in ("adam", "sgd", "mas")}
    assert by_optimizer(axes, "weight_decay") == {"adam": [None], "sgd": [0.0005], "mas": [None]}  # their own
    maps = plan(benchmark="maps", path=path)
    assert {(c.spec.model, c.spec.optimizer, c.spec.lr, c.spec.momentum) for c in maps} == {
        ("mlp", "adam", 0.003, 0.9), ("mlp", "sgd", 0.1, 0.9), ("mlp", "mas", 0.003, 0.5),
        ("cnn", "sgd", 0.2, 0.9), ("cnn", "mas", 0.003, 0.9)}
    assert by_optimizer(plan(benchmark="over_defaults", path=path)) == {"adam": [0.003], "sgd": [0.1], "mas": [0.003]}
    # Without an lr beneath it, an optimizer the map leaves out has the spec's default (RunSpec's own lr).
    (tmp_path / "bare").mkdir()
    bare = plan(benchmark="bare", path=write(tmp_path / "bare", """
        benchmarks:
          bare:
            dataset: digits
            lambdas: "0.5"
            grids: [{lr: {sgd: 0.1}, baselines: [adam, sgd]}]
    """))
    assert by_optimizer(bare) == {"adam": [RunSpec().lr], "sgd": [0.1], "mas": [RunSpec().lr]}
    assert load_benchmarks(path).get("axes").grid_specs()[0].cell_count() == 3 * 2


@pytest.mark.parametrize(
    "setting, message",
    [
        ('lr: "1e-3"', "benchmark 'b', key 'lr': '1e-3' is text, not a number (write it without quotes)"),
        ('lr: [0.001, "1e-2"]', "benchmark 'b', key 'lr.1': '1e-2' is text, not a number (write it without quotes)"),
        ('lr: {sgd: "0.1"}', "benchmark 'b', key 'lr.sgd': '0.1' is text, not a number"),
        ("lr: [0.001, true]", "benchmark 'b', key 'lr.1': True is a boolean, not a number"),
        ("lr: []", "benchmark 'b': Invalid lr: [] (an axis lists one value or more"),
        ("lr: {}", "benchmark 'b': Invalid lr: {} (a value per optimizer"),
        ("lr: [0.001, 0.001]", "benchmark 'b': Invalid lr: [0.001, 0.001] gives 0.001 twice"),
        ("lr: [0.001, -1]", "benchmark 'b': Invalid lr: -1.0 (must be >= 0)"),
        ("momentum: {sgd: 2}", "benchmark 'b': Invalid momentum: 2.0 (must be <= 1)"),
        ("lr: {sgd: 0.1, torch.optim.SGD: 0.2}", "Invalid lr: 'torch.optim.SGD' names sgd, given twice"),
        ("lr: {radam: 0.1}", "benchmark 'b': lr for 'radam': it is not an optimizer of the benchmark (its "
                             "optimizers: adam, sgd, mas; others names the rest)"),
        ("optimizer_args: {sgd: {lr: 0.1}}", "Invalid optimizer argument 'lr' for sgd: the grid sets it per "
                                             "optimizer, give --lr sgd=0.1 (in a benchmarks file, lr: {sgd: 0.1})"),
    ],
)
def test_bad_yaml_settings_are_one_line(tmp_path, setting, message):
    path = write(tmp_path, f"""
        benchmarks:
          b:
            dataset: digits
            {setting}
    """)
    with pytest.raises(MasbenchError) as error:
        load_benchmarks(path)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_benchmarks_axis_under_a_grids_map_is_refused(tmp_path):
    path = write(tmp_path, """
        benchmarks:
          b:
            lr: [0.001, 0.01]
            grids: [{dataset: digits, lr: {sgd: 0.1}}]
    """)
    with pytest.raises(MasbenchError, match=r"benchmark 'b', grid 1: Invalid lr: .* over the axis"):
        load_benchmarks(path)


# --- the command line -----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "text, value",
    [
        ("3e-3", 0.003),
        ("1e-3, 3e-3,1e-2", [0.001, 0.003, 0.01]),
        ("adam=1e-3,sgd=0.1,mas=3e-3", {"adam": 0.001, "sgd": 0.1, "mas": 0.003}),
        ("torch.optim.SGD=0.1,others=1", {"sgd": 0.1, "others": 1.0}),
        ("mix:sgd=0.5,adam=0.5=0.01,adam=1e-3", {"mix:adam=0.5,sgd=0.5": 0.01, "adam": 0.001}),
        ("adam=1e-3,mix:adam=1=0.01", {"adam": 0.001, "mix:adam=1.0": 0.01}),
    ],
)
def test_parse_setting(text, value):
    assert parse_setting(text, "--lr") == value


@pytest.mark.parametrize(
    "text, message",
    [
        ("1e-3,,1e-2", "Invalid --lr: '1e-3,,1e-2' has an empty item"),
        ("1e-3,fast", "Invalid --lr: '1e-3,fast': 'fast' is not a number in digits 0-9"),
        ("1e-3,sgd=0.1", "Invalid --lr: '1e-3,sgd=0.1': '1e-3' is not OPTIMIZER=VALUE"),
        ("sgd=0.1,sgd=0.2", "Invalid --lr: 'sgd=0.1,sgd=0.2' gives 'sgd' twice"),
        ("sgd=fast", "'fast' is not a number"),
        ("1e-3,0.001", "Invalid --lr: [0.001, 0.001] gives 0.001 twice"),
    ],
)
def test_parse_setting_refuses_in_one_line(text, message):
    with pytest.raises(ValueError) as error:
        parse_setting(text, "--lr")
    assert message in str(error.value)


def test_per_optimizer_gives_each_optimizer_its_values():
    optimizers = ["adam", "sgd", "mas"]
    assert per_optimizer(0.1, optimizers, "lr") == {name: [0.1] for name in optimizers}
    assert per_optimizer(None, optimizers, "lr") == {name: [None] for name in optimizers}
    assert per_optimizer({"sgd": 0.1}, optimizers, "lr") == {"adam": [None], "sgd": [0.1], "mas": [None]}
    with pytest.raises(ValueError, match=r"^lr for 'radam': it is not an optimizer of the grid \(its optimizers: "
                                         r"adam, sgd, mas"):
        per_optimizer({"radam": 0.1}, optimizers, "lr")
    assert per_optimizer({"radam": 0.1}, optimizers, "lr", strict=False)["adam"] == [None]
    assert layer(0.003, {"sgd": 0.1, "others": 0.2}, "lr") == {"others": 0.2, "sgd": 0.1}


def sweep(*args: str, db: str):
    return runner.invoke(app, ["sweep", "--benchmark", "quick", "--benchmarks", str(BEFORE), "--dry-run", "--db", db, *args])


def test_sweep_dry_run_lists_an_axis_and_values_per_optimizer(tmp_path):
    db = f"sqlite:///{tmp_path / 's.db'}"
    result = sweep("--lr", "1e-3,1e-2", "--lambdas", "0.5", db=db)
    assert result.exit_code == 0, result.output
    for name in ("adam[lr=0.001]", "adam[lr=0.01]", "sgd[lr=0.01,momentum=0.9]",
                 "mas[lambda_adam=0.5,lambda_sgd=0.5,lr=0.001,momentum=0.9]"):
        assert name in result.output
    assert "12 runs: 0 completed, 12 to run" in result.output
    result = sweep("--lr", "adam=1e-3,sgd=0.1", "--momentum", "sgd=0.5", "--lambdas", "0.5", db=db)
    assert result.exit_code == 0, result.output
    for name in ("adam[lr=0.001]", "sgd[lr=0.1,momentum=0.5]",
                 "mas[lambda_adam=0.5,lambda_sgd=0.5,lr=0.003,momentum=0.9]"):
        assert name in result.output
    assert "6 runs" in result.output
    result = sweep("--weight-decay", "0,1e-4", "--lambdas", "0.5", "--baselines", "sgd", db=db)
    assert result.exit_code == 0 and "sgd[lr=0.003,momentum=0.9,weight_decay=0.0001]" in result.output, result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["sweep", "--benchmark", "quick", "--lr", "rmsprop=0.1"],
         "sweep 'quick': lr for 'rmsprop': it is not an optimizer of the sweep (its optimizers: adam, sgd, mas"),
        (["sweep", "--benchmark", "quick", "--optimizer-arg", "sgd:lr=0.1"],
         "Invalid optimizer argument 'lr' for sgd: the grid sets it per optimizer, give --lr sgd=0.1"),
        (["sweep", "--benchmark", "quick", "--momentum", "0.5,x"], "Invalid --momentum: '0.5,x': 'x' is not a number"),
        (["sweep", "--benchmark", "quick", "--lr", "-1"], "Invalid lr: -1.0 (must be >= 0)"),
        (["sweep", "--benchmark", "quick", "--lr", "sgd=inf"], "Invalid lr: inf"),
        (["run", "--lr", "0.001,0.003"], "'0.001,0.003': run trains one run, with one number (an axis, 1e-3,3e-3, "
                                         "or values per optimizer, adam=1e-3,sgd=0.1, are for sweep)"),
        (["run", "--momentum", "sgd=0.9"], "run trains one run, with one number"),
    ],
)
def test_bad_flags_are_one_line_and_write_nothing(tmp_path, args, message):
    db = tmp_path / "s.db"
    extra = ["--dry-run"] if args[0] == "sweep" else ["--epochs", "1"]
    result = runner.invoke(app, [*args, *extra, "--db", f"sqlite:///{db}"])
    assert result.exit_code != 0
    assert message in result.output, result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert not db.exists()


# --- reports tell the cells of an axis apart -------------------------------------------------------------

def test_a_report_shows_the_cells_of_an_lr_axis_as_rows_told_apart(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    store = Store(url)
    cells = plan(dict(lr=[1e-3, 1e-2], lambdas="0.5", epochs=1))
    for i, cell in enumerate(cells):
        run = store.ensure_run(run_values(cell.spec))
        store.claim(run.id, "w", stale_after=60)
        store.record_epoch(run.id, "w", epoch_row(1, 0.5 + i / 100))
        store.finish(run.id, "w", "completed")
    result = runner.invoke(app, ["report", "--table", "--format", "csv", "--db", url])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == len({cell.spec.config_key for cell in cells}) == 6
    assert sorted(row["name"] for row in rows) == sorted({cell.spec.name for cell in cells})
    assert {row["name"] for row in rows} >= {"adam[lr=0.001]", "adam[lr=0.01]"}
    markdown = runner.invoke(app, ["report", "--table", "--format", "markdown", "--db", url])
    assert markdown.exit_code == 0, markdown.output
    labels = [line.split("|")[1].strip() for line in markdown.stdout.splitlines()
              if line.startswith("|") and "lr=" in line]
    assert len(labels) == 6 and len(set(labels)) == 6, markdown.stdout


def test_expand_grid_makes_the_spec_of_each_value_alone():
    grid = GridSpec(lambdas="0.5", baselines=["sgd"], lr={"sgd": 0.1, "others": 0.02}, momentum=[0.0, 0.9])
    specs = expand_grid(grid, "b")
    assert [(s.optimizer, s.lr, s.momentum) for s in specs] == [
        ("sgd", 0.1, 0.0), ("sgd", 0.1, 0.9), ("mas", 0.02, 0.0), ("mas", 0.02, 0.9)]
    for spec in specs:
        alone = make_spec(benchmark="b", dataset="digits", model="mlp", optimizer=spec.optimizer, lr=spec.lr,
                          momentum=spec.momentum, seed=0, **({"lambda_adam": 0.5, "lambda_sgd": 0.5}
                                                             if spec.optimizer == "mas" else {}))
        assert (spec.key, spec.config_key) == (alone.key, alone.config_key)


@pytest.fixture
def per_file(tmp_path):
    """A benchmark ``per`` whose lr is a value per optimizer (as quick's is)."""
    return write(tmp_path, """
        benchmarks:
          per:
            dataset: digits
            lambdas: "0.5"
            baselines: [adam, sgd]
            lr: {adam: 0.005, sgd: 0.05, mas: 0.01}
            epochs: 1
            seeds: 1
        """)


def test_others_in_a_flag_replaces_every_value_of_a_files_map_it_does_not_name(per_file):
    path = per_file
    cells = plan(dict(lr={"sgd": 0.1, "others": 3e-3}), benchmark="per", path=path)
    assert by_optimizer(cells) == {"adam": [3e-3], "sgd": [0.1], "mas": [3e-3]}
    cells = plan(dict(lr={"others": 3e-3}), benchmark="per", path=path)
    assert by_optimizer(cells) == {"adam": [3e-3], "sgd": [3e-3], "mas": [3e-3]}
    cells = plan(dict(lr={"sgd": 0.1}), benchmark="per", path=path)  # without others: the file's for the rest
    assert by_optimizer(cells) == {"adam": [0.005], "sgd": [0.1], "mas": [0.01]}


def test_a_files_map_lets_baselines_narrow_the_grid_while_a_flags_names_are_checked(per_file):
    """quick's lr names adam, sgd and mas: --baselines adam and --no-baselines keep the file's lr for the
    optimizers left; a name typed on the command line must still be an optimizer of the sweep."""
    path = per_file
    assert by_optimizer(plan(dict(baselines=["adam"]), benchmark="per", path=path)) == {"adam": [0.005], "mas": [0.01]}
    assert by_optimizer(plan(dict(baselines=[]), benchmark="per", path=path)) == {"mas": [0.01]}
    assert by_optimizer(plan(dict(baselines=["adam"], lr={"mas": 0.02}), benchmark="per", path=path)) == {
        "adam": [0.005], "mas": [0.02]}
    with pytest.raises(MasbenchError, match=r"^sweep 'per': lr for 'sgd': it is not an optimizer of the sweep "
                                            r"\(its optimizers: adam, mas; others names the rest\)$"):
        plan(dict(baselines=["adam"], lr={"sgd": 0.1}), benchmark="per", path=path)
