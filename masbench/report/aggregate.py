"""Runs into cells (pandas): the numbers every table, comparison, gate and plot shows.

A run's accuracy is its best test accuracy over its epochs (``metric="best"``, the
paper's: selected on the test set), its last epoch's (``metric="final"``), or its test
accuracy at the epoch of its best validation accuracy, the earliest of ties
(``metric="val"``: selected on validation, for runs with a ``val_fraction``), in
percent. Runs are grouped into cells by ``config_key``: the hash of the run's
canonical config without the seed, so two cells that share a run name (the same
optimizer settings, other epochs, batch size or data options) never pool. Only completed runs count as seeds;
pending, running, failed and diverged ones are counted and flagged, never
averaged in (nor in ``ci95``: the width of the 95% t-interval of the mean); so are
runs that fail one of the store's checks (``masbench.store.checks``: status ``left out``).
A seed twice in one cell is an error, never an overwrite.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from masbench.errors import MasbenchError
from masbench.store.checks import LEFT_OUT

METRICS = ("best", "final", "val")
# What a run's accuracy is under each metric, for titles and captions.
METRIC_TITLES = {"best": "best test accuracy over epochs (selected on the test set)",
                 "final": "final-epoch test accuracy",
                 "val": "test accuracy at the best validation epoch (selected on validation)"}
BASELINE_ORDER = {"adam": 0, "sgd": 1, "adamw": 2, "mas": 3}
LABELS = {"adam": "Adam", "sgd": "SGD", "adamw": "AdamW", "mas": "MAS"}
TABLE = ["benchmark", "dataset", "model"]  # one table (or leaderboard) section per value of these
CELL_COLUMNS = [*TABLE, "config_key", "name", "optimizer", "lambda_adam", "lambda_sgd", "weights", "n", "planned", "avg_acc",
                "std_acc", "ci95", "max_acc", "failed", "diverged", "left_out", "flags", "seeds", "accs", "canonical", "settings"]


def run_accuracies(store, *, metric: str = "best", dataset: str | None = None, model: str | None = None,
                   benchmark: str | None = None) -> pd.DataFrame:
    """One row per run: its identity, cell (``config_key``), status, and accuracy (percent) under ``metric``."""
    from masbench.store.queries import run_accuracy_frame

    if metric not in METRICS:
        raise MasbenchError(f"Invalid metric: {metric!r} (valid: {', '.join(METRICS)})")
    frame = run_accuracy_frame(store, metric, dataset=dataset, model=model, benchmark=benchmark)
    if metric == "val":
        check_val_data(frame)
    frame["benchmark"] = frame["benchmark"].fillna("")
    # A run left out may hold any JSON in config (or none that parses: NULL).
    frame["canonical"] = [config.get("canonical") or {} if isinstance(config, dict) else {}
                          for config in frame["config"]]
    return frame.drop(columns="config")


def run_epochs(store, runs: pd.DataFrame, **filters: Any) -> pd.DataFrame:
    """``store.epochs_frame(**filters)`` less the epochs of the runs of ``runs`` (``run_accuracies``) that are
    left out: a run that fails a check counts in no number, time to target and curves included."""
    epochs = store.epochs_frame(**filters)
    return epochs[~epochs["run_id"].isin(runs.loc[runs["status"] == LEFT_OUT, "id"])].reset_index(drop=True)


def left_out_note(cells: pd.DataFrame) -> str:
    """The footer of a table whose cells left runs out (``""`` when none did)."""
    count = int(cells["left_out"].sum()) if "left_out" in cells else 0
    if not count:
        return ""
    runs = "1 run" if count == 1 else f"{count} runs"
    return (f"{runs} left out of the numbers: failing the store's checks (named on stderr; "
            f"masbench check lists every problem)")


def check_val_data(runs: pd.DataFrame) -> None:
    """Refuse completed runs without validation accuracies: under ``val`` they have no accuracy to show."""
    done = runs[runs["status"] == "completed"]
    missing = done[done["val_epochs"] == 0]
    if missing.empty:
        return
    cells = missing.drop_duplicates("config_key")
    shown_cells = [f"{row['name']} on {row['dataset']}/{row['model']} (config {row['config_key']})"
                   for row in cells.head(3).to_dict("records")]
    more = f" and {len(cells) - 3} more" if len(cells) > 3 else ""
    raise MasbenchError(f"--metric val needs a validation split: {len(cells)} cell(s) ran without one: "
                        f"{'; '.join(shown_cells)}{more} (run them with --val-fraction, or filter them out with "
                        f"--dataset/--model/--benchmark)")


def check_unique_seeds(runs: pd.DataFrame) -> None:
    """A cell holds each seed once: two completed runs of one cell with one seed would be averaged as two."""
    done = runs[runs["status"] == "completed"]
    twice = done[done.duplicated(["config_key", "seed"], keep=False)]
    if not twice.empty:
        row = twice.iloc[0]
        ids = ", ".join(str(i) for i in twice[(twice["config_key"] == row["config_key"])
                                              & (twice["seed"] == row["seed"])]["id"])
        raise MasbenchError(f"cell {row['name']} on {row['dataset']}/{row['model']} (config {row['config_key']}) "
                            f"has seed {row['seed']} in several completed runs ({ids}): the store is inconsistent")


def _per_seed(runs: pd.DataFrame) -> pd.DataFrame:
    """Each cell's completed seeds, ascending, and their accuracies in the same order."""
    done = runs[runs["status"] == "completed"].sort_values(["config_key", "seed"])
    grouped = done.groupby("config_key", sort=False)
    return pd.DataFrame({"seeds": grouped["seed"].agg(lambda s: tuple(int(v) for v in s)),
                         "accs": grouped["acc"].agg(lambda a: tuple(float(v) for v in a))})


def _flags(n: int, planned: int, failed: int, diverged: int, left_out: int) -> str:
    parts = (f"{n}/{planned} seeds" if n < planned else "", f"{failed} failed" if failed else "",
             f"{diverged} diverged" if diverged else "", f"{left_out} left out" if left_out else "")
    return ", ".join(part for part in parts if part)


def cell_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Cells over seeds, one row per ``config_key``: n (completed seeds), planned, avg/std/max accuracy
    (percent), flags, the completed ``seeds`` and their ``accs``, the cell's ``canonical`` config, and
    ``settings``: what tells it apart from other cells of its table that share its run name."""
    if runs.empty:
        return pd.DataFrame(columns=CELL_COLUMNS)
    check_unique_seeds(runs)
    status = runs.assign(done=runs["status"].eq("completed"), failed=runs["status"].eq("failed"),
                         diverged=runs["status"].eq("diverged"), left_out=runs["status"].eq(LEFT_OUT))
    cells = status.groupby("config_key", sort=False).agg(
        benchmark=("benchmark", "first"), dataset=("dataset", "first"), model=("model", "first"),
        name=("name", "first"), optimizer=("optimizer", "first"), lambda_adam=("lambda_adam", "first"),
        lambda_sgd=("lambda_sgd", "first"), n=("done", "sum"), planned=("id", "count"), avg_acc=("acc", "mean"),
        std_acc=("acc", "std"), max_acc=("acc", "max"), failed=("failed", "sum"), diverged=("diverged", "sum"),
        left_out=("left_out", "sum"), canonical=("canonical", "first"),
    )
    cells = cells.join(_per_seed(runs)).reset_index()
    for column in ("seeds", "accs"):  # a cell without a completed seed has none
        cells[column] = [value if isinstance(value, tuple) else () for value in cells[column]]
    counts = ["n", "planned", "failed", "diverged", "left_out"]
    cells[counts] = cells[counts].astype(int)
    cells["ci95"] = ci95_widths(cells["std_acc"], cells["n"])
    cells["flags"] = [_flags(*row) for row in zip(cells["n"], cells["planned"], cells["failed"], cells["diverged"],
                                                  cells["left_out"])]
    cells["settings"] = differing_settings(cells, [*TABLE, "name"])
    cells["weights"] = [mix_weights(canonical) for canonical in cells["canonical"]]
    cells["order"] = cells["optimizer"].map(BASELINE_ORDER).fillna(9)
    cells = cells.sort_values([*TABLE, "order", "lambda_adam", "name", "settings"], kind="stable")
    return cells.drop(columns="order").reset_index(drop=True)[CELL_COLUMNS]


def ci95_widths(std: pd.Series, n: pd.Series) -> pd.Series:
    """The full width of each cell's 95% t-interval of its mean, 2 t_{0.975,n-1} std / sqrt(n) (percent
    points; NaN for n < 2): what ``sweep --until-ci`` compares with (``masbench.grid.seed_budget``)."""
    from masbench.grid.seed_budget import ci95_factor

    return pd.Series([ci95_factor(int(k)) * s for s, k in zip(std, n)], index=std.index, dtype=float)


def mix_weights(canonical: dict[str, Any]) -> str:
    """A mix's ``{component: weight}`` as JSON, keys sorted (the store's ``runs.weights``); "" for other cells."""
    weights = canonical.get("weights")
    return json.dumps(weights, sort_keys=True) if weights else ""


def _shown(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "/".join(_shown(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def differing_settings(cells: pd.DataFrame, keys: list[str] | list[pd.Series]) -> pd.Series:
    """For cells that share ``keys`` (e.g. a table and a run name): the canonical settings whose values
    differ among them, as ``"epochs=2, batch_size=64"``; empty for a cell alone in its group."""
    out = pd.Series("", index=cells.index, dtype=object)
    if cells.empty:
        return out
    for _, group in cells.groupby(keys, sort=False, dropna=False):
        if len(group) < 2:
            continue
        configs = [_flat(c) for c in group["canonical"]]
        names = sorted({k for c in configs for k in c} - {"seed"})
        differ = [k for k in names if len({repr(c.get(k)) for c in configs}) > 1]
        for index, config in zip(group.index, configs):
            out[index] = ", ".join(f"{k}={_shown(config[k]) if k in config else ABSENT.get(k, 'default')}"
                                   for k in differ)
    return out


ABSENT = {"lr_schedule": "constant"}  # what a setting left out of a canonical config means, where not "default"


def _flat(canonical: dict[str, Any]) -> dict[str, Any]:
    """A canonical config with its optimizer arguments beside the other settings, as run names show them."""
    return {**{k: v for k, v in canonical.items() if k != "optimizer_args"}, **canonical.get("optimizer_args", {})}


def display_names(cells: pd.DataFrame) -> pd.Series:
    """Adam, SGD, AdamW, MAS as in the paper, with the settings that tell apart the cells of a table
    that would otherwise show the same label and lambdas: ``MAS (epochs=2)``, ``MAS (lr=0.01)``; a mix
    as its weights, ``mix:adam=0.3,sgd=0.7``."""
    labels = cells["optimizer"].map(LABELS).fillna(cells["optimizer"])
    # A mix is told by its weights: its run name's head, mix:adam=0.3,sgd=0.7.
    labels = labels.where(cells["optimizer"] != "mix", cells["name"].str.split("[", n=1).str[0])
    keys = [cells["benchmark"], cells["dataset"], cells["model"], labels, cells["lambda_adam"], cells["lambda_sgd"]]
    settings = differing_settings(cells, keys)
    return labels.where(settings == "", labels + " (" + settings + ")")


def cell_names(cells: pd.DataFrame) -> pd.Series:
    """The run name, with the settings that tell apart cells of one table sharing it: ``adam[lr=0.01] (epochs=2)``."""
    return cells["name"].where(cells["settings"] == "", cells["name"] + " (" + cells["settings"] + ")")


def with_best(cells: pd.DataFrame) -> pd.DataFrame:
    """Mark the best avg acc and the best acc max within each (benchmark, dataset, model) group."""
    cells = cells.copy()
    for column in ("avg_acc", "max_acc"):
        best = cells.groupby(TABLE, sort=False)[column].transform("max")
        cells[f"best_{column}"] = cells[column].notna() & (cells[column].round(2) == best.round(2))
    return cells


def leaderboard(cells: pd.DataFrame) -> pd.DataFrame:
    """Every cell ranked by avg acc within its data set and model: 1 is best, ties share a rank, and cells
    without a completed seed come last, unranked."""
    board = cells.sort_values([*TABLE, "avg_acc", "max_acc"], ascending=[True, True, True, False, False],
                              na_position="last", kind="stable").copy()
    board["rank"] = board.groupby(TABLE, sort=False)["avg_acc"].rank(method="min", ascending=False).astype("Int64")
    return board.reset_index(drop=True)
