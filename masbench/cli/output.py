"""How the commands print: rich on stdout, percentages."""

from __future__ import annotations

import sys


def stdout_console():
    """Rich output on stdout; when it is not a terminal (a pipe, a CI log), wide enough not to wrap tables."""
    from rich.console import Console

    return Console(soft_wrap=True, highlight=False, width=None if sys.stdout.isatty() else 200)


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"
