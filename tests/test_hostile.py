"""Hostile input through the real command line: each case is one line naming the value, a non-zero exit,
no traceback, nothing written, and an answer within a time guard under a memory limit.

Every case runs ``python -m masbench`` in a subprocess limited to ``MEMORY_LIMIT`` of address space
(torch's import alone maps about 3 GiB), with a timeout as a guard against a hang (``--lambdas
0..Infinity`` looped forever; a billion-laughs file ate gigabytes), not as a speed assertion. The cases
that reach a store run on SQLite and on PostgreSQL: the value that one backend refuses, the other refuses.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import write_csv

REPO = Path(__file__).resolve().parent.parent
MEMORY_LIMIT = 4 << 30
TIME_GUARD_S = 120


def masbench(args: list[str], cwd: Path, entry: tuple[str, ...] = ("-m", "masbench")) -> subprocess.CompletedProcess:
    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    env = {k: v for k, v in os.environ.items() if k != "MASBENCH_DEBUG"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, *entry, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=TIME_GUARD_S, preexec_fn=limit_memory)


def assert_refused(result: subprocess.CompletedProcess, message: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode not in (0, None), output
    assert "Traceback" not in output, output[-2000:]
    assert result.stdout == "", result.stdout[-500:]
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr[-2000:]
    assert message in lines[0], lines[0]
    assert len(lines[0]) <= 700, f"{len(lines[0])} characters"


def tables_of(url: str) -> list[str]:
    """The store's tables; none when its SQLite file does not exist (asking would create it)."""
    from sqlalchemy import create_engine, inspect
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and not Path(parsed.database).exists():
        return []
    engine = create_engine(url)
    try:
        return inspect(engine).get_table_names()
    finally:
        engine.dispose()


def run_count(url: str) -> int:
    from sqlalchemy import create_engine, text

    if "runs" not in tables_of(url):
        return 0
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(text("select count(*) from runs")).scalar_one()
    finally:
        engine.dispose()


# --- files the cases read ---------------------------------------------------------------------------


def _bomb(levels: int) -> str:
    """A billion laughs: ``levels`` anchors of ten aliases each, the last one used as a value."""
    lines = ["defaults:", "  lr: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"  momentum{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels + 1)]
    lines += ["benchmarks:", "  b:", f"    lr: *a{levels}"]
    return "\n".join(lines) + "\n"


YAML_FILES = {
    "bomb8": _bomb(8),
    "bomb10": _bomb(10),
    "deep": "benchmarks:\n  b:\n    lr: " + "[" * 5000 + "]" * 5000 + "\n",
    "long_int": "benchmarks:\n  b:\n    seeds: " + "9" * 5000 + "\n",
    "recursive": "benchmarks:\n  b:\n    models: &m [*m]\n",
    "int_key": "benchmarks:\n  b:\n    dataset: digits\n    1: 2\n",
    "int_name": "benchmarks:\n  7:\n    dataset: digits\n",
    "list_description": "benchmarks:\n  b:\n    description: [a, b]\n",
    "list_dataset": "benchmarks:\n  b:\n    dataset: [digits]\n",
    "empty_grids": "benchmarks:\n  b:\n    grids: []\n",
    "inf_lr": "benchmarks:\n  b:\n    lr: .inf\n",
    "nan_eps": "benchmarks:\n  b:\n    eps: .nan\n",
    "big_seed_list": "benchmarks:\n  b:\n    seed_list: [0, 3000000000]\n",
    "nul_name": 'benchmarks:\n  "b\\0":\n    dataset: digits\n',
    "huge_grid": "benchmarks:\n  b:\n    lambdas: 0..1:0.000001\n    seeds: 1000\n",
    "stray_args": "benchmarks:\n  b:\n    baselines: [adam]\n    optimizer_args: {nadam: {momentum_decay: 0.01}}\n",
    "flat_args": "benchmarks:\n  b:\n    baselines: [radam]\n    optimizer_args: {decoupled_weight_decay: true}\n",
    "bad_arg": "benchmarks:\n  b:\n    baselines: [radam]\n    optimizer_args: {radam: {betas: [0.9]}}\n",
    "bad_lambda_schedules": "benchmarks:\n  b:\n    lambda_schedule: [constant, 'linear:0.5']\n",
    "huge_file": "benchmarks:\n  b:\n    description: '" + "x" * (2 << 20) + "'\n",
    "bool_epochs": "benchmarks:\n  b:\n    epochs: true\n",
    "text_lr": 'benchmarks:\n  b:\n    lr: "1e-3"\n',
    "text_beta": "benchmarks:\n  b:\n    betas: [0.9, '0.999']\n",
    "float_seeds": "benchmarks:\n  b:\n    seeds: 3.0\n",
    "int_nesterov": "benchmarks:\n  b:\n    momentum: 0.9\n    nesterov: 1\n",
    "duplicate_key": "benchmarks:\n  b:\n    lr: 0.1\n    epochs: 2\n    lr: 0.001\n",
    "duplicate_benchmark": "benchmarks:\n  b:\n    lr: 0.1\n  b:\n    lr: 0.2\n",
    "duplicate_seed": "benchmarks:\n  b:\n    seed_list: [0, 1, 0]\n",
    "duplicate_model": "benchmarks:\n  b:\n    models: [mlp, mlp]\n",
    "pack_one": "benchmarks:\n  b:\n    pack: 1\n",
    "pack_true": "benchmarks:\n  b:\n    pack: true\n",
    "pack_float": "benchmarks:\n  b:\n    grids:\n      - pack: 2.5\n",
    "pack_text": 'benchmarks:\n  b:\n    pack: "7"\n',
}


def yaml_file(tmp: Path, name: str) -> str:
    path = tmp / f"{name}.yaml"
    path.write_text(YAML_FILES[name])
    return str(path)


def _sweep(*flags: str) -> list[str]:
    return ["sweep", "--dataset", "digits", "--dry-run", *flags]


def _bench(name: str):
    return lambda tmp: ["sweep", "--benchmark", "b", "--dry-run", "--benchmarks", yaml_file(tmp, name)]


# (case, command line from the test's folder, what the one line says). Each also gets --db.
STORE_CASES = [
    ("lr-inf", lambda tmp: ["run", "--lr", "inf"], "Invalid lr: inf (must be a finite number"),
    ("lr-1e309", lambda tmp: ["run", "--lr", "1e309"], "Invalid lr: inf"),
    ("lr-nan", lambda tmp: ["run", "--lr", "nan"], "Invalid lr: nan"),
    ("lambda-adam-inf", lambda tmp: ["run", "--lambda-adam", "inf"], "Invalid lambda_adam: inf"),
    ("lambda-sgd-2", lambda tmp: ["run", "--lambda-sgd", "2"], "Invalid lambda_sgd: 2.0 (must be <= 1)"),
    ("momentum-inf", lambda tmp: ["run", "--momentum", "inf"], "Invalid momentum: inf"),
    ("eps-inf", lambda tmp: ["run", "--eps", "inf"], "Invalid eps: inf"),
    ("weight-decay-inf", lambda tmp: ["run", "--weight-decay", "inf"], "Invalid weight_decay: inf"),
    ("dampening-1e309", lambda tmp: ["run", "--dampening", "1e309"], "Invalid dampening: inf"),
    ("betas-inf", lambda tmp: ["run", "--betas", "0.9,inf"], "Invalid betas[1]: inf"),
    ("test-fraction-inf", lambda tmp: ["run", "--test-fraction", "inf"], "Invalid test_fraction: inf"),
    ("seed-2^63", lambda tmp: ["run", "--seed", "9223372036854775808"], "Invalid seed: 9223372036854775808"),
    ("seed-3e9", lambda tmp: ["run", "--seed", "3000000000"], "must be <= 2147483647"),
    ("epochs-2^63", lambda tmp: ["run", "--epochs", "9223372036854775808"], "Invalid epochs: 9223372036854775808"),
    ("batch-size-3e9", lambda tmp: ["run", "--batch-size", "3000000000"], "Invalid batch_size: 3000000000"),
    ("max-length-3e9", lambda tmp: ["run", "--max-length", "3000000000"], "Invalid max_length: 3000000000"),
    ("train-subset-3e9", lambda tmp: ["run", "--train-subset", "3000000000"], "Invalid train_subset: 3000000000"),
    ("schedule-inf", lambda tmp: ["run", "--lambda-schedule", "linear:0.7:0.3:inf"], "Invalid lambda schedule"),
    ("schedule-epochs", lambda tmp: ["run", "--lambda-schedule", "linear:0.7:0.3:1e12"], "EPOCHS '1e12'"),
    ("benchmark-300", lambda tmp: ["run", "--benchmark", "b" * 300], "is 300 characters (at most 255)"),
    ("lambdas-infinity", lambda tmp: _sweep("--lambdas", "0..Infinity"), "every number must be finite"),
    ("lambdas-nan", lambda tmp: _sweep("--lambdas", "NaN..1"), "every number must be finite"),
    ("lambdas-4M", lambda tmp: _sweep("--lambdas", "0.3..0.7:0.0000001"), "4,000,003 runs"),
    ("lambdas-tiny-step", lambda tmp: _sweep("--lambdas", "0..1:1e-999999999"), "more than 1e+18 runs"),
    ("seeds-1e8", lambda tmp: _sweep("--seeds", "100000000"), "700,000,000 runs"),
    ("seed-list-3e9", lambda tmp: _sweep("--seed-list", "0,3000000000"), "Invalid seed_list: 3000000000"),
    ("sweep-lr-inf", lambda tmp: _sweep("--lr", "inf"), "Invalid lr: inf"),
    ("sweep-epochs-2^63", lambda tmp: _sweep("--epochs", "9223372036854775808"), "Invalid epochs"),
    # Optimizers by import path, their arguments, and lr schedules (issue 13).
    ("optimizer-no-class", lambda tmp: ["run", "--optimizer", "torch.optim.Lion"], "module torch.optim has no Lion"),
    ("optimizer-no-module", lambda tmp: ["run", "--optimizer", "no_such_pkg.opt:Lion"], "no module of that path"),
    ("optimizer-not-a-class", lambda tmp: ["run", "--optimizer", "os.path:join"], "not a torch.optim.Optimizer subclass"),
    ("optimizer-not-optimizer", lambda tmp: ["run", "--optimizer", "torch.nn.Linear"], "not a torch.optim.Optimizer"),
    ("optimizer-arg-unknown", lambda tmp: ["run", "--optimizer", "radam", "--optimizer-arg", "momentum=0.9"],
     "Unknown optimizer argument 'momentum' for radam (valid: betas, eps, weight_decay, decoupled_weight_decay"),
    ("optimizer-arg-inf", lambda tmp: ["run", "--optimizer", "radam", "--optimizer-arg", "weight_decay=inf"],
     "must be a finite number"),
    ("optimizer-arg-nan-tuple", lambda tmp: ["run", "--optimizer", "radam", "--optimizer-arg", "betas=0.9,nan"],
     "must be a finite number"),
    ("optimizer-arg-bool", lambda tmp: ["run", "--optimizer", "radam", "--optimizer-arg", "decoupled_weight_decay=2"],
     "expected true or false"),
    ("optimizer-arg-no-equals", lambda tmp: ["run", "--optimizer", "radam", "--optimizer-arg", "betas"],
     "expected KEY=VALUE"),
    ("optimizer-arg-spec-field", lambda tmp: ["run", "--optimizer", "sgd", "--optimizer-arg", "momentum=0.9"],
     "it is set by --momentum"),
    ("optimizer-arg-torch-check", lambda tmp: ["run", "--optimizer", "radam", "--optimizer-arg", "betas=0.9,1.5"],
     "Invalid settings for optimizer radam: Invalid beta parameter at index 1"),
    ("momentum-for-rmsprop", lambda tmp: ["run", "--optimizer", "rmsprop", "--momentum", "0.9"],
     "--momentum does not reach optimizer rmsprop"),
    ("lr-schedule-step-0", lambda tmp: ["run", "--lr-schedule", "step:0:0.1"], "Invalid lr schedule: 'step:0:0.1'"),
    ("lr-schedule-gamma-nan", lambda tmp: ["run", "--lr-schedule", "step:5:nan"], "GAMMA 'nan'"),
    ("lr-schedule-warmup", lambda tmp: ["run", "--lr-schedule", "cosine:3", "--epochs", "3"],
     "WARMUP must be < epochs"),
    ("lr-schedule-milestones", lambda tmp: ["run", "--lr-schedule", "multistep:150,100:0.1"],
     "milestones must increase"),
    ("sweep-baseline-path", lambda tmp: _sweep("--baselines", "adam,torch.optim.Lion"), "Invalid baseline"),
    ("sweep-baseline-mas", lambda tmp: _sweep("--baselines", "mas"), "Invalid baseline 'mas'"),
    ("sweep-stray-optimizer-arg", lambda tmp: _sweep("--optimizer-arg", "radam:decoupled_weight_decay=true"),
     "optimizer_args for 'radam': it is not a baseline of the grid (baselines: adam, sgd)"),
    ("sweep-optimizer-arg-form", lambda tmp: _sweep("--optimizer-arg", "decoupled_weight_decay=true"),
     "a sweep's is OPTIMIZER:KEY=VALUE"),
    ("sweep-lambda-schedule", lambda tmp: _sweep("--lambda-schedule", "constant,linear:2:0"),
     "Invalid lambda schedule"),
    ("sweep-lr-schedule", lambda tmp: _sweep("--lr-schedule", "cosine:-1"), "Invalid lr schedule"),
    ("benchmark-seeds-1e8", lambda tmp: ["sweep", "--benchmark", "quick", "--seeds", "100000000", "--dry-run"],
     "sweep 'quick': 700,000,000 runs"),
    ("seed-list-twice", lambda tmp: _sweep("--seed-list", "0,0"), "Invalid --seed-list: '0,0' gives '0' twice"),
    ("seed-list-1-01", lambda tmp: _sweep("--seed-list", "1,01"), "Invalid --seed-list: '1,01' gives 1 twice"),
    ("seed-list-empty-item", lambda tmp: _sweep("--seed-list", "1,,2"), "'1,,2' has an empty item"),
    ("seed-list-arabic", lambda tmp: _sweep("--seed-list", "١,٢"), "'١' is not an integer in digits 0-9"),
    ("seed-list-underscore", lambda tmp: _sweep("--seed-list", "1_000"), "'1_000' is not an integer in digits 0-9"),
    ("models-twice", lambda tmp: _sweep("--models", "mlp,mlp"), "Invalid --models: 'mlp,mlp' gives 'mlp' twice"),
    ("baselines-empty-item", lambda tmp: _sweep("--baselines", "adam,"), "Invalid --baselines: 'adam,' has an empty"),
    ("lambdas-twice", lambda tmp: _sweep("--lambdas", "0.3,0.30"), "0.30 is listed twice"),
    ("lambdas-zero-twice", lambda tmp: _sweep("--lambdas", "0,-0.0"), "-0.0 is listed twice"),
    ("lambdas-arabic", lambda tmp: _sweep("--lambdas", "٠.٣,٠.٥"), "numbers are written in digits 0-9"),
    ("betas-arabic", lambda tmp: ["run", "--betas", "٠.٩,0.999"], "Invalid --betas: '٠.٩,0.999'"),
    ("pack-1", lambda tmp: ["sweep", "--dataset", "digits", "--lambdas", "0.5", "--pack", "1"],
     "Invalid --pack: 1 (an integer of members per pack in [2, 1024], auto or off)"),
    ("pack-word", lambda tmp: ["sweep", "--dataset", "digits", "--lambdas", "0.5", "--pack", "seven"],
     "Invalid --pack: 'seven'"),
    ("pack-2^63", lambda tmp: ["sweep", "--dataset", "digits", "--lambdas", "0.5", "--pack", "9223372036854775808"],
     "Invalid --pack: 9223372036854775808"),
    ("pack-arabic", lambda tmp: ["sweep", "--dataset", "digits", "--lambdas", "0.5", "--pack", "٧"],
     "Invalid --pack: '٧'"),
    ("epochs-fullwidth", lambda tmp: ["run", "--epochs", "３"], "'３' is not an integer in digits 0-9"),
    ("seeds-underscore", lambda tmp: _sweep("--seeds", "1_0"), "'1_0' is not an integer in digits 0-9"),
    ("lr-arabic", lambda tmp: ["run", "--lr", "٠.١"], "'٠.١' is not a number in digits 0-9"),
    ("seed-list-plus", lambda tmp: _sweep("--seed-list", "0,+1"), "'+1' is not an integer in digits 0-9 without a sign"),
    ("seed-list-minus", lambda tmp: _sweep("--seed-list", "-1"), "'-1' is not an integer in digits 0-9 without a sign"),
    ("sweep-schedule-twice", lambda tmp: _sweep("--lambda-schedule", "linear:1:0,linear:1.0:0.0"),
     "gives 'linear:1:0' twice"),
    ("lr-schedule-underscore", lambda tmp: ["run", "--lr-schedule", "step:30:0_1"], "numbers are written in digits 0-9"),
]

# Benchmarks files: refused as they are read, before any store is opened, so SQLite alone.
FILE_CASES = [
    ("yaml-bomb-8", _bench("bomb8"), "aliases expand to more than 100,000 values"),
    ("yaml-bomb-10", _bench("bomb10"), "aliases expand to more than 100,000 values"),
    ("yaml-deep", _bench("deep"), "nested deeper than 64 levels"),
    ("yaml-long-int", _bench("long_int"), "an integer of 5000 digits"),
    ("yaml-recursive", _bench("recursive"), "an alias refers to a value that contains it"),
    ("yaml-int-key", _bench("int_key"), "benchmark 'b': key 1 is not a name"),
    ("yaml-int-name", _bench("int_name"), "benchmarks: key 7 is not a name"),
    ("yaml-list-description", _bench("list_description"), "benchmark 'b', key 'description': ['a', 'b'] is invalid"),
    ("yaml-list-dataset", _bench("list_dataset"), "benchmark 'b', key 'dataset': ['digits'] is invalid"),
    ("yaml-empty-grids", _bench("empty_grids"), "benchmark 'b': 'grids' is empty"),
    ("yaml-inf-lr", _bench("inf_lr"), "benchmark 'b': Invalid lr: inf"),
    ("yaml-nan-eps", _bench("nan_eps"), "benchmark 'b': Invalid eps: nan"),
    ("yaml-seed-list", _bench("big_seed_list"), "benchmark 'b': Invalid seed_list: 3000000000"),
    ("yaml-nul-name", _bench("nul_name"), "holds a control character"),
    ("yaml-huge-grid", _bench("huge_grid"), "1,000,003,000 runs"),
    ("yaml-huge-file", _bench("huge_file"), "bytes (at most 1,048,576)"),
    ("yaml-stray-args", _bench("stray_args"), "optimizer_args for 'nadam': it is not a baseline of the grid"),
    ("yaml-flat-args", _bench("flat_args"), "key 'optimizer_args.decoupled_weight_decay': True is invalid"),
    ("yaml-bad-arg", _bench("bad_arg"), "Invalid optimizer argument betas=[0.9] for radam (expected 2 numbers"),
    ("yaml-lambda-schedules", _bench("bad_lambda_schedules"), "Invalid lambda schedule: 'linear:0.5'"),
    ("yaml-bool-epochs", _bench("bool_epochs"), "benchmark 'b', key 'epochs': True is a boolean, not an integer"),
    ("yaml-text-lr", _bench("text_lr"), "benchmark 'b', key 'lr': '1e-3' is text, not a number (write it without"),
    ("yaml-text-beta", _bench("text_beta"), "benchmark 'b', key 'betas.1': '0.999' is text, not a number"),
    ("yaml-float-seeds", _bench("float_seeds"), "benchmark 'b', key 'seeds': 3.0 is not an integer"),
    ("yaml-int-nesterov", _bench("int_nesterov"), "benchmark 'b', key 'nesterov': 1 is not true or false"),
    ("yaml-duplicate-key", _bench("duplicate_key"),
     "line 5, column 5: key 'lr' given twice in one mapping (first at line 3)"),
    ("yaml-duplicate-benchmark", _bench("duplicate_benchmark"), "key 'b' given twice in one mapping (first at line 2)"),
    ("yaml-duplicate-seed", _bench("duplicate_seed"), "benchmark 'b': Invalid seed_list: [0, 1, 0] gives 0 twice"),
    ("yaml-pack-1", _bench("pack_one"), "benchmark 'b': Invalid pack: 1 (an integer of members per pack in"),
    ("yaml-pack-true", _bench("pack_true"), "benchmark 'b': Invalid pack: True"),
    ("yaml-pack-float", _bench("pack_float"), "benchmark 'b', grid 1: Invalid pack: 2.5"),
    ("yaml-pack-text", _bench("pack_text"), "benchmark 'b': Invalid pack: '7' is text, not an integer (write it without"),
    ("yaml-duplicate-model", _bench("duplicate_model"), "benchmark 'b': Invalid models: ['mlp', 'mlp'] gives 'mlp'"),
]


@pytest.mark.parametrize("make_args, message", [c[1:] for c in STORE_CASES], ids=[c[0] for c in STORE_CASES])
def test_hostile_values_are_one_line_and_write_nothing(make_args, message, db_url, tmp_path):
    result = masbench([*make_args(tmp_path), "--db", db_url], tmp_path)
    assert_refused(result, message)
    assert tables_of(db_url) == []


@pytest.mark.parametrize("make_args, message", [c[1:] for c in FILE_CASES], ids=[c[0] for c in FILE_CASES])
def test_hostile_benchmarks_files_are_one_line_and_write_nothing(make_args, message, sqlite_url, tmp_path):
    result = masbench([*make_args(tmp_path), "--db", sqlite_url], tmp_path)
    assert_refused(result, message)
    assert tables_of(sqlite_url) == []


def _one_class_csv(tmp: Path) -> str:
    path = tmp / "one.csv"
    path.write_text("text,label\n" + "".join(f"review {i},good\n" for i in range(12)))
    return f"csv:{path}"


def _header_only(tmp: Path) -> str:
    path = tmp / "empty.csv"
    path.write_text("text,label\n")
    return str(path)


DATA_CASES = [
    ("one-class", lambda tmp: ["run", "--dataset", _one_class_csv(tmp), "--model", "bert"], "has one class ('good')"),
    ("header-only-test-file",
     lambda tmp: ["run", "--dataset", f"csv:{write_csv(tmp / 'r.csv')}", "--model", "bert", "--test-file",
                  _header_only(tmp)], "has no rows below its header"),
    ("header-only-data",
     lambda tmp: ["run", "--dataset", f"csv:{_header_only(tmp)}", "--model", "bert", "--test-file",
                  str(write_csv(tmp / "t.csv"))], "has no rows below its header"),
    ("subset-of-one", lambda tmp: ["run", "--train-subset", "1"], "its training subset of 1"),
]


@pytest.mark.parametrize("make_args, message", [c[1:] for c in DATA_CASES], ids=[c[0] for c in DATA_CASES])
def test_hostile_data_is_one_line_and_records_no_run(make_args, message, db_url, tmp_path):
    result = masbench([*make_args(tmp_path), "--db", db_url, "--data-dir", str(tmp_path / "data")], tmp_path)
    assert_refused(result, message)
    assert run_count(db_url) == 0


TOY_CASES = [
    ("steps-1e12", ["toy", "abs", "--steps", "1000000000000"], "Invalid steps: 1000000000000 (must be in [1, 100,000])"),
    ("lr-inf", ["toy", "abs", "--lr", "inf"], "Invalid lr: inf"),
    ("momentum-inf", ["toy", "quadratic", "--momentum", "1e309"], "Invalid momentum: inf"),
    ("start-inf", ["toy", "abs", "--start", "1,inf"], "Invalid start y: inf"),
    ("threshold-nan", ["toy", "abs", "--threshold", "nan"], "Invalid threshold: nan"),
    ("plot-missing-folder", ["toy", "abs", "--steps", "5", "--plot", "no/such/folder/x.png"], "does not exist"),
    ("plot-suffix", ["toy", "abs", "--steps", "5", "--plot", "x.txt"], "its suffix must be one of .png"),
]


@pytest.mark.parametrize("args, message", [c[1:] for c in TOY_CASES], ids=[c[0] for c in TOY_CASES])
def test_hostile_toy_settings_are_one_line(args, message, tmp_path):
    result = masbench(args, tmp_path)
    assert_refused(result, message)
    assert list(tmp_path.iterdir()) == []


# --- too many cells: refused from the arithmetic, before torch is imported ----------------------------

# The command line, then whether torch was imported by the time it exited (stdout).
WITHOUT_TORCH_PROBE = """
import sys
from masbench.cli import main
sys.argv[0] = "masbench"
try:
    main()
finally:
    print("torch imported:", "torch" in sys.modules)
"""

CELL_CAP_CASES = [
    ("benchmark-seeds", ["sweep", "--benchmark", "quick", "--seeds", "100000000"], "sweep 'quick': 700,000,000 runs"),
    ("benchmark-lambdas", ["sweep", "--benchmark", "quick", "--lambdas", "0..1:0.00001"],
     "sweep 'quick': 200,006 runs"),
    ("dataset-seeds", ["sweep", "--dataset", "digits", "--seeds", "100000000"], "sweep 'digits': 700,000,000 runs"),
    ("grids-of-a-file", ["sweep", "--benchmark", "nightly", "--seeds", "10000"], "more than the cap of 10,000"),
]


@pytest.mark.parametrize("args, message", [c[1:] for c in CELL_CAP_CASES], ids=[c[0] for c in CELL_CAP_CASES])
@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "run"])
def test_too_many_cells_are_refused_before_torch_is_imported(args, message, dry_run, sqlite_url, tmp_path):
    """The answer in a fraction of a second and a few tens of MB: torch's import alone takes ~1.6 s and ~870 MB."""
    result = masbench([*args, *(["--dry-run"] if dry_run else []), "--db", sqlite_url], tmp_path,
                      entry=("-c", WITHOUT_TORCH_PROBE))
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout == "torch imported: False\n", result.stdout
    assert_refused(subprocess.CompletedProcess(result.args, result.returncode, "", result.stderr), message)
    assert tables_of(sqlite_url) == []


# --- database URLs: refused before anything connects, nothing written, the password never shown -----------

URL_CASES = [
    ("sqlite-mode-ro", lambda tmp: f"sqlite:///{tmp}/x.db?mode=ro", "(SQLite: unsupported query parameter 'mode'"),
    ("sqlite-timeout", lambda tmp: f"sqlite:///{tmp}/x.db?timeout=5", "unsupported query parameter 'timeout'"),
    ("sqlite-uri-maybe", lambda tmp: f"sqlite:///{tmp}/x.db?uri=maybe", "(SQLite: uri='maybe' must be true or false)"),
    ("sqlite-mode-twice", lambda tmp: f"sqlite:///file:{tmp}/x.db?uri=true&mode=ro&mode=rwc",
     "unsupported parameter 'mode' given twice"),
    ("pg-port-text", lambda tmp: "postgresql+psycopg://u:s3cret@db.example:notaport/runs",
     "Invalid database URL: postgresql+psycopg://u:***@db.example:notaport/runs "
     "(its port must be an integer in 1-65535)"),
    ("pg-port-70000", lambda tmp: "postgresql+psycopg://u:s3cret@db.example:70000/runs",
     "postgresql+psycopg://u:***@db.example:70000/runs (its port 70000 must be an integer in 1-65535)"),
    ("pg-port-0", lambda tmp: "postgresql+psycopg://u:s3cret@db.example:0/runs", "its port 0 must be an integer"),
]
URL_COMMANDS = {"run": ["run", "--epochs", "1"], "sweep": ["sweep", "--dataset", "digits", "--lambdas", "0.5"],
                "dry-run": ["sweep", "--dataset", "digits", "--dry-run"], "report": ["report"]}


@pytest.mark.parametrize("command", list(URL_COMMANDS))
@pytest.mark.parametrize("make_url, message", [c[1:] for c in URL_CASES], ids=[c[0] for c in URL_CASES])
def test_hostile_database_urls_are_one_line_and_write_nothing(make_url, message, command, tmp_path):
    result = masbench([*URL_COMMANDS[command], "--db", make_url(tmp_path)], tmp_path)
    assert_refused(result, message)
    assert "s3cret" not in result.stderr and "Warning" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []
