"""Per-run summaries (schema 7) equal their epochs, whoever writes the epochs and however.

Reports read ``summaries`` instead of the epochs; the triggers on ``epochs`` keep each summary equal to what
``summaries.summary_select`` computes from the run's epochs. An adversary writes epochs the ways a store
sees them written: masbench's upserts, inserts, updates and deletes by hand (values no spec makes: NaN, inf,
NULL, out-of-range epochs, text on SQLite), a row moved to another run, a run deleted, many rows in one
statement; after each step every summary must equal a recomputation, and the report's numbers must equal
what Python computes from the epoch rows themselves.
"""

from __future__ import annotations

import math
import random
import sqlite3
import subprocess
import sys

import pytest
from sqlalchemy import text

from masbench.store import Store, open_for_reading, summaries
from masbench.store.checks import LEFT_OUT
from masbench.store.queries import run_accuracy_frame
from tests.report_fixtures import epoch_row, fill

COLUMNS = ", ".join(summaries.COLUMNS)


def _stale(store) -> list:
    with store.engine.connect() as connection:
        return connection.execute(summaries.stale_query()).all()


def _stored(store) -> dict:
    with store.engine.connect() as connection:
        return {row[0]: tuple(row[1:]) for row in connection.execute(text(f"SELECT {COLUMNS} FROM summaries"))}


def _fresh(store) -> dict:
    with store.engine.connect() as connection:
        return {row[0]: tuple(row[1:]) for row in connection.execute(summaries.summary_select())}


def _same(a: dict, b: dict) -> bool:
    def norm(v):
        return "nan" if isinstance(v, float) and math.isnan(v) else v

    return {k: tuple(map(norm, v)) for k, v in a.items()} == {k: tuple(map(norm, v)) for k, v in b.items()}


def _sql(store, statement: str, **params) -> None:
    with store.engine.begin() as connection:
        connection.execute(text(statement), params)


def _hand_edits(store, rng: random.Random, run_ids: list[int], sqlite: bool) -> list[tuple[str, dict]]:
    """A random sequence of hand edits of epochs (statement, parameters)."""
    values = [0.5, 0.0, 1.0, 2.0, -0.1, None, float("inf"), float("-inf"), 0.123456789]
    if not sqlite:
        values.append(float("nan"))  # SQLite stores NaN as NULL; PostgreSQL keeps it
    edits = []
    for _ in range(40):
        run, other = rng.choice(run_ids), rng.choice(run_ids)
        epoch = rng.choice([1, 2, 3, 4, 0, 9])
        column = rng.choice(["test_acc", "val_acc", "train_loss", "test_loss", "seconds", "epoch"])
        value = rng.choice(values) if column != "epoch" else rng.choice([1, 2, 3, 4, 0, 9, -1])
        kind = rng.choice(["update", "insert", "delete", "move", "update_all", "text"])
        if kind == "update":
            edits.append((f"UPDATE epochs SET {column} = :v WHERE run_id = :r AND epoch = :e",
                          dict(v=value, r=run, e=epoch)))
        elif kind == "insert":
            edits.append(("INSERT INTO epochs (run_id, epoch, train_loss, train_acc, test_loss, test_acc, lr, "
                          "seconds, samples_per_second, val_acc) SELECT :r, coalesce(max(epoch), 0) + 1, 1.0, 0.5, "
                          "1.0, :v, 0.01, 1.0, 10.0, :w FROM epochs WHERE run_id = :r",
                          dict(r=run, v=rng.choice([0.3, 0.99, None, 0.5]), w=rng.choice([0.4, 0.4, None]))))
        elif kind == "delete":
            edits.append(("DELETE FROM epochs WHERE run_id = :r AND epoch = :e", dict(r=run, e=epoch)))
        elif kind == "move":  # an epoch row given to another run: both runs' summaries change
            edits.append(("UPDATE epochs SET run_id = :o, epoch = epoch + 100 WHERE run_id = :r AND epoch = :e",
                          dict(o=other, r=run, e=epoch)))
        elif kind == "update_all":  # one statement over many runs' rows
            edits.append(("UPDATE epochs SET val_acc = test_acc WHERE epoch = :e", dict(e=epoch)))
        elif sqlite:  # text where a number belongs: SQLite keeps it as text, and max() ranks it above numbers
            edits.append(("UPDATE epochs SET test_acc = 'NaN' WHERE run_id = :r AND epoch = :e", dict(r=run, e=epoch)))
    return edits


def test_summaries_equal_their_epochs_after_every_hand_edit(db_url):
    store = Store(db_url)
    fill(store)
    run_ids = [int(i) for i in store.runs_frame()["id"]]
    assert _stale(store) == [] and _stored(store) and _same(_stored(store), _fresh(store))
    sqlite = db_url.startswith("sqlite")
    for seed in range(3):
        for statement, params in _hand_edits(store, random.Random(seed), run_ids, sqlite):
            try:
                _sql(store, statement, **params)
            except Exception as error:  # noqa: BLE001 - a hand edit the database refuses (a duplicate epoch)
                assert "unique" in str(error).lower() or "duplicate" in str(error).lower(), error
            assert _stale(store) == [], statement
        assert _same(_stored(store), _fresh(store))
    store.close()


def test_masbench_writes_keep_the_summaries_and_the_report_reads_what_the_epochs_give(db_url):
    """The report's best, final and val-selected numbers, per run, equal a computation in Python over the
    epoch rows, after masbench's own upserts of epochs (a repeated epoch replaces its row) and a reset."""
    store = Store(db_url)
    fill(store)
    run = int(store.runs_frame()["id"].iloc[0])
    with store.engine.begin() as connection:
        connection.execute(text("UPDATE runs SET worker = 'w', status = 'running' WHERE id = :r"), dict(r=run))
    store.record_epoch(run, "w", {**epoch_row(2, 0.97), "val_acc": 0.5, "val_loss": 1.0})  # replaces epoch 2
    store.record_epoch(run, "w", {**epoch_row(3, 0.10), "val_acc": 0.5, "val_loss": 1.0})  # replaces epoch 3
    assert _stale(store) == []
    frame = run_accuracy_frame(store).set_index("id")
    epochs = store.epochs_frame()
    for run_id, rows in epochs.groupby("run_id"):
        rows = rows.sort_values("epoch")
        assert frame.loc[run_id, "best"] == rows["test_acc"].max()
        assert frame.loc[run_id, "final"] == rows["test_acc"].iloc[-1]
        assert frame.loc[run_id, "last_epoch"] == rows["epoch"].max()
        if rows["val_acc"].notna().any():
            first = rows[rows["val_acc"] == rows["val_acc"].max()].iloc[0]
            assert (frame.loc[run_id, "val_epoch"], frame.loc[run_id, "val"]) == (first["epoch"], first["test_acc"])
    store.reset(run, "w")  # masbench's delete of a run's epochs (--force)
    assert _stale(store) == [] and run not in _stored(store)
    store.close()


def test_deleting_a_run_deletes_its_summary(db_url):
    store = Store(db_url)
    fill(store)
    run = int(store.runs_frame()["id"].iloc[0])
    assert run in _stored(store)
    _sql(store, "DELETE FROM runs WHERE id = :r", r=run)
    assert run not in _stored(store) and _stale(store) == []
    store.close()


def test_a_summary_edited_by_hand_is_found_by_check_and_rebuilt_by_repair(db_url, tmp_path):
    store = Store(db_url)
    fill(store)
    run = int(store.runs_frame()["id"].iloc[0])
    _sql(store, "UPDATE summaries SET best = 0.999 WHERE run_id = :r", r=run)
    store.close()
    check = [sys.executable, "-m", "masbench", "check", "--db", db_url]
    found = subprocess.run(check, capture_output=True, text=True, cwd=tmp_path)
    assert found.returncode == 1
    assert f"run {run} (" in found.stdout and "summaries.best differs from what the run's epochs give" in found.stdout
    repaired = subprocess.run([*check, "--repair"], capture_output=True, text=True, cwd=tmp_path)
    assert repaired.returncode == 0, repaired.stderr
    assert "rebuilt 15 per-run summaries from the epochs" in repaired.stderr  # fill(): 16 runs, one without epochs
    assert "no problems" in repaired.stdout
    store = Store(db_url)
    assert _stale(store) == []
    store.close()


@pytest.mark.parametrize("how", ["drop", "disable", "drop the table"])
def test_a_store_without_its_triggers_is_rebuilt_before_a_report_reads_it(db_url, how):
    """Epochs edited while a trigger was missing leave stale summaries: the next open that can write makes
    the triggers again and rebuilds every summary, so the report reads what the epochs give."""
    from sqlalchemy import create_engine

    if how == "disable" and db_url.startswith("sqlite"):
        pytest.skip("SQLite has no disabled triggers: only dropped ones")
    store = Store(db_url)
    fill(store)
    store.close()
    engine = create_engine(db_url)
    with engine.begin() as connection:
        if how == "drop":
            on = "" if db_url.startswith("sqlite") else " ON epochs"
            connection.execute(text(f"DROP TRIGGER summaries_after_update{on}"))
            connection.execute(text("UPDATE epochs SET test_acc = 0.999 WHERE epoch = 1"))
        elif how == "disable":
            connection.execute(text("ALTER TABLE epochs DISABLE TRIGGER summaries_after_update"))
            connection.execute(text("UPDATE epochs SET test_acc = 0.999 WHERE epoch = 1"))
        else:  # the triggers then fail on every write of an epoch: the edit is made before the drop
            connection.execute(text("UPDATE epochs SET test_acc = 0.999 WHERE epoch = 1"))
            connection.execute(text("DROP TABLE summaries"))
    engine.dispose()
    reader = open_for_reading(db_url)
    frame = run_accuracy_frame(reader)
    assert set(frame.loc[frame["last_epoch"].notna() & (frame["status"] != LEFT_OUT), "best"]) == {0.999}
    assert _stale(reader) == []
    reader.close()


def test_a_read_only_open_of_a_store_without_its_triggers_is_refused_in_one_line(tmp_path):
    """Where the store cannot be written (a read-only mount), nothing can rebuild its summaries: refused."""
    from masbench.store import NeedsUpgrade

    path = tmp_path / "store.db"
    store = Store(f"sqlite:///{path}")
    fill(store)
    store.close()
    connection = sqlite3.connect(path)
    connection.execute("DROP TRIGGER summaries_after_insert")
    connection.commit()
    connection.close()
    with pytest.raises(NeedsUpgrade) as refusal:
        Store(f"sqlite:///{path}", read_only=True)
    assert "\n" not in str(refusal.value)
    assert ("lacks what keeps its per-run summaries equal to its epochs (summaries_after_insert: dropped or "
            "disabled by hand?)") in str(refusal.value)


def test_many_rows_in_one_statement_give_each_run_its_summary(db_url):
    """One INSERT of many runs' rows (PostgreSQL's statement trigger sees them all at once)."""
    store = Store(db_url)
    fill(store)
    _sql(store, "INSERT INTO epochs (run_id, epoch, train_loss, train_acc, test_loss, test_acc, lr, seconds, "
                "samples_per_second) SELECT run_id, max(epoch) + 1, 1.0, 0.5, 1.0, 0.42, 0.01, 1.0, 10.0 FROM epochs "
                "GROUP BY run_id")
    assert _stale(store) == []
    assert {v[summaries.COLUMNS.index("final") - 1] for v in _stored(store).values()} == {0.42}
    store.close()


def _pg_only(db_url):
    if db_url.startswith("sqlite"):
        pytest.skip("PostgreSQL only")


def test_truncate_empties_the_summaries(db_url):
    """PostgreSQL's TRUNCATE fires no delete trigger: a trigger of its own empties the summaries."""
    _pg_only(db_url)
    store = Store(db_url)
    fill(store)
    _sql(store, "TRUNCATE epochs")
    assert _stored(store) == {} and _stale(store) == []
    assert set(run_accuracy_frame(store)["best"].dropna()) == set()
    store.close()


def test_a_trigger_enabled_for_replicas_only_counts_as_missing(db_url):
    """ENABLE REPLICA TRIGGER: it fires only under session_replication_role = replica, never for a hand edit."""
    _pg_only(db_url)
    store = Store(db_url)
    fill(store)
    _sql(store, "ALTER TABLE epochs ENABLE REPLICA TRIGGER summaries_after_update")
    _sql(store, "UPDATE epochs SET test_acc = 0.999 WHERE epoch = 1")
    store.close()
    reader = open_for_reading(db_url)  # rebuilt first
    assert _stale(reader) == [] and 0.999 in set(run_accuracy_frame(reader)["best"])
    reader.close()


def test_a_replica_session_is_refused_in_one_line(db_url):
    """session_replication_role = replica switches every trigger off: masbench's own epochs would get no summary."""
    from masbench.errors import MasbenchError

    _pg_only(db_url)
    Store(db_url).close()
    with pytest.raises(MasbenchError, match="session_replication_role = replica, which switches off the triggers"):
        Store(db_url + "?options=-csession_replication_role%3Dreplica")


def test_two_concurrent_edits_of_one_run_leave_its_summary_right(db_url):
    """Two transactions change one run's epochs at once (READ COMMITTED): the second recomputes the summary
    after the first commits, so it holds both edits."""
    import threading

    from sqlalchemy import create_engine

    _pg_only(db_url)
    store = Store(db_url)
    fill(store)
    run = int(store.runs_frame()["id"].iloc[0])
    engine = create_engine(db_url)
    first = engine.connect()
    first.execute(text("BEGIN"))
    first.execute(text("UPDATE epochs SET test_acc = 0.999 WHERE run_id = :r AND epoch = 1"), dict(r=run))

    def second():
        with engine.begin() as connection:
            connection.execute(text("UPDATE epochs SET test_acc = 0.5 WHERE run_id = :r AND epoch = 2"), dict(r=run))

    thread = threading.Thread(target=second)
    thread.start()
    thread.join(1.0)  # it waits for the first's lock on the run
    first.execute(text("COMMIT"))
    first.close()
    thread.join(30)
    assert not thread.is_alive()
    engine.dispose()
    assert _stale(store) == [] and _stored(store)[run][summaries.COLUMNS.index("best") - 1] == 0.999
    store.close()


def test_a_store_in_its_own_schema_keeps_its_summaries_under_another_search_path(db_url):
    """The trigger functions resolve names in the store's schema, not in the editing session's search_path."""
    from sqlalchemy import create_engine

    _pg_only(db_url)
    engine = create_engine(db_url)
    with engine.begin() as connection:
        connection.execute(text("CREATE SCHEMA mb"))
    own = db_url + "?options=-csearch_path%3Dmb"
    store = Store(own)
    fill(store)
    run = int(store.runs_frame()["id"].iloc[0])
    with engine.begin() as connection:  # search_path: public
        connection.execute(text("UPDATE mb.epochs SET test_acc = 0.999 WHERE run_id = :r AND epoch = 1"), dict(r=run))
    engine.dispose()
    assert _stale(store) == [] and _stored(store)[run][summaries.COLUMNS.index("best") - 1] == 0.999
    store.close()


def test_epoch_rows_of_a_missing_run_have_no_summary_and_repair_keeps_them_out(tmp_path):
    """Epochs of a run deleted with foreign keys off: named by check; a rebuild skips them (no foreign-key error)."""
    path = tmp_path / "store.db"
    store = Store(f"sqlite:///{path}")
    fill(store)
    run = int(store.runs_frame()["id"].iloc[-1])
    store.close()
    connection = sqlite3.connect(path)
    connection.execute("DELETE FROM runs WHERE id = ?", (run,))  # foreign keys are off in a plain connection
    connection.commit()
    connection.close()
    store = Store(f"sqlite:///{path}")
    assert store.rebuild_summaries() == 14 and run not in _stored(store)
    assert [p.line() for p in store.problems() if p.run_id == run] == [
        f"run {run} (not in runs): epochs.run_id = {run} is the run of 3 epoch row(s), and runs has no such run"]
    store.close()
