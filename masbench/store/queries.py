"""The SQL that reports run: one row per run, with its summary (its best, last and best-validation epoch's
test accuracy, ``summaries``).

Reports, ``compare``, the regression gate and plots read the store through
these queries and do the rest in pandas; they read one summary per run, never
the epochs, so a store of 10M epoch rows reports in about a second.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Select, Text, cast, func, select

from masbench.store.checks import LEFT_OUT, canonical_text, run_problem
from masbench.store.models import Run, Summary, Trial, Tune

RUN_FILTERS = ("dataset", "model", "benchmark", "optimizer")


def run_accuracy_query(**filters: Any) -> Select:
    """One row per run: its identity (``config_key`` is its cell), status, stored config, start, and what its
    summary holds of its epochs (``summaries``): ``best`` (the highest test accuracy), ``last_epoch`` and
    ``final`` (that epoch's test accuracy), ``val_epoch`` (the earliest epoch of the highest validation
    accuracy) and ``val`` (that epoch's test accuracy), and ``val_epochs`` (how many epochs have a validation
    accuracy). Runs without epochs have NULL ones (and 0 ``val_epochs``). ``problems`` is 1 where the run
    fails one of ``checks``' checks (a report leaves it out). ``canonical`` is the canonical config that
    ``config`` holds, without its seed, as JSON text (``checks.canonical_text``); NULL where there is none (a
    run whose config is not JSON is left out).

    ``filters``: equality on ``dataset``, ``model``, ``benchmark`` or ``optimizer``, or membership where the value
    is a tuple or list (``optimizer=("adam", "mas")``); ``None`` values are ignored. Each is a WHERE on a column
    of ``runs``; the epochs are not read. The runs of tunes are left out (``not_a_trial``).
    """
    per_run = Summary.__table__
    query = (
        select(Run.id, Run.config_key, Run.benchmark, Run.dataset, Run.model, Run.name, Run.optimizer,
               Run.lambda_adam, Run.lambda_sgd, Run.seed, Run.status, Run.epochs, canonical_text(Run.config),
               Run.started_at, per_run.c.best, per_run.c.last_epoch, per_run.c.final, per_run.c.val,
               per_run.c.val_epoch, func.coalesce(per_run.c.val_epochs, 0).label("val_epochs"),
               run_problem(per_run).label("problems"))
        .outerjoin(per_run, per_run.c.run_id == Run.id)
    )
    return filtered(query, filters).order_by(Run.id)


def filtered(query: Select, filters: dict[str, Any]) -> Select:
    """``query`` with equality on the ``filters`` among ``RUN_FILTERS`` (``None`` values ignored), tunes' runs
    left out (``not_a_trial``)."""
    unknown = set(filters) - set(RUN_FILTERS)
    if unknown:
        raise ValueError(f"Invalid filter(s): {', '.join(sorted(unknown))} (valid: {', '.join(RUN_FILTERS)})")
    for column, value in filters.items():
        if isinstance(value, (tuple, list)):
            query = query.where(getattr(Run, column).in_(value))
        elif value is not None:
            query = query.where(getattr(Run, column) == value)
    return query.where(not_a_trial(Run.key))


def mixed_versions_query(**filters: Any) -> Select:
    """``id`` and ``versions`` (as stored text: bad JSON must not stop the query) of the completed runs of the
    cells whose completed runs do not all store the same versions text: the few a report must compare key by
    key (``masbench.report.aggregate``). A cell of one text, or of runs that record none, is never read."""
    stored = cast(Run.versions, Text)
    done = Run.status == "completed"
    mixed = filtered(select(Run.config_key).where(done), filters).group_by(Run.config_key).having(
        func.min(stored) != func.max(stored))  # more than one text: no sort per cell, as count(distinct) needs
    return filtered(select(Run.id, stored.label("versions")).where(done, Run.config_key.in_(mixed)), filters)


def not_a_trial(key):
    """The condition that the run of ``key`` (a run key column) is no tune's trial or final run: the tables of
    a sweep leave those out (each trial is one seed of one setting); ``report --tuned`` reads them."""
    return key.not_in(select(Trial.run_key))


def trials_query(tune_id: int | None = None) -> Select:
    """One row per trial of the tunes (of tune ``tune_id`` alone when given), joined to its run by key (NULL
    columns for a run not yet stored): the trial's identity, its run's status and seed, and per run
    ``best_val_acc`` (its best validation accuracy), ``val_epoch`` (the earliest epoch that reached it),
    ``test_acc`` (that epoch's test accuracy), ``best_test_acc`` and ``epochs`` (epochs written)."""
    per_run = Summary.__table__
    query = (
        select(Tune.id.label("tune_id"), Tune.key.label("tune"), Tune.name.label("tune_name"), Trial.optimizer,
               Trial.phase, Trial.number, Trial.params, Trial.run_key, Run.id.label("run_id"), Run.name,
               Run.status, Run.seed, per_run.c.best_val.label("best_val_acc"),
               per_run.c.val_epoch, per_run.c.val.label("test_acc"),
               per_run.c.best.label("best_test_acc"),
               func.coalesce(per_run.c.epoch_count, 0).label("epochs"), Run.attempts)
        .join(Tune, Tune.id == Trial.tune_id)
        .outerjoin(Run, Run.key == Trial.run_key)
        .outerjoin(per_run, per_run.c.run_id == Run.id)
    )
    if tune_id is not None:
        query = query.where(Trial.tune_id == tune_id)
    return query.order_by(Trial.tune_id, Trial.optimizer, Trial.phase.desc(), Trial.number)


def run_accuracy_frame(store, metric: str | None = None, **filters: Any):
    """``run_accuracy_query(**filters)`` as a DataFrame, one row per run; ``canonical`` holds each run's canonical
    config as a dict (its seed the run's), None where the run has none.

    ``metric`` (``best``, ``final`` or ``val``, a column of the query) adds ``acc``: a run's accuracy under it
    in percent, NaN unless the run completed. Reports and adaptive seeds read a run's accuracy here.
    A run that fails a check (``problems``) has the status ``checks.LEFT_OUT``: it is never a seed.
    """
    import pandas as pd

    query = run_accuracy_query(**filters)
    with store.engine.connect() as connection:
        rows = connection.execute(query).all()
    frame = pd.DataFrame([tuple(row) for row in rows], columns=list(query.selected_columns.keys()))
    parsed: dict[str, Any] = {}  # a cell's runs share one text: parsed once
    frame["canonical"] = [{**(parsed[text] if text in parsed else parsed.setdefault(text, json.loads(text))),
                           "seed": seed} if isinstance(text, str) else None  # NULL: pandas may hold NaN
                          for text, seed in zip(frame["canonical"], frame["seed"])]
    frame.loc[frame["problems"] == 1, "status"] = LEFT_OUT
    if metric is not None:
        frame["acc"] = pd.to_numeric(frame[metric], errors="coerce").astype(float) * 100.0
        frame.loc[frame["status"] != "completed", "acc"] = float("nan")
    return frame


def mixed_versions(store, **filters: Any) -> dict[int, str]:
    """``{run id: versions as stored text}`` for ``mixed_versions_query(**filters)``."""
    with store.engine.connect() as connection:
        return {row.id: row.versions for row in connection.execute(mixed_versions_query(**filters))}
