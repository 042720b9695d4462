"""``masbench plot --kind profile``: performance profiles from time to target (``masbench.report.profile``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from masbench.errors import MasbenchError
from masbench.report.plots import check_output, pyplot, save


def profile_frame(store, runs: pd.DataFrame, target: float | None, benchmark: str | None = None,
                  dataset: str | None = None, model: str | None = None,
                  per_table: Mapping[tuple[str, str, str], float] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rho_c(tau), r(c, w)) for the store's workloads (filtered), with ``target`` or the benchmarks file's.

    ``per_table``: the file's targets (``benchmark_targets()``) where the caller has read them already.
    """
    from masbench.report import benchmark_targets, cell_table, run_epochs, with_time_to_target
    from masbench.report.profile import performance_profile, profile_labels, ratios, workload_times

    if target is not None:
        per_table = None
    elif per_table is None:
        per_table = benchmark_targets()
    if target is None and not per_table:
        raise MasbenchError("--kind profile needs --target ACC (or target: keys in the benchmarks file)")
    epochs = run_epochs(store, runs, dataset=dataset, model=model, benchmark=benchmark)
    cells = with_time_to_target(cell_table(runs), epochs, target, per_table)
    cells = cells[cells["target"].notna()].reset_index(drop=True)
    if cells.empty:
        raise MasbenchError("no cell in the store has a target in the benchmarks file (give --target ACC)")
    ratio = ratios(workload_times(cells, epochs, profile_labels(cells)))
    return performance_profile(ratio), ratio


def plot_profile(profile: pd.DataFrame, output: str | Path, *, workloads: int, target_text: str) -> Path:
    """Each configuration's rho(tau) as a step line over tau in [1, 4]."""
    path = check_output(output)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    styles = ("-", "--", "-.", ":")  # profiles often coincide: line styles keep each one visible
    for i, label in enumerate(profile.columns):
        ax.step(profile.index, profile[label], where="post", label=label, linewidth=1.6,
                linestyle=styles[i % len(styles)])
    ax.set(xlabel="τ (time to target within a factor τ of the fastest)", ylabel="fraction of workloads",
           title=f"performance profile: {workloads} workload(s), target {target_text}", ylim=(-0.02, 1.02),
           xlim=(profile.index.min(), profile.index.max()))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return save(fig, path)
