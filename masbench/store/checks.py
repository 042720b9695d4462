"""The store's checks: what a row must hold to count in a report, as SQL conditions (SQLite and PostgreSQL).

A report reads rows that anyone may have edited by hand, or that a crash or a disk may have corrupted. Each
check is a condition that is true where a row *fails*:

- an accuracy (``train_acc``, ``test_acc``, ``val_acc``) is a real number in [0, 1]: not NaN, not text;
- a loss (``train_loss``, ``test_loss``, ``val_loss``) is finite, unless its run is marked ``diverged``;
- ``seconds``, ``samples_per_second`` and ``lr`` are finite numbers >= 0;
- an epoch is an integer within 1..its run's ``epochs`` (and ``runs.epochs`` >= 1); ``runs.seed`` is an integer;
- a run's ``status`` is one of ``models.STATUSES``;
- a completed run has every epoch from 1 to its last (at least one), each with a test accuracy;
- ``config`` is a JSON object; ``versions`` and ``weights`` are one or NULL;
- the keys and names (``key``, ``config_key``, ``name``, ``dataset``, ``model``, ``optimizer``) are not blank.

The conditions are portable: ``NOT (x BETWEEN 0 AND 1)`` is true for NaN on PostgreSQL (NaN sorts above
every number) and for text on SQLite (text sorts above every number; a REAL column keeps ``'NaN'`` as
text), and NULL (an accuracy not measured, SQLite's stored NaN) passes. Only JSON needs a dialect switch
(``json_valid`` on SQLite; PostgreSQL's ``json`` type refuses malformed JSON when it is written).

Reports flag a run by the counts its summary holds (``summaries``: kept by triggers, it counts the epoch rows
that fail ``row_problem`` or ``loss_problem``); ``run_problem`` tells, per run, whether it fails any check;
``problems`` then reads, for the few runs flagged, which rows and values fail and why.

>>> from masbench.store import open_for_reading
>>> [p.line() for p in problems(open_for_reading("sqlite:///masbench.db"))]  # doctest: +SKIP
["run 17 (adam[lr=0.01] seed 2): epochs.test_acc = 2.0 at epoch 2 is not a number in [0, 1]"]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (Boolean, Integer, Text, case, cast, func, literal, literal_column, or_,
                        select, type_coerce)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement, FunctionElement

from masbench.store.models import STATUSES, Epoch, Run
from masbench.text.shown import shown

ACCURACIES = ("train_acc", "test_acc", "val_acc")
LOSSES = ("train_loss", "test_loss", "val_loss")
AT_LEAST_0 = ("seconds", "samples_per_second", "lr")  # finite numbers >= 0
KEYS = ("key", "config_key", "name", "dataset", "model", "optimizer")
LARGEST = 1.7976931348623157e308  # the largest finite double: BETWEEN -LARGEST AND LARGEST is "finite"
LEFT_OUT = "left out"  # the status a report gives a run that fails a check: never a seed, counted apart
CHUNK = 500  # run ids per IN (...) list


class JsonObject(FunctionElement):
    """True where a JSON column holds an object (``nullable``: or NULL, SQL's or JSON's), false where it holds
    anything else, malformed JSON included."""

    type = Boolean()
    inherit_cache = True
    name = "json_object"

    def __init__(self, column, nullable: bool = False):
        super().__init__(column)
        self.nullable = nullable


def _json_object_parts(element, compiler, **kw) -> tuple[str, str, str]:
    """The column's SQL, the JSON types it may hold, and the NULL test that comes first when it may be NULL."""
    x = compiler.process(element.clauses, **kw)
    kinds = "('object', 'null')" if element.nullable else "('object')"
    return x, kinds, f"({x}) IS NULL OR " if element.nullable else ""


@compiles(JsonObject, "sqlite")
def _json_object_sqlite(element, compiler, **kw):
    x, kinds, null = _json_object_parts(element, compiler, **kw)
    # json_type raises on malformed JSON: CASE evaluates it only once json_valid has said yes.
    return f"({null}(CASE WHEN json_valid({x}) THEN json_type({x}) IN {kinds} ELSE 0 END))"


@compiles(JsonObject, "postgresql")
def _json_object_postgresql(element, compiler, **kw):
    x, kinds, null = _json_object_parts(element, compiler, **kw)
    return f"({null}json_typeof(({x})::json) IN {kinds})"


@compiles(JsonObject)
def _json_object_other(element, compiler, **kw):
    return "(1 = 1)"  # other databases are not masbench's stores; their JSON columns are typed


class ReadableJson(FunctionElement):
    """A JSON column as a report reads it: NULL where SQLite holds malformed JSON (that would raise when read)."""

    inherit_cache = True
    name = "readable_json"

    def __init__(self, column):
        super().__init__(column)
        self.type = column.type


@compiles(ReadableJson, "sqlite")
def _readable_sqlite(element, compiler, **kw):
    x = compiler.process(element.clauses, **kw)
    return f"(CASE WHEN json_valid({x}) THEN {x} END)"


@compiles(ReadableJson)
def _readable_other(element, compiler, **kw):
    return compiler.process(element.clauses, **kw)


def readable_json(column) -> ColumnElement:
    """``column`` (a JSON column), NULL where it does not parse, labelled with its name."""
    return ReadableJson(column).label(column.key)


class CanonicalText(FunctionElement):
    """A run's canonical config without its seed, as JSON text (``config``'s ``canonical`` object): NULL where
    ``config`` does not parse, is not an object, or holds no object there. A cell's runs share this text, so
    a report parses it once per cell, not once per run (``queries.run_accuracy_frame``)."""

    type = Text()
    inherit_cache = True
    name = "canonical_text"


@compiles(CanonicalText, "sqlite")
def _canonical_sqlite(element, compiler, **kw):
    x = compiler.process(element.clauses, **kw)
    # json_type raises on malformed JSON: CASE asks json_valid first.
    return (f"(CASE WHEN json_valid({x}) AND json_type({x}) = 'object' AND json_type({x}, '$.canonical') = 'object' "
            f"THEN json_remove(json_extract({x}, '$.canonical'), '$.seed') END)")


@compiles(CanonicalText, "postgresql")
def _canonical_postgresql(element, compiler, **kw):
    x = compiler.process(element.clauses, **kw)
    return (f"(CASE WHEN json_typeof(({x})::json) = 'object' AND json_typeof(({x})::json -> 'canonical') = 'object' "
            f"THEN ((({x})::json -> 'canonical')::jsonb - 'seed')::text END)")


@compiles(CanonicalText)
def _canonical_other(element, compiler, **kw):
    return "NULL"  # other databases are not masbench's stores (this serves str() of a query)


def canonical_text(column) -> ColumnElement:
    """``CanonicalText`` of the JSON column ``column`` (``runs.config``), labelled ``canonical``."""
    return CanonicalText(column).label("canonical")


# --- the rules, one function each: used row by row (``problems``) and in the per-run scan -------------------

# Constants are written into the SQL, not bound: the triggers that keep ``summaries`` hold them as text.
_ZERO, _ONE = literal_column("0"), literal_column("1")
_LARGEST, _LOWEST = literal_column(repr(LARGEST)), literal_column(repr(-LARGEST))


def not_accuracy(x) -> ColumnElement:
    return ~x.between(_ZERO, _ONE)


def not_finite(x) -> ColumnElement:
    return ~x.between(_LOWEST, _LARGEST)


def not_seconds(x) -> ColumnElement:
    return ~x.between(_ZERO, _LARGEST)


def not_integer(x) -> ColumnElement:
    return x != cast(x, Integer)  # 2.5 or text on SQLite (its columns take any value); never on PostgreSQL


def blank(x) -> ColumnElement:
    return func.trim(x) == ""


def row_problem(epochs=Epoch.__table__) -> ColumnElement:
    """True where an epoch row fails a check that needs no other row: an accuracy, ``seconds``,
    ``samples_per_second`` and ``lr`` (finite numbers >= 0), an integer epoch."""
    return or_(*(not_accuracy(epochs.c[c]) for c in ACCURACIES), *(not_seconds(epochs.c[c]) for c in AT_LEAST_0),
               not_integer(epochs.c.epoch))


def loss_problem(epochs=Epoch.__table__) -> ColumnElement:
    """True where an epoch row has a non-finite loss (a problem unless its run is marked diverged)."""
    return or_(*(not_finite(epochs.c[c]) for c in LOSSES))


def _completed() -> ColumnElement:
    return Run.status == "completed"


def run_checks(per_run) -> list[Check]:
    """The checks of a run's own row and of its epochs as a whole (``per_run``: the table ``summaries``, or
    ``summaries.summary_select``'s rows, outer-joined to ``runs``)."""
    count = func.coalesce(per_run.c.epoch_count, 0)
    checks = [
        Check("runs.epochs", Run.epochs, Run.epochs < 1, "is below 1"),
        Check("runs.seed", Run.seed, not_integer(Run.seed), "is not an integer"),
        Check("runs.epochs", Run.epochs, not_integer(Run.epochs), "is not an integer"),
        *(Check(f"runs.{c}", Run.__table__.c[c], not_finite(Run.__table__.c[c]), "is not a finite number")
          for c in ("lambda_adam", "lambda_sgd", "lr")),
        Check("runs.status", Run.status, Run.status.not_in(STATUSES), f"is not a status (valid: {', '.join(STATUSES)})"),
        # Every epoch from 1 to its last (at least one): rows are unique per epoch, the first is >= 1 (checked
        # with the epoch rows), so as many rows as the last epoch's number means none is missing.
        Check("runs.status", Run.status, _completed() & ((count == 0) | (count != per_run.c.last_epoch)),
              "but the run has {epoch_count} epoch row(s), not every epoch from 1 to its last ({last})"),
        Check("epochs.test_acc", None, _completed() & (func.coalesce(per_run.c.acc_epochs, 0) != count),
              "is NULL in {missing} epoch(s) of the completed run"),
        Check("runs.config", type_coerce(Run.config, Text), ~JsonObject(Run.config), "is not a JSON object"),
        *(Check(f"runs.{c}", type_coerce(Run.__table__.c[c], Text), ~JsonObject(Run.__table__.c[c], nullable=True),
                "is neither a JSON object nor null") for c in ("versions", "weights")),
        *(Check(f"runs.{c}", Run.__table__.c[c], blank(Run.__table__.c[c]), "is blank") for c in KEYS),
    ]
    return checks


def run_problem(per_run) -> ColumnElement:
    """1 where a run fails any check (its own row's, or one of its epochs'), else 0: a run left out of reports.
    Its epoch rows' own checks are counted in ``per_run`` (``bad_rows``; ``bad_losses``, a problem unless
    the run is marked diverged)."""
    epochs = or_(per_run.c.first_epoch < 1, per_run.c.last_epoch > Run.epochs, per_run.c.bad_rows > 0,
                 (per_run.c.bad_losses > 0) & (Run.status != "diverged"))
    return case((or_(epochs, *(check.condition for check in run_checks(per_run))), 1), else_=0)


def epoch_checks(epochs=Epoch.__table__) -> list[Check]:
    """The checks of one epoch row, joined to its run (``row_problem``, ``loss_problem`` and the epoch's range)."""
    e = epochs.c
    return [*(Check(f"epochs.{c}", e[c], not_accuracy(e[c]), "is not a number in [0, 1]") for c in ACCURACIES),
            *(Check(f"epochs.{c}", e[c], not_finite(e[c]) & (Run.status != "diverged"),
                    "is not finite, and the run is not marked diverged") for c in LOSSES),
            *(Check(f"epochs.{c}", e[c], not_seconds(e[c]), "is not a finite number >= 0") for c in AT_LEAST_0),
            Check("epochs.epoch", e.epoch, not_integer(e.epoch) | ~e.epoch.between(1, Run.epochs),
                  "is not an integer in 1..{epochs}")]


@dataclass(frozen=True)
class Check:
    column: str  # table.column, as lines name it
    value: Any  # the SQL expression of the value to show (None: none)
    condition: ColumnElement  # true where the row fails
    what: str  # what is wrong, after "column = value"; {names} from the run's row


@dataclass(frozen=True)
class Problem:
    run_id: int
    name: str
    seed: Any
    column: str
    value: Any  # as the database holds it (text stays text); NO_VALUE where the line shows none
    what: str
    epoch: Any = None  # the epoch row's number, for a problem of one epoch row

    def run(self) -> str:
        """``run 17 (adam[lr=0.01] seed 2)``; ``run 17 (not in runs)`` for rows of a run that ``runs`` lacks."""
        if self.name is None and self.seed is None:
            return f"run {self.run_id} (not in runs)"
        name = self.name if str(self.name).strip() else shown(self.name)
        return f"run {self.run_id} ({name} seed {shown(self.seed)})"

    def detail(self) -> str:
        """``epochs.test_acc = 2.0 at epoch 2 is not a number in [0, 1]``."""
        value = "" if self.value is NO_VALUE else f" = {shown(self.value)}"
        at = f" at epoch {shown(self.epoch)}" if self.epoch is not None and self.column != "epochs.epoch" else ""
        return f"{self.column}{value}{at} {self.what}"

    def line(self) -> str:
        return f"{self.run()}: {self.detail()}"


def run_lines(found: Sequence[Problem]) -> list[str]:
    """One line per run of ``found`` (``problems``): the run, then each of its problems, ``; `` between them."""
    per_run: dict[int, list[Problem]] = {}
    for problem in found:
        per_run.setdefault(problem.run_id, []).append(problem)
    return [f"{ps[0].run()}: {'; '.join(p.detail() for p in ps)}" for ps in per_run.values()]


NO_VALUE = object()


def flagged_runs_query(per_run) -> Any:
    """The ids of every run that fails a check (trials' runs included), by id."""
    return select(Run.id).outerjoin(per_run, per_run.c.run_id == Run.id).where(run_problem(per_run) == 1) \
        .order_by(Run.id)


def problems(connection, per_run: Callable[[list[int]], Any], run_ids: Sequence[int]) -> list[Problem]:
    """Every problem of the runs ``run_ids``: their epoch rows' (by epoch) and their own, by run id.
    ``per_run(ids)``: the summaries of the runs ``ids`` (a table or subquery with ``run_id``)."""
    found: list[Problem] = []
    for start in range(0, len(run_ids), CHUNK):
        ids = list(run_ids[start: start + CHUNK])
        found += _epoch_problems(connection, ids) + _run_problems(connection, per_run(ids), ids)
    return sorted(found, key=lambda p: (p.run_id, p.epoch is None, str(p.epoch)))


def _epoch_problems(connection, ids: list[int]) -> list[Problem]:
    checks = epoch_checks()
    flags = [case((check.condition, 1), else_=0).label(f"f{i}") for i, check in enumerate(checks)]
    values = [type_coerce(check.value, _Raw()).label(f"v{i}") for i, check in enumerate(checks)]
    query = (select(Run.id, Run.name, Run.seed, Run.epochs, type_coerce(Epoch.epoch, _Raw()).label("epoch"),
                    *flags, *values)
             .join(Run, Run.id == Epoch.run_id).where(Epoch.run_id.in_(ids))
             .where(or_(*(check.condition for check in checks))).order_by(Epoch.run_id, Epoch.id))
    out = []
    for row in connection.execute(query).mappings():
        for i, check in enumerate(checks):
            if row[f"f{i}"]:
                out.append(Problem(row["id"], row["name"], row["seed"], check.column, row[f"v{i}"],
                                   check.what.format(epochs=row["epochs"]), row["epoch"]))
    return out


def _run_problems(connection, per_run, ids: list[int]) -> list[Problem]:
    checks = run_checks(per_run)
    flags = [case((check.condition, 1), else_=0).label(f"f{i}") for i, check in enumerate(checks)]
    values = [type_coerce(literal(None) if check.value is None else check.value, _Raw()).label(f"v{i}")
              for i, check in enumerate(checks)]
    query = (select(Run.id, Run.name, Run.seed, func.coalesce(per_run.c.epoch_count, 0).label("epoch_count"),
                    type_coerce(per_run.c.last_epoch, _Raw()).label("last"),
                    func.coalesce(per_run.c.acc_epochs, 0).label("acc_epochs"), *flags, *values)
             .outerjoin(per_run, per_run.c.run_id == Run.id).where(Run.id.in_(ids)).order_by(Run.id))
    out = []
    for row in connection.execute(query).mappings():
        for i, check in enumerate(checks):
            if row[f"f{i}"]:
                what = check.what.format(epoch_count=row["epoch_count"],
                                         last=shown(row["last"]) if row["last"] is not None else "none",
                                         missing=row["epoch_count"] - row["acc_epochs"])
                value = NO_VALUE if check.value is None else row[f"v{i}"]
                out.append(Problem(row["id"], row["name"], row["seed"], check.column, value, what))
    return out


class _Raw(Text):
    """A value as the database driver returns it: no type's conversion (SQLite's text in a REAL column stays
    text, malformed JSON stays its text)."""

    cache_ok = True

    def result_processor(self, dialect, coltype):
        return None

    def bind_processor(self, dialect):
        return None


def orphan_epochs(connection) -> list[Problem]:
    """A problem for each run id that epoch rows name and ``runs`` lacks (a run deleted by hand with foreign
    keys off): no report reads those rows, and no run can claim them."""
    known = select(Run.id).where(Run.id == Epoch.run_id).exists()
    rows = connection.execute(select(Epoch.run_id, func.count().label("n")).where(~known)
                              .group_by(Epoch.run_id).order_by(Epoch.run_id)).all()
    return [Problem(row.run_id, None, None, "epochs.run_id", row.run_id,
                    f"is the run of {row.n} epoch row(s), and runs has no such run") for row in rows]
