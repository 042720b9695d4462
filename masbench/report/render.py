"""Renderers of cells: the paper's tables (rich, csv, markdown, latex, json) and leaderboards.

The CSV (``report --table --format csv``) is also the regression gate's baseline: it
names each cell by ``config_key`` and records the metric, the masbench version and
each cell's completed seeds with their accuracies, so the gate can pair seeds.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from masbench.errors import MasbenchError
from masbench.report.aggregate import METRIC_TITLES, cell_names, display_names, left_out_note, shown_interval, with_best
from masbench.report.significance import SIGNIFICANCE_COLUMNS, has_significance, legend, mark
from masbench.report.target import TARGET_COLUMNS, has_target, target_note, target_texts
from masbench.text.numbers import acc_text
from masbench.text.shown import shown
from masbench.report.tuning import label, shown_params, tuned_legend

FORMATS = ("rich", "csv", "markdown", "latex", "json")
CI_HEADER = "±CI95"  # the half-width of the 95% t-interval: the mean is avg acc ± it (ci95_half in csv and json)
CSV_COLUMNS = ["benchmark", "dataset", "model", "name", "settings", "config_key", "lambda_adam", "lambda_sgd", "weights",
               "metric",
               "n", "avg_acc", "std_acc", "max_acc", "seeds", "seed_accs", "masbench_version", "ci95_half", "flags",
               "left_out"]


def shown_percent(value: float) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2f}"


def shown_lambdas(row) -> tuple[str, str]:
    if row["optimizer"] != "mas":
        return "", ""
    # A run left out may hold anything there (text, by hand): shown as it is
    return tuple(f"{v:g}" if isinstance(v, (int, float)) else shown(v) for v in (row["lambda_adam"], row["lambda_sgd"]))


def table_title(benchmark: str, dataset: str, metric: str) -> str:
    which = METRIC_TITLES[metric]
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
        return Rendered(csv_table(cells, metric))
    cells = with_best(cells)
    cells["label"] = display_names(cells)
    if fmt == "json":
        return Rendered(json.dumps(_records(cells, metric), indent=2))
    groups = list(cells.groupby(["benchmark", "dataset"], sort=False))
    if fmt == "rich":
        return Rendered("", [_rich_table(frame, metric) for _, frame in groups])
    render = _markdown_table if fmt == "markdown" else _latex_table
    return Rendered("\n\n".join(render(frame, metric) for _, frame in groups) + "\n")


def csv_table(cells: pd.DataFrame, metric: str) -> str:
    """One row per cell (``CSV_COLUMNS``): accuracies in percent, 4 decimals; ``seeds`` and ``seed_accs``
    space-separated (6 decimals), in the same order; ``metric`` and ``masbench_version`` on every row."""
    from masbench import __version__

    frame = cells.copy()
    frame["metric"] = metric
    frame["masbench_version"] = __version__
    for column in ("avg_acc", "std_acc", "max_acc", "ci95_half"):
        frame[column] = frame[column].round(4)
    frame["seeds"] = [" ".join(str(s) for s in seeds) for seeds in frame["seeds"]]
    frame["seed_accs"] = [" ".join(map(acc_text, accs)) for accs in frame["accs"]]
    columns = (CSV_COLUMNS + (TARGET_COLUMNS if has_target(cells) else [])  # time to target, when asked for
               + (SIGNIFICANCE_COLUMNS if has_significance(cells) else []))
    return frame[columns].to_csv(index=False, lineterminator="\n")


def _records(cells: pd.DataFrame, metric: str) -> list[dict[str, Any]]:
    out = []
    for row in cells.to_dict("records"):
        out.append({
            "benchmark": row["benchmark"] or None, "dataset": row["dataset"], "model": row["model"],
            "name": row["name"], "config_key": row["config_key"], "settings": row["settings"] or None,
            "label": row["label"], "optimizer": row["optimizer"],
            "lambda_adam": row["lambda_adam"], "lambda_sgd": row["lambda_sgd"],
            "weights": json.loads(row["weights"]) if row["weights"] else None, "metric": metric,
            "n": row["n"], "planned": row["planned"], "seeds": list(row["seeds"]),
            **{k: None if pd.isna(row[k]) else round(float(row[k]), 4)
               for k in ("avg_acc", "std_acc", "max_acc", "ci95_half")},
            "best_avg_acc": bool(row["best_avg_acc"]), "best_max_acc": bool(row["best_max_acc"]),
            "failed": row["failed"], "diverged": row["diverged"], "left_out": row["left_out"],
            "flags": row["flags"] or None,
            **({k: None if pd.isna(row[k]) else (int(row[k]) if k == "reached" else float(row[k]))
                for k in TARGET_COLUMNS} if "target" in row else {}),
            **({k: None if isinstance(row[k], float) and math.isnan(row[k]) else row[k] for k in SIGNIFICANCE_COLUMNS}
               if "beats_baseline" in row else {}),
        })
    return out


def _rich_table(frame: pd.DataFrame, metric: str):
    benchmark, dataset = frame["benchmark"].iloc[0], frame["dataset"].iloc[0]
    timed = has_target(frame)
    notes = ([target_note(frame)] if timed else []) + ([legend(frame)] if has_significance(frame) else []) \
        + ([left_out_note(frame)] if left_out_note(frame) else [])
    columns = (("Name", "left"), ("λa", "right"), ("λs", "right"), ("avg acc", "right"), ("acc max", "right"),
               ("std", "right"), (CI_HEADER, "right"), ("n", "right"), ("flags", "left"),
               *((("reached", "right"), ("epochs", "right"), ("seconds", "right")) if timed else ()))
    # Cells as (text, style): rich parses no markup in them (a label's brackets or colons are shown as they
    # are), and where the table is written line by line no rich object is made for any of 5,000 rows.
    blocks = []
    for model, rows in frame.groupby("model", sort=False):
        block = [[(model.capitalize() if model.startswith('resnet') else model, "bold")]
                 + [("", "") for _ in columns[1:]]]
        for row in rows.to_dict("records"):
            la, ls = shown_lambdas(row)
            block.append([
                (row["label"], ""), (la, ""), (ls, ""),
                (shown_percent(row["avg_acc"]) + mark(row), "bold" if row["best_avg_acc"] else ""),
                (shown_percent(row["max_acc"]), "bold" if row["best_max_acc"] else ""),
                (shown_percent(row["std_acc"]), ""), (shown_interval(row["ci95_half"], row["n"]), ""),
                (f"{row['n']}", ""), (row["flags"], "yellow"),
                *((text, "") for text in (target_texts(row) if timed else ())),
            ])
        blocks.append(block)
    return BlockTable(dict(title=table_title(benchmark, dataset, metric), title_justify="left",
                           caption="\n".join(notes) or None, caption_justify="left"), columns, blocks)


class BlockTable:
    """A rich table of sections of rows (``blocks``: per section, its rows, each a list of ``(text, style)``
    cells), drawn as rich draws it: by rich, or line by line where that gives the same characters.

    Rich lays out each cell of each row: at 5,000 rows that takes seconds. Where the console shows no styles
    (a pipe, a file, ``--output``), does not wrap (``soft_wrap``), and the table fits its width with every cell
    on one line, each line is written as rich would write it (the same box, title, widths, justification and
    caption: ``tests/test_render_blocks.py`` compares them), at a tenth of the cost. Elsewhere (a terminal's
    colours, a table that must wrap) rich draws it row by row."""

    def __init__(self, options: dict[str, Any], columns, blocks: list[list[list[tuple[str, str]]]]) -> None:
        self.options, self.columns, self.blocks = options, columns, blocks

    def table(self):
        from rich.table import Table

        table = Table(**self.options)
        for column, justify in self.columns:
            table.add_column(column, justify=justify)
        for block in self.blocks:
            for cells in block:
                table.add_row(*(_styled(text, style) for text, style in cells))
            table.add_section()
        return table

    def __rich_console__(self, console, options):
        from rich.cells import cell_len

        rows = [[text for text, _ in cells] for block in self.blocks for cells in block]
        headers = [column for column, _ in self.columns]
        widths = [max(cell_len(text) for text in texts) for texts in zip(headers, *rows)]
        # Control characters (rich strips some, a newline makes two lines) and other unprintable text: rich.
        one_line = all(text.isprintable() for row in rows for text in row)
        width = sum(widths) + 3 * len(widths) + 1  # each cell padded by a space each side, and the rules
        if console.color_system is None and options.no_wrap and one_line and width <= options.max_width:
            yield from self._lines(console, options.update(width=width, highlight=False, height=None), widths)
        else:
            yield self.table()

    def _lines(self, console, options, widths: list[int]):
        from rich.cells import cell_len
        from rich.segment import Segment
        from rich.style import Style
        from rich.table import Table

        box = Table(**self.options).box.substitute(options, safe=console.safe_box)
        spans = [w + 2 for w in widths]

        def line(cells, left: str, between: str, right: str) -> str:
            padded = []
            for text, w, (_, justify) in zip(cells, widths, self.columns):
                space = " " * (w - cell_len(text))
                padded.append(f" {text}{space} " if justify == "left" else f" {space}{text} ")
            return left + between.join(padded) + right + "\n"

        def annotation(text, style, justify):  # as rich.table.Table renders its title and caption
            rendered = console.render_str(text, style=style, highlight=False) if isinstance(text, str) else text
            return console.render(rendered, options=options.update(justify=justify))

        if self.options.get("title"):
            yield from annotation(self.options["title"], Style.pick_first(None, "table.title"),
                                  self.options.get("title_justify"))
        out = [box.get_top(spans),
               line([column for column, _ in self.columns], box.head_left, box.head_vertical, box.head_right),
               box.get_row(spans, "head")]
        for i, block in enumerate(self.blocks):
            if i:
                out.append(box.get_row(spans, "row"))
            out += [line([text for text, _ in cells], box.mid_left, box.mid_vertical, box.mid_right)
                    for cells in block]
        out.append(box.get_bottom(spans))
        yield Segment("".join(line if line.endswith("\n") else line + "\n" for line in out))
        if self.options.get("caption"):
            yield from annotation(self.options["caption"], Style.pick_first(None, "table.caption"),
                                  self.options.get("caption_justify"))


def _styled(text: str, style: str):
    """``text`` as a rich Text, ``style`` over its characters (not over the cell's padding), as markup gives."""
    from rich.text import Text

    styled = Text(text)
    if style:
        styled.stylize(style)
    return styled


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _markdown_table(frame: pd.DataFrame, metric: str) -> str:
    benchmark, dataset = frame["benchmark"].iloc[0], frame["dataset"].iloc[0]
    timed = has_target(frame)
    head, rule = (" reached | epochs | seconds |", " ---: | ---: | ---: |") if timed else ("", "")
    lines = [f"**{table_title(benchmark, dataset, metric)}**", "",
             f"| Name | λa | λs | avg acc | acc max | std | {CI_HEADER} | n | flags |" + head,
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |" + rule]
    for model, rows in frame.groupby("model", sort=False):
        lines.append(f"| **{model}** | | | | | | | | |" + (" | | |" if timed else ""))
        for row in rows.to_dict("records"):
            la, ls = shown_lambdas(row)
            avg, best = shown_percent(row["avg_acc"]), shown_percent(row["max_acc"])
            starred = "\\*" if mark(row) else ""  # escaped: after ** it would read as emphasis
            lines.append(
                f"| {_markdown_escape(row['label'])} | {la} | {ls} | {f'**{avg}**' if row['best_avg_acc'] else avg}{starred} | "
                f"{f'**{best}**' if row['best_max_acc'] else best} | {shown_percent(row['std_acc'])} | {shown_interval(row['ci95_half'], row['n'])} | "
                f"{row['n']} | {row['flags']} |" + "".join(f" {text} |" for text in (target_texts(row) if timed else ()))
            )
    if timed:
        lines += ["", f"*{target_note(frame)}*"]
    if has_significance(frame):
        lines += ["", "\\" + legend(frame)]  # escaped: a leading * would start emphasis
    if left_out_note(frame):
        lines += ["", left_out_note(frame)]
    return "\n".join(lines)


MARKDOWN_SPECIALS = str.maketrans({"|": "\\|", "<": "&lt;", ">": "&gt;", "&": "&amp;", "\\": "\\\\",
                                   "*": "\\*"})  # intraword _ is no emphasis in GitHub's Markdown


def _markdown_escape(text: str) -> str:
    """A name as Markdown shows it: ``|`` would end the cell, ``<i>`` would be HTML, ``*`` emphasis."""
    return str(text).translate(MARKDOWN_SPECIALS)


# In one pass: replacing one character after another would escape the braces of ``\textbackslash{}``.
LATEX_SPECIALS = str.maketrans({
    "\\": r"\textbackslash{}", "_": r"\_", "&": r"\&", "%": r"\%", "#": r"\#", "$": r"\$", "{": r"\{", "}": r"\}",
    "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}",
    "|": r"\textbar{}",
})


def _latex_escape(text: str) -> str:
    """``text`` as LaTeX prints it: its ten special characters (and ``<``, ``>``, ``|``, which OT1 fonts misprint)."""
    return str(text).translate(LATEX_SPECIALS)


def _bold_latex(text: str) -> str:
    return "\\textbf{" + text + "}"


def _latex_table(frame: pd.DataFrame, metric: str) -> str:
    benchmark, dataset = frame["benchmark"].iloc[0], frame["dataset"].iloc[0]
    timed = has_target(frame)
    caption = table_title(benchmark, dataset, metric) + (f"; {target_note(frame)}" if timed else "")
    lines = [r"\begin{table}[t]", r"\centering",
             rf"\caption{{{_latex_escape(caption)}}}",
             r"\begin{tabular}{lrrrrrrr" + ("rrr}" if timed else "}"), r"\toprule",
             r"Name & $\lambda_a$ & $\lambda_s$ & avg acc & acc max & std & $\pm$CI95 & $n$"
             + (r" & reached & epochs & seconds" if timed else "") + r" \\", r"\midrule"]
    first = True
    for model, rows in frame.groupby("model", sort=False):
        if not first:
            lines.append(r"\midrule")
        first = False
        lines.append(rf"\multicolumn{{{11 if timed else 8}}}{{l}}{{\textit{{{_latex_escape(model)}}}}} \\")
        for row in rows.to_dict("records"):
            la, ls = shown_lambdas(row)
            avg, best = shown_percent(row["avg_acc"]), shown_percent(row["max_acc"])
            name = _latex_escape(row["label"]) + (r"$^\dagger$" if row["flags"] else "")
            avg = (_bold_latex(avg) if row["best_avg_acc"] else avg) + (r"$^*$" if mark(row) else "")
            best = _bold_latex(best) if row["best_max_acc"] else best
            timing = "".join(f" & {text}" for text in (target_texts(row) if timed else ()))
            spread = f"{shown_percent(row['std_acc'])} & {_latex_escape(shown_interval(row['ci95_half'], row['n']))}"
            lines.append(f"{name} & {la} & {ls} & {avg} & {best} & {spread} & {row['n']}{timing} " + "\\\\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    flagged = [row for row in frame.to_dict("records") if row["flags"]]
    if flagged:  # each flagged cell (as its row shows it: label and lambdas) with its flags
        shown = "; ".join(_latex_escape(row["label"]) + (" ({} / {})".format(*shown_lambdas(row)) if
                                                          row["optimizer"] == "mas" else "")
                          + f": {_latex_escape(row['flags'])}" for row in flagged)
        lines.append(r"\\[2pt]{\footnotesize $^\dagger$ " + shown + ".}")
    if has_significance(frame):
        note = _latex_escape(legend(frame).removeprefix("* ").replace("–", "--"))
        lines.append(r"\\[2pt]{\footnotesize $^*$ " + note + "}")
    if left_out_note(frame):
        lines.append(r"\\[2pt]{\footnotesize " + _latex_escape(left_out_note(frame)) + "}")
    lines.append(r"\end{table}")
    return "\n".join(lines)


def render_leaderboard(board: pd.DataFrame, metric: str, fmt: str) -> Rendered:
    """Ranked cells per data set and model; the csv and json carry each cell's ``config_key``, ``settings`` and
    a mix's ``weights`` (as the tables' csv and json do: JSON text in csv, an object in json)."""
    columns = ["rank", "benchmark", "dataset", "model", "name", "settings", "config_key", "lambda_adam", "lambda_sgd",
               "weights", "n", "avg_acc", "std_acc", "ci95_half", "max_acc", "flags"]
    if fmt == "csv":
        frame = board[columns].copy()
        for column in ("avg_acc", "std_acc", "max_acc", "ci95_half"):
            frame[column] = frame[column].round(4)
        return Rendered(frame.to_csv(index=False, lineterminator="\n"))
    if fmt == "json":
        frame = board[columns].astype(object).where(board[columns].notna(), None)
        frame["weights"] = [json.loads(text) if text else None for text in frame["weights"]]
        return Rendered(json.dumps(frame.to_dict("records"), indent=2, default=float))
    if fmt in ("markdown", "latex"):
        raise MasbenchError(f"Invalid format for --leaderboard: {fmt!r} (valid: rich, csv, json)")
    if fmt != "rich":
        raise MasbenchError(f"Invalid format: {fmt!r} (valid: {', '.join(FORMATS)})")
    from rich.table import Table

    board = board.assign(shown=cell_names(board))
    tables = []
    for (benchmark, dataset, model), rows in board.groupby(["benchmark", "dataset", "model"], sort=False):
        title = f"leaderboard {dataset}/{model}" + (f" (benchmark {benchmark})" if benchmark else "")
        table = Table(title=f"{title}: {METRIC_TITLES[metric]}, %", title_justify="left")
        for column in ("rank", "name", "n", "avg acc", "std", CI_HEADER, "acc max", "flags"):
            table.add_column(column, justify="left" if column in ("name", "flags") else "right", overflow="fold")
        for row in rows.to_dict("records"):
            table.add_row("-" if pd.isna(row["rank"]) else str(row["rank"]), _escape(row["shown"]), str(row["n"]),
                          shown_percent(row["avg_acc"]), shown_percent(row["std_acc"]),
                          shown_interval(row["ci95_half"], row["n"]),
                          shown_percent(row["max_acc"]),
                          _escape(row["flags"]))
        tables.append(table)
    return Rendered("", tables)


# ``report --tuned``: one row per optimizer of a tune (``tuning.tuned_table``); every format shows these cells.
TUNED_HEADERS = (("Optimizer", "left"), ("budget", "right"), ("trials", "right"), ("pruned", "right"),
                 ("epochs", "right"), ("chosen", "right"), ("hyperparameters", "left"), ("val acc", "right"),
                 ("test acc", "right"), (CI_HEADER, "right"), ("n", "right"), ("vs best other (diff)", "left"),
                 ("p (Holm)", "right"), ("note", "left"))
TUNED_CSV = ["optimizer", "budget", "trials", "pruned", "failed", "search_epochs", "chosen", "params", "val_acc",
             "final_planned", "n", "test_acc", "std", "ci95_half", "seeds", "seed_accs", "vs", "diff", "p", "p_holm",
             "significant", "test", "note"]


def tuned_title(tune: str) -> str:
    return (f"tune {tune}: each optimizer's trial chosen on validation, tested on fresh seeds "
            f"(percent; test acc at the best validation epoch)")


def tuned_rows(table: pd.DataFrame) -> list[list[str]]:
    """The cells of ``TUNED_HEADERS``, as text, per optimizer: the test accuracy starred where it differs
    significantly from the best other optimizer's, and that optimizer with the difference in points (this minus
    that); p is Holm's where a test was made."""
    rows = []
    for row in table.to_dict("records"):
        starred = "*" if row["significant"] else ""
        rows.append([row["label"], str(row["budget"]), str(row["trials"]), str(row["pruned"]),
                     str(row["search_epochs"]),
                     "-" if row["chosen"] is None else f"#{row['chosen']}", shown_params(row["params"]),
                     shown_percent(row["val_acc"]), shown_percent(row["test_acc"]) + starred,
                     shown_interval(row["ci95_half"], row["n"]), f"{row['n']}/{row['final_planned']}",
                     f"{label(row['vs'])} ({row['diff']:+.2f})" if row["vs"] else "",
                     "-" if math.isnan(row["p_holm"]) else f"{row['p_holm']:.3g}", row["note"]])
    return rows


def render_tuned(table: pd.DataFrame, tune: str, fmt: str) -> Rendered:
    """The tuned table in ``fmt`` (``FORMATS``): the rows of ``tuned_rows`` under ``tuned_title``, with the legend;
    csv and json carry every column of ``tuning.TUNED_COLUMNS`` with full precision (params as JSON in csv)."""
    if fmt not in FORMATS:
        raise MasbenchError(f"Invalid format: {fmt!r} (valid: {', '.join(FORMATS)})")
    if fmt == "csv":
        frame = table.assign(params=[json.dumps(p, sort_keys=True) for p in table["params"]],
                             seeds=[" ".join(str(s) for s in seeds) for seeds in table["seeds"]],
                             seed_accs=[" ".join(map(acc_text, accs)) for accs in table["accs"]])
        return Rendered(frame[TUNED_CSV].to_csv(index=False, lineterminator="\n"))
    if fmt == "json":
        records = [{k: None if isinstance(v, float) and math.isnan(v) else list(v) if isinstance(v, tuple) else v
                    for k, v in row.items()} for row in table.to_dict("records")]
        return Rendered(json.dumps({"tune": tune, "tests": table.attrs.get("tests", 0), "optimizers": records},
                                   indent=2, default=_plain))
    return render_rows(tuned_title(tune), TUNED_HEADERS, tuned_rows(table), fmt, tuned_legend(table))


def render_rows(title: str, headers, rows: list[list[str]], fmt: str, legend: str = "") -> Rendered:
    """Rows of text cells under ``headers`` (``(name, "left" | "right")``) as a rich, markdown or latex table,
    with ``title`` and ``legend`` (a line under it; ``*`` marks a cell); the tuned table and ``masbench runs``."""
    if fmt == "rich":
        from rich.table import Table

        rich_table = Table(title=title, title_justify="left", caption=legend or None, caption_justify="left")
        for header, justify in headers:
            rich_table.add_column(header, justify=justify, overflow="fold")
        for cells in rows:
            rich_table.add_row(*(_escape(cell) for cell in cells))
        return Rendered("", [rich_table])
    if fmt == "markdown":
        lines = [f"**{title}**", "", "| " + " | ".join(h for h, _ in headers) + " |",
                 "| " + " | ".join("---" if j == "left" else "---:" for _, j in headers) + " |"]
        lines += ["| " + " | ".join(cell.replace("*", "\\*").replace("|", "\\|") for cell in cells) + " |"
                  for cells in rows]
        return Rendered("\n".join([*lines, *(["", legend] if legend else [])]) + "\n")
    if fmt != "latex":
        raise MasbenchError(f"Invalid format: {fmt!r} (valid: {', '.join(FORMATS)})")
    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{_latex_escape(title)}}}",
             r"\begin{tabular}{" + "".join(j[0] for _, j in headers) + "}", r"\toprule",
             " & ".join(_latex_escape(h) for h, _ in headers) + r" \\", r"\midrule"]
    lines += [" & ".join(_latex_escape(cell).replace("*", r"$^*$") for cell in cells) + r" \\" for cells in rows]
    lines += [r"\bottomrule", r"\end{tabular}"]
    if legend:
        lines.append(r"\\[2pt]{\footnotesize " + _latex_escape(legend).replace("*", r"$^*$") + "}")
    lines.append(r"\end{table}")
    return Rendered("\n".join(lines) + "\n")


def _plain(value: Any) -> Any:
    """numpy scalars (a frame's ints and bools) as JSON's."""
    return value.item() if hasattr(value, "item") else str(value)
