"""How the commands print: rich on stdout, percentages."""

from __future__ import annotations

import sys

from typer.core import TyperGroup


def stdout_console():
    """Rich output on stdout; when it is not a terminal (a pipe, a CI log), wide enough not to wrap tables."""
    from rich.console import Console

    return Console(soft_wrap=True, highlight=False, width=None if sys.stdout.isatty() else 200)


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"



class WholeHelp(TyperGroup):
    """A group whose ``--help`` lists each command with its help's first sentence whole, wrapped to the
    terminal (click cuts it to the width left on one line, with '...')."""

    def format_commands(self, ctx, formatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=10_000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
