"""Time to target: how soon each run first reaches a test accuracy, and each cell's medians over its seeds.

A run reaches ``target`` (a test accuracy in percent) at the first epoch whose test accuracy is at least
``target``. Its *epochs to target* is that epoch's number; its *seconds to target* is the sum of the
``seconds`` of its recorded epochs up to and including that one. ``seconds`` is training time only (the
engine times the training batches and leaves evaluation out), so seconds to target leaves evaluation
out too. A resumed run's epochs count as recorded: each stored epoch once, with the training time of
the process that trained it (an epoch interrupted and trained again is stored, and counted, once).

Only completed runs are a cell's seeds, as in every report: ``reached`` counts those that reached the
target, out of ``n``; the medians are over the seeds that reached it (an unreached seed has no time,
and is shown by ``reached`` < ``n``, never counted as a time).

Example: epochs with test accuracy 0.50, 0.70, 0.90 and 2, 3, 4 seconds reach a target of 70 at epoch 2,
after 5 seconds.

Seconds are wall time, and a shared machine makes them noisy. Every epoch of one cell trains the same
batches on the same model, so their seconds should agree; where they differ by more than ``NOISY`` times
(each run's first epoch left out, as it pays warm-up), ``noise_note`` says so, and time to target and
performance profiles can count epochs instead (``--target-by epochs``).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping

import pandas as pd

from masbench.errors import MasbenchError
from masbench.text import numbers
from masbench.text.shown import one_line

TARGET_COLUMNS = ["target", "reached", "median_epochs", "median_seconds"]
TARGET_BY = ("seconds", "epochs")  # what time to target counts in a performance profile
NOISY = 2.0  # epochs of one cell whose seconds differ by more than this factor: the machine was noisy


def check_target(value: float, what: str = "--target") -> float:
    """A target accuracy in percent: a finite number in [1, 100]. Below 1 it is refused as a fraction typed
    for a percentage (``show`` and the store hold fractions): 0.95 asks "did you mean 95?"."""
    if numbers.is_percent_target(value):
        return float(value)
    meant = numbers.percent_meant(value)
    if meant is not None:
        raise MasbenchError(f"Invalid {what}: {value:g} (a test accuracy in percent, in [1, 100]: "
                            f"did you mean {meant:g}?)")
    raise MasbenchError(f"Invalid {what}: {value!r} (a test accuracy in percent, in [1, 100], e.g. 85)")


def check_target_by(value: str) -> str:
    if value not in TARGET_BY:
        raise MasbenchError(f"Invalid --target-by: {value!r} (valid: {', '.join(TARGET_BY)})")
    return value


def seconds_spread(epochs: pd.DataFrame) -> pd.Series:
    """Per cell (``config_key``) of ``epochs``: how many times longer its slowest epoch took than its fastest,
    over its completed runs' epochs, each run's first epoch left out where it has later ones (warm-up); NaN
    where an epoch took 0 s."""
    done = epochs[(epochs["status"] == "completed") & epochs["seconds"].notna()]
    runs = done.groupby("run_id")["epoch"]
    done = done[(runs.transform("min") < done["epoch"]) | (runs.transform("count") == 1)]
    seconds = done["seconds"].astype(float).groupby(done["config_key"]).agg(["min", "max"])
    return seconds["max"] / seconds["min"].where(seconds["min"] > 0)


def noise_note(cells: pd.DataFrame) -> str:
    """A line saying that the machine was noisy, when the epochs of one of ``cells`` (``seconds_spread``
    column, from ``with_time_to_target``) took more than ``NOISY`` times as long as others; "" otherwise."""
    spread = cells["seconds_spread"] if "seconds_spread" in cells else pd.Series(dtype=float)
    noisy = spread[spread > NOISY]
    if noisy.empty:
        return ""
    return (f"noisy timings: one epoch of {len(noisy)} cell(s) took up to {noisy.max():.1f}x as long as another "
            f"epoch of the same cell (more than {NOISY:g}x), so seconds to target measure the machine's load as much "
            f"as the optimizer; read the epochs to target instead (profiles: --target-by epochs)")


def run_times(epochs: pd.DataFrame, targets: Mapping[str, float]) -> pd.DataFrame:
    """One row per run of ``epochs`` (``Store.epochs_frame``) whose cell has a target in ``targets``
    (config_key -> percent): ``run_id``, ``config_key``, ``seed``, ``status``, ``reached`` and, when
    reached, ``epochs_to_target`` and ``seconds_to_target`` (NaN otherwise)."""
    columns = ["run_id", "config_key", "seed", "status", "reached", "epochs_to_target", "seconds_to_target"]
    frame = epochs[epochs["config_key"].isin(list(targets))].sort_values(["run_id", "epoch"], kind="stable")
    if frame.empty:
        return pd.DataFrame(columns=columns)
    runs = frame.groupby("run_id", sort=True)[["config_key", "seed", "status"]].first()
    elapsed = frame["seconds"].astype(float).groupby(frame["run_id"], sort=False).cumsum()
    # Exactly, as typed (566/1000 reaches 56.6); a NaN/NULL accuracy (a diverged epoch) never reaches.
    bounds = frame["config_key"].map(targets).astype(float)
    reached = pd.Series(numbers.reaches(frame["test_acc"].astype(float), bounds), index=frame.index)
    hits = frame.assign(elapsed=elapsed)[reached]
    first = hits.groupby("run_id", sort=True)[["epoch", "elapsed"]].first()
    out = runs.join(first.rename(columns={"epoch": "epochs_to_target", "elapsed": "seconds_to_target"}))
    out["reached"] = out["epochs_to_target"].notna()
    out = out.reset_index()
    out["seed"] = out["seed"].astype(int)
    out[["epochs_to_target", "seconds_to_target"]] = out[["epochs_to_target", "seconds_to_target"]].astype(float)
    return out[columns]


def with_time_to_target(cells: pd.DataFrame, epochs: pd.DataFrame, target: float | None,
                        per_table: Mapping[tuple[str, str, str], float] | None = None) -> pd.DataFrame:
    """``cells`` (``cell_table``) with ``TARGET_COLUMNS``: the cell's target (percent; ``target``, else
    ``per_table[(benchmark, dataset, model)]``, else NaN), how many of its ``n`` completed seeds reached
    it, and the median epochs and seconds to it over those seeds (NaN when none did)."""
    cells = cells.copy()
    per_table = per_table or {}
    cells["target"] = [target if target is not None else per_table.get((b, d, m), math.nan)
                       for b, d, m in zip(cells["benchmark"], cells["dataset"], cells["model"])]
    targets = {key: t for key, t in zip(cells["config_key"], cells["target"]) if not math.isnan(t)}
    times = run_times(epochs, targets)
    done = times[(times["status"] == "completed") & times["reached"]]
    medians = done.groupby("config_key")[["epochs_to_target", "seconds_to_target"]].median()
    counts = done.groupby("config_key").size()
    cells["reached"] = [int(counts.get(key, 0)) if key in targets else pd.NA for key in cells["config_key"]]
    cells["reached"] = cells["reached"].astype("Int64")
    cells["median_epochs"] = cells["config_key"].map(medians["epochs_to_target"]).astype(float)
    cells["median_seconds"] = cells["config_key"].map(medians["seconds_to_target"]).astype(float)
    cells["seconds_spread"] = cells["config_key"].map(seconds_spread(epochs[epochs["config_key"].isin(list(targets))]))
    return cells


def benchmark_targets(path=None) -> dict[tuple[str, str, str], float]:
    """``(benchmark, dataset, model) -> target`` from the benchmarks file's ``target:`` keys (a benchmark's,
    or a grid's, which inherits it; or the file's ``defaults``).

    Reading commands call this: the file is read as YAML only (``load_yaml``, a safe loader) and only the
    ``dataset``, ``models`` and ``target`` keys are picked, so that no optimizer, model or data set it names
    is validated or imported. A file that cannot be read for them (not YAML, not a mapping, a target that
    is not a number in (0, 100], two targets for one data set and model) gives no targets, and one warning
    line on stderr: a stray ``benchmarks.yaml`` in the working directory never stops a report.
    """
    from masbench.grid.benchmarks import default_benchmarks_path, read_targets

    path = default_benchmarks_path() if path is None else path
    try:
        return read_targets(path)
    except MasbenchError as error:
        print(one_line(f"warning: {error}; its targets are not used"), file=sys.stderr, flush=True)
        return {}


def has_target(cells: pd.DataFrame) -> bool:
    return "target" in cells and bool(cells["target"].notna().any())


def target_texts(row: Mapping) -> tuple[str, str, str]:
    """A cell's ``reached`` as ``k/n``, median epochs and median seconds to target, as tables show them."""
    if row.get("target") is None or pd.isna(row["target"]):
        return "", "", ""
    epochs, seconds = row["median_epochs"], row["median_seconds"]
    return (f"{row['reached']}/{row['n']}", "-" if pd.isna(epochs) else f"{epochs:g}",
            "-" if pd.isna(seconds) else f"{seconds:.1f}")


def target_note(frame: pd.DataFrame) -> str:
    """What the time-to-target columns of a table mean, with its target(s)."""
    shown = ", ".join(f"{t:g}%" for t in sorted(frame["target"].dropna().unique()))
    note = (f"to target {shown}: seeds that reached it / completed seeds, and the median epochs and training "
            f"seconds (evaluation excluded) to reach it over the seeds that did")
    noise = noise_note(frame)
    return f"{note}. {noise[0].upper()}{noise[1:]}" if noise else note
