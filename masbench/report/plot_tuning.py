"""``masbench plot --kind tuning``: a tune's tuning curves and its response to the learning rate.

Left: per optimizer, the expected best validation accuracy after k of its trials, k = 1..N
(``tuning.expected_max``, exact over every order of the trials), and at k = N its final seeds' mean test
accuracy with its 95% t-interval (the error bar is the half width, ± t s / sqrt(n); the marks of several
optimizers sit a little apart around k = N, and the y axis stops at 0 and 100%). Right: every scored
trial's validation accuracy against its learning rate (log axis), one colour per optimizer, the chosen trial
a star; an optimizer whose lr was not searched has no points there.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from masbench.errors import MasbenchError
from masbench.report.plots import Palette, pyplot, save
from masbench.report.tuning import curves, label, optimizers, scored, search_trials

DODGE = 0.015  # how far apart the final seeds' marks of several optimizers sit around k = N, per trial of the axis


def tuning_figure(frame: pd.DataFrame, table: pd.DataFrame, *, tune: str):
    """The figure (matplotlib), its curves' lines with ``gid`` ``curve-<optimizer>``, the final accuracies'
    error bars ``final-<optimizer>``, the trials ``trials-<optimizer>`` and chosen trials ``chosen-<optimizer>``."""
    expected = curves(frame)
    if not expected:
        raise MasbenchError(f"tune {tune} has no scored search trial yet: nothing to plot")
    plt = pyplot()
    fig, (curve_ax, lr_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    finals = table.set_index("optimizer")
    labels = optimizers(frame)
    searched_lr = False
    shown = [value for values in expected.values() for value in values]  # what the y axis must hold
    longest = max(len(values) for values in expected.values())
    palette = Palette(label_head(optimizer) for optimizer in labels)
    for i, optimizer in enumerate(labels):
        colour = palette.style(label_head(optimizer))["color"]
        if optimizer in expected:
            values = expected[optimizer]
            curve_ax.plot(range(1, len(values) + 1), values, color=colour, marker="o", markersize=3,
                          label=f"{label(optimizer)}: expected best val acc", gid=f"curve-{optimizer}")
            row = finals.loc[optimizer]
            if row["n"] > 0:
                half = row["ci95_half"] if not math.isnan(row["ci95_half"]) else 0.0
                # Finals at one k would hide each other: each is moved a little to the side, in a fixed order.
                dodge = DODGE * longest * (i - (len(labels) - 1) / 2)
                bar = curve_ax.errorbar([len(values) + dodge], [row["test_acc"]], yerr=[half], color=colour,
                                        marker="D", capsize=4, linestyle="none",
                                        label=f"{label(optimizer)}: final test acc (n={row['n']})")
                bar.lines[0].set_gid(f"final-{optimizer}")
                shown += [row["test_acc"] - half, row["test_acc"] + half]
        trials = scored(search_trials(frame, optimizer))
        with_lr = trials[[isinstance(p, dict) and "lr" in p for p in trials["params"]]]
        if with_lr.empty:
            continue
        searched_lr = True
        lrs = [p["lr"] for p in with_lr["params"]]
        lr_ax.scatter(lrs, with_lr["best_val_acc"] * 100, color=colour, alpha=0.7, s=22,
                      label=label(optimizer), gid=f"trials-{optimizer}")
        chosen = row_of_chosen(finals, optimizer)
        if chosen is not None and "lr" in chosen["params"]:
            lr_ax.scatter([chosen["params"]["lr"]], [chosen["val_acc"]], marker="*", s=220, color=colour,
                          edgecolors="black", linewidths=0.8, zorder=3, gid=f"chosen-{optimizer}")
    low, high = max(min(shown), 0.0), min(max(shown), 100.0)  # an interval past 0 or 100% runs off the axes
    margin = max(high - low, 1.0) * 0.05
    curve_ax.set_ylim(low - margin, high + margin)
    curve_ax.set(xlabel="trials k", ylabel="accuracy (%)",
                 title=f"tune {tune}: expected best validation accuracy after k trials")
    from matplotlib.ticker import MaxNLocator

    curve_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    curve_ax.legend(fontsize=7, loc="best")
    if searched_lr:
        from matplotlib.ticker import FuncFormatter, NullFormatter

        lr_ax.set_xscale("log")
        # Plain numbers: the log axis's default labels are mathtext, which the report's SVG shows as source.
        lr_ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        lr_ax.xaxis.set_minor_formatter(NullFormatter())
        lr_ax.scatter([], [], marker="*", s=220, color="white", edgecolors="black", linewidths=0.8,
                      label="chosen trial")  # one legend entry for every optimizer's star
        lr_ax.legend(fontsize=7, loc="best")
    else:
        lr_ax.text(0.5, 0.5, "no optimizer's lr was searched", ha="center", va="center", transform=lr_ax.transAxes)
    lr_ax.set(xlabel="learning rate (log scale)", ylabel="validation accuracy (%)",
              title=f"tune {tune}: every trial's validation accuracy")
    for ax in (curve_ax, lr_ax):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def label_head(optimizer: str) -> str:
    """The optimizer a tune's label names (``mas[lr=0.01]`` -> ``mas``): its colour in every figure."""
    return str(optimizer).split("[", 1)[0]


def row_of_chosen(table: pd.DataFrame, optimizer: str) -> pd.Series | None:
    """The table row of ``optimizer`` (indexed by optimizer) if it has a chosen trial."""
    row = table.loc[optimizer]
    return None if row["chosen"] is None or pd.isna(row["chosen"]) else row


def plot_tuning(frame: pd.DataFrame, table: pd.DataFrame, output: str | Path, *, tune: str) -> Path:
    """``tuning_figure`` saved to ``output`` (.png, .svg or .pdf)."""
    path = Path(output)
    fig = tuning_figure(frame, table, tune=tune)
    return save(fig, path)
