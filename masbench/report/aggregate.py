"""Runs into cells (pandas): the numbers every table, comparison, gate and plot shows.

A run's accuracy is its best test accuracy over its epochs (``metric="best"``, the
paper's: selected on the test set), its last epoch's (``metric="final"``), or its test
accuracy at the epoch of its best validation accuracy, the earliest of ties
(``metric="val"``: selected on validation, for runs with a ``val_fraction``), in
percent. Runs are grouped into cells by ``config_key``: the hash of the run's
canonical config without the seed, so two cells that share a run name (the same
optimizer settings, other epochs, batch size or data options) never pool. Only completed runs count as seeds;
pending, running, failed and diverged ones are counted and flagged, never
averaged in (nor in ``ci95_half``: the half-width of the 95% t-interval of the mean, shown as mean ± it); so
are runs that fail one of the store's checks (``masbench.store.checks``: status ``left out``).
A seed twice in one cell is an error, never an overwrite. A cell whose completed runs recorded two
versions of one library or distribution (torch, a plugin's) is flagged: its seeds did not run the same code.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from masbench.errors import MasbenchError
from masbench.optimizer_names import stored_optimizer
from masbench.store.checks import LEFT_OUT
from masbench.text.shown import shown

METRICS = ("best", "final", "val")
# What a run's accuracy is under each metric, for titles and captions.
METRIC_TITLES = {"best": "best test accuracy over epochs (selected on the test set)",
                 "final": "final-epoch test accuracy",
                 "val": "test accuracy at the best validation epoch (selected on validation)"}
BASELINE_ORDER = {"adam": 0, "sgd": 1, "adamw": 2, "mas": 3}
LABELS = {"adam": "Adam", "sgd": "SGD", "adamw": "AdamW", "mas": "MAS"}
TABLE = ["benchmark", "dataset", "model"]  # one table (or leaderboard) section per value of these
CELL_COLUMNS = [*TABLE, "config_key", "name", "optimizer", "lambda_adam", "lambda_sgd", "weights", "n", "planned", "avg_acc",
                "std_acc", "ci95_half", "max_acc", "failed", "diverged", "left_out", "flags", "seeds", "accs", "canonical",
                "settings"]


def run_accuracies(store, *, metric: str = "best", dataset: str | None = None, model: str | None = None,
                   benchmark: str | None = None, optimizer: tuple[str, ...] | None = None,
                   where: tuple[tuple[str, str], ...] = ()) -> pd.DataFrame:
    """One row per run: its identity, cell (``config_key``), status, and accuracy (percent) under ``metric``.

    ``optimizer``: only runs of these optimizers (SQL, as the other filters); ``where``: only runs whose
    settings have these values (``parse_where``; in pandas, on the canonical config). Under ``metric="val"``
    the runs without a validation split are left out, and counted in ``frame.attrs["without_val"]``.
    """
    from masbench.store.queries import mixed_versions, run_accuracy_frame

    if metric not in METRICS:
        raise MasbenchError(f"Invalid metric: {metric!r} (valid: {', '.join(METRICS)})")
    frame = run_accuracy_frame(store, metric, dataset=dataset, model=model, benchmark=benchmark,
                               optimizer=tuple(optimizer) if optimizer else None)
    frame["benchmark"] = frame["benchmark"].fillna("")
    # A run left out may hold any JSON in config (or none that parses): its canonical is then NULL.
    frame["canonical"] = [canonical if isinstance(canonical, dict) else {} for canonical in frame["canonical"]]
    # Read for the few cells whose runs store other versions texts only: the rest have None.
    stored = mixed_versions(store, dataset=dataset, model=model, benchmark=benchmark)
    frame["versions"] = [stored.get(run_id) for run_id in frame["id"]]
    if where:
        frame = with_settings(frame, where)
    without_val = 0
    if metric == "val":
        split = frame["val_epochs"].gt(0) | pd.Series(["val_fraction" in c for c in frame["canonical"]],
                                                       index=frame.index, dtype=bool)
        without_val = int((~split).sum())
        frame = frame[split].reset_index(drop=True)
    frame.attrs["without_val"] = without_val
    return frame


def parse_optimizers(text: str | None) -> tuple[str, ...] | None:
    """``--optimizer adam,torch.optim:SGD`` as the names the store holds, ``("adam", "sgd")``: each name or import
    path resolved as ``run`` and ``sweep`` resolve it, importing nothing (``stored_optimizer``); ``None`` when
    not given."""
    if text is None:
        return None
    valid = "optimizer names, comma-separated, e.g. adam,mas, or import paths such as torch.optim.RAdam"
    names = tuple(name.strip() for name in text.split(","))
    if not all(names):
        raise MasbenchError(f"Invalid --optimizer {shown(text)} ({valid})")
    stored = []
    for name in names:
        try:
            stored.append(stored_optimizer(name))
        except ValueError:
            raise MasbenchError(f"Invalid --optimizer {shown(name)}: neither a name nor an import path "
                                f"package.module:Class ({valid})") from None
    return tuple(dict.fromkeys(stored))


def parse_where(texts: list[str] | None) -> tuple[tuple[str, str], ...]:
    """``--where lr=0.003`` (repeatable) as ``(("lr", "0.003"),)``; text without ``NAME=VALUE`` is refused."""
    out = []
    for text in texts or ():
        name, equals, value = text.partition("=")
        if not equals or not name.strip() or not value.strip():
            raise MasbenchError(f"Invalid --where {shown(text)} (NAME=VALUE, a setting of the runs, e.g. lr=0.003)")
        out.append((name.strip(), value.strip()))
    return tuple(out)


def with_settings(runs: pd.DataFrame, where: tuple[tuple[str, str], ...]) -> pd.DataFrame:
    """The runs whose canonical settings (optimizer arguments beside the others, as run names show them) have
    every value of ``where``: numbers compared as numbers (``lr=3e-3`` is ``lr=0.003``), other values as run
    names show them. A name that no run of ``runs`` has is refused, with the names they have."""
    flat = [_flat(c) for c in runs["canonical"]]
    valid = sorted({k for config in flat for k in config} | set(ABSENT))
    keep = [True] * len(flat)
    for name, text in where:
        if name not in valid:
            raise MasbenchError(f"Invalid --where {name}={text}: no run has a setting {name!r} "
                                f"(valid: {', '.join(valid) or 'none: no runs'})")
        keep = [k and _matches(config.get(name, ABSENT.get(name)), text) for k, config in zip(keep, flat)]
    return runs[keep].reset_index(drop=True)


def _matches(value: Any, text: str) -> bool:
    from masbench.text.numbers import is_number, number

    if value is None:
        return False
    if isinstance(value, bool):
        return text.lower() == str(value).lower()
    if isinstance(value, (int, float)) and is_number(text):
        return float(value) == number(text)
    return _shown(value) == text


def run_epochs(store, runs: pd.DataFrame, **filters: Any) -> pd.DataFrame:
    """The epochs (``store.epochs_frame(**filters)``) of the runs of ``runs`` (``run_accuracies``, after every
    filter, ``--where seed=0`` included) that are not left out: a run that fails a check counts in no number,
    time to target and curves included."""
    epochs = store.epochs_frame(**filters)
    kept = runs.loc[runs["status"] != LEFT_OUT, "id"]
    epochs = epochs[epochs["run_id"].isin(kept)].reset_index(drop=True)
    # The rows kept passed the checks, but a column read with a left-out run's text in it is text: numbers again.
    numeric = ["train_loss", "train_acc", "test_loss", "test_acc", "val_acc", "seconds"]
    return epochs.assign(**{c: pd.to_numeric(epochs[c]) for c in numeric if c in epochs})


def left_out_note(cells: pd.DataFrame) -> str:
    """The footer of a table whose cells left runs out (``""`` when none did)."""
    count = int(cells["left_out"].sum()) if "left_out" in cells else 0
    if not count:
        return ""
    runs = "1 run" if count == 1 else f"{count} runs"
    return (f"{runs} left out of the numbers: failing the store's checks (named on stderr; "
            f"masbench check lists every problem)")


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
    done = runs[runs["status"] == "completed"].sort_values(["config_key", "seed"], kind="stable")
    seeds: dict[str, list[int]] = {}
    accs: dict[str, list[float]] = {}
    for key, seed, acc in zip(done["config_key"].tolist(), done["seed"].tolist(), done["acc"].tolist()):
        seeds.setdefault(key, []).append(int(seed))
        accs.setdefault(key, []).append(float(acc))
    index = pd.Index(list(seeds), name="config_key", dtype=runs["config_key"].dtype)
    return pd.DataFrame({"seeds": [tuple(v) for v in seeds.values()], "accs": [tuple(v) for v in accs.values()]},
                        index=index)


def _flags(n: int, planned: int, failed: int, diverged: int, left_out: int, versions: str = "") -> str:
    parts = (f"{n}/{planned} seeds" if n < planned else "", f"{failed} failed" if failed else "",
             f"{diverged} diverged" if diverged else "", f"{left_out} left out" if left_out else "", versions)
    return ", ".join(part for part in parts if part)


def differing_versions(runs: pd.DataFrame) -> dict[str, str]:
    """``{config_key: "versions differ: torch 2.14.1/2.15.0"}`` for the cells whose completed runs record two
    versions of one library or distribution (``runs["versions"]``: the stored JSON text, None where unread).
    Versions show in the order of the runs' ids; a name that only some runs record is no difference (older
    runs recorded fewer), and a text that is no JSON object is left to the store's checks."""
    out: dict[str, str] = {}
    done = runs[runs["status"].eq("completed") & runs["versions"].notna()].sort_values("id")
    for config_key, texts in done.groupby("config_key", sort=False)["versions"]:
        seen: dict[str, list[str]] = {}
        for text in texts:
            try:
                values = json.loads(text)
            except ValueError:
                continue
            if not isinstance(values, dict):
                continue
            for name, version in values.items():
                known = seen.setdefault(str(name), [])
                if str(version) not in known:
                    known.append(str(version))
        differ = [f"{name} {'/'.join(versions)}" for name, versions in sorted(seen.items()) if len(versions) > 1]
        if differ:
            out[config_key] = "versions differ: " + ", ".join(differ)
    return out


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
    cells["ci95_half"] = ci95_half_widths(cells["std_acc"], cells["n"])
    versions = differing_versions(runs) if "versions" in runs else {}
    cells["flags"] = [_flags(*row, versions.get(key, "")) for key, *row in
                      zip(cells["config_key"], cells["n"], cells["planned"], cells["failed"], cells["diverged"],
                          cells["left_out"])]
    cells["settings"] = differing_settings(cells, [*TABLE, "name"])
    cells["weights"] = [mix_weights(canonical) for canonical in cells["canonical"]]
    cells["order"] = cells["optimizer"].map(BASELINE_ORDER).fillna(9)
    cells = cells.sort_values([*TABLE, "order", "lambda_adam", "name", "settings"], kind="stable")
    return cells.drop(columns="order").reset_index(drop=True)[CELL_COLUMNS]


MIN_CI_SEEDS = 3  # below it a t-interval is too wide to inform (t_{0.975,1} = 12.7): tables show "n<3"


def ci95_half_widths(std: pd.Series, n: pd.Series) -> pd.Series:
    """The half-width of each cell's 95% t-interval of its mean, t_{0.975,n-1} std / sqrt(n) (percent points;
    the table's mean ± it): what ``sweep --until-ci`` compares with (``masbench.grid.seed_budget``). NaN for
    n < ``MIN_CI_SEEDS``: at 2 seeds it is 12.7 std / sqrt(2), no information (and 0 when two seeds tie)."""
    from masbench.grid.seed_budget import ci95_factor

    return pd.Series([ci95_factor(int(k)) * s if k >= MIN_CI_SEEDS else float("nan") for s, k in zip(std, n)],
                     index=std.index, dtype=float)


def shown_interval(half: float, n: int) -> str:
    """A cell's CI95 half-width as tables show it: two decimals, ``n<3`` with fewer seeds, ``-`` with none."""
    if n < MIN_CI_SEEDS:
        return f"n<{MIN_CI_SEEDS}"
    return "-" if pd.isna(half) else f"{half:.2f}"


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
    columns = [cells[k] if isinstance(k, str) else k for k in keys]
    groups: dict[tuple, list[int]] = {}
    for position, key in enumerate(zip(*(column.tolist() for column in columns))):
        # NaN is not equal to itself: as a key it is one value, as groupby(dropna=False) had it
        groups.setdefault(tuple(_NAN if isinstance(v, float) and v != v else v for v in key), []).append(position)
    canonical = cells["canonical"].tolist()
    texts = [""] * len(cells)
    for positions in groups.values():
        if len(positions) < 2:
            continue
        configs = [_flat(canonical[p]) for p in positions]
        names = sorted({k for c in configs for k in c} - {"seed"})
        differ = [k for k in names if len({repr(c.get(k)) for c in configs}) > 1]
        for position, config in zip(positions, configs):
            texts[position] = ", ".join(f"{k}={_shown(config[k]) if k in config else ABSENT.get(k, 'default')}"
                                        for k in differ)
    out[:] = texts
    return out


_NAN = object()  # a NaN key of differing_settings' groups
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
