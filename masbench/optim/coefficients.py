"""The scalar side of a MAS step: Adam's bias corrections and the two step sizes.

Eagerly the step count is a Python float (``step.item()``, fast on the host). Under
``torch.compile`` it stays a 0-d tensor, as in torch's own optimizers
(``torch.optim.optimizer._get_value``), so that dynamo traces the step without a
graph break per parameter; the functions here then return tensors.
"""

from __future__ import annotations

import torch
from torch import Tensor

BIAS_CORRECTIONS = ("step", "constant")


def step_value(step: Tensor) -> float | Tensor:
    """A 0-d state tensor (the step count; NAdam's mu product): a float eagerly, the tensor itself while
    compiling."""
    if not torch.jit.is_scripting() and torch.compiler.is_compiling():
        return step
    return step.item()


def bias_corrections(beta1: float, beta2: float, step: float | Tensor, mode: str) -> tuple:
    """Adam's bias corrections (bc1, bc2) at step ``step``.

    ``"step"`` is ``1 - beta^t`` (the authors' code and torch's Adam); ``"constant"`` is
    ``1 - beta``, the formula as printed in the paper.
    """
    if mode == "step":
        return 1 - beta1**step, 1 - beta2**step
    return 1 - beta1, 1 - beta2


def mix_coefficients(lr: float, bc1: float | Tensor, lambda_adam: float, lambda_sgd: float) -> tuple:
    """The step sizes that multiply d_adam and d_sgd: ``(c * lambda_adam, c * lambda_sgd)``.

    ``c = lambda_sgd * lr + lambda_adam * lr / bc1``. At lambda_adam = 1, lambda_sgd = 0
    the first is exactly ``lr / bc1`` (Adam's step size); at lambda_adam = 0,
    lambda_sgd = 1 the second is exactly ``lr`` (SGD's).
    """
    if lambda_adam == 0:
        # The same float as the general formula (x + 0.0 == x), but never a tensor while
        # compiling, and no 0 * inf = NaN should bc1 underflow to 0.
        return 0.0, lambda_sgd * lr * lambda_sgd
    c = lambda_sgd * lr + lambda_adam * (lr / bc1)
    return c * lambda_adam, c * lambda_sgd

