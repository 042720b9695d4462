"""Schedules for MAS's lambdas, as scheduler objects with ``state_dict``.

The authors' "dynamic" variant moves lambda_adam linearly from a start to an end
value over a number of epochs, with lambda_sgd = 1 - lambda_adam. Call ``step()``
once per epoch, after the epoch's optimizer steps, as with torch's LR schedulers.
"""

from __future__ import annotations

from typing import Any

from torch.optim import Optimizer

from masbench.text.lambda_schedule import parse_lambda_schedule  # torch-free, so that specs normalise without torch


class LambdaSchedule:
    """Base class: sets ``lambda_adam``/``lambda_sgd`` in every param group at each epoch."""

    def __init__(self, optimizer: Optimizer) -> None:
        for group in optimizer.param_groups:
            if "lambda_adam" not in group or "lambda_sgd" not in group:
                raise ValueError(
                    f"A lambda schedule needs an optimizer with lambda_adam and lambda_sgd (got {type(optimizer).__name__})"
                )
        self.optimizer = optimizer
        self.last_epoch = 0
        self._apply()

    def lambdas(self, epoch: int) -> tuple[float, float] | None:
        """(lambda_adam, lambda_sgd) for ``epoch`` (0-based), or None to leave the groups as they are."""
        return None

    def current(self) -> tuple[float, float]:
        group = self.optimizer.param_groups[0]
        return group["lambda_adam"], group["lambda_sgd"]

    def step(self) -> None:
        self.last_epoch += 1
        self._apply()

    def _apply(self) -> None:
        values = self.lambdas(self.last_epoch)
        if values is None:
            return
        for group in self.optimizer.param_groups:
            group["lambda_adam"], group["lambda_sgd"] = values

    def state_dict(self) -> dict[str, Any]:
        return {key: value for key, value in self.__dict__.items() if key != "optimizer"}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.__dict__.update(state_dict)
        self._apply()


class ConstantLambda(LambdaSchedule):
    """The default: the lambdas stay as the optimizer was built with them."""


class LinearLambda(LambdaSchedule):
    """lambda_adam goes linearly from ``start`` to ``end`` over ``epochs`` epochs, then stays.

    At epoch e (0-based): lambda_adam = start + (end - start) * min(e, epochs) / epochs,
    lambda_sgd = 1 - lambda_adam.

    Example:
        >>> import torch
        >>> from masbench.optim import MAS, LinearLambda
        >>> opt = MAS([torch.zeros(2, requires_grad=True)])
        >>> sched = LinearLambda(opt, start=1.0, end=0.0, epochs=4)
        >>> sched.step(); sched.current()
        (0.75, 0.25)
    """

    def __init__(self, optimizer: Optimizer, start: float, end: float, epochs: int) -> None:
        for name, value in (("start", start), ("end", end)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"Invalid lambda schedule {name}: {value} (must be in [0, 1])")
        if epochs < 1:
            raise ValueError(f"Invalid lambda schedule epochs: {epochs} (must be >= 1)")
        self.start, self.end, self.epochs = float(start), float(end), int(epochs)
        super().__init__(optimizer)

    def lambdas(self, epoch: int) -> tuple[float, float]:
        lambda_adam = self.start + (self.end - self.start) * min(epoch, self.epochs) / self.epochs
        return lambda_adam, 1.0 - lambda_adam


def build_lambda_schedule(text: str, optimizer: Optimizer, epochs: int) -> LambdaSchedule:
    """The schedule that ``text`` names; a linear one without EPOCHS spans ``epochs``."""
    kind, numbers = parse_lambda_schedule(text)
    if kind == "constant":
        return ConstantLambda(optimizer)
    start, end = numbers[:2]
    return LinearLambda(optimizer, start, end, int(numbers[2]) if len(numbers) == 3 else epochs)
