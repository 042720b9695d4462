"""The ``masbench`` command line: parse, call the Python API, map errors to exit codes.

Heavy imports (torch, pandas, ...) happen inside the commands so that ``--help``
stays instant.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from masbench import __version__
from masbench.errors import MasbenchError

# Typer >= 0.20 vendors click; older releases use click itself. Take the exceptions from whichever it uses.
click_exceptions = importlib.import_module(typer.BadParameter.__module__)


class OneLineErrors(TyperGroup):
    """Report bad input as one line on stderr with a non-zero exit, never a traceback.

    ``MASBENCH_DEBUG=1`` lets exceptions through, for bug reports.
    """

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra: Any) -> Any:
        try:
            rv = super().main(args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=False, **extra)
        except getattr(click_exceptions, "NoArgsIsHelpError", ()) as error:
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
            rv = _fail(str(error), 1)
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)


def _fail(message: str, code: int) -> int:
    typer.echo(f"Error: {' '.join(message.split())}", err=True)
    return code


app = typer.Typer(
    name="masbench",
    cls=OneLineErrors,
    help="Benchmark deep-learning optimizers around MAS (Mixing ADAM and SGD, arXiv 2011.08042).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
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


def _parse_point(text: str) -> tuple[float, float]:
    try:
        x, y = (float(part) for part in text.split(","))
    except ValueError:
        raise MasbenchError(f"Invalid --start: {text!r} (expected two numbers, X,Y, e.g. 3,1)") from None
    return x, y


@app.command()
def toy(
    name: Annotated[str, typer.Argument(help="The problem: quadratic, rosenbrock or abs.")],
    lr: Annotated[float | None, typer.Option(help="Learning rate (default: the paper's for this problem).")] = None,
    steps: Annotated[int | None, typer.Option(help="Number of steps (default: the paper's for this problem).")] = None,
    start: Annotated[str | None, typer.Option(help="Start point X,Y (default: the paper's).")] = None,
    momentum: Annotated[float, typer.Option(help="Momentum of SGD and of MAS's SGD part.")] = 0.0,
    lambda_adam: Annotated[float, typer.Option(help="MAS's weight of the Adam part.")] = 0.5,
    lambda_sgd: Annotated[float, typer.Option(help="MAS's weight of the SGD part.")] = 0.5,
    bias_correction: Annotated[str, typer.Option(help="MAS's Adam bias correction: step or constant.")] = "step",
    threshold: Annotated[
        float | None, typer.Option(help="Count the steps until the loss falls below this (default per problem).")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the results as a JSON list.")] = False,
    plot: Annotated[str | None, typer.Option(help="Also draw the trajectories over the loss contours to this PNG/SVG file.")] = None,
) -> None:
    """Run SGD, Adam and MAS on one of the paper's toy problems (float64, full batch)."""
    from masbench.toy import get_problem, plot_toy, run_toy

    problem = get_problem(name)
    results = run_toy(
        name,
        lr=lr,
        steps=steps,
        start=None if start is None else _parse_point(start),
        momentum=momentum,
        lambda_adam=lambda_adam,
        lambda_sgd=lambda_sgd,
        bias_correction=bias_correction,
        threshold=threshold,
    )
    if plot:
        plot_toy(name, results, plot)
    if json_output:
        typer.echo(json.dumps([r.summary() for r in results], indent=2))
        return

    from rich.console import Console
    from rich.table import Table

    limit = problem.threshold if threshold is None else threshold
    table = Table(title=f"{name}: {problem.description}", caption=f"steps to loss < {limit:g}")
    for column in ("optimizer", "x", "y", "final loss", "steps to threshold"):
        table.add_column(column, justify="left" if column == "optimizer" else "right")
    for r in results:
        reached = "never" if r.steps_to_threshold is None else str(r.steps_to_threshold)
        table.add_row(r.optimizer.upper(), f"{r.x:.6g}", f"{r.y:.6g}", f"{r.loss:.4g}", reached)
    console = Console()
    console.print(table)
    if plot:
        console.print(f"plot written to {plot}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
