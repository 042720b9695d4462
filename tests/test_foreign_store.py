"""A database that is not a masbench store is refused by every command in one line, and left as it was.

Not masbench's: another program's tables (a ``runs`` of another shape among them), masbench's tables
with columns missing, a schema version that is unreadable, out of range or newer than this masbench's.
An empty database is a new store; a version-1 store still upgrades (``test_migrate``).
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text
from typer.testing import CliRunner

from conftest import postgres_database
from masbench.cli import app
from masbench.errors import MasbenchError
from masbench.store import SCHEMA_VERSION, ForeignStore, Store

runner = CliRunner()

COMMANDS = {
    "run": ["run", "--dataset", "digits", "--model", "mlp", "--epochs", "1"],
    "sweep": ["sweep", "--dataset", "digits", "--models", "mlp", "--no-baselines", "--lambdas", "0.5", "--epochs", "1"],
    "dry-run": ["sweep", "--dataset", "digits", "--dry-run"],
    "report": ["report"],
    "compare": ["compare", "adam", "sgd"],
    "plot": ["plot", "--output", "plot.png"],
}

OTHER_RUNS = ["CREATE TABLE runs (id INTEGER PRIMARY KEY, what TEXT)", "INSERT INTO runs VALUES (1, 'theirs')"]
FOREIGN = {
    # name: (SQL that makes it, what the one line says)
    "another runs table": (OTHER_RUNS, "is not a masbench store: it has tables (runs) but no masbench meta table"),
    "unrelated tables, WAL": (["PRAGMA journal_mode=WAL", "CREATE TABLE photos (id INTEGER, path TEXT)",
                               "INSERT INTO photos VALUES (1, 'a.jpg')"],
                              "is not a masbench store: it has tables (photos) but no masbench meta table"),
    "unreadable version": (["CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)",
                            "INSERT INTO meta VALUES ('schema_version', 'abc')"],
                           f"has an unreadable schema version 'abc' (valid: a whole number, 1 to {SCHEMA_VERSION})"),
    "version 0": (["CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)",
                   "INSERT INTO meta VALUES ('schema_version', '0')"],
                  f"has schema version 0 (valid: 1 to {SCHEMA_VERSION}): it was not written by masbench"),
    "meta of another shape": (["CREATE TABLE meta (name TEXT, size INTEGER)", "INSERT INTO meta VALUES ('x', 1)"],
                              "its meta table has columns (name, size), not masbench's (key, value)"),
    "a meta with no version": (["CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)", *OTHER_RUNS],
                               "its meta table records no schema version"),
    "masbench's tables, columns missing": (
        ["CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)", "INSERT INTO meta VALUES ('schema_version', '2')",
         "CREATE TABLE epochs (id INTEGER PRIMARY KEY)", *OTHER_RUNS],
        "is not a masbench store of schema version 2: its runs table lacks masbench's columns"),
}


def digest(folder: Path) -> dict[str, str]:
    """Every file in ``folder`` and its sha256: a refused command must leave it exactly so."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def sqlite_store(folder: Path, statements: list[str]) -> str:
    folder.mkdir()
    connection = sqlite3.connect(folder / "their.db")
    for statement in statements:
        connection.execute(statement)
    connection.commit()
    connection.close()
    return f"sqlite:///{folder / 'their.db'}"


def refused(args: list[str], url: str, message: str) -> None:
    result = runner.invoke(app, [*args, "--db", url])
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr, result.stderr


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("case", FOREIGN)
def test_a_foreign_sqlite_database_is_refused_and_left_untouched(case, command, tmp_path):
    statements, message = FOREIGN[case]
    url = sqlite_store(tmp_path / "theirs", statements)
    before = digest(tmp_path / "theirs")
    refused(COMMANDS[command], url, message)
    assert digest(tmp_path / "theirs") == before  # the same bytes, and no -wal or -shm file left behind


@pytest.mark.parametrize("command", COMMANDS)
def test_a_newer_store_is_refused_by_every_command(command, tmp_path):
    folder = tmp_path / "newer"
    folder.mkdir()
    Store(f"sqlite:///{folder / 'store.db'}").close()
    with sqlite3.connect(folder / "store.db") as connection:
        connection.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    connection.close()
    before = digest(folder)
    refused(COMMANDS[command], f"sqlite:///{folder / 'store.db'}", f"has schema version {SCHEMA_VERSION + 1}, newer than this masbench's ({SCHEMA_VERSION})")
    assert digest(folder) == before


def _postgres_tables(url: str) -> dict[str, list]:
    engine = create_engine(url)
    with engine.connect() as connection:
        tables = {name: connection.execute(text(f"SELECT * FROM {name} ORDER BY 1")).all()
                  for name in inspect(connection).get_table_names()}
    engine.dispose()
    return tables


def test_a_foreign_postgresql_database_is_refused_by_every_command_and_left_untouched():
    with postgres_database() as url:
        engine = create_engine(url)
        with engine.begin() as connection:
            for statement in OTHER_RUNS:
                connection.execute(text(statement))
        engine.dispose()
        before = _postgres_tables(url)
        for args in COMMANDS.values():
            refused(args, url, "is not a masbench store: it has tables (runs) but no masbench meta table")
        assert _postgres_tables(url) == before == {"runs": [(1, "theirs")]}


def test_the_store_refuses_before_writing(db_url):
    """The Python API too: ``Store`` raises ForeignStore, a MasbenchError, for another program's database."""
    engine = create_engine(db_url)
    with engine.begin() as connection:
        for statement in OTHER_RUNS:
            connection.execute(text(statement))
    engine.dispose()
    for kwargs in ({}, {"read_only": True}, {"writable": False, "create": False}):
        with pytest.raises(ForeignStore, match="is not a masbench store"):
            Store(db_url, **kwargs)
    assert issubclass(ForeignStore, MasbenchError)
    assert set(_postgres_tables(db_url)) == {"runs"}


def test_an_empty_database_file_is_a_new_store(tmp_path):
    path = tmp_path / "empty.db"
    path.touch()
    dry = runner.invoke(app, [*COMMANDS["dry-run"], "--db", f"sqlite:///{path}"])
    assert dry.exit_code == 0, dry.output
    assert "7 runs: 0 completed, 7 to run" in dry.stdout
    assert path.stat().st_size == 0 and digest(tmp_path) == {"empty.db": hashlib.sha256(b"").hexdigest()}
    report = runner.invoke(app, ["report", "--db", f"sqlite:///{path}"])
    assert report.exit_code == 1 and "holds no masbench runs" in report.stderr
    assert path.stat().st_size == 0
    run = runner.invoke(app, [*COMMANDS["run"], "--db", f"sqlite:///{path}"])
    assert run.exit_code == 0, run.output
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT status FROM runs").fetchall() == [("completed",)]
    connection.close()


def test_a_store_whose_creation_was_cut_short_is_still_new(db_url):
    """masbench's tables, empty and not yet stamped (another process is creating them): a new store, not foreign."""
    from masbench.store.models import Base

    engine = create_engine(db_url)
    Base.metadata.create_all(engine)
    engine.dispose()
    store = Store(db_url)
    assert len(store.store_id) == 36
    store.close()


def test_a_dry_run_does_not_make_the_tables_of_a_new_store(tmp_path):
    """It used to create masbench's tables (and switch the file to WAL) in whatever it was given."""
    path = tmp_path / "fresh.db"
    sqlite3.connect(path).close()
    before = digest(tmp_path)
    assert runner.invoke(app, [*COMMANDS["dry-run"], "--db", f"sqlite:///{path}"]).exit_code == 0
    assert digest(tmp_path) == before


def test_a_copy_of_a_foreign_file_keeps_its_bytes_under_a_writing_command(tmp_path):
    """The run's data is loaded after the store is opened: the refusal comes first, and nothing was trained."""
    url = sqlite_store(tmp_path / "theirs", OTHER_RUNS)
    shutil.copy(tmp_path / "theirs" / "their.db", tmp_path / "copy.db")
    refused(COMMANDS["run"], url, "no masbench meta table")
    assert (tmp_path / "theirs" / "their.db").read_bytes() == (tmp_path / "copy.db").read_bytes()
    assert not (tmp_path / ".masbench").exists()  # no checkpoint folder: training never began
