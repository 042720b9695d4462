"""Plots from the store (matplotlib, Agg backend, imported only here).

- ``plot_curves``: test accuracy and test loss against epoch, mean ± std band over
  seeds per cell (``config_key``), for one data set and model (the paper's Fig. 7).
- ``plot_lambda``: avg acc against lambda_adam for MAS, with the baselines as
  horizontal lines (lambda sensitivity).

Every figure (these, the profile and the tuning plot) draws an optimizer in one colour (``Palette``): the
built-in ones always in the same colour, MAS in reds that darken with λa, and other optimizers (third-party
baselines, mixes) in a colour and line style drawn from their name, so that they differ from each other within
a figure and keep their look from one report to the next.
"""

from __future__ import annotations

from pathlib import Path

import hashlib

import pandas as pd

from masbench.errors import MasbenchError
from masbench.text.paths import check_new_file
from masbench.report import LABELS, cell_table, differing_settings

SUFFIXES = (".png", ".svg", ".pdf")


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def check_output(output: str | Path) -> Path:
    """``--output``: a .png, .svg or .pdf file that may be written. ``masbench plot`` checks it once, before the
    store is read; the plot functions take it as checked (``html`` gives them a temporary file)."""
    path = Path(output)
    if path.suffix.lower() not in SUFFIXES:
        raise MasbenchError(f"Invalid --output: {str(path)!r} (the file must end in {', '.join(SUFFIXES)})")
    return check_new_file(path, "Invalid --output:")


def save(fig, path: Path) -> Path:
    """``fig`` written to ``path`` and closed; a path that cannot be written (a directory, a read-only or
    special file system) is one line."""
    try:
        fig.savefig(path)
    except OSError as error:
        raise MasbenchError(f"cannot write {path}: {error.strerror or error}") from None
    finally:
        pyplot().close(fig)
    return path


# The built-in optimizers' colours (matplotlib's tab10, by name), the same in every figure.
FIXED_COLOURS = {"adam": "#1f77b4", "sgd": "#ff7f0e", "adamw": "#9467bd", "mas": "#d62728"}
# For the rest: colours apart from the fixed ones, and line styles, drawn from the optimizer's name.
OTHER_COLOURS = ("#2ca02c", "#17becf", "#8c564b", "#e377c2", "#bcbd22", "#7f7f7f", "#393b79", "#637939",
                 "#843c39", "#7b4173")
OTHER_STYLES = ("--", "-.", ":", (0, (5, 1, 1, 1)))
DASHES = ("-", "--", "-.", ":")  # the line styles that tell apart lines of one colour, in turn


def _slot(name: str) -> int:
    """A fixed number for ``name`` (sha256: the same in every process, unlike ``hash``)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big")


class Palette:
    """One look per optimizer: ``style(optimizer)`` gives its matplotlib ``color`` and ``linestyle``.

    Built-in optimizers keep their fixed colour and a solid line. Any other name (``pkg.mod:Class``, an entry
    point, ``mix``'s heads) takes the colour and style its name's hash picks; when two names of one figure would
    look the same, the later one (in sorted order) takes the next free look. ``lambda_adam`` shades MAS from
    light (λa near 0) to dark red (λa near 1).
    """

    def __init__(self, names=()):
        self.looks: dict[str, tuple[str, object]] = {}
        taken: set[tuple[str, object]] = set()
        count = len(OTHER_COLOURS) * len(OTHER_STYLES)
        for name in sorted({str(n) for n in names} - set(FIXED_COLOURS)):
            slot = _slot(name) % count
            for step in range(count):
                look = self._look((slot + step) % count)
                if look not in taken:
                    break
            taken.add(look)
            self.looks[name] = look

    @staticmethod
    def _look(slot: int) -> tuple[str, object]:
        return OTHER_COLOURS[slot % len(OTHER_COLOURS)], OTHER_STYLES[slot // len(OTHER_COLOURS)]

    def style(self, optimizer: str, lambda_adam: float | None = None) -> dict:
        optimizer = str(optimizer)
        if optimizer == "mas" and lambda_adam is not None and pd.notna(lambda_adam):
            from matplotlib import colormaps

            return {"color": colormaps["Reds"](0.35 + 0.6 * min(max(float(lambda_adam), 0.0), 1.0)),
                    "linestyle": "-"}
        if optimizer in FIXED_COLOURS:
            return {"color": FIXED_COLOURS[optimizer], "linestyle": "-"}
        colour, linestyle = self.looks.get(optimizer) or self._look(_slot(optimizer) % len(OTHER_COLOURS))
        return {"color": colour, "linestyle": linestyle}


def cell_styles(cells: pd.DataFrame) -> dict[str, dict]:
    """config_key -> the cell's line style: its optimizer's look (``Palette``), a mix told by its weights'
    run name; cells that would look the same (one optimizer, other settings) get other dashes in turn."""
    names = [name.split("[", 1)[0] if optimizer == "mix" else optimizer
             for optimizer, name in zip(cells["optimizer"], cells["name"])]
    palette = Palette(names)
    out: dict[str, dict] = {}
    seen: dict[str, int] = {}
    for key, name, la in zip(cells["config_key"], names, cells["lambda_adam"]):
        look = palette.style(name, la if name == "mas" else None)
        shade = repr(look["color"])
        count = seen.get(shade, 0)
        seen[shade] = count + 1
        if count:
            look = {**look, "linestyle": DASHES[(DASHES.index(look["linestyle"]) + count) % len(DASHES)
                                                if look["linestyle"] in DASHES else count % len(DASHES)]}
        out[key] = look
    return out


def per_benchmark(runs: pd.DataFrame, output: str | Path) -> list[tuple[str, Path]]:
    """Where the figure of each benchmark of ``runs`` goes: as reports split tables by benchmark, a plot draws
    each benchmark on a figure of its own. One benchmark: ``output`` itself; several: ``output``'s name with
    ``-<benchmark>`` before its suffix (``-runs`` for runs of no benchmark, made by ``masbench run``). ``output``
    is checked already (``check_output``); each file named after it is checked here, once."""
    import re

    path = Path(output)
    present = sorted(runs["benchmark"].fillna("").unique())
    if len(present) <= 1:
        return [(present[0] if present else "", path)]
    named = [(name, path.with_name(f"{path.stem}-{re.sub(r'[^A-Za-z0-9_.-]', '_', name) or 'runs'}{path.suffix}"))
             for name in present]
    return [(name, check_new_file(each, "Invalid --output:")) for name, each in named]


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


def curve_labels(cells: pd.DataFrame) -> dict[str, str]:
    """config_key -> legend label: ``Adam``, ``MAS λa=0.3, λs=0.7``, and the settings that tell apart cells
    of the plot that would share a label (``Adam (epochs=2)``; the benchmark, when the plot holds two)."""
    labels = pd.Series([LABELS.get(o, o) if o != "mas" else f"MAS λa={la:g}, λs={ls:g}"
                        for o, la, ls in zip(cells["optimizer"], cells["lambda_adam"], cells["lambda_sgd"])],
                       index=cells.index, dtype=object)
    settings = differing_settings(cells, [labels])
    shown = labels.where(settings == "", labels + " (" + settings + ")")
    return dict(zip(cells["config_key"], shown))


def plot_curves(epochs: pd.DataFrame, output: str | Path, *, dataset: str, model: str,
                runs: pd.DataFrame | None = None) -> Path:
    """Test accuracy (percent) and test loss per epoch: the mean over each cell's completed seeds, with a
    ± std band. ``runs`` (``run_accuracies``) names the cells; without it, by run name and config key."""
    path = Path(output)
    frame = epochs[(epochs["dataset"] == dataset) & (epochs["model"] == model) & (epochs["status"] == "completed")]
    if frame.empty:
        raise MasbenchError(f"no completed runs for {dataset}/{model}")
    plt = pyplot()
    fig, (acc_ax, loss_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    stats = (frame.assign(test_acc=frame["test_acc"] * 100)
             .groupby(["config_key", "epoch"])[["test_acc", "test_loss"]].agg(["mean", "std"]).reset_index())
    if runs is not None:
        cells = cell_table(runs[runs["config_key"].isin(frame["config_key"])])
        labels, order = curve_labels(cells), list(cells["config_key"])
    else:
        cells = frame.drop_duplicates("config_key")
        labels = {k: f"{name} ({k[:8]})" for k, name in zip(cells["config_key"], cells["name"])}
        order = sorted(labels, key=labels.get)
    styles = cell_styles(cells)
    for key in order:
        rows = stats[stats[("config_key", "")] == key]
        for ax, metric in ((acc_ax, "test_acc"), (loss_ax, "test_loss")):
            mean, std = rows[(metric, "mean")], rows[(metric, "std")].fillna(0.0)
            epoch = rows[("epoch", "")]
            gid = f"{'curve' if metric == 'test_acc' else 'loss'}-{key}"  # ids of the SVG, unique in it
            line, = ax.plot(epoch, mean, label=labels[key], linewidth=1.4, gid=gid, **styles[key])
            ax.fill_between(epoch, mean - std, mean + std, color=line.get_color(), alpha=0.18, linewidth=0)
    acc_ax.set(xlabel="epoch", ylabel="test accuracy (%)", title=f"{dataset} / {model}: test accuracy")
    loss_ax.set(xlabel="epoch", ylabel="test loss", title=f"{dataset} / {model}: test loss")
    acc_ax.legend(fontsize=7, loc="lower right")
    from matplotlib.ticker import MaxNLocator

    for ax in (acc_ax, loss_ax):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    return save(fig, path)


def _without_lambdas_dict(canonical: dict) -> dict:
    return {k: v for k, v in canonical.items() if k not in ("lambda_adam", "lambda_sgd", "seed")}


def _without_lambdas(canonical: dict) -> str:
    return repr(sorted(_without_lambdas_dict(canonical).items()))


def plot_lambda(runs: pd.DataFrame, output: str | Path, *, dataset: str, model: str, metric: str) -> Path:
    """avg acc (± std over seeds) against lambda_adam for MAS, baselines as horizontal lines in their colours."""
    path = Path(output)
    cells = cell_table(runs[(runs["dataset"] == dataset) & (runs["model"] == model)])
    cells = cells[cells["n"] > 0]
    mas = cells[(cells["optimizer"] == "mas")].sort_values("lambda_adam")
    if mas.empty:
        raise MasbenchError(f"no completed MAS runs for {dataset}/{model}")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.2))
    baselines = cells[cells["optimizer"] != "mas"]
    styles = cell_styles(baselines)
    # One line per series: MAS cells that differ only in their lambdas (other epochs make another line).
    series = pd.Series([_without_lambdas(c) for c in mas["canonical"]], index=mas.index)
    heads = mas.groupby(series, sort=False).head(1)
    heads = heads.assign(canonical=[_without_lambdas_dict(c) for c in heads["canonical"]])
    extra = dict(zip(series[heads.index], differing_settings(heads, [heads["optimizer"]])))
    for i, (key, line) in enumerate(mas.groupby(series, sort=False)):
        complement = (abs(line["lambda_adam"] + line["lambda_sgd"] - 1) < 1e-9).all()
        label = ("MAS (λs = 1 − λa)" if complement else "MAS") + (f" ({extra[key]})" if extra[key] else "")
        ax.errorbar(line["lambda_adam"], line["avg_acc"], yerr=line["std_acc"].fillna(0.0), marker="o", capsize=3,
                    color=FIXED_COLOURS["mas"], linestyle=DASHES[i % len(DASHES)], label=label)
    names = curve_labels(baselines) if not baselines.empty else {}
    for row in baselines.to_dict("records"):
        look = styles[row["config_key"]]
        colour = look["color"]
        std = row["std_acc"] if pd.notna(row["std_acc"]) else 0.0
        ax.axhline(row["avg_acc"], linewidth=1.1, label=f"{names[row['config_key']]} ({row['avg_acc']:.2f})",
                   gid=f"baseline-{row['config_key']}", **look)
        ax.axhspan(row["avg_acc"] - std, row["avg_acc"] + std, color=colour, alpha=0.08)
    which = {"best": "best", "final": "final", "val": "best-validation-epoch"}[metric]
    ax.set(xlabel="λa (weight of Adam)", ylabel=f"avg {which} test accuracy (%)",
           title=f"{dataset} / {model}: λ sensitivity")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save(fig, path)
