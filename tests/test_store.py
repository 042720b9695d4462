"""The metric store: schema, round trips, claims and upserts, and errors."""

from __future__ import annotations

import math
import os
import sqlite3
import time

import pytest

from masbench.spec import RunSpec
from masbench.errors import MasbenchError
from masbench.store import SCHEMA_VERSION, ClaimLost, Store
from masbench.sweep import run_values


def epoch(n, acc=0.5, loss=1.0):
    return dict(epoch=n, train_loss=loss, train_acc=acc, test_loss=loss, test_acc=acc, lr=0.1, lambda_adam=0.3,
                lambda_sgd=0.7, seconds=1.5, samples_per_second=1000.0)


@pytest.fixture
def store(db_url):
    store = Store(db_url)
    yield store
    store.close()


def test_new_sqlite_store_records_its_schema_version_and_uses_wal(sqlite_url, tmp_path):
    Store(sqlite_url).close()
    connection = sqlite3.connect(tmp_path / "store.db")
    assert connection.execute("select value from meta where key='schema_version'").fetchone() == (str(SCHEMA_VERSION),)
    assert connection.execute("pragma journal_mode").fetchone() == ("wal",)
    tables = {row[0] for row in connection.execute("select name from sqlite_master where type='table'")}
    assert {"runs", "epochs", "meta"} <= tables


def test_schema_version_is_recorded(store):
    from masbench.store import Meta

    with store.session() as s:
        assert s.get(Meta, "schema_version").value == str(SCHEMA_VERSION)


def test_run_and_epochs_round_trip(store):
    spec = RunSpec(lambda_adam=0.3, lambda_sgd=0.7, momentum=0.95, seed=4)
    run = store.ensure_run(run_values(spec))
    assert store.ensure_run(run_values(spec)).id == run.id  # idempotent
    assert store.claim(run.id, "w1", stale_after=60)
    store.start(run.id, "w1", host="h", device="cpu", versions={"torch": "x"}, git_commit="abc")
    for n in (1, 2):
        store.record_epoch(run.id, "w1", epoch(n, acc=0.4 + n / 10))
    store.finish(run.id, "w1", "completed")

    runs = store.runs_frame()
    row = runs.iloc[0]
    assert (row.key, row["name"], row.status, row.seed, row.momentum) == (spec.key, spec.name, "completed", 4, 0.95)
    assert (row.lambda_adam, row.lambda_sgd, row.host, row.git_commit) == (0.3, 0.7, "h", "abc")
    assert row.config["canonical"] == spec.canonical()
    epochs = store.epochs_frame()
    assert epochs.epoch.tolist() == [1, 2] and epochs.test_acc.tolist() == pytest.approx([0.5, 0.6])
    assert set(epochs.key) == {spec.key}
    assert store.epochs_frame(dataset="cifar10").empty


def test_a_repeated_epoch_replaces_its_row(store):
    run = store.ensure_run(run_values(RunSpec()))
    store.claim(run.id, "w", stale_after=60)
    store.record_epoch(run.id, "w", epoch(1, acc=0.1))
    store.record_epoch(run.id, "w", epoch(1, acc=0.9))
    rows = store.epochs_of(run.id)
    assert len(rows) == 1 and rows[0].test_acc == 0.9


def test_non_finite_values_are_stored_as_the_database_allows(store):
    run = store.ensure_run(run_values(RunSpec()))
    store.claim(run.id, "w", stale_after=60)
    store.record_epoch(run.id, "w", dict(epoch(1), train_loss=float("inf"), test_loss=None, test_acc=None))
    row = store.epochs_of(run.id)[0]
    assert math.isinf(row.train_loss) and row.test_acc is None


@pytest.mark.parametrize(
    "status, kwargs, claimable",
    [
        ("pending", {}, True),
        ("completed", {}, False),
        ("completed", {"force": True}, True),
        ("failed", {}, False),
        ("failed", {"retry_failed_before": "future"}, True),
        ("diverged", {"retry_failed_before": "future"}, True),
        ("failed", {"retry_failed_before": "past"}, False),  # failed again after the sweep began: not retried
    ],
)
def test_what_can_be_claimed(store, status, kwargs, claimable):
    from datetime import timedelta

    if "retry_failed_before" in kwargs:
        shift = timedelta(hours=1) if kwargs["retry_failed_before"] == "future" else -timedelta(hours=1)
        kwargs = {"retry_failed_before": store.now() + shift}
    run = store.ensure_run(run_values(RunSpec()))
    if status != "pending":
        store.claim(run.id, "old", stale_after=60)
        store.finish(run.id, "old", status)
    assert store.claim(run.id, "new", stale_after=60, **kwargs) is claimable


def test_a_live_claim_is_exclusive_and_an_expired_one_is_taken_over(store):
    run = store.ensure_run(run_values(RunSpec()))
    assert store.claim(run.id, "a", stale_after=0.5)  # a's lease: half a second without renewal
    assert not store.claim(run.id, "b", stale_after=60)
    assert not store.claim(run.id, "b", stale_after=60, force=True)
    deadline = time.monotonic() + 30
    while store.is_held(run.id):  # a stops renewing, as a dead worker would
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert store.claim(run.id, "b", stale_after=60)
    with pytest.raises(ClaimLost):
        store.record_epoch(run.id, "a", epoch(1))
    assert not store.heartbeat(run.id, "a") and store.heartbeat(run.id, "b")
    store.record_epoch(run.id, "b", epoch(1))
    assert store.get_run(RunSpec().key).attempts == 2


def test_release_makes_a_run_pending_again(store):
    run = store.ensure_run(run_values(RunSpec()))
    store.claim(run.id, "a", stale_after=60)
    store.release(run.id, "a")
    released = store.get_run(RunSpec().key)
    assert (released.status, released.worker, released.lease_expires_at) == ("pending", None, None)
    assert store.claim(run.id, "b", stale_after=60)
    other = store.ensure_run(run_values(RunSpec(seed=1)))
    assert store.claim(other.id, "c", stale_after=60)
    store.release(None, "b")  # every claim b holds, and no one else's
    assert store.get_run(RunSpec().key).status == "pending" and store.get_run(RunSpec(seed=1).key).status == "running"


def test_env_var_chooses_the_database(tmp_path, monkeypatch):
    monkeypatch.setenv("MASBENCH_DB", f"sqlite:///{tmp_path / 'env.db'}")
    assert Store().url.endswith("env.db") and (tmp_path / "env.db").exists()


@pytest.mark.parametrize(
    "url, message",
    [
        ("just words", "Invalid database URL: just words (expected an SQLAlchemy URL"),
        ("nonsense://", "Invalid database URL: nonsense:// (unknown database kind 'nonsense'"),
        ("sqlite:////no/such/folder/x.db", "folder /no/such/folder does not exist"),
        ("postgresql+psycopg://user:hunter2@127.0.0.1:1/db", "cannot open database postgresql+psycopg://user:***@"),
        ("mysql+nosuchdriver://u:hunter2@h/db", "unknown database kind 'mysql+nosuchdriver'"),
        ("not a url://u:hunter2@h", "Invalid database URL: not a url"),
    ],
)
def test_unusable_urls_fail_in_one_line_without_the_password(url, message):
    with pytest.raises(MasbenchError) as error:
        Store(url)
    text = str(error.value)
    assert message in text and "\n" not in text and "hunter2" not in text


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write read-only files")
def test_read_only_database_file(tmp_path):
    path = tmp_path / "ro.db"
    Store(f"sqlite:///{path}").close()
    path.chmod(0o444)
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(MasbenchError, match="read-only"):
            Store(f"sqlite:///{path}")
    finally:
        tmp_path.chmod(0o755)


def test_read_only_connection_is_reported_before_any_work(tmp_path):
    path = tmp_path / "ro.db"
    Store(f"sqlite:///{path}").close()
    with pytest.raises(MasbenchError, match="is read-only"):
        Store(f"sqlite:///file:{path}?mode=ro&uri=true")
    assert Store(f"sqlite:///file:{path}?mode=ro&uri=true", writable=False).runs_frame().empty


def test_newer_schema_is_refused(sqlite_url, tmp_path):
    Store(sqlite_url).close()
    connection = sqlite3.connect(tmp_path / "store.db")
    connection.execute("update meta set value='99' where key='schema_version'")
    connection.commit()
    with pytest.raises(MasbenchError, match="schema version 99, newer than this masbench's"):
        Store(sqlite_url)
