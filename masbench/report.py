"""Aggregation of the store into the paper's tables, leaderboards and comparisons (pandas), and renderers.

A run's accuracy is its best test accuracy over its epochs (``metric="best"``) or
its last epoch's (``metric="final"``). Runs are grouped into cells: the same
benchmark, data set, model and optimizer configuration (the run name), over
seeds. Only completed runs count as seeds; pending, running, failed and
diverged ones are counted and flagged, never averaged in.

Everything is computed with one SQL query (an aggregate per run) and pandas,
so a store of 100,000 epoch rows reports in a fraction of a second.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import pandas as pd
from sqlalchemy import func, select

from masbench.errors import MasbenchError

METRICS = ("best", "final")
FORMATS = ("rich", "csv", "markdown", "latex", "json")
CSV_COLUMNS = ["dataset", "model", "name", "lambda_adam", "lambda_sgd", "n", "avg_acc", "std_acc", "max_acc"]
BASELINE_ORDER = {"adam": 0, "sgd": 1, "adamw": 2, "mas": 3}
LABELS = {"adam": "Adam", "sgd": "SGD", "adamw": "AdamW", "mas": "MAS"}
GROUP = ["benchmark", "dataset", "model", "name"]


def run_accuracies(store, *, metric: str = "best", dataset: str | None = None, model: str | None = None,
                   benchmark: str | None = None) -> pd.DataFrame:
    """One row per run: its identity, status, and its accuracy (percent) under ``metric``."""
    from masbench.store.models import Epoch, Run

    if metric not in METRICS:
        raise MasbenchError(f"Invalid metric: {metric!r} (valid: {', '.join(METRICS)})")
    per_run = (select(Epoch.run_id, func.max(Epoch.test_acc).label("best"), func.max(Epoch.epoch).label("last_epoch"))
               .group_by(Epoch.run_id).subquery())
    last = Epoch.__table__.alias("last")
    query = (
        select(Run.id, Run.benchmark, Run.dataset, Run.model, Run.name, Run.optimizer, Run.lambda_adam,
               Run.lambda_sgd, Run.seed, Run.status, Run.epochs, per_run.c.best, per_run.c.last_epoch,
               last.c.test_acc.label("final"))
        .outerjoin(per_run, per_run.c.run_id == Run.id)
        .outerjoin(last, (last.c.run_id == Run.id) & (last.c.epoch == per_run.c.last_epoch))
    )
    for column, value in (("dataset", dataset), ("model", model), ("benchmark", benchmark)):
        if value is not None:
            query = query.where(getattr(Run, column) == value)
    with store.engine.connect() as connection:
        frame = pd.read_sql(query, connection)
    frame["benchmark"] = frame["benchmark"].fillna("")
    frame["acc"] = frame[metric].astype(float) * 100.0
    frame.loc[frame["status"] != "completed", "acc"] = float("nan")
    return frame


def cell_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Cells over seeds: n (completed seeds), planned, avg/std/max accuracy (percent), and flags."""
    if runs.empty:
        return pd.DataFrame(columns=[*GROUP, "optimizer", "lambda_adam", "lambda_sgd", "n", "planned", "avg_acc",
                                     "std_acc", "max_acc", "failed", "diverged", "flags"])
    status = runs.assign(
        done=runs["status"].eq("completed"), failed=runs["status"].eq("failed"),
        diverged=runs["status"].eq("diverged"),
    )
    cells = status.groupby(GROUP, sort=False, dropna=False).agg(
        optimizer=("optimizer", "first"), lambda_adam=("lambda_adam", "first"), lambda_sgd=("lambda_sgd", "first"),
        n=("done", "sum"), planned=("id", "count"), avg_acc=("acc", "mean"), std_acc=("acc", "std"),
        max_acc=("acc", "max"), failed=("failed", "sum"), diverged=("diverged", "sum"),
    ).reset_index()
    cells[["n", "planned", "failed", "diverged"]] = cells[["n", "planned", "failed", "diverged"]].astype(int)
    cells["flags"] = [
        ", ".join(part for part in (
            f"{n}/{planned} seeds" if n < planned else "",
            f"{f} failed" if f else "",
            f"{d} diverged" if d else "",
        ) if part)
        for n, planned, f, d in zip(cells["n"], cells["planned"], cells["failed"], cells["diverged"])
    ]
    cells["order"] = cells["optimizer"].map(BASELINE_ORDER).fillna(9)
    cells = cells.sort_values(["benchmark", "dataset", "model", "order", "lambda_adam", "name"], kind="stable")
    return cells.drop(columns="order").reset_index(drop=True)


def with_best(cells: pd.DataFrame) -> pd.DataFrame:
    """Mark the best avg acc and the best acc max within each (benchmark, dataset, model) group."""
    cells = cells.copy()
    keys = ["benchmark", "dataset", "model"]
    for column in ("avg_acc", "max_acc"):
        best = cells.groupby(keys, sort=False)[column].transform("max")
        cells[f"best_{column}"] = cells[column].notna() & (cells[column].round(2) == best.round(2))
    return cells


def leaderboard(cells: pd.DataFrame) -> pd.DataFrame:
    """Every cell ranked by avg acc within its data set and model: 1 is best, ties share a rank, and cells
    without a completed seed come last, unranked."""
    keys = ["benchmark", "dataset", "model"]
    board = cells.sort_values([*keys, "avg_acc", "max_acc"], ascending=[True, True, True, False, False],
                              na_position="last", kind="stable").copy()
    board["rank"] = board.groupby(keys, sort=False)["avg_acc"].rank(method="min", ascending=False).astype("Int64")
    return board.reset_index(drop=True)


# --- renderers --------------------------------------------------------------------------------------------


def _pct(value: float) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2f}"


def _lam(row) -> tuple[str, str]:
    if row["optimizer"] != "mas":
        return "", ""
    return f"{row['lambda_adam']:g}", f"{row['lambda_sgd']:g}"


def display_names(cells: pd.DataFrame) -> pd.Series:
    """Adam, SGD, AdamW, MAS as in the paper; the full run name where that would be ambiguous in a group."""
    labels = cells["optimizer"].map(LABELS).fillna(cells["optimizer"])
    keys = [cells["benchmark"], cells["dataset"], cells["model"], labels, cells["lambda_adam"], cells["lambda_sgd"]]
    ambiguous = cells.groupby(keys, sort=False)["name"].transform("nunique") > 1
    return labels.where(~ambiguous, cells["name"])


def _title(benchmark: str, dataset: str, metric: str) -> str:
    which = "best test accuracy over epochs" if metric == "best" else "final-epoch test accuracy"
    head = f"{dataset}" + (f" (benchmark {benchmark})" if benchmark else "")
    return f"{head}: {which}, percent over seeds"


@dataclass
class Rendered:
    text: str
    rich: Any = None  # rich renderables, for the terminal


def render_tables(cells: pd.DataFrame, metric: str, fmt: str) -> Rendered:
    """The paper's tables: one per data set, a header row per model, then Adam, SGD, AdamW and MAS rows."""
    if fmt not in FORMATS:
        raise MasbenchError(f"Invalid format: {fmt!r} (valid: {', '.join(FORMATS)})")
    if fmt == "csv":
        return Rendered(csv_table(cells))
    cells = with_best(cells)
    cells["label"] = display_names(cells)
    if fmt == "json":
        return Rendered(json.dumps(_records(cells, metric), indent=2))
    groups = list(cells.groupby(["benchmark", "dataset"], sort=False))
    if fmt == "rich":
        return Rendered("", [_rich_table(frame, metric) for _, frame in groups])
    render = _markdown_table if fmt == "markdown" else _latex_table
    return Rendered("\n\n".join(render(frame, metric) for _, frame in groups) + "\n")


def csv_table(cells: pd.DataFrame) -> str:
    """dataset, model, name, lambda_adam, lambda_sgd, n, avg_acc, std_acc, max_acc (accuracies in percent)."""
    frame = cells[CSV_COLUMNS].copy()
    for column in ("avg_acc", "std_acc", "max_acc"):
        frame[column] = frame[column].round(4)
    return frame.to_csv(index=False, lineterminator="\n")


def _records(cells: pd.DataFrame, metric: str) -> list[dict[str, Any]]:
    out = []
    for row in cells.to_dict("records"):
        out.append({
            "benchmark": row["benchmark"] or None, "dataset": row["dataset"], "model": row["model"],
            "name": row["name"], "label": row["label"], "optimizer": row["optimizer"],
            "lambda_adam": row["lambda_adam"], "lambda_sgd": row["lambda_sgd"], "metric": metric,
            "n": row["n"], "planned": row["planned"],
            **{k: None if pd.isna(row[k]) else round(float(row[k]), 4) for k in ("avg_acc", "std_acc", "max_acc")},
            "best_avg_acc": bool(row["best_avg_acc"]), "best_max_acc": bool(row["best_max_acc"]),
            "failed": row["failed"], "diverged": row["diverged"], "flags": row["flags"] or None,
        })
    return out


def _rich_table(frame: pd.DataFrame, metric: str):
    from rich.table import Table

    benchmark, dataset = frame["benchmark"].iloc[0], frame["dataset"].iloc[0]
    table = Table(title=_title(benchmark, dataset, metric), title_justify="left")
    for column, justify in (("Name", "left"), ("λa", "right"), ("λs", "right"), ("avg acc", "right"),
                            ("acc max", "right"), ("std", "right"), ("n", "right"), ("flags", "left")):
        table.add_column(column, justify=justify)
    for model, rows in frame.groupby("model", sort=False):
        table.add_row(f"[bold]{model.capitalize() if model.startswith('resnet') else model}[/]", end_section=False)
        for row in rows.to_dict("records"):
            la, ls = _lam(row)
            avg = _pct(row["avg_acc"])
            best = _pct(row["max_acc"])
            table.add_row(
                _escape(row["label"]), la, ls,
                f"[bold]{avg}[/]" if row["best_avg_acc"] else avg,
                f"[bold]{best}[/]" if row["best_max_acc"] else best,
                _pct(row["std_acc"]), f"{row['n']}",
                f"[yellow]{_escape(row['flags'])}[/]" if row["flags"] else "",
            )
        table.add_section()
    return table


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _markdown_table(frame: pd.DataFrame, metric: str) -> str:
    benchmark, dataset = frame["benchmark"].iloc[0], frame["dataset"].iloc[0]
    lines = [f"**{_title(benchmark, dataset, metric)}**", "",
             "| Name | λa | λs | avg acc | acc max | std | n | flags |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for model, rows in frame.groupby("model", sort=False):
        lines.append(f"| **{model}** | | | | | | | |")
        for row in rows.to_dict("records"):
            la, ls = _lam(row)
            avg, best = _pct(row["avg_acc"]), _pct(row["max_acc"])
            lines.append(
                f"| {row['label']} | {la} | {ls} | {f'**{avg}**' if row['best_avg_acc'] else avg} | "
                f"{f'**{best}**' if row['best_max_acc'] else best} | {_pct(row['std_acc'])} | {row['n']} | "
                f"{row['flags']} |"
            )
    return "\n".join(lines)


def _latex_escape(text: str) -> str:
    for char, replacement in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("&", r"\&"), ("%", r"\%"), ("#", r"\#"),
                              ("$", r"\$"), ("{", r"\{"), ("}", r"\}")):
        text = text.replace(char, replacement)
    return text


def _bold_latex(text: str) -> str:
    return "\\textbf{" + text + "}"


def _latex_table(frame: pd.DataFrame, metric: str) -> str:
    benchmark, dataset = frame["benchmark"].iloc[0], frame["dataset"].iloc[0]
    lines = [r"\begin{table}[t]", r"\centering",
             rf"\caption{{{_latex_escape(_title(benchmark, dataset, metric))}}}",
             r"\begin{tabular}{lrrrrrr}", r"\toprule",
             r"Name & $\lambda_a$ & $\lambda_s$ & avg acc & acc max & std & $n$ \\", r"\midrule"]
    first = True
    for model, rows in frame.groupby("model", sort=False):
        if not first:
            lines.append(r"\midrule")
        first = False
        lines.append(rf"\multicolumn{{7}}{{l}}{{\textit{{{_latex_escape(model)}}}}} \\")
        for row in rows.to_dict("records"):
            la, ls = _lam(row)
            avg, best = _pct(row["avg_acc"]), _pct(row["max_acc"])
            name = _latex_escape(row["label"]) + (r"$^\dagger$" if row["flags"] else "")
            avg = _bold_latex(avg) if row["best_avg_acc"] else avg
            best = _bold_latex(best) if row["best_max_acc"] else best
            lines.append(f"{name} & {la} & {ls} & {avg} & {best} & {_pct(row['std_acc'])} & {row['n']} " + "\\\\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if frame["flags"].astype(bool).any():
        lines.append(r"\\[2pt]{\footnotesize $^\dagger$ fewer completed seeds than planned, or failed/diverged seeds.}")
    lines.append(r"\end{table}")
    return "\n".join(lines)


def render_leaderboard(board: pd.DataFrame, metric: str, fmt: str) -> Rendered:
    columns = ["rank", "dataset", "model", "name", "lambda_adam", "lambda_sgd", "n", "avg_acc", "std_acc", "max_acc",
               "flags"]
    if fmt == "csv":
        frame = board[columns].copy()
        for column in ("avg_acc", "std_acc", "max_acc"):
            frame[column] = frame[column].round(4)
        return Rendered(frame.to_csv(index=False, lineterminator="\n"))
    if fmt == "json":
        frame = board[[*columns, "benchmark"]].astype(object).where(board[[*columns, "benchmark"]].notna(), None)
        return Rendered(json.dumps(frame.to_dict("records"), indent=2, default=float))
    if fmt in ("markdown", "latex"):
        raise MasbenchError(f"Invalid format for --leaderboard: {fmt!r} (valid: rich, csv, json)")
    if fmt != "rich":
        raise MasbenchError(f"Invalid format: {fmt!r} (valid: {', '.join(FORMATS)})")
    from rich.table import Table

    tables = []
    for (benchmark, dataset, model), rows in board.groupby(["benchmark", "dataset", "model"], sort=False):
        title = f"leaderboard {dataset}/{model}" + (f" (benchmark {benchmark})" if benchmark else "")
        table = Table(title=f"{title}: {'best' if metric == 'best' else 'final'} test accuracy, %", title_justify="left")
        for column in ("rank", "name", "n", "avg acc", "std", "acc max", "flags"):
            table.add_column(column, justify="left" if column in ("name", "flags") else "right", overflow="fold")
        for row in rows.to_dict("records"):
            table.add_row("-" if pd.isna(row["rank"]) else str(row["rank"]), _escape(row["name"]), str(row["n"]), _pct(row["avg_acc"]),
                          _pct(row["std_acc"]), _pct(row["max_acc"]), _escape(row["flags"]))
        tables.append(table)
    return Rendered("", tables)


# --- comparisons ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Selector:
    """A configuration on the command line: ``mas:0.3``, ``mas:0.3:0.7``, ``adam``, ``sgd``, ``adamw``, or a run name."""

    text: str
    optimizer: str | None = None
    lambda_adam: float | None = None
    lambda_sgd: float | None = None
    name: str | None = None

    def matches(self, cells: pd.DataFrame) -> pd.Series:
        if self.name is not None:
            return cells["name"] == self.name
        mask = cells["optimizer"] == self.optimizer
        if self.lambda_adam is not None:
            mask &= (cells["lambda_adam"] - self.lambda_adam).abs() < 1e-9
        if self.lambda_sgd is not None:
            mask &= (cells["lambda_sgd"] - self.lambda_sgd).abs() < 1e-9
        return mask


def parse_selector(text: str) -> Selector:
    valid = "valid: mas:LAMBDA_ADAM, mas:LAMBDA_ADAM:LAMBDA_SGD, adam, sgd, adamw, or a run name such as mas[...]"
    if "[" in text:
        return Selector(text, name=text)
    head, *numbers = text.split(":")
    if head in ("adam", "sgd", "adamw") and not numbers:
        return Selector(text, optimizer=head)
    if head == "mas" and 1 <= len(numbers) <= 2:
        try:
            values = [float(v) for v in numbers]
        except ValueError:
            values = []
        if values and all(0 <= v for v in values):
            return Selector(text, optimizer="mas", lambda_adam=values[0],
                            lambda_sgd=values[1] if len(values) == 2 else None)
    raise MasbenchError(f"Invalid configuration: {text!r} ({valid})")


@dataclass
class Side:
    label: str
    name: str
    values: dict[int, float]  # seed -> accuracy, percent

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(pd.Series(list(self.values.values()), dtype=float).mean()) if self.values else float("nan")

    @property
    def std(self) -> float:
        return float(pd.Series(list(self.values.values()), dtype=float).std()) if self.n > 1 else float("nan")


@dataclass
class Difference:
    other: Side
    diff: float  # other - reference, points
    low: float
    high: float
    p_value: float
    test: str | None  # "paired t-test", "Welch t-test", or None when too few seeds
    verdict: str


@dataclass
class Comparison:
    benchmark: str
    dataset: str
    model: str
    reference: Side
    differences: list[Difference]


def _difference(a: Side, b: Side, level: float = 0.95) -> Difference:
    """b - a with a confidence interval and a t-test: paired by seed when both have the same seeds."""
    from scipy import stats

    diff = b.mean - a.mean
    if set(a.values) == set(b.values) and a.n >= 2:
        seeds = sorted(a.values)
        d = pd.Series([b.values[s] - a.values[s] for s in seeds], dtype=float)
        se, df, test = d.std() / math.sqrt(len(d)), len(d) - 1, "paired t-test"
        p = float(stats.ttest_rel([b.values[s] for s in seeds], [a.values[s] for s in seeds]).pvalue)
    elif a.n >= 2 and b.n >= 2:
        va, vb = a.std**2 / a.n, b.std**2 / b.n
        se = math.sqrt(va + vb)
        df = (va + vb) ** 2 / (va**2 / (a.n - 1) + vb**2 / (b.n - 1)) if va + vb > 0 else float("nan")
        test = "Welch t-test"
        p = float(stats.ttest_ind(list(b.values.values()), list(a.values.values()), equal_var=False).pvalue)
    else:
        verdict = f"too few seeds for a test ({a.label}: {a.n}, {b.label}: {b.n}; need 2 on each side)"
        return Difference(b, diff, float("nan"), float("nan"), float("nan"), None, verdict)
    half = float(stats.t.ppf(0.5 + level / 2, df)) * se if se > 0 else 0.0
    if math.isnan(p):
        verdict = (f"{b.label} and {a.label} differ by exactly {diff:+.2f} points on every seed (no variance to test)"
                   if diff else f"{b.label} and {a.label} are identical on every seed")
    elif p < 1 - level:
        verdict = (f"{b.label} is {'better' if diff > 0 else 'worse'} than {a.label} by {abs(diff):.2f} points "
                   f"(p = {p:.3g}, {test})")
    else:
        verdict = f"no significant difference between {b.label} and {a.label} (p = {p:.3g}, {test})"
    return Difference(b, diff, diff - half, diff + half, p, test, verdict)


def compare(runs: pd.DataFrame, selectors: list[Selector]) -> list[Comparison]:
    """For each (benchmark, data set, model) holding every selected configuration: the first against each other."""
    if len(selectors) < 2:
        raise MasbenchError("compare needs two configurations or more, e.g. masbench compare adam mas:0.3")
    cells = cell_table(runs)
    done = runs[runs["status"] == "completed"]
    comparisons = []
    for (benchmark, dataset, model), group in cells.groupby(["benchmark", "dataset", "model"], sort=False):
        sides = []
        for selector in selectors:
            found = group[selector.matches(group)]
            if len(found) > 1:
                names = ", ".join(found["name"])
                raise MasbenchError(f"{selector.text!r} is ambiguous in {dataset}/{model}: it matches {names} "
                                    f"(give the full run name)")
            if found.empty:
                break
            name = found["name"].iloc[0]
            rows = done[(done["benchmark"] == benchmark) & (done["dataset"] == dataset) & (done["model"] == model)
                        & (done["name"] == name)]
            sides.append(Side(selector.text, name, dict(zip(rows["seed"].astype(int), rows["acc"].astype(float)))))
        if len(sides) == len(selectors):
            comparisons.append(Comparison(benchmark, dataset, model, sides[0],
                                          [_difference(sides[0], other) for other in sides[1:]]))
    if not comparisons:
        wanted = ", ".join(s.text for s in selectors)
        raise MasbenchError(f"no data set and model in the store has all of {wanted} (see masbench report --leaderboard)")
    return comparisons


# --- the regression gate ------------------------------------------------------------------------------------


@dataclass
class GateResult:
    checked: int
    regressions: list[str]


def regression_gate(current: pd.DataFrame, baseline_path, tolerance: float | None = None) -> GateResult:
    """Compare the store's cells with a saved ``report --format csv``: a cell whose avg acc fell by more
    than the tolerance (default: the larger of 1 point and twice the baseline's std), or that has no
    completed seed any more, is a regression."""
    from pathlib import Path

    path = Path(baseline_path)
    if not path.is_file():
        raise MasbenchError(f"baseline file {path} does not exist (make one with masbench report --format csv --output FILE)")
    try:
        baseline = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise MasbenchError(f"cannot parse baseline {path}: {' '.join(str(error).split())[:200]}") from None
    missing = [c for c in CSV_COLUMNS if c not in baseline.columns]
    if missing:
        raise MasbenchError(f"baseline {path} lacks column(s) {', '.join(missing)} (expected {', '.join(CSV_COLUMNS)})")
    if tolerance is not None and tolerance < 0:
        raise MasbenchError(f"Invalid --tolerance: {tolerance} (must be >= 0)")
    keys = ["dataset", "model", "name"]
    duplicated = current[current.duplicated(keys, keep=False)]
    if not duplicated.empty:
        row = duplicated.iloc[0]
        raise MasbenchError(f"the store has {row['name']} on {row['dataset']}/{row['model']} under several benchmarks: "
                            f"choose one with --benchmark")
    merged = baseline.merge(current[[*keys, "avg_acc", "n"]], on=keys, how="left", suffixes=("_base", ""))
    regressions = []
    for row in merged.to_dict("records"):
        std = row["std_acc"] if not pd.isna(row["std_acc"]) else 0.0
        allowed = tolerance if tolerance is not None else max(1.0, 2.0 * std)
        where = f"{row['dataset']}/{row['model']} {row['name']}"
        if pd.isna(row["avg_acc"]):
            regressions.append(f"{where}: no completed seed now (baseline {row['avg_acc_base']:.2f})")
        elif round(row["avg_acc_base"] - row["avg_acc"], 4) > allowed:  # the CSV keeps 4 decimals
            regressions.append(f"{where}: {row['avg_acc_base']:.2f} -> {row['avg_acc']:.2f} "
                               f"({row['avg_acc'] - row['avg_acc_base']:+.2f} points; tolerance {allowed:.2f})")
    return GateResult(len(merged), regressions)
