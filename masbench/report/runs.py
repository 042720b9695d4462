"""``masbench runs``: the runs of a store, one row each, in every format the report prints.

A run's row: its id (what ``masbench show`` takes), status, cell (its run name, with the settings that tell
apart the cells of one table sharing it, as the leaderboard names them), seed, best test accuracy over its
epochs (percent; whatever its status: a running run's best so far) and when it started (the server's clock).
The runs are those of the report (``run_accuracies``), with the same filters; tunes' runs are left out.

Example::

    masbench runs --optimizer mas --where lr=0.003 --format csv
"""

from __future__ import annotations

import json
import math

import pandas as pd

from masbench.store.checks import LEFT_OUT

from masbench.report.aggregate import cell_names, cell_table
from masbench.report.render import FORMATS, Rendered, _plain, render_rows

RUN_COLUMNS = ["id", "status", "cell", "seed", "best_acc", "started", "benchmark", "dataset", "model", "config_key"]
HEADERS = (("id", "right"), ("status", "left"), ("cell", "left"), ("seed", "right"), ("best acc", "right"),
           ("started", "left"))


def run_list(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` (``run_accuracies``) as ``RUN_COLUMNS``, by id: ``best_acc`` in percent, ``started`` as ISO text
    (None if never started)."""
    cells = cell_table(runs)
    names = dict(zip(cells["config_key"], cell_names(cells)))
    frame = pd.DataFrame({
        "id": runs["id"].astype(int), "status": runs["status"], "cell": runs["config_key"].map(names),
        "seed": runs["seed"].astype(int), "best_acc": pd.to_numeric(runs["best"], errors="coerce").where(runs["status"] != LEFT_OUT) * 100.0,
        "started": [None if pd.isna(t) else pd.Timestamp(t).isoformat(sep=" ", timespec="seconds")
                    for t in runs["started_at"]],
        "benchmark": runs["benchmark"], "dataset": runs["dataset"], "model": runs["model"],
        "config_key": runs["config_key"],
    })
    return frame.sort_values("id", kind="stable").reset_index(drop=True)[RUN_COLUMNS]


def runs_title(frame: pd.DataFrame) -> str:
    counts = frame["status"].value_counts()
    return f"{len(frame)} runs: " + ", ".join(f"{n} {status}" for status, n in counts.items())


def run_rows(frame: pd.DataFrame) -> list[list[str]]:
    """The text cells of ``HEADERS``, per run."""
    return [[str(row["id"]), row["status"], f"{row['cell']} {row['dataset'].rsplit('/', 1)[-1]}/{row['model']}",
             str(row["seed"]), "-" if math.isnan(row["best_acc"]) else f"{row['best_acc']:.2f}",
             row["started"] if isinstance(row["started"], str) else "-"]
            for row in frame.to_dict("records")]


def render_runs(frame: pd.DataFrame, fmt: str) -> Rendered:
    """``run_list`` in ``fmt`` (``FORMATS``; html is ``html.render_runs_html``): csv and json carry every column
    of ``RUN_COLUMNS`` (``best_acc`` rounded to 4 decimals), the others the rows of ``run_rows``."""
    if fmt == "csv":
        return Rendered(frame.assign(best_acc=frame["best_acc"].round(4)).to_csv(index=False, lineterminator="\n"))
    if fmt == "json":
        records = [{k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}
                   for row in frame.assign(best_acc=frame["best_acc"].round(4)).to_dict("records")]
        return Rendered(json.dumps(records, indent=2, default=_plain))
    return render_rows(runs_title(frame), HEADERS, run_rows(frame), fmt)
