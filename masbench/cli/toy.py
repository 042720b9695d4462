"""``masbench toy``: the paper's toy problems."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from masbench.errors import MasbenchError
from masbench.text.numbers import integer, number


def _parse_point(text: str) -> tuple[float, float]:
    try:
        x, y = (number(part) for part in text.split(","))
    except ValueError:
        raise MasbenchError(f"Invalid --start: {text!r} (expected two numbers, X,Y, e.g. 3,1)") from None
    return x, y


def toy(
    name: Annotated[str, typer.Argument(help="The problem: quadratic, rosenbrock or abs.")],
    lr: Annotated[float | None, typer.Option(parser=number, help="Learning rate (default: the paper's for this problem).")] = None,
    steps: Annotated[int | None, typer.Option(parser=integer, help="Number of steps (default: the paper's for this problem).")] = None,
    start: Annotated[str | None, typer.Option(help="Start point X,Y (default: the paper's).")] = None,
    momentum: Annotated[float, typer.Option(parser=number, help="Momentum of SGD and of MAS's SGD part.")] = 0.0,
    lambda_adam: Annotated[float, typer.Option(parser=number, help="MAS's weight of the Adam part.")] = 0.5,
    lambda_sgd: Annotated[float, typer.Option(parser=number, help="MAS's weight of the SGD part.")] = 0.5,
    bias_correction: Annotated[str, typer.Option(help="MAS's Adam bias correction: step or constant.")] = "step",
    threshold: Annotated[
        float | None, typer.Option(parser=number, help="Count the steps until the loss falls below this (default per problem).")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the results as a JSON list.")] = False,
    plot: Annotated[str | None, typer.Option(help="Also draw the trajectories over the loss contours to this PNG/SVG file.")] = None,
) -> None:
    """Run SGD, Adam and MAS on one of the paper's toy problems (float64, full batch)."""
    from masbench.optim.toy import check_plot_path, get_problem, plot_toy, run_toy

    problem = get_problem(name)
    if plot:
        check_plot_path(plot)  # before the work, not after it
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
