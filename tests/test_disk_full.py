"""A full disk (ENOSPC) under the database or the checkpoint folder: one line, the cell resumable, nothing torn.

Each test mounts a small tmpfs (as root) and fills it with a filler file once epoch 1's checkpoint is in
place, so that epoch 2's write is the one that meets the full disk: the epoch's row (database on the tmpfs)
or its checkpoint (checkpoint folder on the tmpfs). After the filler is removed, running the same command
again completes the cell with one row per epoch and the numbers of a run that never stopped.

PostgreSQL: the server's disk cannot be filled from here, so a trigger on the epochs table raises the
server's own "disk full" (SQLSTATE 53100, ``disk_full``) from epoch 2 on: the real error through the real
driver, on the same path (``opening.is_disk_full``); the other "insufficient resources" states are not disk full.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import postgres_database

from masbench.cli import app
from masbench.fileio import load_torch_file
from masbench.cli.progress import RunProgress
from masbench.store import Store
from masbench.store.opening import is_disk_full
from masbench.store.urls import mask_url

runner = CliRunner()
ARGS = ["run", "--dataset", "digits", "--model", "mlp", "--epochs", "3", "--claim-timeout", "1"]
NUMBERS = "select epoch, train_loss, train_acc, test_loss, test_acc from epochs order by epoch"


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs, mounted for the test and unmounted after it."""
    folder = tmp_path / "small"
    folder.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs to fill needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=True)


def fill(folder: Path) -> Path:
    """Write a filler file in ``folder`` until its disk has no room for one more byte."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (1 << 16, 1 << 12, 1):
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError as error:
                    assert error.errno == errno.ENOSPC
                    break
    finally:
        os.close(fd)
    return filler


@pytest.fixture
def fill_after_epoch_1(monkeypatch):
    """Fills the given folder's disk once, when epoch 1's checkpoint is in place; returns the filler's path."""
    filled: list[Path] = []

    def arm(folder: Path) -> list[Path]:
        def on_checkpoint(self, epoch, path):
            if epoch == 1 and not filled:
                filled.append(fill(folder))

        monkeypatch.setattr(RunProgress, "on_checkpoint", on_checkpoint, raising=False)
        return filled

    return arm


def rows(path: Path, query: str):
    with sqlite3.connect(path) as connection:
        return connection.execute(query).fetchall()


def _one_error_line(result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and result.stderr.rstrip().endswith(errors[0]), result.stderr
    return errors[0]


def _wait_for_lease(url: str, run_id: int) -> None:
    """Until the claim the failed run could not give back has lapsed by the server's clock (--claim-timeout 1)."""
    store = Store(url)
    try:
        for _ in range(600):
            if not store.is_held(run_id):
                return
            time.sleep(0.05)
        pytest.fail(f"run {run_id}'s lease never expired")
    finally:
        store.close()


def _uninterrupted(tmp_path: Path) -> list:
    db = tmp_path / "reference.db"
    result = runner.invoke(app, [*ARGS, "--db", f"sqlite:///{db}", "--checkpoint-dir", str(tmp_path / "ref-ckpt")])
    assert result.exit_code == 0, result.output
    return rows(db, NUMBERS)


def test_a_full_disk_under_the_database(small_disk, fill_after_epoch_1, tmp_path):
    db = small_disk / "store.db"
    url = f"sqlite:///{db}"
    checkpoints = tmp_path / "ckpt"
    filled = fill_after_epoch_1(small_disk)
    args = [*ARGS, "--db", url, "--checkpoint-dir", str(checkpoints)]
    result = runner.invoke(app, args)
    line = _one_error_line(result)
    assert filled and line.startswith(f"Error: disk full: cannot write database {db} (database or disk is full)")
    [(run_id, status)] = rows(db, "select id, status from runs")
    # Never failed: released when the release could be written, else claimed until its lease lapses.
    assert status == ("pending" if "is pending again" in line else "running"), line
    assert rows(db, "select epoch from epochs") == [(1,)]
    [checkpoint] = checkpoints.glob("*.pt")
    assert load_torch_file(checkpoint)["epoch"] == 1
    assert not list(checkpoints.glob(".*.tmp"))

    filled[0].unlink()
    if status == "running":
        _wait_for_lease(url, run_id)
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert again.stdout.startswith("completed")
    assert rows(db, "select status from runs") == [("completed",)]
    assert rows(db, NUMBERS) == _uninterrupted(tmp_path)  # epochs 1, 2, 3: one row each, the same numbers


def test_a_full_disk_under_the_checkpoint_folder(small_disk, fill_after_epoch_1, tmp_path):
    db = tmp_path / "store.db"
    checkpoints = small_disk / "ckpt"
    filled = fill_after_epoch_1(small_disk)
    args = [*ARGS, "--db", f"sqlite:///{db}", "--checkpoint-dir", str(checkpoints)]
    result = runner.invoke(app, args)
    line = _one_error_line(result)
    [checkpoint] = checkpoints.glob("*.pt")
    assert filled and line.startswith(f"Error: disk full: cannot write {checkpoint} (No space left on device)")
    assert "is pending again" in line
    assert rows(db, "select status, error from runs") == [("pending", None)]
    assert rows(db, "select epoch from epochs") == [(1,), (2,)]
    assert load_torch_file(checkpoint)["epoch"] == 1  # the previous checkpoint, whole
    assert not list(checkpoints.glob(".*.tmp"))  # the temporary file of the failed write is gone

    filled[0].unlink()
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert rows(db, "select status from runs") == [("completed",)]
    assert rows(db, NUMBERS) == _uninterrupted(tmp_path)


# --- PostgreSQL: SQLSTATE 53100 ------------------------------------------------------------------------------


@pytest.mark.parametrize("sqlstate, full", [("53100", True), ("53000", False), ("53200", False), ("53300", False),
                                            ("53400", False), ("08006", False)])
def test_only_sqlstate_53100_is_a_full_disk(sqlstate, full):
    """53100 is disk_full; 53000 insufficient_resources, 53200 out_of_memory, 53300 too_many_connections and 53400
    configuration_limit_exceeded are not, and neither is a lost connection (08006)."""
    from psycopg import errors
    from sqlalchemy.exc import OperationalError

    error = errors.lookup(sqlstate)("could not extend file")
    assert error.sqlstate == sqlstate
    assert is_disk_full(error) is full
    assert is_disk_full(OperationalError("INSERT INTO epochs ...", {}, error)) is full


FULL_FROM_EPOCH_2 = """
CREATE FUNCTION masbench_test_disk_full() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.epoch >= 2 THEN
        RAISE EXCEPTION 'could not extend file "base/16384/16402": No space left on device' USING ERRCODE = 'disk_full';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER masbench_test_disk_full BEFORE INSERT ON epochs FOR EACH ROW EXECUTE FUNCTION masbench_test_disk_full();
"""


def _pg(url: str, sql: str, fetch: bool = False):
    from sqlalchemy import create_engine

    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            result = connection.exec_driver_sql(sql)
            return [tuple(row) for row in result] if fetch else None
    finally:
        engine.dispose()


def test_a_full_disk_on_the_postgresql_server(tmp_path):
    with postgres_database() as url:
        Store(url).close()
        _pg(url, FULL_FROM_EPOCH_2)
        args = [*ARGS, "--db", url, "--checkpoint-dir", str(tmp_path / "ckpt")]
        line = _one_error_line(runner.invoke(app, args))
        assert line.startswith(f"Error: disk full: cannot write the server of database {mask_url(url)} (could not "
                               f"extend file"), line
        assert "is pending again" in line
        assert _pg(url, "select status, error from runs", fetch=True) == [("pending", None)]
        assert _pg(url, "select epoch from epochs", fetch=True) == [(1,)]

        _pg(url, "DROP TRIGGER masbench_test_disk_full ON epochs")  # space freed
        again = runner.invoke(app, args)
        assert again.exit_code == 0, again.output
        assert _pg(url, "select status from runs", fetch=True) == [("completed",)]
        assert _pg(url, NUMBERS, fetch=True) == _uninterrupted(tmp_path)
