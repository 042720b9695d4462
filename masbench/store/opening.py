"""Opening a store: read-only for the commands that only read, errors said in one line, and a full disk.

A store opened read-only on SQLite uses a ``mode=ro`` connection, which never
writes the database file. A WAL database needs its ``-shm`` and ``-wal``
files to be read: where the folder can be written, SQLite creates them, and
they are removed again when the store is closed if they were not there before
(a plain connection's close does it, which SQLite does only when no other
connection is open). Where the folder cannot be written (a read-only mount),
they cannot be created, and the file is opened ``immutable=1``: no writer can
be at work there, for a writer needs the folder to create its log. A log left
with changes not yet in the database is refused there, since ``immutable``
would not read it.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine

from masbench.errors import DiskFull, MasbenchError
from masbench.store.urls import check_url
from masbench.text.paths import check_file, check_folder, kind_of
from masbench.text.shown import one_line, shown

SQLITE_FULL = 13
PG_DISK_FULL = "53100"  # disk_full; class 53's others (out of memory, too many connections, ...) are not
MAX_PORT = 65535
# SQLite's own URI parameters (https://www.sqlite.org/uri.html), read only with uri=true.
SQLITE_URI_PARAMETERS = ("uri", "mode", "cache", "immutable", "nolock", "psow", "vfs")


class EmptyStore(MasbenchError):
    """The database has no masbench tables yet (a new store): there is nothing to read."""


class NeedsUpgrade(MasbenchError):
    """A store of an older schema version, opened read-only: it must be upgraded by a writable open first."""

    def __init__(self, message: str, writable: bool) -> None:
        super().__init__(message)
        self.writable = writable  # whether this process could open it writable (and so upgrade it)


def sqlite_file(parsed) -> str | None:
    """The file of an SQLite URL; None for another database, an in-memory one or a ``uri=true`` URL."""
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:") or parsed.query.get("uri"):
        return None
    return parsed.database


def sqlite_uri_file(parsed) -> str | None:
    """The file of an SQLite URI URL (``sqlite:///file:PATH?mode=rwc&uri=true``); None for any other URL and
    for an in-memory database (``file::memory:``, ``mode=memory``)."""
    from urllib.parse import unquote, urlsplit

    if parsed.get_backend_name() != "sqlite" or not parsed.query.get("uri") or parsed.query.get("mode") == "memory":
        return None
    database = parsed.database or ""
    path = unquote(urlsplit(database).path) if database.startswith("file:") else database
    return None if path in ("", ":memory:") else path


def check_sqlite_file(path: str, masked_url: str, must_exist: bool) -> None:
    """The SQLite file ``path`` must be a regular file (a directory, a FIFO or /dev/null is said so), in a folder
    that exists; ``must_exist``: it must be there already (a command that only reads never creates it)."""
    check_folder(os.path.dirname(os.path.abspath(path)), f"cannot open database {masked_url}: folder")
    if kind_of(path) is not None:
        check_file(path, "database file")
    elif must_exist:
        raise MasbenchError(f"no database at {os.path.abspath(path)}: run masbench run or masbench sweep first, "
                            f"or give --db (or MASBENCH_DB)")


def can_write(path: str) -> bool:
    """Whether this process may write the SQLite file and create files beside it (False on a read-only mount)."""
    return os.access(path, os.W_OK) and os.access(os.path.dirname(os.path.abspath(path)), os.W_OK)


class ReadOnlySqlite:
    """Makes ``mode=ro`` (or ``immutable=1``) connections to ``path``, and tidies the log files they created.

    ``options``: the query of an SQLite URI URL (``sqlite:///file:PATH?cache=shared&uri=true``), whose other
    parameters (``cache``, ``vfs``, ``nolock``, ``psow``, ``immutable``) every connection keeps; its ``mode`` is
    replaced by ``ro``, so that a path URL and a URI URL of one file are read alike and leave nothing beside it.
    """

    def __init__(self, path: str, masked_url: str, timeout: float, options: Mapping[str, str] | None = None) -> None:
        from sqlalchemy.util import asbool

        self.path, self.timeout = os.path.abspath(path), timeout
        self.logs = [Path(f"{self.path}-wal"), Path(f"{self.path}-shm")]
        self.options = {k: v for k, v in (options or {}).items() if k not in ("uri", "mode", "immutable")}
        folder_writable = os.access(os.path.dirname(self.path), os.W_OK)
        self.immutable = not folder_writable or asbool((options or {}).get("immutable", False))
        if not folder_writable and self.logs[0].exists() and self.logs[0].stat().st_size > 0:
            raise MasbenchError(f"database {masked_url} has a write-ahead log ({self.logs[0]}) with changes not yet "
                                f"in the database, in a folder that cannot be written: open it once where it can "
                                f"be written, or copy the file and its -wal together")
        self._created = folder_writable and not any(log.exists() for log in self.logs)

    def connect(self) -> sqlite3.Connection:
        flag = {"immutable": "1"} if self.immutable else {"mode": "ro"}
        return sqlite3.connect(f"file:{quote(self.path)}?{urlencode({**self.options, **flag})}", uri=True,
                               timeout=self.timeout, check_same_thread=False)

    def tidy(self) -> None:
        """Remove the -wal and -shm files that these connections created (all of them must be closed)."""
        if not self._created or not any(log.exists() for log in self.logs):
            return
        try:
            # The last connection to close checkpoints the (empty) log and deletes both files; another
            # process's open connection keeps them, as it should. Nothing is written to the database.
            connection = sqlite3.connect(self.path, timeout=self.timeout)
            try:
                connection.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
            finally:
                connection.close()
        except sqlite3.Error:
            pass  # only tidiness is lost: the files are valid and SQLite reuses or removes them later


def parse_url(url: str, masked_url: str):
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    check_url(url)
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise MasbenchError(f"Invalid database URL: {masked_url} (expected an SQLAlchemy URL such as "
                            f"sqlite:///masbench.db or postgresql+psycopg://user@host/db)") from None
    except ValueError:  # SQLAlchemy's int() of the port: "invalid literal for int() with base 10"
        raise MasbenchError(f"Invalid database URL: {masked_url} (its port must be an integer in "
                            f"1-{MAX_PORT})") from None
    if parsed.port is not None and not 1 <= parsed.port <= MAX_PORT:
        raise MasbenchError(f"Invalid database URL: {masked_url} (its port {parsed.port} must be an integer in "
                            f"1-{MAX_PORT})")
    if parsed.get_backend_name() == "sqlite":
        check_sqlite_query(parsed, masked_url)
    return parsed


def check_sqlite_query(parsed, masked_url: str) -> None:
    """Refuse query parameters that SQLite would ignore: SQLAlchemy only warns (``?mode=ro`` without
    ``uri=true`` is dropped, and the store is then written), and masbench sets its own timeout and
    transactions, so ``timeout`` or ``isolation_level`` in the URL would be dropped too."""
    from sqlalchemy.util import asbool

    query = dict(parsed.query)
    try:
        uri = asbool(query.get("uri", False))
    except ValueError:
        raise MasbenchError(f"Invalid database URL: {masked_url} (SQLite: uri={shown(query['uri'])} must be true "
                            f"or false)") from None
    valid = SQLITE_URI_PARAMETERS if uri else ("uri",)
    for key, value in query.items():
        if key not in valid or isinstance(value, tuple):
            given = f"parameter {key!r} given twice" if isinstance(value, tuple) else f"query parameter {key!r}"
            raise MasbenchError(
                f"Invalid database URL: {masked_url} (SQLite: unsupported {given}; valid: a path alone, e.g. "
                f"sqlite:///masbench.db, or an SQLite URI with uri=true and {', '.join(SQLITE_URI_PARAMETERS[1:])}, "
                f"e.g. sqlite:///file:masbench.db?mode=ro&uri=true)")


def create_store_engine(parsed, read_only: bool, masked_url: str,
                        timeout: float) -> tuple[Engine, ReadOnlySqlite | None]:
    """The store's engine, and for a read-only SQLite file the maker of its connections (to tidy up after)."""
    if parsed.get_backend_name() != "sqlite":
        options = {"postgresql_readonly": True} if read_only and parsed.get_backend_name() == "postgresql" else {}
        return create_engine(parsed, pool_pre_ping=True, future=True, execution_options=options), None
    kwargs: dict[str, Any] = {"connect_args": {"timeout": timeout}}
    files = None
    if parsed.database in (None, "", ":memory:"):
        from sqlalchemy.pool import StaticPool

        kwargs.update(poolclass=StaticPool, connect_args={"check_same_thread": False})
    elif read_only and (sqlite_file(parsed) or sqlite_uri_file(parsed)) is not None:
        uri = sqlite_uri_file(parsed)
        files = ReadOnlySqlite(uri or sqlite_file(parsed), masked_url, timeout, dict(parsed.query) if uri else None)
        kwargs["creator"] = files.connect
    engine = create_engine(parsed, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Take transactions from pysqlite, so that they can begin IMMEDIATE (below). Nothing here writes
        # the file: WAL mode is set once, by a writable open of a masbench store (``Store._use_wal``).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        # A deferred transaction that reads and then writes can fail at once with "database is locked"
        # when another writer got in between; IMMEDIATE takes the write lock up front and waits for it.
        # Reading transactions stay deferred: under WAL they read a snapshot and never wait for a writer.
        writes = connection.get_execution_options().get("masbench_writes", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN")

    return engine, files


def dispose_and_tidy(engine: Engine, files: ReadOnlySqlite) -> None:
    engine.dispose()
    files.tidy()


def is_disk_full(error: BaseException) -> bool:
    """Whether ``error`` (an OSError, or a database error, wrapped by SQLAlchemy or not) says the disk is full."""
    original = getattr(error, "orig", None) or error
    if isinstance(original, OSError):
        return original.errno in (errno.ENOSPC, errno.EDQUOT)
    if isinstance(original, sqlite3.Error):
        return (getattr(original, "sqlite_errorcode", None) == SQLITE_FULL
                or "database or disk is full" in str(original))
    return getattr(original, "sqlstate", None) == PG_DISK_FULL or getattr(original, "pgcode", None) == PG_DISK_FULL




def open_error(error: BaseException, parsed, url: str, masked_url: str) -> MasbenchError:
    """The one line for an error met while opening the store at ``url`` (its password never shown)."""
    from sqlalchemy.exc import NoSuchModuleError

    from masbench.store.urls import scrub

    if isinstance(error, NoSuchModuleError):
        return MasbenchError(
            f"Invalid database URL: {masked_url} (unknown database kind {parsed.drivername!r}; valid: "
            f"sqlite:///PATH, postgresql+psycopg://USER:PASSWORD@HOST/DB, or another SQLAlchemy dialect)")
    if isinstance(error, ImportError):
        return MasbenchError(f"cannot open database {masked_url}: its driver is missing ({error.name}); "
                             f"for PostgreSQL: pip install 'masbench[postgres]'")
    reason = scrub(one_line(getattr(error, "orig", None) or error, 300), url)  # the driver's own error
    if is_disk_full(error):
        return DiskFull(f"disk full: cannot write database {masked_url}: {reason}")
    path = sqlite_file(parsed)
    if path is not None and os.path.exists(path) and not can_write(path):
        return MasbenchError(f"database {masked_url} is read-only: the file or its folder cannot be written "
                             f"({reason}); report, compare, plot and sweep --dry-run only read it")
    if "readonly" in reason.replace(" ", "").lower() or "read-only" in reason.lower():
        return MasbenchError(f"database {masked_url} is read-only: {reason}")
    return MasbenchError(f"cannot open database {masked_url}: {reason}")
