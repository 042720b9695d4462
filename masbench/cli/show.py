"""``masbench show RUN``: one run in full, from the store."""

from __future__ import annotations

from typing import Annotated

import typer

from masbench.cli.options import DbOpt


def show(
    run: Annotated[str, typer.Argument(help="A run id (e.g. 12) or a prefix of a run key (hex digits).")],
    db: DbOpt = None,
) -> None:
    """One run: its config, environment, status, claim history (attempts, worker, lease, heartbeat) and epochs."""
    from rich.table import Table

    from masbench.cli.output import stdout_console
    from masbench.report.show import detail_sections, epoch_columns, epoch_rows, find_run
    from masbench.store import open_for_reading

    detail = find_run(open_for_reading(db), run)
    console = stdout_console()
    for title, fields in detail_sections(detail):
        console.print(f"{title}:", markup=False, style="bold")
        width = max(len(k) for k, _ in fields) if fields else 0
        for key, value in fields:
            console.print(f"  {key.ljust(width)}  {value}", markup=False)
    table = Table(title="epochs", title_justify="left")
    for column in epoch_columns(detail):
        table.add_column(column, justify="right")
    for row in epoch_rows(detail):
        table.add_row(*row)
    if detail.epochs:
        console.print(table)
    else:
        console.print("epochs: none recorded", markup=False)
