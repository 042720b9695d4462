"""``run_unit``: a unit's members share their store work; the heartbeat does not swallow a bug."""

from __future__ import annotations

import logging
import time

import pytest
from sqlalchemy.exc import OperationalError

from masbench.engine import EpochMetrics
from masbench.engine import ExecOptions
from masbench.spec import RunSpec
from masbench.store import ClaimLost, Store
from masbench.sweep import UnitRecorder, run_cell, run_unit, run_values

BASE = dict(dataset="digits", model="mlp", lr=3e-3, momentum=0.9, batch_size=256, epochs=2)


def metrics(epoch: int) -> EpochMetrics:
    return EpochMetrics(epoch, 0.5, 0.9, 0.4, 0.8, 3e-3, 0.5, 0.5, 1.0, 100.0)


@pytest.mark.parametrize("size", [1, 3])
def test_a_units_epoch_rows_go_in_one_transaction(sqlite_url, tmp_path, monkeypatch, size):
    store = Store(sqlite_url)
    writes = []
    real = Store.record_epochs

    def counted(self, rows, worker, stale_after=60.0):
        writes.append(sorted((run_id, m["epoch"]) for run_id, m in rows))
        return real(self, rows, worker, stale_after)

    monkeypatch.setattr(Store, "record_epochs", counted)
    specs = [RunSpec(**BASE, optimizer="mas", seed=s) for s in range(size)]
    outcomes = run_unit(specs, store, ExecOptions(device="cpu", checkpoint_dir=tmp_path / "ckpt"))
    assert [o.status for o in outcomes] == ["completed"] * size
    ids = sorted(o.run_id for o in outcomes)
    assert writes == [[(i, 1) for i in ids], [(i, 2) for i in ids]]
    assert all(len(store.epochs_of(i)) == 2 for i in ids)
    store.close()


def test_claims_and_renewals_of_several_runs_are_one_statement_each(sqlite_url):
    store = Store(sqlite_url)
    specs = [RunSpec(**BASE, optimizer="mas", seed=s) for s in range(3)]
    ids = [store.ensure_run(run_values(spec)).id for spec in specs]
    assert store.claim(ids[1], "other", stale_after=600)
    assert store.claim_many(ids, "me", stale_after=600) == {ids[0], ids[2]}
    assert store.renew(ids, "me") == {ids[0], ids[2]}
    assert store.record_epochs([(i, metrics(1).as_dict()) for i in ids], "me") == {ids[1]}
    assert [len(store.epochs_of(i)) for i in ids] == [1, 0, 1]
    store.release(ids, "me")
    assert [store.get_run(spec.key).status for spec in specs] == ["pending", "running", "pending"]
    store.close()


def test_a_bug_in_the_heartbeat_is_raised_in_the_training_thread(sqlite_url, monkeypatch):
    store = Store(sqlite_url)
    run_id = store.ensure_run(run_values(RunSpec(**BASE, optimizer="sgd"))).id
    assert store.claim(run_id, "me")

    def broken(*args, **kwargs):
        raise TypeError("renew() got an unexpected keyword argument")

    monkeypatch.setattr(store, "renew", broken)
    with UnitRecorder(store, "me", [run_id], heartbeat_every=0.01) as recorder:
        member = recorder.member(run_id)
        deadline = time.monotonic() + 10
        while recorder.failure is None and time.monotonic() < deadline:
            time.sleep(0.01)
        with pytest.raises(RuntimeError, match="heartbeat") as raised:
            member.on_batch(1, 1, 10)
    assert isinstance(raised.value.__cause__, TypeError)
    store.close()


def test_a_database_hiccup_in_the_heartbeat_is_logged_and_tried_again(sqlite_url, monkeypatch, caplog):
    store = Store(sqlite_url)
    run_id = store.ensure_run(run_values(RunSpec(**BASE, optimizer="sgd"))).id
    assert store.claim(run_id, "me")
    calls = []
    real = store.renew

    def flaky(ids, worker, stale_after=60.0):
        calls.append(ids)
        if len(calls) == 1:
            raise OperationalError("UPDATE runs", {}, Exception("database is locked"))
        return real(ids, worker, stale_after)

    monkeypatch.setattr(store, "renew", flaky)
    with caplog.at_level(logging.WARNING, logger="masbench.sweep.units"):
        with UnitRecorder(store, "me", [run_id], heartbeat_every=0.01) as recorder:
            deadline = time.monotonic() + 10
            while len(calls) < 3 and time.monotonic() < deadline:
                time.sleep(0.01)
            recorder.member(run_id).on_batch(1, 1, 10)  # neither lost nor failed
    assert recorder.failure is None and not recorder.lost and len(calls) >= 3
    assert "database is locked" in caplog.text
    store.close()


def test_a_member_whose_claim_was_taken_stops_at_its_next_batch(sqlite_url):
    store = Store(sqlite_url)
    ids = [store.ensure_run(run_values(RunSpec(**BASE, optimizer="mas", seed=s))).id for s in range(2)]
    assert store.claim_many(ids, "me") == set(ids)
    store.release([ids[1]], "me")
    assert store.claim(ids[1], "other", stale_after=600)
    with UnitRecorder(store, "me", ids, heartbeat_every=60) as recorder:
        first, second = recorder.member(ids[0]), recorder.member(ids[1])
        first.on_batch(1, 1, 1), second.on_batch(1, 1, 1)
        first.on_epoch(metrics(1))
        with pytest.raises(ClaimLost):
            second.on_epoch(metrics(1))  # the last to report writes both rows, and learns its claim is gone
        first.on_batch(2, 1, 1)
    assert [len(store.epochs_of(i)) for i in ids] == [1, 0]
    store.close()


def test_run_cell_is_a_unit_of_one(sqlite_url, tmp_path):
    store = Store(sqlite_url)
    spec = RunSpec(**{**BASE, "epochs": 1}, optimizer="adam")
    outcome = run_cell(spec, store, ExecOptions(device="cpu", checkpoint_dir=tmp_path / "ckpt"))
    assert outcome.status == "completed"
    assert "packed" not in store.get_run(spec.key).config["execution"]
    assert run_cell(spec, store).status == "skipped"
    store.close()
