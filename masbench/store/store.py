"""The metric store: any SQLAlchemy URL, SQLite by default, PostgreSQL for shared use.

Every write happens in one session scope that commits or rolls back. SQLite
runs in WAL mode with a busy timeout; its writing transactions begin
IMMEDIATE, so concurrent writers wait for each other instead of failing with
"database is locked", and its reading ones are deferred, so that a read never
waits for a writer (WAL gives it a snapshot). A cell is claimed under a lease
judged by the database server's clock (``leases``), and every epoch written
checks that its worker still holds the claim and renews the lease. Epoch rows
are upserted on (run_id, epoch): a repeated epoch replaces its row and never
adds a second.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import create_engine, delete, event, func, inspect, select, update
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import (
    ArgumentError,
    IntegrityError,
    NoSuchModuleError,
    OperationalError,
    ProgrammingError,
    SQLAlchemyError,
)
from sqlalchemy.orm import Session

from masbench import faults
from masbench.errors import MasbenchError
from masbench.urls import check_url, mask_url, scrub
from masbench.store import leases
from masbench.store.leases import DEFAULT_LEASE_S, as_utc, server_time
from masbench.store.migrate import initialise_or_upgrade, stored_version
from masbench.store.models import EPOCH_COLUMNS, SCHEMA_VERSION, Base, Epoch, Meta, Run

DEFAULT_URL = "sqlite:///masbench.db"
BUSY_TIMEOUT_S = 60.0


class ClaimLost(MasbenchError):
    """This worker no longer holds the cell's claim (it was taken over after a missed heartbeat)."""


def resolve_url(url: str | None) -> str:
    return url or os.environ.get("MASBENCH_DB") or DEFAULT_URL


def absolute_sqlite(url: str) -> str:
    """An SQLite URL with a relative path, made absolute: worker processes may start elsewhere."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return url
    database = parsed.database
    if (parsed.get_backend_name() == "sqlite" and database not in (None, "", ":memory:")
            and not parsed.query.get("uri") and not os.path.isabs(database)):
        return parsed.set(database=os.path.abspath(database)).render_as_string(hide_password=False)
    return url


def utcnow() -> datetime:
    """This client's clock: for display only, never for a claim, a lease or a retry (``Store.now`` is for those)."""
    return datetime.now(timezone.utc)


def _one_line(error: BaseException) -> str:
    text = getattr(error, "orig", None) or error
    return " ".join(str(text).split())[:300]


class Store:
    """Open (and create, when new) the store at ``url``; ``writable`` checks that writes will succeed.

    Example:
        >>> store = Store("sqlite:///:memory:")
        >>> store.runs_frame().empty
        True
    """

    def __init__(self, url: str | None = None, *, writable: bool = True, create: bool = True) -> None:
        self.url = absolute_sqlite(resolve_url(url))
        self._store_id: str | None = None
        self.masked_url = mask_url(self.url)
        check_url(self.url)
        try:
            parsed = make_url(self.url)
        except ArgumentError:
            raise MasbenchError(
                f"Invalid database URL: {self.masked_url} (expected an SQLAlchemy URL such as "
                f"sqlite:///masbench.db or postgresql+psycopg://user@host/db)"
            ) from None
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        if self.is_sqlite and parsed.database not in (None, "", ":memory:") and not parsed.query.get("uri"):
            folder = os.path.dirname(os.path.abspath(parsed.database))
            if not os.path.isdir(folder):
                raise MasbenchError(f"cannot open database {self.masked_url}: folder {folder} does not exist")
            if not create and not os.path.exists(parsed.database):
                raise MasbenchError(f"no database at {parsed.database}: run masbench run or masbench sweep first, "
                                    f"or give --db (or MASBENCH_DB)")
        try:
            self.engine = self._create_engine(parsed)
            # Writes go through this view of the engine (same pool): on SQLite its transactions begin IMMEDIATE.
            self._writer = self.engine.execution_options(masbench_writes=True)
            if create:
                self._create_schema()
            elif not inspect(self.engine).has_table("runs"):
                raise MasbenchError(f"database {self.masked_url} holds no masbench runs (no runs table)")
            else:
                self._check_schema()
            if writable:
                self._probe_write()
        except MasbenchError:
            raise
        except NoSuchModuleError:
            raise MasbenchError(
                f"Invalid database URL: {self.masked_url} (unknown database kind {parsed.drivername!r}; valid: "
                f"sqlite:///PATH, postgresql+psycopg://USER:PASSWORD@HOST/DB, or another SQLAlchemy dialect)"
            ) from None
        except ImportError as error:
            raise MasbenchError(
                f"cannot open database {self.masked_url}: its driver is missing ({error.name}); "
                f"for PostgreSQL: pip install 'masbench[postgres]'"
            ) from None
        except (SQLAlchemyError, OSError) as error:
            reason = scrub(_one_line(error), self.url)
            if "readonly" in reason.replace(" ", "").lower() or "read-only" in reason.lower():
                raise MasbenchError(f"database {self.masked_url} is read-only: {reason}") from None
            raise MasbenchError(f"cannot open database {self.masked_url}: {reason}") from None

    # --- connection set-up ------------------------------------------------------------------

    def _create_engine(self, parsed) -> Engine:
        if not self.is_sqlite:
            return create_engine(parsed, pool_pre_ping=True, future=True)
        memory = parsed.database in (None, "", ":memory:")
        kwargs: dict[str, Any] = {"connect_args": {"timeout": BUSY_TIMEOUT_S}}
        if memory:
            from sqlalchemy.pool import StaticPool

            kwargs.update(poolclass=StaticPool, connect_args={"check_same_thread": False})
        engine = create_engine(parsed, **kwargs)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection, _record):
            # Take transactions from pysqlite, so that they can begin IMMEDIATE (below).
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            if not memory:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
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

        return engine

    def _create_schema(self) -> None:
        for attempt in range(5):
            try:
                Base.metadata.create_all(self._writer)
                with self.session() as s:
                    initialise_or_upgrade(s, self.masked_url)
                return
            except (IntegrityError, OperationalError, ProgrammingError) as error:
                # Two processes creating the schema at once: the loser finds it made and goes on.
                if attempt == 4 or "readonly" in str(error).replace(" ", "").lower():
                    raise
                time.sleep(0.2 * (attempt + 1))

    def _check_schema(self) -> None:
        """For a store opened without ``create``: upgrade it when it is older (which needs to write)."""
        with self.reading() as s:
            version = stored_version(s, self.masked_url)
        if version is None or version != SCHEMA_VERSION:
            self._create_schema()

    @property
    def store_id(self) -> str:
        """This store's identity (a UUID kept in ``meta``): checkpoints record it, so no other store adopts them."""
        if self._store_id is None:
            with self.reading() as s:
                self._store_id = s.get(Meta, "store_id").value
        return self._store_id

    def _probe_write(self) -> None:
        with self.session() as s:
            s.execute(update(Meta).where(Meta.key == "schema_version").values(value=Meta.value))

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One unit of work that writes: commits when the block ends, rolls back when it raises."""
        with Session(self._writer, expire_on_commit=False) as s:
            try:
                yield s
                s.commit()
            except BaseException:
                s.rollback()
                raise

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A unit of work that only reads: on SQLite it takes no write lock and waits for no writer."""
        # Closing (not rolling back) ends the transaction without expiring the objects read.
        with Session(self.engine, expire_on_commit=False) as s:
            yield s

    def now(self) -> datetime:
        """The database server's clock (UTC): the one clock that claims, leases and retries are judged by."""
        with self.reading() as s:
            return as_utc(s.execute(select(server_time(self.engine.dialect.name))).scalar_one())

    def close(self) -> None:
        self.engine.dispose()

    # --- runs ------------------------------------------------------------------------------------

    def get_run(self, key: str) -> Run | None:
        with self.reading() as s:
            return s.scalars(select(Run).where(Run.key == key)).first()

    def ensure_run(self, values: dict[str, Any]) -> Run:
        """The run with ``values['key']``, inserted as pending when absent (safe when two insert at once)."""
        key = values["key"]
        existing = self.get_run(key)
        if existing is not None:
            return existing
        try:
            with self.session() as s:
                run = Run(**values, status="pending", created_at=server_time(self.engine.dialect.name), attempts=0)
                s.add(run)
                s.flush()
                s.refresh(run)
                return run
        except IntegrityError:
            run = self.get_run(key)
            if run is None:  # pragma: no cover - the unique key was violated by a row that vanished
                raise
            return run

    def claim(self, run_id: int, worker: str, *, stale_after: float = DEFAULT_LEASE_S,
              retry_failed_before: datetime | None = None, force: bool = False) -> bool:
        """Atomically make ``worker`` the owner of the run; False when another worker holds it or it is done.

        ``stale_after`` is this worker's lease, in seconds: should it stop renewing the claim (heartbeats,
        epochs) for that long by the server's clock, another worker may take the run over. Claimable:
        pending; running with an expired lease; failed or diverged before ``retry_failed_before``
        (a server time, from ``now``); anything but a live claim with ``force``.
        """
        with self.session() as s:
            return leases.claim(s, run_id, worker, lease_s=stale_after, retry_failed_before=retry_failed_before,
                                force=force)

    def heartbeat(self, run_id: int, worker: str, stale_after: float = DEFAULT_LEASE_S) -> bool:
        """Renew the lease for ``stale_after`` more seconds; False when this worker no longer holds the run."""
        with self.session() as s:
            return leases.renew(s, run_id, worker, stale_after)

    def is_held(self, run_id: int) -> bool:
        """Whether a live worker holds the run (its lease is not past by the server's clock)."""
        with self.reading() as s:
            return leases.held(s, run_id)

    def start(self, run_id: int, worker: str, **environment: Any) -> None:
        """Record where and with what the run executes: host, device, versions, git_commit, config."""
        with self.session() as s:
            values = dict(environment)
            values.setdefault("started_at", server_time(self.engine.dialect.name))
            result = s.execute(update(Run).where(Run.id == run_id, Run.worker == worker).values(**values)
                               .execution_options(synchronize_session=False))
            if result.rowcount != 1:
                raise ClaimLost(f"run {run_id} was claimed by another worker")

    def reset(self, run_id: int, worker: str) -> None:
        """Delete the run's epochs (``--force``); the caller holds the claim."""
        with self.session() as s:
            self._check_claim(s, run_id, worker, DEFAULT_LEASE_S)
            s.execute(delete(Epoch).where(Epoch.run_id == run_id))
            s.execute(update(Run).where(Run.id == run_id).values(started_at=None)
                      .execution_options(synchronize_session=False))

    def record_epoch(self, run_id: int, worker: str, metrics: dict[str, Any],
                     stale_after: float = DEFAULT_LEASE_S) -> None:
        """Upsert one epoch's row, and renew the lease for ``stale_after`` seconds, if ``worker`` holds the run."""
        with self.session() as s:
            self._check_claim(s, run_id, worker, stale_after)
            values = {"run_id": run_id, "epoch": metrics["epoch"], **{c: metrics[c] for c in EPOCH_COLUMNS}}
            self._upsert_epoch(s, values)
            s.flush()
            faults.point("store.epoch")

    def _check_claim(self, s: Session, run_id: int, worker: str, lease_s: float) -> None:
        if not leases.renew(s, run_id, worker, lease_s):
            raise ClaimLost(f"run {run_id} is no longer held by worker {worker}")

    def _upsert_epoch(self, s: Session, values: dict[str, Any]) -> None:
        dialect = self.engine.dialect.name
        if dialect in ("sqlite", "postgresql"):
            if dialect == "sqlite":
                from sqlalchemy.dialects.sqlite import insert
            else:
                from sqlalchemy.dialects.postgresql import insert
            statement = insert(Epoch).values(**values)
            statement = statement.on_conflict_do_update(
                index_elements=["run_id", "epoch"], set_={c: statement.excluded[c] for c in EPOCH_COLUMNS}
            )
            s.execute(statement)
            return
        row = s.scalars(select(Epoch).where(Epoch.run_id == values["run_id"], Epoch.epoch == values["epoch"])).first()
        if row is None:
            s.add(Epoch(**values))
        else:
            for column in EPOCH_COLUMNS:
                setattr(row, column, values[column])

    def finish(self, run_id: int, worker: str, status: str, error: str | None = None) -> None:
        with self.session() as s:
            result = s.execute(
                update(Run).where(Run.id == run_id, Run.worker == worker)
                .values(status=status, error=error, finished_at=server_time(self.engine.dialect.name),
                        heartbeat_at=None, lease_expires_at=None)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount != 1:
                raise ClaimLost(f"run {run_id} is no longer held by worker {worker}")

    def release(self, run_id: int | None, worker: str) -> None:
        """Give the claim back (Ctrl-C, SIGTERM): the run is pending again and resumes from its checkpoint later.

        ``run_id=None`` gives back every claim ``worker`` holds.
        """
        with self.session() as s:
            leases.release(s, worker, run_id)

    def epochs_of(self, run_id: int) -> list[Epoch]:
        with self.reading() as s:
            return list(s.scalars(select(Epoch).where(Epoch.run_id == run_id).order_by(Epoch.epoch)))

    def cell_states(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        """For each stored key: status, worker, name, planned epochs and the last epoch written."""
        runs = Run.__table__
        last = (select(Epoch.run_id, func.max(Epoch.epoch).label("last_epoch"))
                .group_by(Epoch.run_id).subquery())
        states: dict[str, dict[str, Any]] = {}
        with self.reading() as s:
            for start in range(0, len(keys), 500):
                query = (select(runs.c.key, runs.c.status, runs.c.worker, runs.c.name, runs.c.dataset, runs.c.model,
                                runs.c.seed, runs.c.epochs, runs.c.error, runs.c.finished_at, runs.c.heartbeat_at,
                                last.c.last_epoch)
                         .outerjoin(last, last.c.run_id == runs.c.id)
                         .where(runs.c.key.in_(keys[start : start + 500])))
                for row in s.execute(query).mappings():
                    states[row["key"]] = dict(row)
        return states

    # --- queries as pandas ------------------------------------------------------------------

    def runs_frame(self, **filters: Any):
        """The runs table as a DataFrame, filtered on equal columns (``dataset="digits"``)."""
        import pandas as pd

        query = select(Run.__table__)
        for column, value in filters.items():
            if value is not None:
                query = query.where(Run.__table__.c[column] == value)
        with self.engine.connect() as connection:
            return pd.read_sql(query.order_by(Run.id), connection)

    def epochs_frame(self, **filters: Any):
        """Every epoch joined with its run's identifying columns, filtered on run columns."""
        import pandas as pd

        runs = Run.__table__
        query = select(
            Epoch.__table__,
            runs.c.key, runs.c.config_key, runs.c.name, runs.c.benchmark, runs.c.dataset, runs.c.model, runs.c.optimizer,
            runs.c.lambda_adam.label("run_lambda_adam"), runs.c.lambda_sgd.label("run_lambda_sgd"),
            runs.c.seed, runs.c.status, runs.c.epochs.label("planned_epochs"),
        ).join(runs, runs.c.id == Epoch.__table__.c.run_id)
        for column, value in filters.items():
            if value is not None:
                query = query.where(runs.c[column] == value)
        with self.engine.connect() as connection:
            return pd.read_sql(query.order_by(Epoch.__table__.c.run_id, Epoch.__table__.c.epoch), connection)
