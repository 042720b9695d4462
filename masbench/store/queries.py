"""The SQL that reports run: one aggregate per run (its best and its last epoch's test accuracy).

Reports, ``compare``, the regression gate and plots read the store through
these queries and do the rest in pandas, so a store of 100,000 epoch rows
reports in a fraction of a second.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, func, select

from masbench.store.models import Epoch, Run

RUN_FILTERS = ("dataset", "model", "benchmark")


def run_accuracy_query(**filters: Any) -> Select:
    """One row per run: its identity (``config_key`` is its cell), status, stored config, and per-run
    aggregates of its epochs: ``best`` (the highest test accuracy), ``last_epoch`` and ``final`` (that
    epoch's test accuracy). Runs without epochs have NULL aggregates.

    ``filters``: equality on ``dataset``, ``model`` or ``benchmark``; ``None`` values are ignored.
    """
    unknown = set(filters) - set(RUN_FILTERS)
    if unknown:
        raise ValueError(f"Invalid filter(s): {', '.join(sorted(unknown))} (valid: {', '.join(RUN_FILTERS)})")
    per_run = (select(Epoch.run_id, func.max(Epoch.test_acc).label("best"), func.max(Epoch.epoch).label("last_epoch"))
               .group_by(Epoch.run_id).subquery())
    last = Epoch.__table__.alias("last")
    query = (
        select(Run.id, Run.config_key, Run.benchmark, Run.dataset, Run.model, Run.name, Run.optimizer,
               Run.lambda_adam, Run.lambda_sgd, Run.seed, Run.status, Run.epochs, Run.config, per_run.c.best,
               per_run.c.last_epoch, last.c.test_acc.label("final"))
        .outerjoin(per_run, per_run.c.run_id == Run.id)
        .outerjoin(last, (last.c.run_id == Run.id) & (last.c.epoch == per_run.c.last_epoch))
    )
    for column, value in filters.items():
        if value is not None:
            query = query.where(getattr(Run, column) == value)
    return query.order_by(Run.id)


def run_accuracy_frame(store, **filters: Any):
    """``run_accuracy_query(**filters)`` as a DataFrame, one row per run; ``config`` holds the stored dicts."""
    import pandas as pd

    with store.engine.connect() as connection:
        rows = connection.execute(run_accuracy_query(**filters)).mappings().all()
    columns = list(run_accuracy_query().selected_columns.keys())
    return pd.DataFrame([dict(row) for row in rows], columns=columns)
