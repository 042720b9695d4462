"""Performance profiles (Dolan and Moré 2002, as AlgoPerf uses them) from time to target.

A workload is one (benchmark, data set, model); a configuration is what a table row names across
workloads (``Adam``, ``MAS λa=0.3, λs=0.7``, with the settings that tell apart cells sharing that
label in a workload). A configuration's time on a workload, t(c, w), is the median over its completed
seeds of the training seconds to the target (``target``), counting a seed that never reached it as
infinite: the median is finite only when at least half of the seeds reached the target. A configuration
absent from a workload, or whose median is infinite, has ratio inf there. With
r(c, w) = t(c, w) / min_c' t(c', w), the profile of c is

    rho_c(tau) = |{w : r(c, w) <= tau}| / |W|,   tau in [1, 4],

the fraction of workloads on which c is within a factor tau of the fastest configuration.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from masbench.report.aggregate import TABLE
from masbench.report.target import run_times

TAU_MAX = 4.0


def workload_times(cells: pd.DataFrame, epochs: pd.DataFrame, labels: pd.Series, by: str = "seconds") -> pd.DataFrame:
    """t(c, w): one row per workload (TABLE), one column per configuration label (``labels``, aligned with
    ``cells``); the median training seconds (``by="epochs"``: epochs) to the cell's ``target`` over its
    completed seeds, an unreached seed counting as inf; inf where the configuration has no cell in the
    workload."""
    targets = {k: t for k, t in zip(cells["config_key"], cells["target"]) if not math.isnan(t)}
    times = run_times(epochs, targets)
    done = times[times["status"] == "completed"]
    per_seed = done[f"{by}_to_target"].where(done["reached"], math.inf)
    medians = per_seed.groupby(done["config_key"]).median()
    frame = cells.assign(label=labels.values, time=cells["config_key"].map(medians).fillna(math.inf))
    frame = frame[cells["target"].notna().values]
    table = frame.pivot(index=TABLE, columns="label", values="time")
    return table.fillna(math.inf)


def ratios(times: pd.DataFrame) -> pd.DataFrame:
    """r(c, w) = t(c, w) / the workload's fastest; inf where t is inf (and on a workload nobody finished)."""
    best = times.min(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = times.div(best, axis=0)
    out = out.where(~times.eq(best, axis=0), 1.0)  # the fastest is 1, even at 0 seconds
    return out.where(np.isfinite(times) & np.isfinite(out), math.inf)


def performance_profile(ratio: pd.DataFrame, taus: np.ndarray | None = None) -> pd.DataFrame:
    """rho_c(tau): one row per tau (1 to 4 by default), one column per configuration."""
    taus = np.linspace(1.0, TAU_MAX, 301) if taus is None else np.asarray(taus, dtype=float)
    values = (ratio.to_numpy()[None, :, :] <= taus[:, None, None]).mean(axis=1)
    return pd.DataFrame(values, index=pd.Index(taus, name="tau"), columns=ratio.columns)


def profile_labels(cells: pd.DataFrame) -> pd.Series:
    """Each cell's configuration label, the same across workloads; settings are added only where two cells of
    one workload would share a label."""
    from masbench.report.plots import curve_labels

    out = pd.Series("", index=cells.index, dtype=object)
    for _, group in cells.groupby(TABLE, sort=False):
        names = curve_labels(group)
        out[group.index] = [names[k] for k in group["config_key"]]
    return out
