"""Commands that read the store: ``report``, ``compare``, ``plot`` and ``runs``."""

from __future__ import annotations

import math
import os
from typing import Annotated

import typer

from masbench.cli.options import DbOpt
from masbench.cli.output import stdout_console
from masbench.errors import MasbenchError
from masbench.text.numbers import number
from masbench.text.paths import check_new_file

MetricOpt = Annotated[str, typer.Option(help="A run's accuracy: best (over its epochs: selected on the test set), "
                                               "final (its last epoch's) or val (its test accuracy at the epoch of its "
                                               "best validation accuracy; runs need --val-fraction).")]
FilterDataset = Annotated[str | None, typer.Option(help="Only this data set.")]
FilterModel = Annotated[str | None, typer.Option(help="Only this model.")]
FilterBenchmark = Annotated[str | None, typer.Option(help="Only runs of this benchmark.")]
FilterOptimizer = Annotated[str | None, typer.Option("--optimizer", help="Only runs of these optimizers, comma-separated (adam,mas).")]
FilterWhere = Annotated[list[str] | None, typer.Option("--where", help="Only runs whose setting has this value, NAME=VALUE (lr=0.003: numbers compared as numbers; names from the runs' configs, e.g. lr, batch_size, epochs, lambda_adam); repeatable, all must hold.")]
OutputOpt = Annotated[str | None, typer.Option(help="Write to this file instead of the terminal.")]
MAX_NAMED = 20  # runs left out named one line each on stderr; masbench check lists every one
TuneOpt = Annotated[str | None, typer.Option(help="With --tuned or --kind tuning: the tune to show, by name or the start of its key (needed when the store holds several).")]


def _open_for_reading(db: str | None):
    """Read-only: works on a read-only mount, writes nothing, and refuses a database that is not masbench's."""
    from masbench.store import open_for_reading

    return open_for_reading(db)


def _check_format(format: str) -> None:
    from masbench.report import FORMATS

    if format not in (*FORMATS, "html"):
        raise MasbenchError(f"Invalid --format: {format!r} (valid: {', '.join(FORMATS)}, html)")


def _runs(store, metric, dataset, model, benchmark, optimizer=None, where=None):
    """The runs ``run_accuracies`` gives for the filters (``optimizer``, ``where``: the options' text), refused in
    one line when none is left; under ``--metric val`` a line on stderr counts the runs without a split."""
    from masbench.report import run_accuracies
    from masbench.report.aggregate import parse_optimizers, parse_where

    optimizers, settings = parse_optimizers(optimizer), parse_where(where)
    runs = run_accuracies(store, metric=metric, dataset=dataset, model=model, benchmark=benchmark,
                          optimizer=optimizers, where=settings)
    without_val = runs.attrs.get("without_val", 0)
    if runs.empty:
        split = (f" with a validation split ({without_val} run(s) without one: run them with --val-fraction)"
                 if without_val else "")
        tuned = " but a tune's (masbench report --tuned reads them)" if not store.tunes_frame().empty else ""
        raise MasbenchError(f"no runs{split} in {store.masked_url}"
                            f"{for_filters(dataset, model, benchmark, optimizer, settings)}{tuned}")
    if without_val:
        typer.echo(f"--metric val: left out {without_val} run(s) without a validation split "
                   f"(run with --val-fraction to have one)", err=True)
    _name_left_out(store, runs)
    return runs


def for_filters(dataset: str | None, model: str | None, benchmark: str | None, optimizer: str | None = None,
                settings: tuple[tuple[str, str], ...] = ()) -> str:
    """`` for dataset 'digits', model 'mlp', lr=0.01``: the filters given, for a message that found no runs ('' for
    none); ``settings``: ``--where``'s, parsed."""
    given = ", ".join([f"{k} {v!r}" for k, v in (("dataset", dataset), ("model", model), ("benchmark", benchmark),
                                                  ("optimizer", optimizer)) if v]
                      + [f"{name}={value}" for name, value in settings])
    return f" for {given}" if given else ""


def _name_left_out(store, runs) -> None:
    """One line on stderr per run that a check leaves out of the numbers: its id, and each column and value."""
    from masbench.store.checks import LEFT_OUT, run_lines

    ids = [int(i) for i in runs.loc[runs["status"] == LEFT_OUT, "id"]]
    for line in run_lines(store.problems(ids[:MAX_NAMED])):
        typer.echo(f"{line}; left out", err=True)
    if len(ids) > MAX_NAMED:
        typer.echo(f"and {len(ids) - MAX_NAMED} more runs left out (masbench check --db URL lists every problem)",
                   err=True)


def _refuse_the_store(store, output: str | None) -> None:
    """``--output`` naming the SQLite store (or its journal) would overwrite the runs with the report."""
    database = store.engine.url.database if store.is_sqlite else None
    if not output or database in (None, "", ":memory:"):
        return
    for path in (database, *(database + suffix for suffix in ("-wal", "-shm", "-journal"))):
        try:
            same = os.path.samefile(output, path)
        except OSError:  # either file absent: the output cannot be it
            continue
        if same:
            raise MasbenchError(f"Invalid --output {output!r}: it is the store's database file {path} "
                                f"(writing the report there would destroy the runs); give another file")


def _emit(rendered, output: str | None) -> None:
    from pathlib import Path

    from rich.console import Console

    if rendered.rich is not None:
        console = Console(record=True, width=160, soft_wrap=True, file=open(os.devnull, "w")) if output else stdout_console()
        for table in rendered.rich:
            console.print(table)
        text = console.export_text() if output else None
    else:
        text = rendered.text
        if not output:
            typer.echo(text, nl=not text.endswith("\n"))
    if output:
        try:
            Path(output).write_text(text)
        except OSError as error:
            raise MasbenchError(f"cannot write {output}: {error.strerror}") from None
        typer.echo(f"written to {output}", err=True)


def report(
    table: Annotated[bool, typer.Option("--table", help="The paper's tables: one per data set, grouped by model (default).")] = False,
    leaderboard: Annotated[bool, typer.Option("--leaderboard", help="Every cell ranked by avg acc within its data set and model.")] = False,
    metric: MetricOpt = "best",
    format: Annotated[str, typer.Option("--format", help="rich, csv, markdown, latex, json, or html (one self-contained page with the tables, plots and run environment).")] = "rich",
    output: OutputOpt = None,
    dataset: FilterDataset = None,
    model: FilterModel = None,
    benchmark: FilterBenchmark = None,
    optimizer: FilterOptimizer = None,
    where: FilterWhere = None,
    significance: Annotated[bool, typer.Option("--significance", help="Mark each MAS cell that beats the best baseline of its model (one-sided t-test, paired by seed where seeds match, else Welch; Holm-Bonferroni over the table, p < 0.05).")] = False,
    target: Annotated[float | None, typer.Option(help="Time to target: a test accuracy in percent (e.g. 85); adds, per cell, the seeds that reached it and the median epochs and training seconds to it (default: the benchmarks file's target: keys).")] = None,
    tuned: Annotated[bool, typer.Option("--tuned", help="A tune's table: per optimizer its budget, trials run and pruned, the trial chosen on validation, its final seeds' test accuracy (mean, CI95, n) and a paired t-test against the best other optimizer (Holm over the table); accuracies are test accuracies at the best validation epoch, whatever --metric says; html adds the tuning curves.")] = False,
    tune: TuneOpt = None,
    db: DbOpt = None,
) -> None:
    """The paper's tables (avg acc and acc max over seeds, best in bold), a leaderboard, or a tune's table."""
    from masbench import report as reporting

    _check_format(format)
    if tune is not None and not tuned:
        raise MasbenchError("--tune NAME goes with --tuned")
    if tuned:
        given = [flag for flag, value in (("--table", table), ("--leaderboard", leaderboard),
                                          ("--significance", significance), ("--target", target),
                                          ("--dataset", dataset), ("--model", model), ("--benchmark", benchmark),
                                          ("--optimizer", optimizer), ("--where", where))
                 if value not in (None, False, [])]
        if given:
            raise MasbenchError(f"--tuned makes a tune's own table (test accuracy at the best validation epoch, "
                                f"with its significance): give it without {', '.join(given)}")
        _report_tuned(tune, format, output, db)
        return
    if table and leaderboard:
        raise MasbenchError("give --table or --leaderboard, not both")
    if format == "html" and leaderboard:
        raise MasbenchError("--format html makes the tables and plots, not --leaderboard")
    if metric not in reporting.METRICS:
        raise MasbenchError(f"Invalid --metric: {metric!r} (valid: {', '.join(reporting.METRICS)})")
    if significance and leaderboard:
        raise MasbenchError("--significance goes with --table, not --leaderboard")
    if target is not None:
        if leaderboard:
            raise MasbenchError("--target goes with --table, not --leaderboard")
        reporting.check_target(target)
    if output is not None:
        check_new_file(output, "Invalid --output:")
    store = _open_for_reading(db)
    _refuse_the_store(store, output)
    if format == "html":
        from datetime import datetime, timezone

        from masbench.report.html import render_html

        runs = _runs(store, metric, dataset, model, benchmark, optimizer, where)
        page = render_html(store, metric=metric, dataset=dataset, model=model, benchmark=benchmark,
                           generated=datetime.now(timezone.utc), target=target, runs=runs)
        _emit(reporting.Rendered(page), output)
        return
    runs = _runs(store, metric, dataset, model, benchmark, optimizer, where)
    cells = reporting.cell_table(runs)
    if not leaderboard:
        per_table = reporting.benchmark_targets() if target is None else None
        if target is not None or per_table:
            epochs = reporting.run_epochs(store, runs, dataset=dataset, model=model, benchmark=benchmark)
            cells = reporting.with_time_to_target(cells, epochs, target, per_table)
        if significance:
            cells, _ = reporting.with_significance(cells)
    if leaderboard:
        rendered = reporting.render_leaderboard(reporting.leaderboard(cells), metric, format)
    else:
        rendered = reporting.render_tables(cells, metric, format)
    _emit(rendered, output)


def runs(
    format: Annotated[str, typer.Option("--format", help="rich, csv, markdown, latex, json, or html (one self-contained page), as report prints.")] = "rich",
    output: OutputOpt = None,
    dataset: FilterDataset = None,
    model: FilterModel = None,
    benchmark: FilterBenchmark = None,
    optimizer: FilterOptimizer = None,
    where: FilterWhere = None,
    db: DbOpt = None,
) -> None:
    """List the runs: id (for masbench show), status, cell, seed, best test accuracy and start; tunes' runs left out."""
    from masbench import report as reporting
    from masbench.report.runs import render_runs, run_list

    _check_format(format)
    store = _open_for_reading(db)
    _refuse_the_store(store, output)
    frame = run_list(_runs(store, "best", dataset, model, benchmark, optimizer, where))
    if format == "html":
        from datetime import datetime, timezone

        from masbench.report.html import render_runs_html

        _emit(reporting.Rendered(render_runs_html(frame, store_url=store.masked_url,
                                                  generated=datetime.now(timezone.utc))), output)
        return
    _emit(render_runs(frame, format), output)


def _tuned_frames(store, tune: str | None):
    """(name, trials frame, tuned table) of the tune ``tune`` names, or of the store's only tune."""
    from masbench.report.tuning import budgets_of, pick_tune, tuned_table

    chosen = pick_tune(store.tunes_frame(), tune, store.masked_url)
    frame = store.trials_frame(tune=int(chosen["id"]))
    return chosen["name"], frame, tuned_table(frame, budgets_of(chosen["settings"]))


def _report_tuned(tune: str | None, format: str, output: str | None, db: str | None) -> None:
    from masbench import report as reporting

    if output is not None:
        check_new_file(output, "Invalid --output:")
    store = _open_for_reading(db)
    _refuse_the_store(store, output)
    name, frame, table = _tuned_frames(store, tune)
    if format == "html":
        from datetime import datetime, timezone

        from masbench.report.html import render_tuned_html

        page = render_tuned_html(frame, table, tune=name, store_url=store.masked_url,
                                 generated=datetime.now(timezone.utc))
        _emit(reporting.Rendered(page), output)
        return
    _emit(reporting.render_tuned(table, name, format), output)


def compare(
    configs: Annotated[list[str] | None, typer.Argument(help="Configurations: mas:0.3, mas:0.3:0.7, adam, sgd, adamw, run names or config keys; the first is the reference.")] = None,
    baseline: Annotated[str | None, typer.Option(help="Regression gate: a saved report --format csv to compare the store with.")] = None,
    tolerance: Annotated[float | None, typer.Option(parser=number, help="Gate: the drop in avg acc allowed, in points (default 1): a cell regresses when it drops by more than this and the drop is significant (one-sided t-test, alpha 0.01); a drop equal to it passes.")] = None,
    metric: MetricOpt = "best",
    dataset: FilterDataset = None,
    model: FilterModel = None,
    benchmark: FilterBenchmark = None,
    optimizer: FilterOptimizer = None,
    where: FilterWhere = None,
    db: DbOpt = None,
) -> None:
    """Statistics between configurations (difference, 95% CI, t-test), or the CI regression gate."""
    from masbench import report as reporting

    if metric not in reporting.METRICS:
        raise MasbenchError(f"Invalid --metric: {metric!r} (valid: {', '.join(reporting.METRICS)})")
    if baseline is None and tolerance is not None:
        raise MasbenchError("--tolerance goes with --baseline FILE")
    if baseline is not None:
        if configs:
            raise MasbenchError("give configurations to compare, or --baseline FILE for the gate, not both")
        if optimizer is not None or where:
            raise MasbenchError("--optimizer and --where choose the runs to compare; the gate (--baseline) checks "
                                "every cell of its file: give it without them")
        _gate(baseline, tolerance, metric, dataset, model, benchmark, db)
        return

    selectors = [reporting.parse_selector(text) for text in configs or []]
    if len(selectors) < 2:
        raise MasbenchError("compare needs two configurations or more (e.g. masbench compare adam mas:0.3), "
                            "or --baseline FILE")
    store = _open_for_reading(db)
    _print_comparisons(reporting.compare(_runs(store, metric, dataset, model, benchmark, optimizer, where), selectors),
                       metric)


def _gate(baseline: str, tolerance: float | None, metric: str, dataset: str | None, model: str | None,
          benchmark: str | None, db: str | None) -> None:
    """``compare --baseline FILE``: one line per regression and a verdict; exit 1 if a cell regressed."""
    from masbench import report as reporting

    store = _open_for_reading(db)
    cells = reporting.cell_table(_runs(store, metric, dataset, model, benchmark))
    result = reporting.regression_gate(cells, baseline, metric=metric, benchmark=benchmark, dataset=dataset,
                                       model=model, tolerance=tolerance)
    for line in result.notes:
        typer.echo(f"note: {line}")
    for line in result.regressions:
        typer.echo(f"REGRESSION {line}")
    if result.regressions:
        typer.echo(f"{len(result.regressions)} of {result.checked} cells regressed against {baseline}")
        raise typer.Exit(1)
    typer.echo(f"no regression: {result.checked} cells within tolerance of {baseline}")


def _print_comparisons(comparisons, metric: str) -> None:
    """One table per (benchmark, data set, model) of ``reporting.compare``, what each label names, the verdicts."""
    from rich.table import Table

    from masbench import report as reporting

    console = stdout_console()
    for c in comparisons:
        where = f"{c.dataset}/{c.model}" + (f" (benchmark {c.benchmark})" if c.benchmark else "")
        table = Table(title=f"{where}: {reporting.METRIC_TITLES[metric]}, %", title_justify="left")
        for column in ("configuration", "seeds", "mean ± std", "diff vs ref [95% CI]", "p", "p (Holm)", "test"):
            table.add_column(column, overflow="fold")
        ref = c.reference
        table.add_row(f"{ref.label} (ref)", str(ref.n), _mean_std(ref), "", "", "", "")
        for d in c.differences:
            o = d.other
            if math.isnan(d.diff):  # a side without a completed seed
                ci = "-"
            else:
                ci = f"{d.diff:+.2f}" if math.isnan(d.low) else f"{d.diff:+.2f} [{d.low:+.2f}, {d.high:+.2f}]"
            table.add_row(o.label, str(o.n), _mean_std(o), ci,
                          "" if math.isnan(d.p_value) else f"{d.p_value:.3g}",
                          "" if math.isnan(d.p_adjusted) else f"{d.p_adjusted:.3g}", d.test or "")
        console.print(table, markup=False)
        for side in (ref, *(d.other for d in c.differences)):
            console.print(f"  {side.label} = {side.name}" + (f" ({side.settings})" if side.settings else "")
                          + f", config {side.config_key}", markup=False)
        for d in c.differences:
            console.print(f"  verdict: {d.verdict}", markup=False)
        if any(side.n < 2 for side in (ref, *(d.other for d in c.differences))):
            console.print("  note: a configuration of fewer than 2 seeds has no std, and a difference has a 95% CI "
                          "and a test only with 2 seeds or more on each side", markup=False)
    tests = reporting.family_size([d.p_value for c in comparisons for d in c.differences])
    if tests >= 2:
        console.print(f"Holm–Bonferroni over {tests} comparisons: p (Holm) is each raw p adjusted for the others, "
                      f"and the verdicts use it (the 95% CIs are per comparison, not adjusted)", markup=False)


def _mean_std(side) -> str:
    """``mean ± std`` of a side's seeds; the mean alone for one seed (no std), ``-`` for none."""
    if side.n == 0:
        return "-"
    return f"{side.mean:.2f} ± {side.std:.2f}" if side.n > 1 else f"{side.mean:.2f}"


def plot(
    output: Annotated[str, typer.Option(help="The image file: .png, .svg or .pdf.")],
    kind: Annotated[str, typer.Option(help="curves (test accuracy and loss per epoch), lambda (avg acc against λa), profile (performance profile of time to --target over every data set and model) or tuning (a tune's expected best validation accuracy after k trials, and validation accuracy against lr).")] = "curves",
    metric: MetricOpt = "best",
    dataset: FilterDataset = None,
    model: FilterModel = None,
    benchmark: FilterBenchmark = None,
    optimizer: FilterOptimizer = None,
    where: FilterWhere = None,
    target: Annotated[float | None, typer.Option(help="--kind profile: the test accuracy in percent to reach (default: the benchmarks file's target: keys).")] = None,
    target_by: Annotated[str, typer.Option(help="--kind profile: count time to target in training seconds (wall time: noisy on a shared machine) or in epochs.")] = "seconds",
    tune: TuneOpt = None,
    db: DbOpt = None,
) -> None:
    """Plot one data set and model: learning curves with ± std bands (the paper's Figure 7), or λ sensitivity;
    or a tune's curves (expected best validation accuracy after k trials) and validation accuracy against lr."""
    from masbench.report import plots

    if kind not in ("curves", "lambda", "profile", "tuning"):
        raise MasbenchError(f"Invalid --kind: {kind!r} (valid: curves, lambda, profile, tuning)")
    plots.check_output(output)  # before the store is read: every kind writes this one file
    if target is not None and kind != "profile":
        raise MasbenchError("--target goes with --kind profile")
    from masbench.report.target import check_target_by

    check_target_by(target_by)
    if target_by != "seconds" and kind != "profile":
        raise MasbenchError("--target-by goes with --kind profile")
    if tune is not None and kind != "tuning":
        raise MasbenchError("--tune NAME goes with --kind tuning")
    if kind == "tuning":
        from masbench.report.plot_tuning import plot_tuning

        given = [flag for flag, value in (("--dataset", dataset), ("--model", model), ("--benchmark", benchmark),
                                          ("--optimizer", optimizer), ("--where", where))
                 if value not in (None, [])]
        if given:
            raise MasbenchError(f"--kind tuning plots one tune (--tune NAME): give it without {', '.join(given)}")
        store = _open_for_reading(db)
        name, frame, table = _tuned_frames(store, tune)
        typer.echo(f"plot written to {plot_tuning(frame, table, output, tune=name)}")
        return
    if kind == "profile":
        from masbench.report import check_target

        if target is not None:
            check_target(target)
    store = _open_for_reading(db)
    runs = _runs(store, metric, dataset, model, benchmark, optimizer, where)
    if kind == "profile":
        from masbench.report.plot_profile import plot_profile, profile_frame

        profile, ratio, styles, noise = profile_frame(store, runs, target, benchmark, dataset, model, by=target_by)
        if noise:
            typer.echo(f"Note: {noise}", err=True)
        path = plot_profile(profile, output, workloads=len(ratio), styles=styles, by=target_by,
                            target_text=f"{target:g}%" if target is not None else "per benchmark")
        typer.echo(f"plot written to {path}")
        return
    chosen_dataset = plots.choose(runs, "dataset", dataset, "dataset")
    chosen_model = plots.choose(runs[runs["dataset"] == chosen_dataset], "model", model, "model")
    runs = runs[(runs["dataset"] == chosen_dataset) & (runs["model"] == chosen_model)]
    for name, path in plots.per_benchmark(runs, output):
        these = runs[runs["benchmark"] == name]
        if kind == "curves":
            from masbench.report import run_epochs

            epochs = run_epochs(store, these, dataset=chosen_dataset, model=chosen_model, benchmark=name or None)
            written = plots.plot_curves(epochs, path, dataset=chosen_dataset, model=chosen_model, runs=these)
        else:
            written = plots.plot_lambda(these, path, dataset=chosen_dataset, model=chosen_model, metric=metric)
        typer.echo(f"plot written to {written}")


def check(db: DbOpt = None,
          repair: Annotated[bool, typer.Option(
              "--repair", help="First rebuild every per-run summary (what reports read of the epochs) from the "
                               "epochs, with the triggers that keep them: for summaries edited by hand. "
                               "Writes the store; the epochs and runs are not changed.")] = False) -> None:
    """Every row of the store that a report would leave out, one line each: accuracies in [0, 1], finite losses
    (or a diverged run), seconds >= 0, epochs within their run's, completed runs whole, JSON that parses, keys
    not blank; and every per-run summary that differs from its epochs. Exit 1 when there is any problem."""
    if repair:
        from masbench.store import Store

        writer = Store(db, writable=True, create=False)
        try:
            typer.echo(f"rebuilt {writer.rebuild_summaries()} per-run summaries from the epochs", err=True)
        finally:
            writer.close()
    store = _open_for_reading(db)
    found = store.problems()
    runs, epochs = store.counts()
    for problem in found:
        typer.echo(problem.line())
    if found:
        typer.echo(f"{len(found)} problem(s) in {len({p.run_id for p in found})} of {runs} runs ({epochs} epochs) "
                   f"of {store.masked_url}")
        raise typer.Exit(1)
    typer.echo(f"no problems: {runs} runs, {epochs} epochs")
