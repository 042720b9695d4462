"""Is this database a masbench store, and of which schema version? Answered before anything is written.

A database is one of:

- empty (no tables): a new store, which a writing command creates;
- a masbench store: a ``meta`` table with a readable ``schema_version`` no newer than this masbench's,
  and masbench's tables with every column that version has;
- anything else: another program's database, a newer masbench's store, or a damaged one, which every
  command refuses in one line and leaves untouched.

A database holding only masbench's own tables, empty, with no version yet is a store whose creation
another process has begun (or that was cut short): it counts as new.
"""

from __future__ import annotations

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from masbench.errors import MasbenchError
from masbench.store.migrate import ADDED_IN, TABLES_ADDED_IN
from masbench.store.models import SCHEMA_VERSION, Base

OURS = tuple(table.name for table in Base.metadata.sorted_tables)  # meta, runs, epochs, tunes, trials


class ForeignStore(MasbenchError):
    """The database is not a masbench store this masbench can use (another program's, a newer one's, damaged)."""


def expected_columns(version: int) -> dict[str, set[str]]:
    """Each of masbench's tables and the columns it has at schema ``version``."""
    added = {(table, column) for v, tables in ADDED_IN.items() if v > version
             for table, columns in tables.items() for column in columns}
    later = {name for v, names in TABLES_ADDED_IN.items() if v > version for name in names}
    return {table.name: {c.name for c in table.columns if (table.name, c.name) not in added}
            for table in Base.metadata.sorted_tables if table.name not in later}


def _names(names, limit: int = 6) -> str:
    names = sorted(names)
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def found_version(connection: Connection, masked_url: str) -> int | None:
    """The schema version of the store behind ``connection``; ``None`` for a new (empty) one.

    Raises ``ForeignStore`` for a database that is not a masbench store this masbench can use. Reads only.
    """
    inspector = inspect(connection)
    tables = set(inspector.get_table_names())
    if not tables:
        return None
    not_ours = f"database {masked_url} is not a masbench store"
    hint = "give --db a new file or an empty database"
    if "meta" not in tables:
        raise ForeignStore(f"{not_ours}: it has tables ({_names(tables)}) but no masbench meta table; {hint}")
    meta_columns = {c["name"] for c in inspector.get_columns("meta")}
    if not {"key", "value"} <= meta_columns:
        raise ForeignStore(f"{not_ours}: its meta table has columns ({_names(meta_columns)}), not masbench's "
                           f"(key, value); {hint}")
    value = connection.execute(text("SELECT value FROM meta WHERE key = 'schema_version'")).scalar()
    if value is None:
        if tables <= set(OURS) and not _has_rows(connection, tables):
            return None  # masbench's tables, empty, not yet stamped: a store being created
        raise ForeignStore(f"{not_ours}: its meta table records no schema version (tables: {_names(tables)}); "
                           f"{hint}")
    version = _parse_version(value, masked_url)
    _check_columns(inspector, tables, version, not_ours, hint)
    return version


def _parse_version(value, masked_url: str) -> int:
    try:
        version = int(value)
    except (TypeError, ValueError):
        raise ForeignStore(f"database {masked_url} has an unreadable schema version {str(value)[:40]!r} (valid: "
                           f"a whole number, 1 to {SCHEMA_VERSION}): it was not written by masbench") from None
    if version > SCHEMA_VERSION:
        raise ForeignStore(f"database {masked_url} has schema version {version}, newer than this masbench's "
                           f"({SCHEMA_VERSION}): upgrade masbench")
    if version < 1:
        raise ForeignStore(f"database {masked_url} has schema version {version} (valid: 1 to {SCHEMA_VERSION}): "
                           f"it was not written by masbench")
    return version


def _check_columns(inspector, tables: set[str], version: int, not_ours: str, hint: str) -> None:
    for table, columns in expected_columns(version).items():
        if table == "summaries" and table not in tables:
            continue  # derived from the epochs: rebuilt by a writable open (summaries.missing_triggers)
        if table not in tables:
            raise ForeignStore(f"{not_ours} of schema version {version}: it has no {table} table; {hint}")
        missing = columns - {c["name"] for c in inspector.get_columns(table)}
        if missing:
            raise ForeignStore(f"{not_ours} of schema version {version}: its {table} table lacks masbench's "
                               f"columns {_names(missing)}; {hint}")


def _has_rows(connection: Connection, tables: set[str]) -> bool:
    return any(connection.execute(text(f"SELECT 1 FROM {table} LIMIT 1")).first() is not None
               for table in tables if table != "meta")
