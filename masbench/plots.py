"""Plots from the store (matplotlib, Agg backend, imported only here).

- ``plot_curves``: test accuracy and test loss against epoch, mean ± std band over
  seeds per optimizer configuration, for one data set and model (the paper's Fig. 7).
- ``plot_lambda``: avg acc against lambda_adam for MAS, with the baselines as
  horizontal lines (lambda sensitivity).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from masbench.errors import MasbenchError
from masbench.report import LABELS, cell_table, display_names

SUFFIXES = (".png", ".svg", ".pdf")


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _check_output(output: str | Path) -> Path:
    path = Path(output)
    if path.suffix.lower() not in SUFFIXES:
        raise MasbenchError(f"Invalid --output: {str(path)!r} (the file must end in {', '.join(SUFFIXES)})")
    if not path.parent.exists():
        raise MasbenchError(f"Invalid --output: folder {path.parent} does not exist")
    return path


def choose(frame: pd.DataFrame, column: str, value: str | None, what: str) -> str:
    """The data set or model to plot: the one given, or the only one in the store."""
    present = sorted(frame[column].dropna().unique())
    if value is not None:
        if value not in present:
            raise MasbenchError(f"no runs for {what} {value!r} (the store has: {', '.join(present) or 'none'})")
        return value
    if len(present) != 1:
        raise MasbenchError(f"give --{what} (the store has: {', '.join(present) or 'none'})")
    return present[0]


def plot_curves(epochs: pd.DataFrame, output: str | Path, *, dataset: str, model: str) -> Path:
    """Test accuracy (percent) and test loss per epoch: the mean over completed seeds, with a ± std band."""
    path = _check_output(output)
    frame = epochs[(epochs["dataset"] == dataset) & (epochs["model"] == model) & (epochs["status"] == "completed")]
    if frame.empty:
        raise MasbenchError(f"no completed runs for {dataset}/{model}")
    plt = _figure()
    fig, (acc_ax, loss_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    stats = (frame.assign(test_acc=frame["test_acc"] * 100)
             .groupby(["optimizer", "name", "epoch"])[["test_acc", "test_loss"]].agg(["mean", "std"]).reset_index())
    configs = frame[["optimizer", "name"]].drop_duplicates().itertuples(index=False, name=None)
    order = sorted(configs, key=lambda c: (list(LABELS).index(c[0]) if c[0] in LABELS else 9, c[1]))
    lambdas = frame.drop_duplicates("name").set_index("name")[["run_lambda_adam", "run_lambda_sgd"]]
    short = {}
    for optimizer, name in order:
        if optimizer == "mas":
            la, ls = lambdas.loc[name, "run_lambda_adam"], lambdas.loc[name, "run_lambda_sgd"]
            short[name] = f"MAS λa={la:g}, λs={ls:g}"
        else:
            short[name] = LABELS.get(optimizer, optimizer)
    ambiguous = len(set(short.values())) < len(short)
    for optimizer, name in order:
        rows = stats[stats[("name", "")] == name]
        label = name if ambiguous else short[name]
        for ax, metric in ((acc_ax, "test_acc"), (loss_ax, "test_loss")):
            mean, std = rows[(metric, "mean")], rows[(metric, "std")].fillna(0.0)
            epoch = rows[("epoch", "")]
            line, = ax.plot(epoch, mean, label=label, linewidth=1.4)
            ax.fill_between(epoch, mean - std, mean + std, color=line.get_color(), alpha=0.18, linewidth=0)
    acc_ax.set(xlabel="epoch", ylabel="test accuracy (%)", title=f"{dataset} / {model}: test accuracy")
    loss_ax.set(xlabel="epoch", ylabel="test loss", title=f"{dataset} / {model}: test loss")
    acc_ax.legend(fontsize=7, loc="lower right")
    from matplotlib.ticker import MaxNLocator

    for ax in (acc_ax, loss_ax):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_lambda(runs: pd.DataFrame, output: str | Path, *, dataset: str, model: str, metric: str) -> Path:
    """avg acc (± std over seeds) against lambda_adam for MAS, baselines as dashed lines."""
    path = _check_output(output)
    cells = cell_table(runs[(runs["dataset"] == dataset) & (runs["model"] == model)])
    cells = cells[cells["n"] > 0]
    mas = cells[(cells["optimizer"] == "mas")].sort_values("lambda_adam")
    if mas.empty:
        raise MasbenchError(f"no completed MAS runs for {dataset}/{model}")
    plt = _figure()
    fig, ax = plt.subplots(figsize=(6, 4.2))
    colours = {"adam": "tab:orange", "sgd": "tab:green", "adamw": "tab:purple"}
    ax.errorbar(mas["lambda_adam"], mas["avg_acc"], yerr=mas["std_acc"].fillna(0.0), marker="o", capsize=3,
                color="tab:red",
                label="MAS (λs = 1 − λa)" if (abs(mas["lambda_adam"] + mas["lambda_sgd"] - 1) < 1e-9).all() else "MAS")
    baselines = cells[cells["optimizer"] != "mas"]
    names = display_names(baselines) if not baselines.empty else []
    for (_, row), label in zip(baselines.iterrows(), names):
        colour = colours.get(row["optimizer"], "tab:gray")
        std = row["std_acc"] if pd.notna(row["std_acc"]) else 0.0
        ax.axhline(row["avg_acc"], linestyle="--", linewidth=1.1, color=colour, label=f"{label} ({row['avg_acc']:.2f})")
        ax.axhspan(row["avg_acc"] - std, row["avg_acc"] + std, color=colour, alpha=0.08)
    which = "best" if metric == "best" else "final"
    ax.set(xlabel="λa (weight of Adam)", ylabel=f"avg {which} test accuracy (%)",
           title=f"{dataset} / {model}: λ sensitivity")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
