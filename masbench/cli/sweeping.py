"""How ``sweep`` shows and runs its cells: the ``--dry-run`` plan, the rounds with live progress, the summary.

The command itself (its options and the grid they make) is ``masbench.cli.train.sweep``.
"""

from __future__ import annotations

import typer

from masbench.cli.output import stdout_console


def print_plan(title: str, cells, db: str | None, device: str, retry_failed: bool) -> None:
    """``--dry-run``: the cells and their state in the store, and the packs of those to run; nothing is written."""
    from rich.table import Table

    from masbench.sweep import dry_run as plan
    from masbench.grid.packs import device_type, pack_lines

    out = stdout_console()
    table = Table(title=f"sweep {title}: {len(cells)} runs")
    for column in ("#", "name", "dataset", "model", "seed", "status"):
        table.add_column(column, overflow="fold")
    listed = plan(cells, db)
    for i, (cell, status) in enumerate(listed, start=1):
        table.add_row(str(i), cell.spec.name, cell.spec.dataset, cell.spec.model, str(cell.spec.seed), status,
                      style="dim" if status == "completed" else None)
    out.print(table, markup=False)
    done = sum(1 for _, status in listed if status == "completed")
    out.print(f"{len(cells)} runs: {done} completed, {len(cells) - done} to run", markup=False)
    if any(cell.pack != "off" for cell in cells):
        for line in pack_lines(listed, device_type(device), retry_failed):
            out.print(line, markup=False)
    from masbench.cli.seeds import plan_note

    note = plan_note(cells)
    if note is not None:
        out.print(note, markup=False)


def run_sweep(title: str, cells, db: str | None, settings, executor: str, ray_address: str | None,
              fail: bool = True, results: bool = True):
    """Run the cells (in rounds, with adaptive seeds) with live progress on stderr (a line per epoch and per
    cell's end when stderr is no terminal), then a summary and (``results``) the results table on stdout;
    exit 130 if interrupted, 1 if a cell failed (unless not ``fail``: a tune goes on with the others); the summary."""
    from masbench.cli.progress import stderr_console
    from masbench.signals import stop_on_signals
    from masbench.store import Store
    from masbench.sweep import preflight

    console = stderr_console()
    # One stop_on_signals around the report too: a signal once the sweep's work is over is only recorded
    # (see signals.finishing), so that it cannot cut the summary short or turn it into "aborted".
    with stop_on_signals():
        # Missing data, a bad device: refused before the store is opened, which creates a new one's file.
        datasets = preflight(cells, settings.options)
        store = Store(db)

        def run_round(round_cells, number: int):
            return _sweep_round(title, round_cells, store, console, settings, executor, ray_address, number,
                                datasets)

        # A refusal before any cell trained (Ray's, after the store was opened) leaves no new store behind.
        with store.unless_used():
            if any(cell.until_ci is not None for cell in cells):
                from masbench.cli.seeds import report_seeds
                from masbench.sweep.adaptive import run_adaptive

                summary, groups = run_adaptive(cells, store, run_round)
                if not summary.interrupted:
                    report_seeds(groups)
            else:
                summary = run_round(cells, 1)
        _report_sweep(title, summary, console, fail, (cells, store) if results else None)
    return summary


def _sweep_round(title: str, cells, store, console, settings, executor: str, ray_address: str | None, number: int,
                 datasets: dict):
    """One round of a sweep (every sweep has one; adaptive seeds add more): its summary."""
    from masbench.engine import describe_device, resolve_device
    from masbench.engine.environment import banner
    from masbench.cli.progress import SweepProgress
    from masbench import sweep

    progress = SweepProgress(store, [cell.spec.key for cell in cells], console, log=not console.is_terminal)

    def started(device_type: str | None = None) -> None:
        """``device_type``: what Ray's tasks train on (the cluster's); a local sweep's is this machine's."""
        from masbench.sweep import device_type as device_type_of, unpacked_notes

        if number == 1:
            console.print(banner(describe_device(resolve_device(settings.options.device))), markup=False)
        how = "on Ray" if executor == "ray" else f"{settings.workers} worker(s)"
        which = "" if number == 1 else f" (round {number} of adaptive seeds)"
        console.print(f"sweep {title}{which}: {len(cells)} runs, {how}, store {store.masked_url}", markup=False)
        for line in unpacked_notes(cells, device_type or device_type_of(settings.options.device)):
            console.print(line, markup=False)
        progress.start()

    try:
        if executor == "ray":
            return sweep.run_sweep_ray(cells, store, settings, address=ray_address, on_start=started,
                                       datasets=datasets)
        return sweep.run_sweep(cells, store, settings, on_start=started, datasets=datasets)
    finally:
        if progress.progress.live.is_started:
            progress.stop()


MAX_TABLE_CELLS = 60  # a sweep's results table past this many cells is a pointer to masbench report


def print_results(cells, store) -> None:
    """The report's table (best test accuracy) of the sweep's cells, every completed seed of them in the store;
    one line pointing at ``masbench report`` when they are too many to read at the end of a log, or none."""
    from masbench.report import cell_table, render_tables, run_accuracies

    keys = {cell.spec.config_key for cell in cells}
    benchmarks = {cell.spec.benchmark for cell in cells}
    benchmark = next(iter(benchmarks)) if len(benchmarks) == 1 else None
    pointer = f"masbench report --db {store.masked_url}" + (f" --benchmark {benchmark}" if benchmark else "")
    out = stdout_console()
    if len(keys) > MAX_TABLE_CELLS:
        out.print(f"results of {len(keys)} cells: {pointer}", markup=False)
        return
    runs = run_accuracies(store, benchmark=benchmark)
    runs = runs[runs["config_key"].isin(keys)]
    if runs["acc"].notna().sum() == 0:
        out.print(f"no completed run to tabulate: {pointer}", markup=False)
        return
    for table in render_tables(cell_table(runs), "best", "rich").rich:
        out.print(table)


def _report_sweep(title: str, summary, console, fail: bool = True, results=None) -> None:
    """The summary line and failures; ``results``: the (cells, store) whose table follows, unless interrupted."""
    out = stdout_console()
    counts = {status: summary.count(status) for status in ("completed", "pruned", "diverged", "failed", "pending",
                                                              "running")}
    parts = [f"{n} {status}" for status, n in counts.items() if n]
    out.print(f"sweep {title}: {summary.total} runs, {summary.ran} finished now; " + ", ".join(parts), markup=False)
    for state in summary.failed:
        first = (state["error"] or "").splitlines()[0] if state["error"] else "no error recorded"
        out.print(f"  failed: {state['name']} {state['dataset']}/{state['model']} seed {state['seed']}: {first}",
                  markup=False)
    if results is not None and not summary.interrupted:
        print_results(*results)
    if summary.dead_workers:
        console.print(f"warning: {summary.dead_workers} worker process(es) died; the others took their runs over",
                      markup=False)
    if summary.interrupted:
        console.print("interrupted: claims released; run the same command again to resume", markup=False)
        raise typer.Exit(summary.exit_code)
    if summary.failed and fail:
        raise typer.Exit(1)
