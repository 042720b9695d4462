"""Reliability with real processes, on SQLite and on a real PostgreSQL server.

- Crash safety: a sweep killed with SIGKILL during an epoch, during a database write, or while a
  checkpoint is being written, then rerun, ends with every cell completed, one epochs row per
  (run, epoch), and the metrics of a sweep that was never interrupted.
- Concurrency: four workers against one database run every cell once; a worker killed while it
  holds a claim has its cell taken over and completed.
- Bad input: one line, a non-zero exit, no traceback, nothing written.
- Divergence is a result, not a crash; a database password is never printed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import write_csv, write_image_folder
from masbench.cli import app
from reliability import finish, metrics, release, rows, sweep, wait_for_running_cell

runner = CliRunner()
pytestmark = pytest.mark.slow

BENCHMARKS = textwrap.dedent("""
    benchmarks:
      crash:                      # 2 cells x 4 epochs x 23 batches
        dataset: digits
        models: [mlp]
        lambdas: "0.5"
        baselines: [sgd]
        lr: 0.01
        momentum: 0.9
        batch_size: 64
        epochs: 4
        seeds: 1
      many:                       # 8 cells, for four workers at once
        dataset: digits
        models: [mlp]
        lambdas: "0.3,0.5,0.7"
        baselines: [adam]
        lr: 0.01
        batch_size: 128
        epochs: 3
        seeds: 2
      slow:                       # cells long enough to kill a worker in the middle of one
        dataset: digits
        models: [mlp]
        lambdas: "0.5"
        baselines: [sgd]
        lr: 0.003
        batch_size: 8
        epochs: 5
        seeds: 2
      diverge:
        grids:
          - {dataset: digits, models: [mlp], baselines: [sgd], lambdas: "0.5", lr: 1.0e+12, momentum: 0.9, epochs: 2}
          - {dataset: digits, models: [mlp], baselines: [adam], lambdas: "0.5", lr: 0.003, epochs: 2}
""")


@pytest.fixture(scope="module")
def bench_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bench") / "benchmarks.yaml"
    path.write_text(BENCHMARKS)
    return path


@pytest.fixture(scope="module")
def clean_metrics(bench_file, tmp_path_factory):
    """The crash benchmark's metrics from a sweep that was never interrupted."""
    work = tmp_path_factory.mktemp("clean")
    url = f"sqlite:///{work / 'clean.db'}"
    process = sweep(bench_file, url, work)
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err
    return metrics(url)


@pytest.mark.parametrize(
    "fault",
    [
        "batch:40",  # during epoch 2 of the first cell
        "batch:120",  # during the second cell, after the first completed
        "store.epoch:3",  # inside the transaction that writes epoch 3
        "checkpoint:2",  # while epoch 2's checkpoint is being written
    ],
)
def test_a_killed_sweep_reruns_to_the_uninterrupted_metrics(fault, bench_file, db_url, tmp_path, clean_metrics):
    # The killed worker's own lease (--claim-timeout) decides when its cell may be taken over.
    killed = sweep(bench_file, db_url, tmp_path, "--claim-timeout", "2", fault=fault)
    out, err = killed.communicate(timeout=600)
    assert killed.returncode == -signal.SIGKILL, f"the fault {fault} did not fire: {out}\n{err}"
    assert rows(db_url, "select count(*) from runs where status = 'running'") == [(1,)]

    out, err = finish(sweep(bench_file, db_url, tmp_path, "--claim-timeout", "2"))
    assert "2 completed" in out
    assert rows(db_url, "select status, count(*) from runs group by status") == [("completed", 2)]
    assert rows(db_url, "select count(*), count(distinct run_id * 1000 + epoch) from epochs") == [(8, 8)]
    assert metrics(db_url) == clean_metrics


def test_a_torn_checkpoint_file_restarts_its_cell_with_a_warning(bench_file, db_url, tmp_path, clean_metrics):
    killed = sweep(bench_file, db_url, tmp_path, "--claim-timeout", "2", fault="batch:40")
    killed.communicate(timeout=600)
    (checkpoint,) = (tmp_path / "ckpt").glob("*.pt")
    checkpoint.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])

    out, err = finish(sweep(bench_file, db_url, tmp_path, "--claim-timeout", "2"))
    assert "is unusable" in err and "restarting" in err
    assert metrics(db_url) == clean_metrics


def test_four_workers_run_every_cell_once(bench_file, db_url, tmp_path):
    out, err = finish(sweep(bench_file, db_url, tmp_path, "--workers", "4", benchmark="many"))
    assert "8 runs, 8 finished now; 8 completed" in out
    assert "locked" not in err.lower() and "Traceback" not in err
    assert rows(db_url, "select count(*), count(distinct key), sum(attempts) from runs where status = 'completed'") \
        == [(8, 8, 8)]
    assert rows(db_url, "select count(*), count(distinct run_id * 1000 + epoch) from epochs") == [(24, 24)]
    assert len({w for (w,) in rows(db_url, "select worker from runs")}) >= 2


def test_two_sweeps_at_once_never_run_a_cell_twice(bench_file, db_url, tmp_path):
    first = sweep(bench_file, db_url, tmp_path / "a", "--workers", "2", benchmark="many")
    second = sweep(bench_file, db_url, tmp_path / "b", "--workers", "2", benchmark="many")
    finish(first)
    finish(second)
    assert rows(db_url, "select count(*), sum(attempts) from runs where status = 'completed'") == [(8, 8)]
    assert rows(db_url, "select count(*) from epochs") == [(24,)]


def test_a_worker_killed_while_holding_a_claim_is_taken_over(bench_file, db_url, tmp_path):
    process = sweep(bench_file, db_url, tmp_path, "--workers", "2", "--claim-timeout", "3", benchmark="slow",
                    hold=tmp_path / "held")
    worker = wait_for_running_cell(db_url)
    os.kill(int(worker.split(":")[1]), signal.SIGKILL)  # that worker process, not the sweep
    release(tmp_path / "held")

    out, err = finish(process)
    assert "4 completed" in out and "1 worker process(es) died" in err
    assert rows(db_url, "select count(*) from runs where attempts = 2") == [(1,)]
    assert rows(db_url, "select count(*), count(distinct run_id * 1000 + epoch) from epochs") == [(20, 20)]


def test_divergence_is_recorded_and_the_sweep_goes_on(bench_file, db_url, tmp_path):
    result = runner.invoke(app, ["sweep", "--benchmark", "diverge", "--benchmarks", str(bench_file), "--db", db_url])
    assert result.exit_code == 0, result.output
    assert "2 completed, 2 diverged" in result.stdout
    report = runner.invoke(app, ["report", "--format", "markdown", "--db", db_url])
    assert report.stdout.count("0/1 seeds, 1 diverged") == 2
    errors = rows(db_url, "select error from runs where status = 'diverged'")
    assert all("non-finite training loss" in e for (e,) in errors)


def test_a_database_password_is_never_printed(bench_file, tmp_path):
    from conftest import postgres_database

    with postgres_database() as url:
        secret = url.replace("postgres@", "postgres:s3cr3t-pw@", 1)
        shown = ""
        for args in (["sweep", "--benchmark", "diverge", "--benchmarks", str(bench_file)],
                     ["run", "--epochs", "1"], ["run", "--epochs", "1"], ["report"],
                     ["sweep", "--benchmark", "nope", "--benchmarks", str(bench_file)]):
            result = runner.invoke(app, [*args, "--db", secret])
            assert "s3cr3t-pw" not in result.output, args
            shown += result.output
        assert "postgres:***@" in shown
    closed = "postgresql+psycopg://postgres:s3cr3t-pw@127.0.0.1:1/none"
    result = runner.invoke(app, ["run", "--db", closed])
    assert result.exit_code == 1 and "postgres:***@127.0.0.1:1/none" in result.stderr
    assert "s3cr3t-pw" not in result.output


# --- bad input ------------------------------------------------------------------------------------------


def _empty(path: Path) -> str:
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def _truncated_images(path: Path) -> str:
    write_image_folder(path)
    victim = path / "train" / "cat" / "003.png"
    victim.write_bytes(victim.read_bytes()[:50])
    return f"imagefolder:{path}"


def _truncated_csv(path: Path) -> str:
    file = write_csv(path)
    text = file.read_text()
    file.write_text(text[: len(text) // 2].rsplit(",", 1)[0])
    return f"csv:{file}"


def _yaml(path: Path, content: str) -> str:
    path.write_text(content)
    return str(path)


BAD_INPUT = [
    # (command line, what the one line says)
    (lambda p: ["run", "--dataset", "mnist"], "Unknown dataset: 'mnist' (valid: digits, cifar10"),
    (lambda p: ["run", "--model", "vgg16"], "Unknown model: 'vgg16' (did you mean tv:vgg16? valid: mlp, cnn"),
    (lambda p: ["run", "--optimizer", "lion"], "Unknown optimizer: 'lion' (valid: mas, sgd, adam, adamw, radam,"),
    (lambda p: ["run", "--lambda-adam", "-0.2"], "Invalid lambda_adam: -0.2 (must be >= 0)"),
    (lambda p: ["sweep", "--dataset", "digits", "--lambdas", "-0.1"], "Invalid lambda_adam -0.1"),
    (lambda p: ["sweep", "--dataset", "digits", "--lambdas", "0.7..0.3"], "start 0.7 is above end 0.3"),
    (lambda p: ["sweep", "--dataset", "digits", "--lambdas", "abc"], "Invalid lambdas 'abc'"),
    (lambda p: ["sweep", "--dataset", "digits", "--lambdas", "0.3.."], "Invalid lambdas '0.3..'"),
    (lambda p: ["sweep", "--dataset", "digits", "--lambdas", "0.3..0.7:0"], "the step must be > 0"),
    (lambda p: ["run", "--epochs", "0"], "Invalid epochs: 0 (must be >= 1)"),
    (lambda p: ["sweep", "--dataset", "digits", "--epochs", "-3"], "Invalid epochs: -3 (must be >= 1)"),
    (lambda p: ["run", "--batch-size", "0"], "Invalid batch_size: 0 (must be >= 1)"),
    (lambda p: ["run", "--lr", "-0.01"], "Invalid lr: -0.01 (must be >= 0)"),
    (lambda p: ["sweep", "--benchmark", "x", "--benchmarks", _yaml(p / "b.yaml", "benchmarks: [x: {")],
     "YAML syntax error at line"),
    (lambda p: ["sweep", "--benchmark", "x", "--benchmarks", _yaml(p / "b.yaml", "benchmarks:\n  x: {epoch: 3}\n")],
     "benchmark 'x': unknown key 'epoch'"),
    (lambda p: ["sweep", "--benchmark", "x", "--benchmarks", _yaml(p / "b.yaml", "benchmarks:\n  x: {seeds: two}\n")],
     "benchmark 'x', key 'seeds': 'two' is text, not an integer"),
    (lambda p: ["run", "--db", "postgresql+psycopg://me:pw@127.0.0.1:1/masbench"], "cannot open database"),
    (lambda p: ["sweep", "--dataset", "digits", "--db", "sqlite:////no/such/dir/x.db"], "folder /no/such/dir does not exist"),
    (lambda p: ["run", "--dataset", "cifar10", "--model", "resnet18", "--data-dir", _empty(p / "d")],
     "cifar10 not found in"),
    (lambda p: ["sweep", "--dataset", "cifar100", "--models", "resnet18", "--data-dir", _empty(p / "d")],
     "cifar100 not found in"),
    (lambda p: ["run", "--dataset", _truncated_images(p / "img"), "--model", "cnn"], "cannot decode image"),
    (lambda p: ["sweep", "--dataset", _truncated_images(p / "img"), "--models", "cnn"], "cannot decode image"),
    (lambda p: ["run", "--dataset", _truncated_csv(p / "t.csv"), "--model", "bert"], "lacks a value"),
]


@pytest.mark.parametrize("make_args, message", BAD_INPUT)
def test_bad_input_is_one_line_and_writes_nothing(make_args, message, tmp_path, minilm_path):
    args = make_args(tmp_path)
    if "bert" in args:
        args += ["--pretrained", minilm_path]
    if "--db" not in args:
        args += ["--db", f"sqlite:///{tmp_path / 'store.db'}"]
    result = runner.invoke(app, args)
    assert result.exit_code not in (0, None), result.output
    assert result.stdout == ""
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr
    store = tmp_path / "store.db"
    assert not store.exists() or rows(f"sqlite:///{store}", "select count(*) from runs") == [(0,)]


@pytest.fixture
def immutable_database(tmp_path):
    """A database file nobody may write: chmod for ordinary users, chattr +i for root (whom chmod does not stop)."""
    from masbench.store import Store

    path = tmp_path / "locked.db"
    Store(f"sqlite:///{path}").close()
    if os.geteuid() == 0:
        if not shutil.which("chattr") or subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode:
            pytest.skip("cannot make a file read-only for root here (chattr +i unsupported)")
        yield path
        subprocess.run(["chattr", "-i", str(path)], check=True)
    else:
        path.chmod(0o444)
        tmp_path.chmod(0o555)
        yield path
        tmp_path.chmod(0o755)


@pytest.mark.parametrize("command", [["run", "--epochs", "1"], ["sweep", "--dataset", "digits", "--epochs", "1"]])
def test_a_read_only_database_file(immutable_database, command):
    before = immutable_database.read_bytes()
    result = runner.invoke(app, [*command, "--db", f"sqlite:///{immutable_database}"])
    assert result.exit_code == 1
    assert "is read-only" in result.stderr and result.stderr.count("\n") == 1
    assert immutable_database.read_bytes() == before


@pytest.mark.parametrize("workers", ["1", "2"])
def test_ctrl_c_stops_a_local_sweep_cleanly_and_releases_its_claims(bench_file, sqlite_url, tmp_path, workers):
    process = sweep(bench_file, sqlite_url, tmp_path, "--workers", workers, benchmark="slow", hold=tmp_path / "held")
    wait_for_running_cell(sqlite_url)
    os.killpg(process.pid, signal.SIGINT)
    release(tmp_path / "held")
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "claims released" in err and "Traceback" not in err
    assert rows(sqlite_url, "select count(*) from runs where status = 'running'") == [(0,)]
