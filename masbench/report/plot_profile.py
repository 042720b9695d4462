"""``masbench plot --kind profile``: performance profiles from time to target (``masbench.report.profile``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from masbench.errors import MasbenchError
from masbench.report.plots import DASHES, cell_styles, pyplot, save


class Profile(NamedTuple):
    profile: pd.DataFrame  # rho_c(tau)
    ratio: pd.DataFrame  # r(c, w)
    styles: dict[str, dict]  # each configuration's line style
    noise: str  # ``target.noise_note`` of its cells: "" unless seconds were noisy and counted


def profile_frame(store, runs: pd.DataFrame, target: float | None, benchmark: str | None = None,
                  dataset: str | None = None, model: str | None = None,
                  per_table: Mapping[tuple[str, str, str], float] | None = None, by: str = "seconds") -> Profile:
    """The performance profile of the store's workloads (filtered), with ``target`` or the benchmarks file's,
    over seconds or epochs to target (``by``).

    ``per_table``: the file's targets (``benchmark_targets()``) where the caller has read them already.
    """
    from masbench.report import benchmark_targets, cell_table, run_epochs, with_time_to_target
    from masbench.report.target import noise_note
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
    labels = profile_labels(cells)
    ratio = ratios(workload_times(cells, epochs, labels, by))
    looks = cell_styles(cells)
    styles = {label: looks[key] for label, key in zip(labels, cells["config_key"])}
    return Profile(performance_profile(ratio), ratio, styles, noise_note(cells) if by == "seconds" else "")


def plot_profile(profile: pd.DataFrame, output: str | Path, *, workloads: int, target_text: str,
                 styles: Mapping[str, dict] | None = None, by: str = "seconds") -> Path:
    """Each configuration's rho(tau) as a step line over tau in [1, 4], in its optimizer's colour (``styles``:
    label -> matplotlib style, from ``profile_frame``)."""
    path = Path(output)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    # profiles often coincide: line styles keep each one visible
    for i, label in enumerate(profile.columns):
        look = dict((styles or {}).get(label, {}))
        look.setdefault("linestyle", DASHES[i % len(DASHES)])
        ax.step(profile.index, profile[label], where="post", label=label, linewidth=1.6, gid=f"profile-{i}",
                **look)
    ax.set(xlabel=f"τ ({by} to target within a factor τ of the fastest)", ylabel="fraction of workloads",
           title=f"performance profile: {workloads} workload(s), target {target_text}", ylim=(-0.02, 1.02),
           xlim=(profile.index.min(), profile.index.max()))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return save(fig, path)
