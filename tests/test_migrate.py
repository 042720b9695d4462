"""Stores written by masbench 0.1 (schema version 1) upgrade in place and keep their numbers.

``fixtures/store_v1.sqlite`` was written by the 0.1 release itself: ``masbench sweep --benchmark quick``
with ``--epochs 2`` and then ``--epochs 3`` into one store, the case in which 0.1's report pooled two
cells per row. The PostgreSQL variant rebuilds the same version-1 schema and rows there.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import Column, ForeignKey, MetaData, Table, create_engine, select

from masbench.spec import RunSpec
from masbench.store import Store
from masbench.store.migrate import ADDED_IN, INDEXES_ADDED_IN, TABLES_ADDED_IN
from masbench.store.models import SCHEMA_VERSION, Base

FIXTURE = Path(__file__).parent / "fixtures" / "store_v1.sqlite"
LATER_TABLES = {name for names in TABLES_ADDED_IN.values() for name in names}
AFTER_V1 = {column for tables in ADDED_IN.values() for columns in tables.values() for column in columns}


def _v1_metadata() -> MetaData:
    """Today's tables without what versions 2 and later added: the schema of masbench 0.1."""
    metadata = MetaData()
    for table in Base.metadata.sorted_tables:
        if table.name in LATER_TABLES:
            continue
        columns = [Column(c.name, c.type, *[ForeignKey(fk.target_fullname, ondelete=fk.ondelete) for fk in c.foreign_keys], primary_key=c.primary_key,
                          nullable=c.nullable) for c in table.columns if c.name not in AFTER_V1]
        Table(table.name, metadata, *columns)
    return metadata


def _fixture_rows() -> dict[str, list[dict]]:
    source = create_engine(f"sqlite:///{FIXTURE}")
    metadata = _v1_metadata()
    with source.connect() as connection:
        rows = {t.name: [dict(r._mapping) for r in connection.execute(select(t))] for t in metadata.sorted_tables}
    source.dispose()
    return rows


def _write_v1_store(url: str) -> dict[str, list[dict]]:
    rows = _fixture_rows()
    metadata = _v1_metadata()
    engine = create_engine(url)
    metadata.create_all(engine)
    with engine.begin() as connection:
        for table in metadata.sorted_tables:
            if rows[table.name]:
                connection.execute(table.insert(), rows[table.name])
    engine.dispose()
    return rows


def _check_upgraded(store: Store, v1_rows: dict[str, list[dict]]) -> None:
    runs = store.runs_frame()
    assert len(runs) == len(v1_rows["runs"]) == 28
    # Each run's config key is what today's RunSpec computes for the same spec.
    for _, run in runs.iterrows():
        spec = RunSpec(**run["config"]["spec"])
        assert spec.key == run["key"]
        assert run["config_key"] == spec.config_key
    # 14 cells (7 optimizer settings x epochs 2 and 3), two seeds each: nothing pooled.
    sizes = runs.groupby("config_key")["seed"].agg(lambda s: tuple(sorted(s)))
    assert len(sizes) == 14 and set(sizes) == {(0, 1)}
    assert runs.groupby("config_key")["epochs"].nunique().eq(1).all()
    # The epochs are untouched.
    epochs = store.epochs_frame()
    assert len(epochs) == len(v1_rows["epochs"])
    before = {(r["run_id"], r["epoch"]): r["test_acc"] for r in v1_rows["epochs"]}
    after = {(r.run_id, r.epoch): r.test_acc for r in epochs.itertuples()}
    assert after == before
    assert len(store.store_id) == 36


def test_the_0_1_release_store_file_upgrades_in_place(tmp_path):
    path = tmp_path / "old.db"
    shutil.copy(FIXTURE, path)
    with sqlite3.connect(path) as connection:
        assert connection.execute("select value from meta where key='schema_version'").fetchone() == ("1",)
    v1_rows = _fixture_rows()
    store = Store(f"sqlite:///{path}")
    _check_upgraded(store, v1_rows)
    store_id = store.store_id
    store.close()
    with sqlite3.connect(path) as connection:
        assert connection.execute("select value from meta where key='schema_version'").fetchone() == (str(SCHEMA_VERSION),)
    # Opening it again changes nothing: same identity, same rows.
    again = Store(f"sqlite:///{path}")
    assert again.store_id == store_id
    _check_upgraded(again, v1_rows)


def test_a_version_1_store_upgrades_on_both_databases(db_url):
    v1_rows = _write_v1_store(db_url)
    store = Store(db_url)
    _check_upgraded(store, v1_rows)
    store.close()


def test_a_read_only_open_upgrades_an_old_store_too(tmp_path):
    path = tmp_path / "old.db"
    shutil.copy(FIXTURE, path)
    store = Store(f"sqlite:///{path}", writable=False, create=False)
    assert store.runs_frame()["config_key"].notna().all()


def test_a_version_2_store_gains_the_version_3_columns_and_keeps_its_rows(db_url):
    """A store of version 2 (masbench before mixes and validation splits): its runs and epochs stay as they
    were, the new columns are NULL, and it records today's version."""
    v1_rows = _write_v1_store(db_url)
    Store(db_url).close()  # to version 3 ...
    engine = create_engine(db_url)
    with engine.begin() as connection:  # ... and back to what version 2 was
        _drop_later_indexes(connection, 2)
        for table, columns in ADDED_IN[3].items():
            for column in columns:
                connection.exec_driver_sql(f"ALTER TABLE {table} DROP COLUMN {column}")
        connection.exec_driver_sql("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    engine.dispose()
    store = Store(db_url)
    _check_upgraded(store, v1_rows)
    assert store.runs_frame()["weights"].isna().all()
    assert store.epochs_frame()[["val_loss", "val_acc"]].isna().all().all()
    store.close()
    engine = create_engine(db_url)
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT value FROM meta WHERE key = 'schema_version'").scalar() == str(
            SCHEMA_VERSION)
    engine.dispose()


def test_a_version_3_store_gains_the_tune_tables_and_keeps_its_runs(db_url):
    """A store of version 3 (before ``masbench tune``) has no tunes or trials tables: a version-3 masbench
    refuses nothing, and this one creates them, empty, keeps every run and epoch, and records today's version."""
    v1_rows = _write_v1_store(db_url)
    Store(db_url).close()
    engine = create_engine(db_url)
    with engine.begin() as connection:  # back to what version 3 was
        for name in reversed(TABLES_ADDED_IN[4]):
            connection.exec_driver_sql(f"DROP TABLE {name}")
        connection.exec_driver_sql("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    engine.dispose()
    store = Store(db_url)
    _check_upgraded(store, v1_rows)
    assert store.tunes_frame().empty and store.trials_frame().empty
    tune = store.ensure_tune("k" * 64, "quick", {"budget": 2})
    store.record_trials(tune, [dict(optimizer="sgd", phase="search", number=0, params={"lr": 0.1}, run_key="r")])
    assert store.trials_frame(tune)["params"].tolist() == [{"lr": 0.1}]
    store.close()
    engine = create_engine(db_url)
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT value FROM meta WHERE key = 'schema_version'").scalar() == str(SCHEMA_VERSION)
    engine.dispose()


def _store_of_version(db_url: str, version: int) -> dict[str, list[dict]]:
    """A store of today's tables with rows, its indexes and version set back to ``version`` (4 or later)."""
    v1_rows = _write_v1_store(db_url)
    Store(db_url).close()
    engine = create_engine(db_url)
    with engine.begin() as connection:
        _drop_later_indexes(connection, version)
        connection.exec_driver_sql(f"UPDATE meta SET value = '{version}' WHERE key = 'schema_version'")
    engine.dispose()
    return v1_rows


def _drop_later_indexes(connection, version: int) -> None:
    """Drop the indexes, triggers and summaries added after ``version`` (a column an index or a trigger names
    cannot be dropped before it)."""
    from masbench.store.summaries import triggers

    for added, tables in INDEXES_ADDED_IN.items():
        if added > version:
            for names in tables.values():
                for name in names:
                    connection.exec_driver_sql(f"DROP INDEX {name}")
    if version < 7:
        on = " ON epochs" if connection.dialect.name == "postgresql" else ""
        for trigger in triggers(connection.dialect.name):
            connection.exec_driver_sql(f"DROP TRIGGER {trigger}{on}")
        connection.exec_driver_sql("DROP TABLE summaries")


def _indexes(url: str, table: str) -> set[str]:
    from sqlalchemy import inspect

    engine = create_engine(url)
    try:
        return {index["name"] for index in inspect(engine).get_indexes(table)}
    finally:
        engine.dispose()


def test_a_version_4_store_gains_the_report_index_and_keeps_its_rows(db_url):
    """A store of version 4 (before the report's covering index): its runs and epochs stay as they were,
    it gains ``ix_epochs_run_id_val_acc`` and records today's version."""
    v1_rows = _store_of_version(db_url, 4)
    assert "ix_epochs_run_id_val_acc" not in _indexes(db_url, "epochs")
    store = Store(db_url)
    _check_upgraded(store, v1_rows)
    store.close()
    assert "ix_epochs_run_id_val_acc" in _indexes(db_url, "epochs")
    engine = create_engine(db_url)
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT value FROM meta WHERE key = 'schema_version'").scalar() == str(
            SCHEMA_VERSION)
    engine.dispose()


def test_a_version_6_store_gains_summaries_equal_to_its_epochs_and_triggers_that_keep_them(db_url):
    """A store of version 6 (before ``summaries``): it gains one summary per run with epochs, equal to what its
    epochs give, the triggers that keep them, and loses version 6's partial index; its runs and epochs stay as
    they were. An epoch written afterwards, by hand, changes its run's summary."""
    from masbench.store import summaries

    v1_rows = _store_of_version(db_url, 6)
    engine = create_engine(db_url)
    with engine.begin() as connection:  # version 6's partial index, as it was made
        connection.exec_driver_sql("CREATE INDEX ix_epochs_problem ON epochs (run_id) WHERE test_acc > 1")
    store = Store(db_url)
    _check_upgraded(store, v1_rows)
    assert "ix_epochs_problem" not in _indexes(db_url, "epochs")
    with store.engine.connect() as connection:
        assert summaries.missing_triggers(connection) == []
        assert connection.execute(summaries.stale_query()).all() == []
        count = connection.exec_driver_sql("SELECT count(*) FROM summaries").scalar()
        assert count == len({row["run_id"] for row in v1_rows["epochs"]}) > 0
    with store.engine.begin() as connection:
        connection.exec_driver_sql("UPDATE epochs SET test_acc = 0.999 WHERE epoch = 1")
    with store.engine.connect() as connection:
        assert connection.execute(summaries.stale_query()).all() == []
        assert set(connection.exec_driver_sql("SELECT best FROM summaries").scalars()) == {0.999}
    store.close()
    engine.dispose()


def test_two_stores_have_different_identities(tmp_path):
    a, b = Store(f"sqlite:///{tmp_path / 'a.db'}"), Store(f"sqlite:///{tmp_path / 'b.db'}")
    assert a.store_id != b.store_id


@pytest.mark.parametrize("version", [str(SCHEMA_VERSION + 1), "99"])
def test_a_newer_schema_is_refused(tmp_path, version):
    from masbench.errors import MasbenchError

    path = tmp_path / "new.db"
    Store(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as connection:
        connection.execute("update meta set value=? where key='schema_version'", (version,))
    with pytest.raises(MasbenchError, match=f"schema version {version}, newer"):
        Store(f"sqlite:///{path}")


def test_config_key_ignores_the_seed_and_nothing_else():
    a = RunSpec(dataset="digits", model="mlp", epochs=2, seed=0)
    assert a.config_key == RunSpec(dataset="digits", model="mlp", epochs=2, seed=7).config_key
    assert a.key != RunSpec(dataset="digits", model="mlp", epochs=2, seed=7).key
    for other in (dict(epochs=3), dict(batch_size=64), dict(train_subset=100), dict(lambda_adam=0.3)):
        assert RunSpec(dataset="digits", model="mlp", **{"epochs": 2, **other}).config_key != a.config_key


# The migration's frozen copy of the cell key (masbench.store.migrate.v1_config_key) and today's live key.
TODAYS_SPECS = [
    dict(),
    dict(optimizer="adam", lr=0.003, seed=4),
    dict(optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4),
    dict(optimizer="adamw", dataset="cola", model="bert", lr=2e-4, batch_size=100, epochs=50),
    dict(lambda_adam=0.3, lambda_sgd=0.7, momentum=0.95, dataset="cifar100", model="resnet18", seed=3),
    dict(lambda_schedule="linear:0.7:0.3", lr_schedule="cosine", epochs=20),
    dict(optimizer="mix:adam=0.3,sgd=0.5,rmsprop=0.2"),
    dict(optimizer="radam", optimizer_args={"decoupled_weight_decay": True}),
    dict(dataset="digits", model="mlp", val_fraction=0.1),
]


@pytest.mark.parametrize("values", TODAYS_SPECS, ids=lambda values: ",".join(values) or "defaults")
def test_the_migrations_frozen_key_equals_todays_config_key(values):
    from masbench.spec import make_spec
    from masbench.store.migrate import v1_config_key

    spec = make_spec(**values)
    assert v1_config_key(spec.canonical()) == spec.config_key
    assert v1_config_key({**spec.canonical(), "seed": 999}) == spec.config_key  # the seed is not the cell


def test_the_migrations_frozen_key_is_pinned():
    """Literal keys: the frozen copy fails here if it is changed, even together with the live key."""
    from masbench.spec import make_spec
    from masbench.store.migrate import v1_config_key

    assert v1_config_key({"b": [1, 2.5], "a": "x", "seed": 0}) == "66efddae6a97500318e4"
    assert v1_config_key(make_spec().canonical()) == "e407807699fb010df430"  # the default cell (test_open_axes)
