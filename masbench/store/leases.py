"""Leases on cells, judged by one clock: the database server's (as in Optuna's RDB storage).

A worker that claims a cell holds it until ``lease_expires_at`` = the server's
now + the worker's *own* lease, and renews it on every heartbeat and every
epoch it writes. Another worker may take a running cell only once that lease
has expired by the server's clock: neither the claimer's timeout nor its clock
enters the decision, so a second sweep with a short ``--claim-timeout``, or a
host whose clock runs ahead, cannot take a live cell.

Every time a decision compares (heartbeat, start, finish, lease) is written by
the server's clock too. Running rows from version-1 stores carry no lease:
they count as held until their heartbeat, written by 0.1's clients, is
``LEGACY_LEASE_S`` old by the server's clock (0.1's default claim timeout).

SQLite has no date type: SQLAlchemy stores ``DateTime`` as the text
``YYYY-MM-DD HH:MM:SS.ffffff`` (UTC here), and the server's time is built in
exactly that form, so that the text comparison is the time comparison.
PostgreSQL compares ``timestamptz`` values; ``now()`` there is the start of the
(short) transaction, which makes a claimer see a lease as slightly younger,
never older.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

from sqlalchemy import DateTime, func, or_, select, type_coerce, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from masbench.store.models import Run

DEFAULT_LEASE_S = 60.0
LEGACY_LEASE_S = 60.0  # running rows of a version-1 store, which have a heartbeat and no lease
FINAL = ("completed", "failed", "diverged", "pruned")  # a run in one of these is done; the one definition


def finished(status: str, finished_at: datetime | None, retry_failed_before: datetime | None) -> bool:
    """Done for a sweep, as ``claim`` judges it in SQL: completed, or failed or diverged and not to be retried
    (finished at or after ``retry_failed_before``, a server time; None: never retried). The one Python copy of
    that rule: the sweep's decision, its packing, its summary and the dry run all ask it."""
    if status in ("completed", "pruned"):  # pruned: stopped early by a tune, on purpose; never run again
        return True
    if status in ("failed", "diverged"):
        return retry_failed_before is None or finished_at is None or as_utc(finished_at) >= retry_failed_before
    return False


def server_time(dialect: str, offset_s: float = 0.0) -> ColumnElement[datetime]:
    """The database server's clock, plus ``offset_s`` seconds, as an SQL expression of type DateTime."""
    if dialect == "sqlite":
        # %f is SS.SSS; three zeros more give SQLAlchemy's six-digit microseconds, so text order is time order.
        text = func.strftime("%Y-%m-%d %H:%M:%f", "now", f"{offset_s:+.3f} seconds").op("||")("000")
        return type_coerce(text, DateTime(timezone=True))
    now = func.now()
    if offset_s:
        now = now + timedelta(seconds=offset_s)
    return type_coerce(now, DateTime(timezone=True))


def as_utc(moment: datetime) -> datetime:
    """SQLite gives back naive datetimes, which the store writes in UTC; PostgreSQL gives the session's zone."""
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def _dialect(s: Session) -> str:
    return s.get_bind().dialect.name


def expired(dialect: str) -> ColumnElement[bool]:
    """A running claim whose holder stopped renewing it: its lease is past, by the server's clock."""
    leased = Run.lease_expires_at.is_not(None) & (Run.lease_expires_at < server_time(dialect))
    legacy = Run.lease_expires_at.is_(None) & or_(Run.heartbeat_at.is_(None),
                                                  Run.heartbeat_at < server_time(dialect, -LEGACY_LEASE_S))
    return (Run.status == "running") & or_(leased, legacy)


def live(dialect: str) -> ColumnElement[bool]:
    """A running claim still held: its lease not yet past (spelt out, not as NOT expired: NULLs do not negate)."""
    leased = Run.lease_expires_at.is_not(None) & (Run.lease_expires_at >= server_time(dialect))
    legacy = (Run.lease_expires_at.is_(None) & Run.heartbeat_at.is_not(None)
              & (Run.heartbeat_at >= server_time(dialect, -LEGACY_LEASE_S)))
    return (Run.status == "running") & or_(leased, legacy)


def claim(s: Session, run_ids: Sequence[int], worker: str, *, lease_s: float,
          retry_failed_before: datetime | None = None, force: bool = False) -> set[int]:
    """One conditional UPDATE (atomic on both databases): ``worker`` holds the runs it could claim for
    ``lease_s`` seconds; returns their ids.

    Claimable: pending; running with an expired lease; failed or diverged before ``retry_failed_before``
    (a server time: ``--retry-failed`` retries what failed before the sweep started, once); anything
    final with ``force``. Never a live claim.
    """
    dialect = _dialect(s)
    claimable = [Run.status == "pending", expired(dialect)]
    if retry_failed_before is not None:
        claimable.append(Run.status.in_(("failed", "diverged")) & (Run.finished_at < retry_failed_before))
    if force:
        claimable.append(Run.status.in_(FINAL))
    result = s.execute(
        update(Run).where(Run.id.in_(list(run_ids)), or_(*claimable))
        .values(status="running", worker=worker, heartbeat_at=server_time(dialect),
                lease_expires_at=server_time(dialect, lease_s), attempts=Run.attempts + 1, error=None,
                finished_at=None)
        .returning(Run.id)
        .execution_options(synchronize_session=False)
    )
    return set(result.scalars())


def renew(s: Session, run_ids: Sequence[int], worker: str, lease_s: float) -> set[int]:
    """Extend ``worker``'s leases to the server's now + ``lease_s``; the ids of the runs it still holds."""
    dialect = _dialect(s)
    result = s.execute(
        update(Run).where(Run.id.in_(list(run_ids)), Run.worker == worker, Run.status == "running")
        .values(heartbeat_at=server_time(dialect), lease_expires_at=server_time(dialect, lease_s))
        .returning(Run.id)
        .execution_options(synchronize_session=False)
    )
    return set(result.scalars())


def release(s: Session, worker: str, run_ids: Sequence[int] | None = None) -> int:
    """Give back ``worker``'s claims on the runs (every claim it holds, without ``run_ids``): pending again."""
    query = update(Run).where(Run.worker == worker, Run.status == "running")
    if run_ids is not None:
        query = query.where(Run.id.in_(list(run_ids)))
    result = s.execute(query.values(status="pending", worker=None, heartbeat_at=None, lease_expires_at=None)
                       .execution_options(synchronize_session=False))
    return result.rowcount


def held(s: Session, run_ids: Sequence[int]) -> set[int]:
    """The ids of the runs a live worker holds: running, with a lease not yet past by the server's clock."""
    query = select(Run.id).where(Run.id.in_(list(run_ids)), live(_dialect(s)))
    return set(s.scalars(query))
