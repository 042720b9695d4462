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

import contextlib
import os
import sqlite3
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, delete, func, select, update
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
from masbench.errors import DiskFull, MasbenchError
from masbench.store.urls import mask_url
from masbench.store import leases
from masbench.store.leases import DEFAULT_LEASE_S, as_utc, server_time
from masbench.store.migrate import initialise_or_upgrade
from masbench.store.models import EPOCH_COLUMNS, SCHEMA_VERSION, Base, Epoch, Meta, Run, Summary, Trial, Tune
from masbench.store import checks
from masbench.store.queries import not_a_trial
from masbench.store import summaries
from masbench.store.opening import (
    EmptyStore,
    NeedsUpgrade,
    can_write,
    check_sqlite_file,
    create_store_engine,
    dispose_and_tidy,
    is_disk_full,
    open_error,
    parse_url,
    sqlite_file,
    sqlite_uri_file,
)
from masbench.store.schema import found_version
from masbench.text.shown import one_line

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
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number; parse_url says so in one line
        return url
    database = parsed.database
    if (parsed.get_backend_name() == "sqlite" and database not in (None, "", ":memory:")
            and not parsed.query.get("uri") and not os.path.isabs(database)):
        return parsed.set(database=os.path.abspath(database)).render_as_string(hide_password=False)
    return url


def utcnow() -> datetime:
    """This client's clock: for display only, never for a claim, a lease or a retry (``Store.now`` is for those)."""
    return datetime.now(timezone.utc)


class Store:
    """Open (and create, when new) the store at ``url``; ``writable`` checks that writes will succeed.

    ``read_only``: for commands that only read. The store is opened so that nothing can be written (SQLite:
    a ``mode=ro`` connection, see ``opening``; PostgreSQL: read-only transactions), works on a read-only
    mount, and is refused when empty (``EmptyStore``) or older than this masbench (``NeedsUpgrade``).
    A database that is not a masbench store is refused (``ForeignStore``) before anything is written.

    Example:
        >>> store = Store("sqlite:///:memory:")
        >>> store.runs_frame().empty
        True
    """

    def __init__(self, url: str | None = None, *, writable: bool = True, create: bool = True,
                 read_only: bool = False) -> None:
        self.url = absolute_sqlite(resolve_url(url))
        self._store_id: str | None = None
        self.masked_url = mask_url(self.url)
        self.read_only = read_only
        parsed = parse_url(self.url, self.masked_url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        self.path = sqlite_file(parsed)
        file = self.path if self.path is not None else sqlite_uri_file(parsed)
        # Whether this open makes the SQLite file: a command that fails before training removes it (``unless_used``).
        self.created = file if file is not None and not read_only and create and not os.path.exists(file) else None
        if file is not None:  # a command that only reads, or may not create, never makes the file: not with rwc either
            check_sqlite_file(file, self.masked_url, must_exist=read_only or not create)
        self._closer: weakref.finalize | None = None
        self.engine: Engine | None = None
        try:
            self.engine, files = create_store_engine(parsed, read_only, self.masked_url, BUSY_TIMEOUT_S)
            if files is not None:
                # Commands that only read rarely close their store: its log files are tidied when it goes away.
                self._closer = weakref.finalize(self, dispose_and_tidy, self.engine, files)
            # Writes go through this view of the engine (same pool): on SQLite its transactions begin IMMEDIATE.
            self._writer = self.engine.execution_options(masbench_writes=True)
            self._open(create and not read_only, writable and not read_only)
        except BaseException as error:
            self.close()
            if isinstance(error, (NoSuchModuleError, ImportError, SQLAlchemyError, OSError)):
                raise open_error(error, parsed, self.url, self.masked_url) from None
            raise

    # --- connection set-up ------------------------------------------------------------------

    def _open(self, create: bool, writable: bool) -> None:
        """Check what the database holds (reading only), then create, upgrade or refuse it."""
        with self.engine.connect() as connection:
            version = found_version(connection, self.masked_url)
            summaries.check_session(connection, self.masked_url)
            # Summaries a report could not trust: their triggers were dropped or disabled (by hand).
            missing = summaries.missing_triggers(connection) if version == SCHEMA_VERSION else []
        if version is None and (self.read_only or not create):
            raise EmptyStore(f"database {self.masked_url} holds no masbench runs (it has no masbench tables)")
        if self.read_only:
            can = self.path is None or can_write(self.path)
            if version < SCHEMA_VERSION:
                raise NeedsUpgrade(
                    f"database {self.masked_url} has schema version {version}, older than this masbench's "
                    f"({SCHEMA_VERSION}), and is opened read-only here: open it once where it can be written "
                    f"(any masbench command upgrades it) to upgrade it", writable=can)
            if missing:
                raise NeedsUpgrade(
                    f"database {self.masked_url} lacks what keeps its per-run summaries equal to its epochs "
                    f"({', '.join(missing)}: dropped or disabled by hand?), and is opened read-only here: open it "
                    f"once where it can be written (any masbench command rebuilds them)", writable=can)
            return
        if self.is_sqlite and self.engine.url.database not in (None, "", ":memory:"):
            self._use_wal()
        if version is None or version < SCHEMA_VERSION or missing:
            self._create_schema(repair=bool(missing))
        if writable:
            self._probe_write()

    def _use_wal(self) -> None:
        # Persistent in the file: set once here, every later connection reads and writes in WAL mode. Read
        # first: a store already in WAL needs no change, which would wait for no lock but fail at once with
        # "database is locked" while another process creates its schema (SQLite calls no busy handler there).
        raw = self.engine.raw_connection()
        try:
            for attempt in range(100):
                try:
                    if raw.driver_connection.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                        raw.driver_connection.execute("PRAGMA journal_mode=WAL").fetchall()
                    return
                except sqlite3.OperationalError as error:
                    if "locked" not in str(error) or attempt == 99:
                        raise
                    time.sleep(0.1)
        finally:
            raw.close()

    def _create_schema(self, repair: bool = False) -> None:
        for attempt in range(5):
            try:
                Base.metadata.create_all(self._writer)
                with self.session() as s:
                    initialise_or_upgrade(s, self.masked_url, repair)
                return
            except (IntegrityError, OperationalError, ProgrammingError) as error:
                # Two processes creating the schema at once: the loser finds it made and goes on.
                if attempt == 4 or "readonly" in str(error).replace(" ", "").lower():
                    raise
                time.sleep(0.2 * (attempt + 1))

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
            except BaseException as error:
                s.rollback()
                if isinstance(error, (OperationalError, OSError)) and is_disk_full(error):
                    raise self._disk_full(error) from None
                raise

    def _disk_full(self, error: BaseException) -> DiskFull:
        where = f"database {self.path}" if self.path is not None else f"the server of database {self.masked_url}"
        return DiskFull(f"disk full: cannot write {where} ({one_line(getattr(error, 'orig', error), limit=None)}); "
                        f"free space there and run the same command again")

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
        if self._closer is not None:
            self._closer()  # once: a finalizer also runs it when the store is dropped or at exit
        elif self.engine is not None:
            self.engine.dispose()

    @contextmanager
    def unless_used(self) -> Iterator[Store]:
        """Yields the store; when the block raises and this open created the SQLite file, and no run has started
        in it, the file (and its logs) are removed: a command that fails before training leaves no new store.

        Runs registered as pending (a sweep's plan), a tune's record: removed with it; a run that started (even
        one that failed, whose traceback the store keeps) keeps the store.
        """
        try:
            yield self
        except BaseException:
            if self.created is not None and self.engine is not None and self._untouched():
                self.close()
                for path in (self.created, *(f"{self.created}{suffix}" for suffix in ("-wal", "-shm", "-journal"))):
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(path)
            raise

    def _untouched(self) -> bool:
        try:
            with self.reading() as s:
                return s.scalar(select(func.count()).select_from(Run).where(Run.started_at.is_not(None))) == 0
        except SQLAlchemyError:
            return False  # cannot tell: the store stays

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

    def get_runs(self, keys: Sequence[str]) -> dict[str, Run]:
        """The stored runs among ``keys``, by key (one query)."""
        with self.reading() as s:
            return {run.key: run for run in s.scalars(select(Run).where(Run.key.in_(list(keys))))}

    def claim(self, run_id: int, worker: str, *, stale_after: float = DEFAULT_LEASE_S,
              retry_failed_before: datetime | None = None, force: bool = False) -> bool:
        """Atomically make ``worker`` the owner of the run; False when another worker holds it or it is done.

        ``stale_after`` is this worker's lease, in seconds: should it stop renewing the claim (heartbeats,
        epochs) for that long by the server's clock, another worker may take the run over. Claimable:
        pending; running with an expired lease; failed or diverged before ``retry_failed_before``
        (a server time, from ``now``); anything but a live claim with ``force``.
        """
        return run_id in self.claim_many([run_id], worker, stale_after=stale_after,
                                         retry_failed_before=retry_failed_before, force=force)

    def claim_many(self, run_ids: Sequence[int], worker: str, *, stale_after: float = DEFAULT_LEASE_S,
                   retry_failed_before: datetime | None = None, force: bool = False) -> set[int]:
        """``claim`` for several runs in one statement; the ids ``worker`` now holds."""
        with self.session() as s:
            return leases.claim(s, run_ids, worker, lease_s=stale_after, retry_failed_before=retry_failed_before,
                                force=force)

    def heartbeat(self, run_id: int, worker: str, stale_after: float = DEFAULT_LEASE_S) -> bool:
        """Renew the lease for ``stale_after`` more seconds; False when this worker no longer holds the run."""
        return run_id in self.renew([run_id], worker, stale_after)

    def renew(self, run_ids: Sequence[int], worker: str, stale_after: float = DEFAULT_LEASE_S) -> set[int]:
        """Renew ``worker``'s leases on the runs in one statement; the ids it still holds."""
        with self.session() as s:
            return leases.renew(s, run_ids, worker, stale_after)

    def is_held(self, run_id: int) -> bool:
        """Whether a live worker holds the run (its lease is not past by the server's clock)."""
        return run_id in self.held([run_id])

    def held(self, run_ids: Sequence[int]) -> set[int]:
        """The ids among ``run_ids`` that a live worker holds."""
        with self.reading() as s:
            return leases.held(s, run_ids)

    def start(self, run_id: int, worker: str, **environment: Any) -> None:
        """Record where and with what the run executes: host, device, versions, git_commit, config."""
        config = environment.pop("config", None)
        if run_id in self.start_many({run_id: config} if config is not None else {run_id: None}, worker,
                                     **environment):
            raise ClaimLost(f"run {run_id} was claimed by another worker")

    def start_many(self, configs: dict[int, dict | None], worker: str, *, per_run: dict[int, dict] | None = None,
                   **environment: Any) -> set[int]:
        """``start`` for several runs (each with its own config, or None to keep it, and ``per_run`` values of its
        own: its versions) in one transaction; the ids ``worker`` no longer holds (their rows are left as they were)."""
        lost = set()
        with self.session() as s:
            for run_id, config in configs.items():
                values = dict(environment, **({"config": config} if config is not None else {}),
                              **(per_run or {}).get(run_id, {}))
                values.setdefault("started_at", server_time(self.engine.dialect.name))
                result = s.execute(update(Run).where(Run.id == run_id, Run.worker == worker).values(**values)
                                   .execution_options(synchronize_session=False))
                if result.rowcount != 1:
                    lost.add(run_id)
        return lost

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
        if self.record_epochs([(run_id, metrics)], worker, stale_after):
            raise ClaimLost(f"run {run_id} is no longer held by worker {worker}")

    def record_epochs(self, rows: Sequence[tuple[int, dict[str, Any]]], worker: str,
                      stale_after: float = DEFAULT_LEASE_S) -> set[int]:
        """Upsert epoch rows of several runs (``(run_id, metrics)``) in one transaction, renewing the leases,
        for the runs ``worker`` still holds; the ids of those it no longer holds (their rows are not written)."""
        run_ids = {run_id for run_id, _ in rows}
        with self.session() as s:
            kept = leases.renew(s, run_ids, worker, stale_after)
            for run_id, metrics in rows:
                if run_id in kept:
                    # val_loss and val_acc only with a validation split; every other column is required.
                    self._upsert_epoch(s, {"run_id": run_id, "epoch": metrics["epoch"],
                                           **{c: metrics.get(c) if c.startswith("val_") else metrics[c]
                                              for c in EPOCH_COLUMNS}})
            s.flush()
            faults.point("store.epoch")
        return run_ids - kept

    # --- tunes ----------------------------------------------------------------------------------

    def ensure_tune(self, key: str, name: str, settings: dict[str, Any]) -> int:
        """The id of the tune with ``key``, inserted when absent (safe when two processes insert at once)."""
        with self.reading() as s:
            found = s.scalars(select(Tune.id).where(Tune.key == key)).first()
        if found is not None:
            return found
        try:
            with self.session() as s:
                tune = Tune(key=key, name=name, settings=settings, created_at=server_time(self.engine.dialect.name))
                s.add(tune)
                s.flush()
                return tune.id
        except IntegrityError:
            with self.reading() as s:
                return s.scalars(select(Tune.id).where(Tune.key == key)).one()

    def record_trials(self, tune_id: int, rows: Sequence[dict[str, Any]]) -> None:
        """Upsert the tune's trials, each ``{optimizer, phase, number, params, run_key}``, on (tune, optimizer,
        phase, number): recording the same trials again changes nothing, and two processes may do it at once."""
        if not rows:
            return
        columns = ("params", "run_key")
        values = [{"tune_id": tune_id, **{k: row[k] for k in ("optimizer", "phase", "number", *columns)}}
                  for row in rows]
        dialect = self.engine.dialect.name
        with self.session() as s:
            if dialect in ("sqlite", "postgresql"):
                if dialect == "sqlite":
                    from sqlalchemy.dialects.sqlite import insert
                else:
                    from sqlalchemy.dialects.postgresql import insert
                statement = insert(Trial)
                statement = statement.on_conflict_do_update(
                    index_elements=["tune_id", "optimizer", "phase", "number"],
                    set_={c: statement.excluded[c] for c in columns})
                s.execute(statement, values)
                return
            for value in values:
                row = s.scalars(select(Trial).where(*(getattr(Trial, k) == value[k] for k in
                                                      ("tune_id", "optimizer", "phase", "number")))).first()
                if row is None:
                    s.add(Trial(**value))
                else:
                    for column in columns:
                        setattr(row, column, value[column])

    def tunes_frame(self):
        """The tunes table as a DataFrame (id, key, name, settings, created_at), oldest first."""
        import pandas as pd

        with self.engine.connect() as connection:
            return pd.read_sql(select(Tune.__table__).order_by(Tune.id), connection)

    def trials_frame(self, tune: int | str | None = None):
        """The trials (of one tune: its id or key; all when None), one row each, joined to their runs: tune_id,
        tune (its key), tune_name, optimizer (the label), phase, number, params (a dict), run_key, run_id, name,
        status, seed, best_val_acc, val_epoch (the earliest epoch of best_val_acc), test_acc (that epoch's),
        best_test_acc, epochs (written), attempts; the run's columns are NULL (NaN) until it is stored."""
        import pandas as pd

        from masbench.store.queries import trials_query

        tune_id = tune
        if isinstance(tune, str):
            with self.reading() as s:
                tune_id = s.scalars(select(Tune.id).where(Tune.key == tune)).first()
            if tune_id is None:
                raise MasbenchError(one_line(f"no tune {tune!r} in {self.masked_url}"))
        query = trials_query(tune_id)
        with self.engine.connect() as connection:
            rows = connection.execute(query).mappings().all()
        return pd.DataFrame([dict(row) for row in rows], columns=list(query.selected_columns.keys()))

    def _check_claim(self, s: Session, run_id: int, worker: str, lease_s: float) -> None:
        if run_id not in leases.renew(s, [run_id], worker, lease_s):
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

    def release(self, run_id: int | Sequence[int] | None, worker: str) -> None:
        """Give the claim back (Ctrl-C, SIGTERM): the run is pending again and resumes from its checkpoint later.

        A list of ids gives back those runs in one statement; ``run_id=None`` every claim ``worker`` holds.
        """
        with self.session() as s:
            leases.release(s, worker, [run_id] if isinstance(run_id, int) else run_id)

    def epochs_of(self, run_id: int) -> list[Epoch]:
        with self.reading() as s:
            return list(s.scalars(select(Epoch).where(Epoch.run_id == run_id).order_by(Epoch.epoch)))

    def find_run(self, run_id: int | None, key_prefix: str, limit: int) -> list[dict[str, Any]]:
        """The run with id ``run_id`` when there is one, else at most ``limit`` runs whose key starts with
        ``key_prefix``, by id: each as every column of its row."""
        query = select(*readable_run_columns())
        with self.engine.connect() as connection:
            runs = connection.execute(query.where(Run.id == run_id)).mappings().all() if run_id is not None else []
            runs = runs or connection.execute(
                query.where(Run.key.startswith(key_prefix)).order_by(Run.id).limit(limit)).mappings().all()
            return [dict(r) for r in runs]

    def cell_states(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        """For each stored key: status, worker, name, planned epochs, the last epoch written and ``best`` (the
        highest test accuracy, a fraction; None before an epoch)."""
        runs = Run.__table__
        last = Summary.__table__
        states: dict[str, dict[str, Any]] = {}
        with self.reading() as s:
            for start in range(0, len(keys), 500):
                query = (select(runs.c.key, runs.c.status, runs.c.worker, runs.c.name, runs.c.dataset, runs.c.model,
                                runs.c.seed, runs.c.epochs, runs.c.error, runs.c.finished_at, runs.c.heartbeat_at,
                                last.c.last_epoch, last.c.best)
                         .outerjoin(last, last.c.run_id == runs.c.id)
                         .where(runs.c.key.in_(keys[start : start + 500])))
                for row in s.execute(query).mappings():
                    states[row["key"]] = dict(row)
        return states

    def epochs_after(self, after: dict[str, int]) -> list[dict[str, Any]]:
        """The epochs of the runs of ``after``'s keys past the epoch it gives each (every column, and ``key``), by
        key and epoch: what a sweep's log has not printed yet."""
        runs = Run.__table__
        keys = list(after)
        out: list[dict[str, Any]] = []
        with self.reading() as s:
            for start in range(0, len(keys), 500):
                query = (select(Epoch.__table__, runs.c.key).join(runs, runs.c.id == Epoch.__table__.c.run_id)
                         .where(runs.c.key.in_(keys[start : start + 500])))
                out += [dict(row) for row in s.execute(query).mappings() if row["epoch"] > after[row["key"]]]
        order = {key: i for i, key in enumerate(keys)}
        return sorted(out, key=lambda row: (order[row["key"]], row["epoch"]))

    # --- queries as pandas ------------------------------------------------------------------

    def runs_frame(self, **filters: Any):
        """The runs table as a DataFrame, filtered on equal columns (``dataset="digits"``)."""
        import pandas as pd

        query = select(*readable_run_columns())
        for column, value in filters.items():
            if value is not None:
                query = query.where(Run.__table__.c[column] == value)
        with self.engine.connect() as connection:
            return pd.read_sql(query.order_by(Run.id), connection)

    def problems(self, run_ids: Sequence[int] | None = None) -> list[checks.Problem]:
        """Every problem that ``checks`` finds in the runs ``run_ids`` and their epochs (as their summaries
        count them), or in every run of the store (tunes' runs included), from the epochs themselves, with
        every summary that differs from them: by run id, its epoch rows' by epoch first."""
        with self.engine.connect() as connection:
            if run_ids is not None:
                return checks.problems(connection, lambda ids: Summary.__table__, run_ids)
            # One scan of every epoch: the stale summaries. Every other summary equals its epochs, so the runs
            # it flags are the runs to read; each of those is then checked against its epochs themselves.
            stale = summaries.stale(connection)
            flagged = set(connection.execute(checks.flagged_runs_query(Summary.__table__)).scalars())
            run_ids = sorted(flagged | {p.run_id for p in stale})
            found = (checks.problems(connection, lambda ids: summaries.summary_select(Epoch.run_id.in_(ids))
                                     .subquery("per_run"), run_ids)
                     + stale + checks.orphan_epochs(connection))
        return sorted(found, key=lambda p: (p.run_id, p.epoch is None, str(p.epoch)))

    def rebuild_summaries(self) -> int:
        """Make the triggers again and rebuild every per-run summary from the epochs (``summaries.rebuild``), in
        one transaction: the number of summaries."""
        with self.session() as s:
            return summaries.rebuild(s.connection())

    def counts(self) -> tuple[int, int]:
        """(runs, epoch rows) in the store."""
        with self.engine.connect() as connection:
            return (connection.execute(select(func.count()).select_from(Run)).scalar_one(),
                    connection.execute(select(func.count()).select_from(Epoch)).scalar_one())

    def epochs_frame(self, **filters: Any):
        """Every epoch joined with its run's identifying columns, filtered on run columns; tunes' runs left out."""
        import pandas as pd

        runs = Run.__table__
        query = select(
            Epoch.__table__,
            runs.c.key, runs.c.config_key, runs.c.name, runs.c.benchmark, runs.c.dataset, runs.c.model, runs.c.optimizer,
            runs.c.lambda_adam.label("run_lambda_adam"), runs.c.lambda_sgd.label("run_lambda_sgd"),
            runs.c.seed, runs.c.status, runs.c.epochs.label("planned_epochs"),
        ).join(runs, runs.c.id == Epoch.__table__.c.run_id).where(not_a_trial(runs.c.key))
        for column, value in filters.items():
            if value is not None:
                query = query.where(runs.c[column] == value)
        with self.engine.connect() as connection:
            return pd.read_sql(query.order_by(Epoch.__table__.c.run_id, Epoch.__table__.c.epoch), connection)


def readable_run_columns() -> list:
    """Every column of ``runs``, a JSON one NULL where it does not parse (masbench check names it): reading
    a corrupted row never raises."""
    return [checks.readable_json(column) if isinstance(column.type, JSON) else column
            for column in Run.__table__.columns]


def open_for_reading(url: str | None) -> Store:
    """A store for a command that only reads: opened read-only, never created.

    An older store is upgraded first by one writable open, as any command does, when this process can
    write it; a store that cannot be written here (a read-only mount or file) is refused in one line.
    """
    try:
        return Store(url, read_only=True)
    except NeedsUpgrade as refusal:
        if not refusal.writable:
            raise
    Store(url, writable=False, create=False).close()  # the upgrade, in one transaction
    return Store(url, read_only=True)
