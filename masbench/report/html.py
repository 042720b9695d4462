"""The HTML report (``masbench report --format html``): one self-contained file, per benchmark the paper's
tables, the learning curves, the λ plot, the run environment and the flags.

Self-contained: inline CSS, figures as inline SVG, no script and no URL, so it opens offline and can be
mailed. Every string that comes from the store (run names, data sets, models, benchmarks, versions,
devices) is escaped with ``html.escape``: a data set called ``<script>`` shows as text. The numbers are
those of the text report (``render_tables``): the same cells, the same rounding, the same bold best.

Example::

    from masbench.store import open_for_reading
    page = render_html(open_for_reading("sqlite:///masbench.db"), metric="best")
"""

from __future__ import annotations

import html
import json
from datetime import datetime
from typing import Any

import pandas as pd

from masbench.errors import MasbenchError
from masbench.report.aggregate import (METRIC_TITLES, TABLE, cell_table, display_names, left_out_note, run_accuracies,
                                       run_epochs, shown_interval, with_best)
from masbench.report.render import (CI_HEADER, TUNED_HEADERS, shown_lambdas, shown_percent, table_title, tuned_rows,
                                    tuned_title)
from masbench.report.tuning import tuned_legend
from masbench.report.svg import figure_svg
from masbench.report.target import benchmark_targets, has_target, target_note, target_texts, with_time_to_target

NUMBER = ' class="num"'
COLUMNS = ("Name", "λa", "λs", "avg acc", "acc max", "std", CI_HEADER, "n", "flags")
TARGET_HEADERS = ("reached", "epochs", "seconds")  # time to target, as every other format shows it

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; margin: 0 auto;
       max-width: 1200px; padding: 1.5rem 2rem; color: #1b1f24; background: #fff; line-height: 1.4; }
header { border-bottom: 2px solid #d0d7de; margin-bottom: 1rem; }
h1 { font-size: 1.6rem; margin: 0 0 .3rem; }
h2 { font-size: 1.3rem; margin: 2rem 0 .5rem; }
section + section h2 { padding-top: .5rem; border-top: 1px solid #d0d7de; }
h3 { font-size: 1.05rem; margin: 1.2rem 0 .4rem; }
.meta { color: #57606a; font-size: .9rem; margin: .2rem 0 .8rem; }
nav a { margin-right: 1rem; }
table { border-collapse: collapse; margin: .4rem 0 1rem; font-size: .9rem; }
caption { text-align: left; font-weight: 600; padding: .3rem 0; white-space: nowrap; }
th, td { padding: .25rem .7rem; border-bottom: 1px solid #e5e8eb; vertical-align: top; }
.env td:nth-child(-n+3) { white-space: nowrap; }
th { background: #f3f5f7; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.model td { background: #eef2f6; font-weight: 600; }
tr.flagged td { background: #fff8c5; }
td.flags { color: #9a6700; font-weight: 600; }
td.best { font-weight: 700; }
.env td { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: .8rem; }
figure { margin: .5rem 0 1.2rem; }
figure svg { max-width: 100%; height: auto; }
figcaption, .note { color: #57606a; font-size: .85rem; }
"""


def esc(value: Any) -> str:
    """Text from the store, as HTML text or an attribute value (quotes escaped too)."""
    return html.escape("" if value is None else str(value), quote=True)


def render_html(store, *, metric: str = "best", dataset: str | None = None, model: str | None = None,
                benchmark: str | None = None, generated: datetime | None = None, target: float | None = None,
                runs: pd.DataFrame | None = None) -> str:
    """The report as one HTML document. ``generated``: a time to print in the header (none by default, so that
    one store gives one file, byte for byte). ``target``: the test accuracy (percent) of the performance
    profiles; without it, the benchmarks file's ``target:`` keys, and no profile where there is none. ``runs``:
    the runs to show (``run_accuracies`` with the caller's filters); by default every run of the filters given."""
    if runs is None:
        runs = run_accuracies(store, metric=metric, dataset=dataset, model=model, benchmark=benchmark)
    if runs.empty:
        filters = ", ".join(f"{k} {v!r}" for k, v in (("dataset", dataset), ("model", model),
                                                        ("benchmark", benchmark)) if v)
        raise MasbenchError(f"no runs in {store.masked_url}" + (f" for {filters}" if filters else ""))
    cells = with_best(cell_table(runs))
    cells["label"] = display_names(cells)
    environment = store.runs_frame(dataset=dataset, model=model)
    environment = environment[environment["id"].isin(runs["id"])].copy()  # the runs shown, filters and all
    environment["benchmark"] = environment["benchmark"].fillna("")
    epochs = run_epochs(store, runs, dataset=dataset, model=model)
    epochs["benchmark"] = epochs["benchmark"].fillna("")
    benchmarks = list(dict.fromkeys(cells["benchmark"]))
    per_table = benchmark_targets() if target is None else None  # the benchmarks file, read once for all
    if target is not None or per_table:
        cells = with_time_to_target(cells, epochs, target, per_table)
    sections = [_benchmark_section(i, name, cells[cells["benchmark"] == name], runs[runs["benchmark"] == name],
                                   epochs[epochs["benchmark"] == name],
                                   environment[environment["benchmark"] == name], metric)
                + _profile(i, store, runs[runs["benchmark"] == name], name, target, per_table, dataset, model)
                for i, name in enumerate(benchmarks, start=1)]
    if left_out_note(cells):
        sections.append(f'<footer><p class="note left-out">{esc(left_out_note(cells))}</p></footer>')
    nav = " ".join(f'<a href="#benchmark-{i}">{esc(_benchmark_name(name))}</a>'
                   for i, name in enumerate(benchmarks, start=1))
    return page([f"metric: {esc(METRIC_TITLES[metric])}", f"store: {esc(store.masked_url)}"], sections,
                nav if len(benchmarks) > 1 else "", generated)


def page(meta: list[str], sections: list[str], nav: str = "", generated: datetime | None = None) -> str:
    """The document around ``sections`` (HTML): the header with masbench's version, ``meta`` (HTML, escaped by
    the caller), the time ``generated`` if given, and ``nav``."""
    from masbench import __version__

    meta = [f"masbench {esc(__version__)}", *meta]
    if generated is not None:
        meta.append(f"generated {esc(generated.strftime('%Y-%m-%d %H:%M:%S %Z').strip())}")
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>masbench report</title>", f"<style>{CSS}</style>", "</head>", "<body>",
        "<header>", "<h1>masbench report</h1>", f'<p class="meta">{" · ".join(meta)}</p>',
        f"<nav>{nav}</nav>" if nav else "", "</header>",
        *sections, "</body>", "</html>", "",
    ])


def render_tuned_html(frame: pd.DataFrame, table: pd.DataFrame, *, tune: str, store_url: str,
                      generated: datetime | None = None) -> str:
    """``report --tuned --format html``: the tuned table (``render.tuned_rows``, the text report's cells) and
    the tuning curves (``plot --kind tuning``) of one tune (``frame``: its trials, ``table``: ``tuned_table``)."""
    from masbench.report.plot_tuning import plot_tuning

    # Highlighted as the report's flagged cells: rows whose numbers are missing or incomplete (not "not tested").
    incomplete = table["chosen"].isna() | (table["final_planned"] == 0) | (table["n"] < table["final_planned"])
    rows = [rows_table(tuned_title(tune), TUNED_HEADERS, tuned_rows(table), f'class="tuned" data-tune="{esc(tune)}"',
                       list(incomplete)),
            f'<p class="note">{esc(tuned_legend(table))}</p>']
    figure = _figure(lambda path: plot_tuning(frame, table, path, tune=tune), "t1",
                     "Left: the expected best validation accuracy after k trials (exact over every order of the "
                     "trials run), and at k = N the final seeds' mean test accuracy ± half the 95% CI. Right: every "
                     "trial's validation accuracy against its learning rate; the chosen trial is a star.")
    section = "\n".join(['<section class="tune" id="tune">', f"<h2>Tune {esc(tune)}</h2>", *rows,
                         "<h3>Tuning curves</h3>", figure, "</section>"])
    return page([f"store: {esc(store_url)}"], [section], generated=generated)


def render_runs_html(frame: pd.DataFrame, *, store_url: str, generated: datetime | None = None) -> str:
    """``masbench runs --format html``: the rows of ``runs.run_rows`` in one page; failed and diverged runs
    highlighted."""
    from masbench.report.runs import HEADERS, run_rows, runs_title

    flagged = list(frame["status"].isin(["failed", "diverged"]))
    table = rows_table(runs_title(frame), HEADERS, run_rows(frame), 'class="runs"', flagged)
    return page([f"store: {esc(store_url)}"], [f'<section class="runs" id="runs">\n{table}\n</section>'],
                generated=generated)


def rows_table(title: str, headers, rows: list[list[str]], attributes: str, flagged: list[bool] | None = None) -> str:
    """Rows of text cells under ``headers`` (``(name, "left" | "right")``) as an HTML table (``attributes``: the
    table tag's, escaped by the caller); ``flagged`` rows highlighted. The HTML of ``render.render_rows``."""
    flagged = flagged or [False] * len(rows)
    out = [f"<table {attributes}>", f"<caption>{esc(title)}</caption>",
           "<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h, _ in headers) + "</tr></thead>", "<tbody>"]
    for cells, flag in zip(rows, flagged):
        out.append(f'<tr class="cell{" flagged" if flag else ""}">'
                   + "".join(f"<td{NUMBER if justify == 'right' else ''}>{esc(text)}</td>"
                             for text, (_, justify) in zip(cells, headers)) + "</tr>")
    out += ["</tbody>", "</table>"]
    return "\n".join(out)


def _benchmark_name(name: str) -> str:
    return f"benchmark {name}" if name else "runs outside a benchmark"


def _benchmark_section(index: int, name: str, cells: pd.DataFrame, runs: pd.DataFrame, epochs: pd.DataFrame,
                       environment: pd.DataFrame, metric: str) -> str:
    flagged = int(cells["flags"].astype(bool).sum())
    parts = [f'<section class="benchmark" id="benchmark-{index}" data-benchmark="{esc(name)}">',
             f"<h2>{esc(_benchmark_name(name).capitalize())}</h2>",
             f'<p class="meta">{len(cells)} cells, {len(runs)} runs'
             + (f', <span class="flags">{flagged} flagged</span> (incomplete, failed, diverged or of other versions)' if flagged else "")
             + "</p>",
             "<h3>Environment</h3>", environment_table(environment)]
    for (dataset_name,), frame in cells.groupby(["dataset"], sort=False):
        parts.append(results_table(frame, metric))
    for figure_index, ((dataset_name, model_name), _) in enumerate(cells.groupby(TABLE[1:], sort=False), start=1):
        prefix = f"b{index}f{figure_index}"
        parts.append(f"<h3>{esc(dataset_name)} / {esc(model_name)}: curves and λ sensitivity</h3>")
        parts.append(_figure(lambda path: _plots().plot_curves(epochs, path, dataset=dataset_name, model=model_name,
                                                               runs=runs), f"{prefix}c",
                             "Test accuracy and loss per epoch: mean over completed seeds, ± std band."))
        parts.append(_figure(lambda path: _plots().plot_lambda(runs, path, dataset=dataset_name, model=model_name,
                                                               metric=metric), f"{prefix}l",
                             "avg acc against λa for MAS (± std over seeds); the baselines as horizontal lines in their optimizer's colour."))
    parts.append("</section>")
    return "\n".join(part for part in parts if part)


def _plots():
    from masbench.report import plots

    return plots


def _figure(draw, prefix: str, caption: str) -> str:
    """One plot as inline SVG; a plot the data cannot make (no completed run, no MAS cell) is a one-line note."""
    try:
        svg = figure_svg(draw, prefix)
    except MasbenchError as error:
        return f'<p class="note">{esc(error)}</p>'
    return f"<figure>{svg}<figcaption>{esc(caption)}</figcaption></figure>"


def _profile(index: int, store, runs: pd.DataFrame, name: str, target: float | None,
             per_table: dict[tuple[str, str, str], float] | None, dataset: str | None, model: str | None) -> str:
    """The benchmark's performance profile (``masbench plot --kind profile``), after its section; nothing where
    no target is known (no ``--target``, no ``target:`` key for the benchmark in ``per_table``)."""
    from masbench.report.plot_profile import plot_profile, profile_frame

    if target is None and not any(key[0] == name for key in per_table):
        return ""  # no target for this benchmark: no profile to show
    try:
        profile, ratio, styles, noise = profile_frame(store, runs, target, name or None, dataset, model,
                                                      per_table=per_table)
    except MasbenchError as error:  # the benchmark's targets name no cell shown here: say so in the page
        return f'\n<p class="note">performance profile: {esc(error)}</p>'
    target_text = f"{target:g}%" if target is not None else "per benchmark"
    figure = _figure(lambda path: plot_profile(profile, path, workloads=len(ratio), target_text=target_text,
                                               styles=styles),
                     f"b{index}p", f"Performance profile: the fraction of workloads (data set × model) on which each "
                                   f"configuration reaches {target_text} test accuracy within a factor τ of the "
                                   f"fastest." + (f" {noise[0].upper()}{noise[1:]}." if noise else ""))
    return (f'\n<section class="benchmark" id="benchmark-{index}-profile">'
            f"<h3>{esc(_benchmark_name(name).capitalize())}: performance profile</h3>\n{figure}</section>")


def results_table(frame: pd.DataFrame, metric: str) -> str:
    """One data set's paper-format table: a header row per model, then its cells; best avg acc and acc max bold,
    flagged cells (fewer completed seeds than planned, failed or diverged seeds) highlighted."""
    benchmark, dataset = frame["benchmark"].iloc[0], frame["dataset"].iloc[0]
    timed = has_target(frame)
    columns = COLUMNS + (TARGET_HEADERS if timed else ())
    rows = [f'<table class="results" data-dataset="{esc(dataset)}">',
            f"<caption>{esc(table_title(benchmark, dataset, metric))}</caption>",
            "<thead><tr>" + "".join(f"<th>{esc(c)}</th>" for c in columns) + "</tr></thead>", "<tbody>"]
    for model, cells in frame.groupby("model", sort=False):
        rows.append(f'<tr class="model"><td colspan="{len(columns)}">{esc(model)}</td></tr>')
        for row in cells.to_dict("records"):
            la, ls = shown_lambdas(row)
            numbers = [(la, False), (ls, False), (shown_percent(row["avg_acc"]), row["best_avg_acc"]),
                       (shown_percent(row["max_acc"]), row["best_max_acc"]), (shown_percent(row["std_acc"]), False),
                       (shown_interval(row["ci95_half"], row["n"]), False), (str(row["n"]), False)]
            cells_html = "".join(f'<td class="num{" best" if best else ""}">{esc(text)}</td>' for text, best in numbers)
            timing = "".join(f'<td class="num">{esc(text)}</td>' for text in (target_texts(row) if timed else ()))
            settings = f" ({row['settings']})" if row["settings"] else ""
            title = esc(f"{row['name']}{settings}, config {row['config_key']}")
            rows.append(f'<tr class="cell{" flagged" if row["flags"] else ""}" title="{title}">'
                        f'<td>{esc(row["label"])}</td>{cells_html}<td class="flags">{esc(row["flags"])}</td>'
                        f'{timing}</tr>')
    rows += ["</tbody>", "</table>"]
    if timed:
        rows.append(f'<p class="note">{esc(target_note(frame))}</p>')
    return "\n".join(rows)


def environment_table(runs: pd.DataFrame) -> str:
    """What the benchmark's runs executed with, one row per distinct (versions, device, git commit), with its
    count of runs; runs that never started have recorded none."""
    started = runs[runs["versions"].notna() | runs["device"].notna() | runs["git_commit"].notna()]
    if started.empty:
        return '<p class="note">No run has started: no environment recorded.</p>'
    keys = pd.DataFrame({
        "versions": [json.dumps(v, sort_keys=True) if isinstance(v, dict) else "" for v in started["versions"]],
        "device": started["device"].fillna(""), "git_commit": started["git_commit"].fillna(""),
    })
    rows = ['<table class="env">', "<thead><tr><th>runs</th><th>device</th><th>git commit</th><th>versions</th>"
            "</tr></thead>", "<tbody>"]
    for (versions, device, commit), group in keys.groupby(["versions", "device", "git_commit"], sort=True):
        shown = ", ".join(f"{k} {v}" for k, v in json.loads(versions).items()) if versions else ""
        rows.append(f'<tr><td class="num">{len(group)}</td><td>{esc(device) or "-"}</td>'
                    f"<td>{esc(commit) or '-'}</td><td>{esc(shown) or '-'}</td></tr>")
    rows += ["</tbody>", "</table>"]
    return "\n".join(rows)
