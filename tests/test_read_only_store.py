"""Commands that only read (report, compare, plot, sweep --dry-run) open the store read-only.

So they work on a read-only mount, write nothing (not even the -wal and -shm files of a WAL database),
and refuse, in one line, an old store that they would have to upgrade but cannot write. The tests run as
root, whom permission bits do not stop: the read-only folder is a real read-only bind mount, made by the
test, and the test is skipped, saying why, where mounting is not allowed.
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
from sqlalchemy.exc import SQLAlchemyError
from typer.testing import CliRunner

from masbench.cli import app
from masbench.spec import RunSpec
from masbench.store import SCHEMA_VERSION, NeedsUpgrade, Store
from masbench.sweep.units import run_values

runner = CliRunner()
FIXTURE = Path(__file__).parent / "fixtures" / "store_v1.sqlite"
READERS = {
    "report": ["report"],
    "compare": ["compare", "adam", "sgd"],
    "plot": ["plot", "--output", "PLOT"],
    "dry-run": ["sweep", "--dataset", "digits", "--models", "mlp", "--epochs", "1", "--dry-run"],
}
WRITERS = {
    "run": ["run", "--dataset", "digits", "--model", "mlp", "--epochs", "1", "--seed", "5"],
    "sweep": ["sweep", "--dataset", "digits", "--models", "mlp", "--no-baselines", "--lambdas", "0.5", "--epochs", "1"],
}


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture
def read_only_mount(tmp_path):
    """``freeze(folder)`` bind-mounts ``folder`` onto itself read-only; unmounted after the test."""
    mounted: list[Path] = []

    def freeze(folder: Path) -> None:
        for command in (["mount", "--bind", str(folder), str(folder)],
                        ["mount", "-o", "remount,ro,bind", str(folder)]):
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode:
                pytest.skip(f"cannot make a read-only mount here ({' '.join(command[:2])}: {result.stderr.strip()})")
            if folder not in mounted:
                mounted.append(folder)
        with pytest.raises(OSError):
            (folder / "probe").touch()

    yield freeze
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], check=True)


@pytest.fixture(scope="module")
def finished_store(tmp_path_factory) -> Path:
    """A store with an adam and an sgd run of digits/mlp (one epoch each), its log checkpointed into the file."""
    folder = tmp_path_factory.mktemp("finished")
    for optimizer in ("adam", "sgd"):
        result = runner.invoke(app, ["run", "--dataset", "digits", "--model", "mlp", "--epochs", "1", "--optimizer",
                                     optimizer, "--db", f"sqlite:///{folder / 'store.db'}",
                                     "--checkpoint-dir", str(folder.parent / "ckpt")])
        assert result.exit_code == 0, result.output
    with sqlite3.connect(folder / "store.db") as connection:  # everything into the file, which tests copy alone
        assert connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
    connection.close()
    return folder / "store.db"


def _copy_into(tmp_path: Path, source: Path) -> Path:
    folder = tmp_path / "store"
    folder.mkdir()
    shutil.copy(source, folder / "store.db")
    return folder / "store.db"


def _args(args: list[str], tmp_path: Path) -> list[str]:
    return [str(tmp_path / "plot.png") if a == "PLOT" else a for a in args]


@pytest.mark.parametrize("command", READERS)
def test_the_reading_commands_work_on_a_read_only_mount(command, finished_store, read_only_mount, tmp_path):
    path = _copy_into(tmp_path, finished_store)
    read_only_mount(path.parent)
    before = digest(path.parent)
    result = runner.invoke(app, [*_args(READERS[command], tmp_path), "--db", f"sqlite:///{path}"])
    assert result.exit_code == 0, result.output
    assert digest(path.parent) == before


@pytest.mark.parametrize("command", WRITERS)
def test_the_writing_commands_say_the_store_is_read_only(command, finished_store, read_only_mount, tmp_path):
    path = _copy_into(tmp_path, finished_store)
    read_only_mount(path.parent)
    result = runner.invoke(app, [*WRITERS[command], "--db", f"sqlite:///{path}"])
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(f"Error: database sqlite:///{path} is read-only: the file or its folder")
    assert result.stderr.count("\n") == 1, result.stderr


@pytest.mark.parametrize("command", READERS)
def test_a_reading_command_leaves_no_log_files_behind(command, finished_store, tmp_path):
    """A WAL database read in a writable folder: the -wal and -shm files it needed are gone afterwards."""
    path = _copy_into(tmp_path, finished_store)
    before = digest(path.parent)
    result = runner.invoke(app, [*_args(READERS[command], tmp_path), "--db", f"sqlite:///{path}"])
    assert result.exit_code == 0, result.output
    import gc

    gc.collect()  # the command does not close its store: its finalizer does, when the store goes away
    assert digest(path.parent) == before


def test_an_old_store_on_a_read_only_mount_is_refused_with_the_way_out(read_only_mount, tmp_path):
    path = _copy_into(tmp_path, FIXTURE)
    read_only_mount(path.parent)
    before = digest(path.parent)
    for args in READERS.values():
        result = runner.invoke(app, [*_args(args, tmp_path), "--db", f"sqlite:///{path}"])
        assert result.exit_code == 1, result.output
        assert result.stderr.count("\n") == 1, result.stderr
        assert (f"has schema version 1, older than this masbench's ({SCHEMA_VERSION}), and is opened read-only "
                f"here: open it once where it can be written") in result.stderr
    assert digest(path.parent) == before


def test_an_old_store_that_can_be_written_is_upgraded_once_then_read(tmp_path):
    path = _copy_into(tmp_path, FIXTURE)
    with pytest.raises(NeedsUpgrade):
        Store(f"sqlite:///{path}", read_only=True)  # read-only alone never migrates
    result = runner.invoke(app, ["report", "--db", f"sqlite:///{path}"])
    assert result.exit_code == 0, result.output
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall() == [(str(SCHEMA_VERSION),)]
    connection.close()


def test_a_log_with_changes_on_a_read_only_mount_is_refused_not_ignored(finished_store, read_only_mount, tmp_path):
    """``immutable=1`` would read the database without its log: numbers not yet checkpointed would be missed."""
    (tmp_path / "live").mkdir()
    source = _copy_into(tmp_path / "live", finished_store)
    writer = sqlite3.connect(source)
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.execute("UPDATE epochs SET test_acc = 0.5")
    writer.commit()
    folder = tmp_path / "snapshot"
    folder.mkdir()
    shutil.copy(f"{source}-wal", folder / "store.db-wal")
    shutil.copy(source, folder / "store.db")
    writer.close()
    read_only_mount(folder)
    result = runner.invoke(app, ["report", "--db", f"sqlite:///{folder / 'store.db'}"])
    assert result.exit_code == 1, result.output
    assert "has a write-ahead log" in result.stderr and "with changes not yet in the database" in result.stderr


def test_a_read_only_store_cannot_write(db_url):
    Store(db_url).close()
    reader = Store(db_url, read_only=True)
    with pytest.raises(SQLAlchemyError):
        reader.ensure_run(run_values(RunSpec(dataset="digits", model="mlp")))
    assert reader.runs_frame().empty
    reader.close()


@pytest.mark.parametrize("started", [False, True], ids=["nothing-started", "a-run-started"])
def test_a_store_this_command_made_goes_when_it_fails_before_any_run_started(tmp_path, started):
    """``Store.unless_used``: a new SQLite file with only pending runs is removed when the block raises; one
    where a run started (its claim, its traceback) is kept, and so is a store that was there before."""
    path = tmp_path / "new.db"
    store = Store(f"sqlite:///{path}")
    with pytest.raises(RuntimeError, match="refused"), store.unless_used():
        run = store.ensure_run(run_values(RunSpec(dataset="digits", model="mlp", optimizer="adam", epochs=1)))
        if started:
            assert store.claim(run.id, "w")
            store.start(run.id, "w")
        raise RuntimeError("refused")
    assert path.exists() == started
    if not started:
        assert list(tmp_path.iterdir()) == []  # its -wal and -shm too
    if started:
        store.close()
        again = Store(f"sqlite:///{path}")  # there before: kept whatever happens
        with pytest.raises(RuntimeError), again.unless_used():
            raise RuntimeError("refused")
        assert path.exists()
        again.close()
