"""The multi-tensor MAS path: the loop's operations as ``torch._foreach_*`` calls.

Bit-identical to torch's foreach SGD and Adam at the endpoints (lambda_adam = 0 or 1),
because it performs their operations, in their order. See ``masbench.optim.functional``
for the update rule.
"""

from __future__ import annotations

from collections import defaultdict

import torch
from torch import Tensor

from masbench.optim.coefficients import bias_corrections, mix_coefficients, step_value


def group_by_device_and_dtype(tensorlists: list[list], with_indices: bool = True):
    from torch.optim.optimizer import Optimizer

    return Optimizer._group_tensors_by_device_and_dtype(tensorlists, with_indices=with_indices)


def increment_steps(steps: list[Tensor]) -> None:
    if not torch.compiler.is_compiling() and steps[0].is_cpu:
        # One wrapped scalar instead of one per tensor, as torch's foreach Adam does.
        torch._foreach_add_(steps, torch.tensor(1.0, device="cpu"), alpha=1.0)
    else:
        torch._foreach_add_(steps, 1)


def foreach_adam_moments(
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    max_exp_avg_sqs: list[Tensor],
    grads: list[Tensor],
    beta1: float,
    beta2: float,
    amsgrad: bool,
) -> list[Tensor]:
    """Update Adam's moments as torch's foreach Adam does; return the second moments to use."""
    torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
    if amsgrad:
        torch._foreach_maximum_(max_exp_avg_sqs, exp_avg_sqs)
        return max_exp_avg_sqs
    return exp_avg_sqs


def foreach_add_scaled_(params: list[Tensor], directions: list[Tensor], alphas: list) -> None:
    """``params[i] += alphas[i] * directions[i]``, one foreach call per distinct alpha."""
    if alphas and isinstance(alphas[0], Tensor):
        # Compiling: the alphas are 0-d tensors, which ``alpha=`` does not take.
        torch._foreach_add_(params, torch._foreach_mul(directions, alphas))
        return
    by_alpha: dict[float, list[int]] = defaultdict(list)
    for i, alpha in enumerate(alphas):
        by_alpha[alpha].append(i)
    for alpha, idx in by_alpha.items():
        if len(idx) == len(params):
            torch._foreach_add_(params, directions, alpha=alpha)
        else:
            torch._foreach_add_([params[i] for i in idx], [directions[i] for i in idx], alpha=alpha)


def _foreach_addcdiv_scaled_(params: list[Tensor], numerators: list[Tensor], denoms: list[Tensor], alphas: list) -> None:
    """``params[i] += alphas[i] * numerators[i] / denoms[i]``; ``denoms`` may be overwritten."""
    if alphas and isinstance(alphas[0], Tensor):
        # Compiling: the alphas are 0-d tensors; the CPU kernel takes no tensor of scalars.
        torch._foreach_div_(denoms, alphas)
        torch._foreach_addcdiv_(params, numerators, denoms)
    else:
        torch._foreach_addcdiv_(params, numerators, denoms, alphas)


def _foreach_sgd_direction(
    grads: list[Tensor],
    bufs: list[Tensor | None],
    momentum_buffer_list: list[Tensor | None],
    indices: list[int],
    *,
    momentum: float,
    dampening: float,
    nesterov: bool,
) -> list[Tensor]:
    """torch's foreach SGD direction, without its in-place update of the gradients.

    A new momentum buffer is written into ``bufs`` and ``momentum_buffer_list``.
    """
    if momentum == 0:
        return grads
    if all(buf is not None for buf in bufs):
        new_bufs = list(bufs)
        torch._foreach_mul_(new_bufs, momentum)
        torch._foreach_add_(new_bufs, grads, alpha=1 - dampening)
    else:
        new_bufs = []
        for j, buf in enumerate(bufs):
            if buf is None:
                buf = grads[j].detach().clone()
                bufs[j] = momentum_buffer_list[indices[j]] = buf
            else:
                buf.mul_(momentum).add_(grads[j], alpha=1 - dampening)
            new_bufs.append(buf)
    return torch._foreach_add(grads, new_bufs, alpha=momentum) if nesterov else new_bufs


def _multi_tensor_mas(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    max_exp_avg_sqs: list[Tensor],
    momentum_buffer_list: list[Tensor | None],
    state_steps: list[Tensor],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    amsgrad: bool,
    momentum: float,
    dampening: float,
    nesterov: bool,
    lambda_adam: float,
    lambda_sgd: float,
    bias_correction: str,
) -> None:
    grouped = group_by_device_and_dtype(
        [params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, momentum_buffer_list, state_steps]
    )
    for (
        device_params,
        device_grads,
        device_exp_avgs,
        device_exp_avg_sqs,
        device_max_exp_avg_sqs,
        device_bufs,
        device_steps,
    ), indices in grouped.values():
        increment_steps(device_steps)
        if weight_decay != 0:
            device_grads = torch._foreach_add(device_grads, device_params, alpha=weight_decay)
        d_sgd = _foreach_sgd_direction(
            device_grads, device_bufs, momentum_buffer_list, indices,
            momentum=momentum, dampening=dampening, nesterov=nesterov,
        )
        second_moments = foreach_adam_moments(
            device_exp_avgs, device_exp_avg_sqs, device_max_exp_avg_sqs, device_grads, beta1, beta2, amsgrad
        )
        corrections = [bias_corrections(beta1, beta2, step_value(step), bias_correction) for step in device_steps]
        coefficients = [mix_coefficients(lr, bc1, lambda_adam, lambda_sgd) for bc1, _ in corrections]
        # A zero lambda skips its part: besides saving work, 0 * (0 / 0) would be NaN with eps = 0.
        if lambda_adam != 0:
            denom = torch._foreach_sqrt(second_moments)
            torch._foreach_div_(denom, [bc2**0.5 for _, bc2 in corrections])
            torch._foreach_add_(denom, eps)
            _foreach_addcdiv_scaled_(device_params, device_exp_avgs, denom, [-a for a, _ in coefficients])
        if lambda_sgd != 0:
            foreach_add_scaled_(device_params, d_sgd, [-s for _, s in coefficients])
