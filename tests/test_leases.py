"""Leases judged by one clock, the database server's: neither a claimer's timeout nor its clock takes a live cell.

Each adversary from issue 10: a second worker with a 1 s claim timeout next to a holder with a 60 s lease;
a claimer whose clock runs hours ahead; a holder that really died; ``--retry-failed`` on a skewed clock;
running rows of a version-1 store, which have no lease. And reads that never wait for a writer (SQLite).
"""

from __future__ import annotations

import sqlite3
import sys
import textwrap
import threading
import time
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from sqlalchemy import update

from masbench.spec import RunSpec
from masbench.store import ClaimLost, Run, Store
from masbench.sweep import run_values

DIGITS = RunSpec(dataset="digits", model="mlp", optimizer="sgd", lr=0.01, epochs=1, batch_size=256)


@pytest.fixture
def store(db_url):
    store = Store(db_url)
    yield store
    store.close()


@pytest.fixture
def client_clock(monkeypatch):
    """This process's clock, as masbench reads it, ``shift`` off the true time (set ``clock.hours``).

    Every ``utcnow`` in masbench's modules and their ``datetime`` (for ``datetime.now``) are replaced;
    a decision that reads this client's clock anywhere sees the skew.
    """
    clock = SimpleNamespace(hours=0.0)
    real = datetime

    class Skewed(datetime):
        @classmethod
        def now(cls, tz=None):
            return real.now(tz) + timedelta(hours=clock.hours)

        @classmethod
        def utcnow(cls):
            return real.utcnow() + timedelta(hours=clock.hours)

    def utcnow():
        return real.now(timezone.utc) + timedelta(hours=clock.hours)

    for name, module in list(sys.modules.items()):
        if name.startswith("masbench") and module is not None:
            if callable(getattr(module, "utcnow", None)):
                monkeypatch.setattr(module, "utcnow", utcnow)
            if getattr(module, "datetime", None) is real:
                monkeypatch.setattr(module, "datetime", Skewed)
    return clock


def wait_until_expired(store: Store, run_id: int, bound_s: float = 30) -> None:
    """Poll (bounded, not timed) until the run's lease is past by the server's clock."""
    deadline = time.monotonic() + bound_s
    while store.is_held(run_id):
        assert time.monotonic() < deadline, "the lease never expired"
        time.sleep(0.05)


def attempts(store: Store, spec: RunSpec = RunSpec()) -> int:
    return store.get_run(spec.key).attempts


# --- the store's protocol --------------------------------------------------------------------------------------


def test_a_short_claim_timeout_does_not_take_a_live_cell(store):
    run = store.ensure_run(run_values(RunSpec()))
    assert store.claim(run.id, "holder", stale_after=60)
    time.sleep(1.2)  # the holder's last beat is now older than the claimer's 1 s timeout
    assert not store.claim(run.id, "impatient", stale_after=1)
    assert attempts(store) == 1 and store.get_run(RunSpec().key).worker == "holder"
    assert store.is_held(run.id)


def test_a_claimer_whose_clock_runs_ahead_does_not_take_a_live_cell(store, client_clock):
    run = store.ensure_run(run_values(RunSpec()))
    assert store.claim(run.id, "holder", stale_after=60)
    client_clock.hours = 3
    assert not store.claim(run.id, "ahead", stale_after=60)
    assert store.is_held(run.id)
    client_clock.hours = -3  # and a holder whose clock runs behind still renews a lease the server measures
    assert store.heartbeat(run.id, "holder", 60) and store.is_held(run.id)
    assert attempts(store) == 1


def test_a_holder_that_died_is_taken_over_once_its_lease_expires(store):
    run = store.ensure_run(run_values(RunSpec()))
    assert store.claim(run.id, "dead", stale_after=0.3)
    assert not store.claim(run.id, "next", stale_after=60)
    wait_until_expired(store, run.id)
    assert store.claim(run.id, "next", stale_after=60)
    with pytest.raises(ClaimLost):
        store.record_epoch(run.id, "dead", dict(epoch=1, train_loss=1.0, train_acc=0.5, test_loss=1.0, test_acc=0.5,
                                                lr=0.1, lambda_adam=None, lambda_sgd=None, seconds=1.0,
                                                samples_per_second=1.0))
    assert not store.heartbeat(run.id, "dead") and store.heartbeat(run.id, "next")
    assert attempts(store) == 2


def test_renewal_keeps_a_short_lease_alive(store):
    run = store.ensure_run(run_values(RunSpec()))
    assert store.claim(run.id, "holder", stale_after=0.5)
    for _ in range(6):
        time.sleep(0.2)
        assert store.heartbeat(run.id, "holder", 0.5)
    assert not store.claim(run.id, "other", stale_after=60)  # 1.2 s since the claim, 0.2 s since the last beat


def test_the_lease_is_written_by_the_servers_clock(store, client_clock):
    client_clock.hours = 5
    before = store.now()
    run = store.ensure_run(run_values(RunSpec()))
    store.claim(run.id, "w", stale_after=60)
    after = store.now()
    row = store.get_run(RunSpec().key)
    for column in ("created_at", "heartbeat_at"):
        moment = getattr(row, column).replace(tzinfo=timezone.utc) if getattr(row, column).tzinfo is None \
            else getattr(row, column)
        assert before <= moment <= after, column
    lease = row.lease_expires_at.replace(tzinfo=timezone.utc) if row.lease_expires_at.tzinfo is None \
        else row.lease_expires_at
    assert before + timedelta(seconds=60) <= lease <= after + timedelta(seconds=60)


@pytest.mark.parametrize("heartbeat_age_s, claimable", [(None, True), (5, False), (120, True)])
def test_a_running_row_of_a_version_1_store_has_no_lease_and_a_60_s_rule(store, heartbeat_age_s, claimable):
    from masbench.store.leases import server_time

    run = store.ensure_run(run_values(RunSpec()))
    dialect = store.engine.dialect.name
    beat = None if heartbeat_age_s is None else server_time(dialect, -heartbeat_age_s)
    with store.session() as s:
        s.execute(update(Run).where(Run.id == run.id)
                  .values(status="running", worker="v1-worker", heartbeat_at=beat, lease_expires_at=None, attempts=1))
    assert store.is_held(run.id) is not claimable
    assert store.claim(run.id, "v2-worker", stale_after=1) is claimable


# --- through run_cell and sweeps -----------------------------------------------------------------------------


@pytest.mark.parametrize("skew_hours, timeout", [(0, 1.0), (3, 60.0)])
def test_run_cell_leaves_a_live_cell_to_its_holder(store, client_clock, skew_hours, timeout):
    from masbench.sweep import run_cell

    run = store.ensure_run(run_values(DIGITS))
    assert store.claim(run.id, "holder", stale_after=60)
    time.sleep(1.2)
    client_clock.hours = skew_hours
    outcome = run_cell(DIGITS, store, stale_after=timeout)
    assert outcome.status == "busy"
    assert attempts(store, DIGITS) == 1 and store.epochs_of(run.id) == []


RETRY_BENCH = textwrap.dedent("""
    benchmarks:
      retry:
        dataset: digits
        models: [mlp]
        lambdas: "0.5"
        baselines: [sgd]
        lr: 0.01
        batch_size: 256
        epochs: 1
        seeds: 1
""")


def test_retry_failed_on_a_skewed_clock_retries_exactly_what_failed_before_the_sweep(store, client_clock, tmp_path):
    from masbench.engine import ExecOptions
    from masbench.grid.benchmarks import plan_sweep
    from masbench.sweep import SweepSettings, register, run_sweep

    path = tmp_path / "bench.yaml"
    path.write_text(RETRY_BENCH)
    _, cells = plan_sweep(benchmark="retry", benchmarks_path=path)
    before, after = (cell.spec for cell in cells)
    register(cells, store)

    def fail(spec: RunSpec, worker: str) -> None:  # another worker, on a true clock
        hours, client_clock.hours = client_clock.hours, 0
        run = store.get_run(spec.key)
        assert store.claim(run.id, worker, stale_after=60)
        store.finish(run.id, worker, "failed", "RuntimeError: simulated")
        client_clock.hours = hours

    fail(before, "earlier")
    time.sleep(0.05)  # the server's clock (milliseconds on SQLite) moves on before the sweep starts
    settings = SweepSettings(options=ExecOptions(device="cpu"), retry_failed=True, poll=0.1)

    client_clock.hours = -3  # the sweep's clock runs behind: the cell failed before it must still be retried
    run_sweep([cells[0]], store, settings)
    assert (store.get_run(before.key).status, attempts(store, before)) == ("completed", 2)

    client_clock.hours = 3  # ahead: a cell failed after the sweep started must not be retried
    run_sweep([cells[1]], store, settings, on_start=lambda: (time.sleep(0.05), fail(after, "later")))
    assert (store.get_run(after.key).status, attempts(store, after)) == ("failed", 1)


# --- reads never wait for a writer (SQLite) ------------------------------------------------------------------


def test_reads_do_not_wait_for_a_writer(sqlite_url, tmp_path):
    store = Store(sqlite_url)
    run = store.ensure_run(run_values(RunSpec()))
    writer = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("insert into meta (key, value) values ('held', 'by the writer')")
    done, errors = threading.Event(), []

    def read() -> None:
        try:
            from sqlalchemy import text

            assert store.get_run(RunSpec().key).id == run.id
            assert store.cell_states([RunSpec().key])[RunSpec().key]["status"] == "pending"
            assert len(store.runs_frame()) == 1 and store.epochs_frame().empty and store.epochs_of(run.id) == []
            with store.engine.connect() as connection:  # how report.py queries
                assert connection.execute(text("select count(*) from runs")).scalar() == 1
            assert Store(sqlite_url, writable=False, create=False).store_id == store.store_id
            assert store.now() is not None and not store.is_held(run.id)
            done.set()
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=30)  # a bound, not a speed: a waiting read would wait for the 60 s busy timeout
    read_while_locked = done.is_set() and writer.in_transaction
    writer.execute("ROLLBACK")
    writer.close()
    reader.join()
    assert not errors, errors
    assert read_while_locked
    store.close()
