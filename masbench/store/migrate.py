"""The store's schema version, and the in-place upgrade of older stores.

A store records its schema version in ``meta``. Opening a store of an older
version upgrades it in one transaction, which holds the write lock (SQLite) or
the ``meta`` row's lock (PostgreSQL), so two processes opening the same old
store upgrade it once. A newer version than this masbench knows is refused.

Version 1 (masbench 0.1) to 2: ``runs`` gains ``config_key``, computed from
each run's stored canonical config exactly as ``RunSpec.config_key`` computes
it, and ``lease_expires_at``; ``meta`` gains ``store_id``.
Version 2 to 3: ``runs`` gains ``weights`` and ``epochs`` gains ``val_loss`` and
``val_acc``, all NULL for the runs already there (none had a mix or a validation split).
Version 3 to 4: the tables ``tunes`` and ``trials`` (``masbench tune``), empty; the runs are unchanged.
Version 4 to 5: the index ``ix_epochs_run_id_val_acc``, which reports read instead of the epochs (built from
the rows there: about half a minute for 10M epochs); the rows are unchanged.
Version 5 to 6: the partial index ``ix_epochs_problem`` (the epoch rows that fail a check of their own).
Version 6 to 7: the table ``summaries`` (one row per run with epochs) and the triggers on ``epochs`` that keep
it (``summaries``), built from the epochs (about 8 s for 10M epoch rows); ``ix_epochs_problem`` is dropped
(the summaries count its rows). A store older than 6 goes straight to 7.

A store of version 7 whose triggers are missing or disabled (dropped by hand) is repaired by the same step:
its triggers are made again and every summary rebuilt from the epochs (``summaries.rebuild``).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from sqlalchemy import bindparam, select, text, update
from sqlalchemy.orm import Session

from masbench.errors import MasbenchError
from masbench.store import summaries
from masbench.store.models import SCHEMA_VERSION, Base, Meta, Run

# The columns each version added, by table: a store of an older version lacks them until it is upgraded.
ADDED_IN: dict[int, dict[str, tuple[str, ...]]] = {
    2: {"runs": ("config_key", "lease_expires_at")},
    3: {"runs": ("weights",), "epochs": ("val_loss", "val_acc")},
}
# The tables each version added: a store of an older version lacks them until it is upgraded.
TABLES_ADDED_IN: dict[int, tuple[str, ...]] = {4: ("tunes", "trials"), 7: ("summaries",)}
# The indexes each version added, by table.
INDEXES_ADDED_IN: dict[int, dict[str, tuple[str, ...]]] = {5: {"epochs": ("ix_epochs_run_id_val_acc",)}}
INDEXES_DROPPED_IN = {7: ("ix_epochs_problem",)}  # version 6's, made in SQL that the summaries replaced


def stored_version(s: Session, masked_url: str) -> int | None:
    """The store's schema version, ``None`` for a new (empty) store; locks the row on PostgreSQL."""
    query = select(Meta.value).where(Meta.key == "schema_version")
    if s.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    value = s.scalars(query).first()
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise MasbenchError(f"database {masked_url} has an unreadable schema version {value[:40]!r}: "
                            f"it was not written by masbench") from None


def initialise_or_upgrade(s: Session, masked_url: str, repair: bool = False) -> None:
    """Stamp a new store with the current version and an identity, or upgrade an older one in place; make the
    triggers that keep ``summaries`` where they are missing, and rebuild the summaries (``repair``: the opener
    found them missing, the table ``summaries`` included, which ``create_all`` has made again, empty)."""
    version = stored_version(s, masked_url)
    if version is None:
        s.add(Meta(key="schema_version", value=str(SCHEMA_VERSION)))
        s.add(Meta(key="store_id", value=str(uuid.uuid4())))
        # Written first: a second process making the same new store waits on this row (then retries and finds
        # the store made) instead of replacing the trigger functions beside this one.
        s.flush()
        summaries.rebuild(s.connection())
        return
    if version > SCHEMA_VERSION:
        raise MasbenchError(f"database {masked_url} has schema version {version}, newer than this masbench's "
                            f"({SCHEMA_VERSION}): upgrade masbench")
    if version < 2:
        _v1_to_v2(s)
    if version < 3:
        _add_columns(s, 3)
    if version < 4:
        _add_tables(s, 4)
    if version < 5:
        _add_indexes(s, 5)
    if version < 7:
        for name in INDEXES_DROPPED_IN[7]:
            s.execute(text(f"DROP INDEX IF EXISTS {name}"))
    if version < 7 or repair or summaries.missing_triggers(s.connection()):
        _add_tables(s, 7)
        summaries.rebuild(s.connection())
    if version < SCHEMA_VERSION:
        s.execute(update(Meta).where(Meta.key == "schema_version").values(value=str(SCHEMA_VERSION)))


def _add_columns(s: Session, version: int) -> None:
    """Add the (nullable) columns that ``version`` added, as they are declared in ``models``."""
    dialect = s.get_bind().dialect
    for table_name, names in ADDED_IN[version].items():
        table = Base.metadata.tables[table_name]
        for name in names:
            column_type = table.c[name].type.compile(dialect=dialect)
            s.execute(text(f"ALTER TABLE {table_name} ADD COLUMN {name} {column_type}"))


def _add_tables(s: Session, version: int) -> None:
    """Create the tables that ``version`` added (already there when this process's ``create_all`` made them)."""
    for name in TABLES_ADDED_IN[version]:
        Base.metadata.tables[name].create(s.connection(), checkfirst=True)


def _add_indexes(s: Session, version: int) -> None:
    """Create the indexes that ``version`` added, as they are declared in ``models``."""
    for table_name, names in INDEXES_ADDED_IN[version].items():
        for index in Base.metadata.tables[table_name].indexes:
            if index.name in names:
                index.create(s.connection(), checkfirst=True)


def v1_config_key(canonical: dict[str, Any]) -> str:
    """The cell key of a version-1 run's stored canonical config, computed as masbench computed it when version 2
    added the ``config_key`` column: the first 20 hex digits of the SHA-256 of the config without its seed, as
    compact JSON with sorted keys.

    Frozen: this copy must never change, even when the live key (``masbench.spec``) does, because the stores it
    upgrades hold the keys that code wrote; a new way to key cells needs a migration of its own.
    """
    written = json.dumps({k: v for k, v in canonical.items() if k != "seed"}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(written.encode()).hexdigest()[:20]


def _v1_to_v2(s: Session) -> None:
    runs = Run.__table__
    _add_columns(s, 2)
    rows = s.execute(select(runs.c.id, runs.c.config)).all()
    if rows:
        s.execute(update(runs).where(runs.c.id == bindparam("run_id")).values(config_key=bindparam("cell")),
                  [{"run_id": row.id, "cell": v1_config_key(row.config["canonical"])} for row in rows])
    next(index for index in runs.indexes if index.name == "ix_runs_config_key").create(s.connection())
    if s.get(Meta, "store_id") is None:
        s.add(Meta(key="store_id", value=str(uuid.uuid4())))
