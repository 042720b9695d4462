"""The ``masbench`` command line: parse, call the Python API, map errors to exit codes.

Heavy imports (torch, pandas, ...) happen inside the commands so that ``--help``
stays instant. The commands live by job: ``train`` (run, sweep), ``tuning`` (tune), ``results``
(report, compare, plot) and ``toy``; ``options`` holds the options that ``run``
and ``sweep`` share and the one builder of spec values from them.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Annotated, Any

import typer

from masbench import __version__, faults, signals
from masbench.cli import export, listing, results, show, toy, train, tuning
from masbench.cli.output import WholeHelp
from masbench.errors import MasbenchError
from masbench.text.shown import one_line

# Typer >= 0.20 vendors click; older releases use click itself. Take the exceptions from whichever it uses.
click_exceptions = importlib.import_module(typer.BadParameter.__module__)


class OneLineErrors(WholeHelp):
    """Report bad input as one line on stderr with a non-zero exit, never a traceback.

    ``MASBENCH_DEBUG=1`` lets exceptions through, for bug reports.
    """

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra: Any) -> Any:
        try:
            # Until run or sweep installs its own stop, and after it, a signal ends masbench in one line:
            # planning, opening the store and the last report hold no claim, so there is only to say so.
            with signals.ending_the_command():
                faults.point("cli.started")
                rv = super().main(args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=False,
                                  **extra)
        except signals.Signalled as stop:
            rv = _fail(f"interrupted by {signals.name(stop.signum)}: no run was held; run the same command again",
                       stop.exit_code)
        except getattr(click_exceptions, "NoArgsIsHelpError", ()):
            # `masbench` alone: typer has printed the help already.
            rv = 0
        except click_exceptions.UsageError as error:
            hint = f" (see '{error.ctx.command_path} --help')" if error.ctx is not None else ""
            rv = _fail(f"{error.format_message()}{hint}", error.exit_code)
        except click_exceptions.ClickException as error:
            rv = _fail(error.format_message(), error.exit_code)
        except typer.Abort:
            rv = _fail("aborted", 130)
        except (MasbenchError, ValueError) as error:
            if os.environ.get("MASBENCH_DEBUG"):
                raise
            rv = _fail(str(error), getattr(error, "exit_code", 1))  # Stopped: 130 (SIGINT), 143 (SIGTERM)
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)


def _fail(message: str, code: int) -> int:
    typer.echo(f"Error: {one_line(message, limit=None)}", err=True)
    return code


app = typer.Typer(
    name="masbench",
    cls=OneLineErrors,
    help="Benchmark deep-learning optimizers around MAS (Mixing ADAM and SGD, arXiv 2011.08042).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"masbench {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Benchmark deep-learning optimizers around MAS (Mixing ADAM and SGD, arXiv 2011.08042)."""


# The order here is the order of `masbench --help`.
for command in (toy.toy, train.run, train.sweep, tuning.tune, results.report, results.compare, results.plot,
                results.runs, show.show, results.check):
    app.command()(command)
app.command("list")(listing.list_)
app.add_typer(export.export_app, name="export")


def main() -> None:
    app()
