"""Per-run summaries of the epochs, kept by the database's own triggers (schema version 7).

A report needs, of each run's epochs, a handful of numbers: the best test accuracy, the last epoch and its
accuracy, the earliest epoch of the best validation accuracy and its test accuracy, and the counts that the
checks need (``checks.run_checks``). Computing them from a store of 10M epoch rows takes seconds; the table
``summaries`` holds them, one row per run with epochs, so that a report reads 50,000 rows instead.

A summary is never written by masbench's code. Triggers on ``epochs`` (after every insert, update and
delete) recompute the summary of each run whose epochs changed, with ``summary_select``: the one
definition, which also builds every summary when a store is upgraded, and which ``masbench check`` compares
them with. So a summary equals its epochs whoever wrote them (masbench, or ``sqlite3`` and ``psql`` by hand),
in the same transaction. What triggers cannot see is a hand edit of ``summaries`` itself, or an edit made
with triggers disabled: ``masbench check`` finds those (``stale_query``), and ``check --repair`` rebuilds
every summary from the epochs (``rebuild``).

On SQLite the triggers run per row (each recomputes its run from its at most a few hundred epochs through
the run's index); on PostgreSQL per statement, with transition tables, so that one ``COPY`` of many rows
recomputes each run once. Opening a store checks that its triggers are there and enabled
(``missing_triggers``): a store without them is repaired by any writable open, as an upgrade.

The triggers hold ``summary_select``'s SQL as it was when they were made: a change to it needs a new schema
version, whose upgrade makes them again (``rebuild``).
"""

from __future__ import annotations

from sqlalchemy import Select, case, func, literal_column, or_, select, text
from sqlalchemy.engine import Connection

from masbench.store.checks import NO_VALUE, Problem, loss_problem, row_problem
from masbench.store.models import Epoch, Run, Summary

COLUMNS = tuple(column.name for column in Summary.__table__.columns)  # run_id first, in the table's order
TRIGGERS = ("summaries_after_insert", "summaries_after_update", "summaries_after_delete")
TRUNCATE = "summaries_after_truncate"  # PostgreSQL's TRUNCATE fires no delete trigger (SQLite has none)
# Per trigger: the runs whose epochs changed, as SQLite (row triggers) and PostgreSQL (transition tables) name them.
_CHANGED = {
    "sqlite": {"insert": "NEW.run_id", "update": "OLD.run_id, NEW.run_id", "delete": "OLD.run_id"},
    "postgresql": {"insert": "SELECT run_id FROM new_rows", "delete": "SELECT run_id FROM old_rows",
                   "update": "SELECT run_id FROM old_rows UNION SELECT run_id FROM new_rows"},
}
_TRANSITION = {"insert": "NEW TABLE AS new_rows", "update": "OLD TABLE AS old_rows NEW TABLE AS new_rows",
               "delete": "OLD TABLE AS old_rows"}


def summary_select(runs=None) -> Select:
    """The summary of each run with epochs (of the runs where the condition ``runs`` on ``epochs`` holds, when
    given), as ``COLUMNS``: one scan of their epochs grouped by run, then per run one index look-up of its last
    epoch's test accuracy and one of its best validation epoch (``ix_epochs_run_id_val_acc``)."""
    epochs = Epoch.__table__
    e = epochs.c
    aggregates = select(
        e.run_id, func.count().label("epoch_count"), func.min(e.epoch).label("first_epoch"),
        func.max(e.epoch).label("last_epoch"), func.max(e.test_acc).label("best"),
        func.count(e.test_acc).label("acc_epochs"), func.max(e.val_acc).label("best_val"),
        func.count(e.val_acc).label("val_epochs"),
        func.sum(case((row_problem(epochs), 1), else_=0)).label("bad_rows"),
        func.sum(case((loss_problem(epochs), 1), else_=0)).label("bad_losses"))
    # Rows of a run that runs lacks (deleted by hand with foreign keys off) have no summary: check names them.
    aggregates = aggregates.where(select(Run.id).where(Run.id == e.run_id).exists())
    if runs is not None:
        aggregates = aggregates.where(runs)
    per_run = aggregates.group_by(e.run_id).subquery("per_run")
    final = select(e.test_acc).where(e.run_id == per_run.c.run_id, e.epoch == per_run.c.last_epoch).scalar_subquery()

    def at_best_val(column):
        # The earliest epoch whose validation accuracy is the run's best (max returns one of the stored values):
        # the first entry of ix_epochs_run_id_val_acc at (run_id, best_val), which holds that epoch and its test
        # accuracy.
        return (select(column).where(e.run_id == per_run.c.run_id, e.val_acc == per_run.c.best_val)
                .order_by(e.epoch).limit(1).scalar_subquery())

    return select(*(per_run.c[name] for name in COLUMNS[:10]), final.label("final"),
                  at_best_val(e.epoch).label("val_epoch"), at_best_val(e.test_acc).label("val"))


def _sql(statement, dialect) -> str:
    return str(statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


def _recompute(dialect, changed: str) -> list[str]:
    """The statements that make the summaries of the runs ``changed`` (SQL naming run ids) equal their epochs."""
    select_ = _sql(summary_select(Epoch.__table__.c.run_id.op("IN")(literal_column(f"({changed})"))), dialect)
    names = ", ".join(COLUMNS)
    if dialect.name == "postgresql":
        # The runs' rows locked first, in id order: two transactions that change one run's epochs recompute it
        # one after the other, the second from a snapshot taken after the first committed (READ COMMITTED
        # takes one per statement). An upsert, not delete-and-insert: they never collide on its key.
        updates = ", ".join(f"{name} = EXCLUDED.{name}" for name in COLUMNS[1:])
        return [f"PERFORM 1 FROM runs WHERE id IN ({changed}) ORDER BY id FOR UPDATE",
                f"INSERT INTO summaries ({names}) {select_} ON CONFLICT (run_id) DO UPDATE SET {updates}",
                f"DELETE FROM summaries WHERE run_id IN ({changed}) "
                f"AND NOT EXISTS (SELECT 1 FROM epochs WHERE epochs.run_id = summaries.run_id)"]
    return [f"DELETE FROM summaries WHERE run_id IN ({changed})", f"INSERT INTO summaries ({names}) {select_}"]


def trigger_ddl(dialect) -> list[str]:
    """The statements that (re)create the triggers that keep ``summaries`` equal to ``epochs``."""
    out = []
    for event, trigger in zip(("insert", "update", "delete"), TRIGGERS):
        body = _recompute(dialect, _CHANGED["postgresql" if dialect.name == "postgresql" else "sqlite"][event])
        if dialect.name == "postgresql":
            function = f"masbench_{trigger}"
            # search_path FROM CURRENT: the store's schema, whatever the session that edits its epochs uses.
            out += [f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql "
                    f"SET search_path FROM CURRENT AS $$\nBEGIN\n"
                    + "".join(f"  {statement};\n" for statement in body) + "  RETURN NULL;\nEND\n$$",
                    f"DROP TRIGGER IF EXISTS {trigger} ON epochs",
                    f"CREATE TRIGGER {trigger} AFTER {event.upper()} ON epochs REFERENCING {_TRANSITION[event]} "
                    f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()"]
        else:
            out += [f"DROP TRIGGER IF EXISTS {trigger}",
                    f"CREATE TRIGGER {trigger} AFTER {event.upper()} ON epochs FOR EACH ROW BEGIN\n"
                    + "".join(f"  {statement};\n" for statement in body) + "END"]
    if dialect.name == "postgresql":
        out += [f"CREATE OR REPLACE FUNCTION masbench_{TRUNCATE}() RETURNS trigger LANGUAGE plpgsql "
                f"SET search_path FROM CURRENT AS $$\nBEGIN\n  DELETE FROM summaries;\n  RETURN NULL;\nEND\n$$",
                f"DROP TRIGGER IF EXISTS {TRUNCATE} ON epochs",
                f"CREATE TRIGGER {TRUNCATE} AFTER TRUNCATE ON epochs FOR EACH STATEMENT "
                f"EXECUTE FUNCTION masbench_{TRUNCATE}()"]
    return out


def triggers(dialect_name: str) -> tuple[str, ...]:
    """The triggers a store on ``dialect_name`` has."""
    return (*TRIGGERS, TRUNCATE) if dialect_name == "postgresql" else TRIGGERS


def missing_triggers(connection: Connection) -> list[str]:
    """The triggers of ``TRIGGERS`` that the store lacks, or that are disabled (PostgreSQL), and ``summaries``
    first where the table itself is gone (dropped by hand: every epoch written would fail in its triggers)."""
    from sqlalchemy import inspect

    names = triggers(connection.dialect.name)
    if "summaries" not in inspect(connection).get_table_names():
        return ["summaries", *names]
    if connection.dialect.name == "postgresql":
        # Enabled: 'O' (fires in origin sessions, the default) or 'A' (always); 'R' fires only under
        # session_replication_role = replica, 'D' never.
        query = ("SELECT tgname FROM pg_trigger WHERE tgrelid = to_regclass('epochs') AND NOT tgisinternal "
                 "AND tgenabled IN ('O', 'A')")
    elif connection.dialect.name == "sqlite":
        query = "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'epochs'"
    else:
        return []  # other databases are not masbench's stores
    found = set(connection.execute(text(query)).scalars())
    return [name for name in names if name not in found]


def rebuild(connection: Connection) -> int:
    """(Re)create the triggers and every summary from the epochs, in the caller's transaction: the upgrade to
    version 7 and ``check --repair``. The number of summaries written."""
    for statement in trigger_ddl(connection.dialect):
        connection.execute(text(statement))
    connection.execute(text("DELETE FROM summaries"))
    names = ", ".join(COLUMNS)
    return connection.execute(text(f"INSERT INTO summaries ({names}) "
                                   f"{_sql(summary_select(), connection.dialect)}")).rowcount


def stale_query() -> Select:
    """The ids of the runs whose stored summary is not what their epochs give (edited by hand, or written with
    the triggers off), with the first column that differs: a summary missing for a run with epochs, one left
    for a run without, or any value (NaN equals NaN, as stored)."""
    fresh = summary_select().subquery("fresh")
    stored = Summary.__table__
    differ = [case(*((fresh.c[name].is_distinct_from(stored.c[name]), literal_column(f"'{name}'"))
                     for name in COLUMNS[1:]), else_=None)]
    changed = (select(fresh.c.run_id, differ[0].label("column"))
               .outerjoin(stored, stored.c.run_id == fresh.c.run_id)
               .where(or_(stored.c.run_id.is_(None),
                          *(fresh.c[name].is_distinct_from(stored.c[name]) for name in COLUMNS[1:]))))
    left = (select(stored.c.run_id, literal_column("'run_id'").label("column"))
            .where(~select(Epoch.run_id).where(Epoch.run_id == stored.c.run_id).exists()))
    return changed.union_all(left)


def stale(connection: Connection) -> list[Problem]:
    """A problem for each run whose summary is stale (``stale_query``): the report would read it as it is."""
    found = stale_query().subquery("stale")
    rows = connection.execute(select(found.c.run_id, found.c.column, Run.name, Run.seed)
                              .outerjoin(Run, Run.id == found.c.run_id).order_by(found.c.run_id)).all()
    fix = "masbench check --repair rebuilds every summary from the epochs"
    out = []
    for row in rows:
        if row.column == "run_id":
            what = f"is a summary of a run without epochs (edited by hand?): {fix}"
        else:
            what = f"differs from what the run's epochs give (edited by hand, or written with triggers off): {fix}"
        out.append(Problem(row.run_id, row.name, row.seed, f"summaries.{row.column}", NO_VALUE, what))
    return out


def check_session(connection: Connection, masked_url: str) -> None:
    """Refuse a PostgreSQL session whose ``session_replication_role`` is ``replica`` (set by the URL's options
    or the database's defaults): no trigger fires there, so the epochs masbench wrote would have no summary."""
    from masbench.errors import MasbenchError

    if connection.dialect.name != "postgresql":
        return
    role = connection.execute(text("SELECT current_setting('session_replication_role')")).scalar()
    if role == "replica":
        raise MasbenchError(f"database {masked_url}: its sessions have session_replication_role = replica, "
                            f"which switches off the triggers that keep the per-run summaries; unset it (in the "
                            f"URL's options or ALTER DATABASE ... RESET session_replication_role)")
