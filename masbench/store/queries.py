"""The SQL that reports run: one aggregate per run (its best, last and best-validation epoch's test accuracy).

Reports, ``compare``, the regression gate and plots read the store through
these queries and do the rest in pandas, so a store of 100,000 epoch rows
reports in a fraction of a second.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, func, select

from masbench.store.checks import LEFT_OUT, epoch_problem_counts, readable_json, run_problem
from masbench.store.models import Epoch, Run, Trial, Tune

RUN_FILTERS = ("dataset", "model", "benchmark")


def run_accuracy_query(**filters: Any) -> Select:
    """One row per run: its identity (``config_key`` is its cell), status, stored config, and per-run
    aggregates of its epochs: ``best`` (the highest test accuracy), ``last_epoch`` and ``final`` (that
    epoch's test accuracy), ``val_epoch`` (the earliest epoch of the highest validation accuracy) and ``val``
    (that epoch's test accuracy), and ``val_epochs`` (how many epochs have a validation accuracy). Runs
    without epochs have NULL aggregates (and 0 ``val_epochs``). ``problems`` is 1 where the run fails one of
    ``checks``' checks (a report leaves it out), and ``config`` is NULL where it is not JSON.

    ``filters``: equality on ``dataset``, ``model`` or ``benchmark``; ``None`` values are ignored. The runs of
    tunes are left out (``not_a_trial``).
    """
    unknown = set(filters) - set(RUN_FILTERS)
    if unknown:
        raise ValueError(f"Invalid filter(s): {', '.join(sorted(unknown))} (valid: {', '.join(RUN_FILTERS)})")
    per_run, val_pick, picked = epoch_aggregates()
    last = Epoch.__table__.alias("last")
    query = (
        select(Run.id, Run.config_key, Run.benchmark, Run.dataset, Run.model, Run.name, Run.optimizer,
               Run.lambda_adam, Run.lambda_sgd, Run.seed, Run.status, Run.epochs, readable_json(Run.config),
               per_run.c.best, per_run.c.last_epoch, last.c.test_acc.label("final"), picked.c.test_acc.label("val"),
               val_pick.c.val_epoch, func.coalesce(per_run.c.val_epochs, 0).label("val_epochs"),
               run_problem(per_run).label("problems"))
        .outerjoin(per_run, per_run.c.run_id == Run.id)
        .outerjoin(last, (last.c.run_id == Run.id) & (last.c.epoch == per_run.c.last_epoch))
        .outerjoin(val_pick, val_pick.c.run_id == Run.id)
        .outerjoin(picked, (picked.c.run_id == Run.id) & (picked.c.epoch == val_pick.c.val_epoch))
    )
    for column, value in filters.items():
        if value is not None:
            query = query.where(getattr(Run, column) == value)
    return query.where(not_a_trial(Run.key)).order_by(Run.id)


def not_a_trial(key):
    """The condition that the run of ``key`` (a run key column) is no tune's trial or final run: the tables of
    a sweep leave those out (each trial is one seed of one setting); ``report --tuned`` reads them."""
    return key.not_in(select(Trial.run_key))


def epoch_aggregates():
    """The per-run subqueries over epochs that reports and tunes share: ``per_run`` (run_id, ``best`` test
    accuracy, ``last_epoch``, ``best_val``, ``val_epochs``: epochs with a validation accuracy, ``epoch_count``,
    and the counts of ``checks.epoch_problem_counts``: ``first_epoch``, ``acc_epochs``, ``bad_rows``, ``bad_losses``),
    ``val_pick`` (run_id, ``val_epoch``: the earliest epoch of the highest validation accuracy) and ``picked``
    (an alias of ``epochs``, to join on ``val_pick``: that epoch's row)."""
    per_run = (select(Epoch.run_id, func.max(Epoch.test_acc).label("best"), func.max(Epoch.epoch).label("last_epoch"),
                      func.max(Epoch.val_acc).label("best_val"), func.count(Epoch.val_acc).label("val_epochs"),
                      func.count(Epoch.id).label("epoch_count"), *epoch_problem_counts())
               .group_by(Epoch.run_id).subquery())
    # The earliest epoch whose validation accuracy is the run's best (max returns one of the stored values).
    val_pick = (select(Epoch.run_id, func.min(Epoch.epoch).label("val_epoch"))
                .join(per_run, (per_run.c.run_id == Epoch.run_id) & (Epoch.val_acc == per_run.c.best_val))
                .group_by(Epoch.run_id).subquery())
    return per_run, val_pick, Epoch.__table__.alias("picked")


def trials_query(tune_id: int | None = None) -> Select:
    """One row per trial of the tunes (of tune ``tune_id`` alone when given), joined to its run by key (NULL
    columns for a run not yet stored): the trial's identity, its run's status and seed, and per run
    ``best_val_acc`` (its best validation accuracy), ``val_epoch`` (the earliest epoch that reached it),
    ``test_acc`` (that epoch's test accuracy), ``best_test_acc`` and ``epochs`` (epochs written)."""
    per_run, val_pick, picked = epoch_aggregates()
    query = (
        select(Tune.id.label("tune_id"), Tune.key.label("tune"), Tune.name.label("tune_name"), Trial.optimizer,
               Trial.phase, Trial.number, Trial.params, Trial.run_key, Run.id.label("run_id"), Run.name,
               Run.status, Run.seed, per_run.c.best_val.label("best_val_acc"), val_pick.c.val_epoch,
               picked.c.test_acc.label("test_acc"), per_run.c.best.label("best_test_acc"),
               func.coalesce(per_run.c.epoch_count, 0).label("epochs"), Run.attempts)
        .join(Tune, Tune.id == Trial.tune_id)
        .outerjoin(Run, Run.key == Trial.run_key)
        .outerjoin(per_run, per_run.c.run_id == Run.id)
        .outerjoin(val_pick, val_pick.c.run_id == Run.id)
        .outerjoin(picked, (picked.c.run_id == Run.id) & (picked.c.epoch == val_pick.c.val_epoch))
    )
    if tune_id is not None:
        query = query.where(Trial.tune_id == tune_id)
    return query.order_by(Trial.tune_id, Trial.optimizer, Trial.phase.desc(), Trial.number)


def run_accuracy_frame(store, metric: str | None = None, **filters: Any):
    """``run_accuracy_query(**filters)`` as a DataFrame, one row per run; ``config`` holds the stored dicts.

    ``metric`` (``best``, ``final`` or ``val``, a column of the query) adds ``acc``: a run's accuracy under it
    in percent, NaN unless the run completed. Reports and adaptive seeds read a run's accuracy here.
    A run that fails a check (``problems``) has the status ``checks.LEFT_OUT``: it is never a seed.
    """
    import pandas as pd

    with store.engine.connect() as connection:
        rows = connection.execute(run_accuracy_query(**filters)).mappings().all()
    columns = list(run_accuracy_query().selected_columns.keys())
    frame = pd.DataFrame([dict(row) for row in rows], columns=columns)
    frame.loc[frame["problems"] == 1, "status"] = LEFT_OUT
    if metric is not None:
        frame["acc"] = pd.to_numeric(frame[metric], errors="coerce").astype(float) * 100.0
        frame.loc[frame["status"] != "completed", "acc"] = float("nan")
    return frame
