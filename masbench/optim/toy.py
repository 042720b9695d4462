"""The paper's toy problems (Section 4, Figs. 3-5): SGD, Adam and MAS on 2-D losses.

Each problem is minimised in float64, full batch, one step per epoch, from the
paper's start point and learning rate. "Default parameters" are torch's (SGD
without momentum; Adam with betas (0.9, 0.999), eps 1e-8) and MAS with
lambda_adam = lambda_sgd = 0.5 and step bias correction.

Two slips in the paper's printed formulas are corrected: the quadratic loss is
sum (p_i - y_i)^2 (printed as (p_i - y_i^2), which has no minimum), and Rosenbrock
is (a - x)^2 + b (y - x^2)^2 (printed with (a - y)^2, not the function it cites).

Example:
    >>> results = run_toy("abs", steps=50)
    >>> [r.optimizer for r in results]
    ['sgd', 'adam', 'mas']
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from masbench.errors import MasbenchError
from masbench.optim import MAS, build_optimizer
from masbench.text.limits import FLOAT_RANGES, check_float
from masbench.text.shown import shown

Loss = Callable[[torch.Tensor], torch.Tensor]


def _quadratic(w: torch.Tensor) -> torch.Tensor:
    x = torch.tensor([1.0, 2.0], dtype=w.dtype)
    y = torch.tensor([2.0, 4.0], dtype=w.dtype)
    prediction = w[0] * (w[1] * x)
    return ((prediction - y) ** 2).sum()


def _rosenbrock(w: torch.Tensor, a: float = 1.0, b: float = 100.0) -> torch.Tensor:
    return (a - w[0]) ** 2 + b * (w[1] - w[0] ** 2) ** 2


def _abs(w: torch.Tensor) -> torch.Tensor:
    return w[0].abs() / 10 + w[1].abs()


@dataclass(frozen=True)
class ToyProblem:
    """A 2-D loss with the paper's settings; ``threshold`` and ``extent`` serve the report and the plot."""

    name: str
    loss: Loss
    start: tuple[float, float]
    lr: float
    steps: int
    threshold: float
    extent: tuple[float, float, float, float]  # xmin, xmax, ymin, ymax of the contour plot
    description: str


PROBLEMS: dict[str, ToyProblem] = {
    "quadratic": ToyProblem(
        "quadratic", _quadratic, (1.0, 1.0), 0.01, 300, 1e-3, (-0.5, 3.0, -0.5, 3.0),
        "sum_i (w1*(w2*x_i) - y_i)^2, x = [1, 2], y = [2, 4]",
    ),
    "rosenbrock": ToyProblem(
        "rosenbrock", _rosenbrock, (3.0, 1.0), 1e-4, 1000, 1e-2, (-1.0, 3.5, -1.0, 10.0),
        "(1 - x)^2 + 100 (y - x^2)^2",
    ),
    "abs": ToyProblem(
        "abs", _abs, (3.0, 2.0), 0.01, 400, 0.1, (-1.0, 3.5, -1.0, 2.5),
        "|x|/10 + |y|",
    ),
}

TOY_OPTIMIZERS = ("sgd", "adam", "mas")
MAX_STEPS = 100_000  # the paper's problems take at most 1,000; a trajectory holds every step, three times over
PLOT_FORMATS = (".png", ".svg", ".pdf")


@dataclass(frozen=True)
class ToyResult:
    optimizer: str
    x: float
    y: float
    loss: float
    steps_to_threshold: int | None
    trajectory: list[tuple[float, float]] = field(repr=False)
    losses: list[float] = field(repr=False)

    def summary(self) -> dict:
        """The JSON form: optimizer, x, y, loss, steps_to_threshold."""
        return dict(optimizer=self.optimizer, x=self.x, y=self.y, loss=self.loss, steps_to_threshold=self.steps_to_threshold)


def get_problem(name: str) -> ToyProblem:
    try:
        return PROBLEMS[name]
    except KeyError:
        raise ValueError(f"Unknown toy problem: {name!r} (valid: {', '.join(PROBLEMS)})") from None


def run_toy(
    name: str,
    *,
    lr: float | None = None,
    steps: int | None = None,
    start: tuple[float, float] | None = None,
    momentum: float = 0.0,
    lambda_adam: float = 0.5,
    lambda_sgd: float = 0.5,
    bias_correction: str = "step",
    threshold: float | None = None,
) -> list[ToyResult]:
    """Minimise toy problem ``name`` with SGD, Adam and MAS; ``None`` keeps the paper's setting.

    ``momentum`` applies to SGD and to MAS's SGD part. ``steps_to_threshold`` is the
    first step after which the loss is below ``threshold`` (0 if the start already is).
    """
    problem = get_problem(name)
    lr = problem.lr if lr is None else lr
    steps = problem.steps if steps is None else steps
    start = problem.start if start is None else start
    threshold = problem.threshold if threshold is None else threshold
    _check_settings(lr=lr, steps=steps, start=start, momentum=momentum, lambda_adam=lambda_adam,
                    lambda_sgd=lambda_sgd, threshold=threshold)

    # Build all three first, so that a bad hyperparameter fails before any work.
    runs = []
    for optimizer_name in TOY_OPTIMIZERS:
        w = torch.nn.Parameter(torch.tensor(start, dtype=torch.float64))
        if optimizer_name == "sgd":
            optimizer = build_optimizer("sgd", [w], lr=lr, momentum=momentum)
        elif optimizer_name == "adam":
            optimizer = build_optimizer("adam", [w], lr=lr)
        else:
            optimizer = MAS([w], lr=lr, momentum=momentum, lambda_adam=lambda_adam, lambda_sgd=lambda_sgd,
                            bias_correction=bias_correction)
        runs.append((optimizer_name, w, optimizer))

    results = []
    for optimizer_name, w, optimizer in runs:
        trajectory = [tuple(w.detach().tolist())]
        losses = [problem.loss(w.detach()).item()]
        for _ in range(steps):
            optimizer.zero_grad()
            loss = problem.loss(w)
            loss.backward()
            optimizer.step()
            trajectory.append(tuple(w.detach().tolist()))
            losses.append(problem.loss(w.detach()).item())
        reached = next((i for i, value in enumerate(losses) if value < threshold), None)
        x, y = trajectory[-1]
        results.append(ToyResult(optimizer_name, x, y, losses[-1], reached, trajectory, losses))
    return results


def _check_settings(*, lr: float, steps: int, start: tuple[float, float], momentum: float, lambda_adam: float,
                    lambda_sgd: float, threshold: float) -> None:
    """Bounded work and finite numbers; a negative hyperparameter is left to the optimizers' own checks."""
    if not 1 <= steps <= MAX_STEPS:
        raise ValueError(f"Invalid steps: {shown(steps)} (must be in [1, {MAX_STEPS:,}])")
    if not lr >= 0:
        raise ValueError(f"Invalid learning rate: {lr} (must be >= 0)")
    for key, value in (("lr", lr), ("momentum", momentum), ("lambda_adam", lambda_adam), ("lambda_sgd", lambda_sgd)):
        if not math.isfinite(value) or value > FLOAT_RANGES[key][1]:
            check_float(key, value, *FLOAT_RANGES[key])
    for key, value in (("start x", start[0]), ("start y", start[1]), ("threshold", threshold)):
        if not math.isfinite(value):
            raise ValueError(f"Invalid {key}: {shown(value)} (must be a finite number)")


def check_plot_path(path: str | Path) -> Path:
    """``path`` as a plot can be written to it: its folder exists and its suffix is a format matplotlib writes.

    Call it before ``run_toy`` so that a bad ``--plot`` fails before the work; ``plot_toy`` calls it too.
    """
    path = Path(path).expanduser()
    if path.suffix.lower() not in PLOT_FORMATS:
        raise MasbenchError(f"Invalid plot file {shown(str(path))}: its suffix must be one of {', '.join(PLOT_FORMATS)}")
    folder = path.absolute().parent
    if not folder.is_dir():
        raise MasbenchError(f"Invalid plot file {shown(str(path))}: folder {shown(str(folder))} does not exist")
    if path.is_dir():
        raise MasbenchError(f"Invalid plot file {shown(str(path))}: it is a folder")
    return path


def plot_toy(name: str, results: list[ToyResult], path: str) -> None:
    """Draw the trajectories over the loss contours, like the paper's Figs. 3-5."""
    path = check_plot_path(path)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    problem = get_problem(name)
    xs = [p[0] for r in results for p in r.trajectory]
    ys = [p[1] for r in results for p in r.trajectory]
    xmin, xmax, ymin, ymax = problem.extent
    xmin, xmax = min(xmin, min(xs)), max(xmax, max(xs))
    ymin, ymax = min(ymin, min(ys)), max(ymax, max(ys))
    gx, gy = np.meshgrid(np.linspace(xmin, xmax, 300), np.linspace(ymin, ymax, 300))
    grid = torch.tensor(np.stack([gx, gy]), dtype=torch.float64)
    z = problem.loss(grid).numpy()

    fig, ax = plt.subplots(figsize=(6, 5))
    levels = np.unique(np.quantile(z, np.linspace(0.0, 1.0, 30)))
    ax.contour(gx, gy, z, levels=levels, cmap="viridis", linewidths=0.6)
    colours = {"sgd": "tab:blue", "adam": "tab:orange", "mas": "tab:red"}
    for result in results:
        tx = [p[0] for p in result.trajectory]
        ty = [p[1] for p in result.trajectory]
        ax.plot(tx, ty, color=colours[result.optimizer], label=f"{result.optimizer.upper()} (loss {result.loss:.3g})")
        ax.plot(tx[-1], ty[-1], "o", color=colours[result.optimizer])
    ax.plot(*results[0].trajectory[0], "k*", markersize=10, label="start")
    ax.set_title(f"{name}: {problem.description}")
    ax.set_xlabel("x (w1)" if name == "quadratic" else "x")
    ax.set_ylabel("y (w2)" if name == "quadratic" else "y")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    try:
        fig.savefig(path)
    except OSError as error:
        raise MasbenchError(f"cannot write plot {shown(str(path))}: {error.strerror or error}") from None
    finally:
        plt.close(fig)
