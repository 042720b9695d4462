"""The fused MAS path: torch's fused Adam and SGD kernels, one pass over memory each.

``torch._fused_adam_`` and ``torch._fused_sgd_`` get learning rates rescaled so that
their sum is the MAS update. Equal to the reference loop to float rounding, and
bit-identical to ``torch.optim.Adam(fused=True)`` / ``torch.optim.SGD(fused=True)`` at
the endpoints, in every floating dtype, weight decay included.
"""

from __future__ import annotations

from collections import defaultdict

import torch
from torch import Tensor

from masbench.optim.coefficients import bias_corrections, mix_coefficients
from masbench.optim.multi_tensor import foreach_adam_moments, group_by_device_and_dtype, increment_steps


def fused_kernels_available() -> bool:
    return hasattr(torch, "_fused_adam_") and hasattr(torch, "_fused_sgd_")


def _fused_mas(
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
    """MAS as torch's fused Adam kernel and its fused SGD kernel.

    The Adam kernel moves p by ``kernel_lr / bc1 * d_adam``; passing
    ``kernel_lr = lambda_adam * (lambda_sgd * lr * bc1 + lambda_adam * lr)`` makes that
    ``c * lambda_adam * d_adam``, and exactly Adam's step at lambda_adam = 1,
    lambda_sgd = 0. The SGD kernel gets ``c * lambda_sgd`` as its learning rate.
    Both parts update their state at every step, even at a zero lambda, so that the
    moments and the momentum buffer keep their definitions (a lambda schedule may
    raise it later). Parameters are batched by step, since the kernels take one
    learning rate per call.

    Weight decay reads p, which each kernel moves. Where at most one part moves p
    (a zero lambda), each kernel adds the decay itself, in its own precision (float32
    for bfloat16 and float16 parameters), as torch's fused kernels do, and the part
    that does not move p runs first, so both read the same p. Where both move p, they
    read one g_hat computed beforehand in the parameters' dtype.

    At lambda_adam = 0 the Adam kernel does not run: it would still move p by
    ``0 * m / (sqrt(v) + eps)``, which is NaN where eps = 0 and a gradient is 0.
    The moments are updated with foreach operations instead.
    """
    _check_fused(params)
    grouped = group_by_device_and_dtype(
        [params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, momentum_buffer_list, state_steps]
    )
    decay_in_kernels = lambda_adam == 0 or lambda_sgd == 0
    hyper = dict(lr=lr, beta1=beta1, beta2=beta2, eps=eps, amsgrad=amsgrad, momentum=momentum, dampening=dampening,
                 nesterov=nesterov, lambda_adam=lambda_adam, lambda_sgd=lambda_sgd, bias_correction=bias_correction)
    for (p, g, m, v, vmax, bufs, steps), indices in grouped.values():
        increment_steps(steps)
        kernel_grads, kernel_decay = g, weight_decay
        if weight_decay != 0 and not decay_in_kernels:
            kernel_grads, kernel_decay = torch._foreach_add(g, p, alpha=weight_decay), 0.0
        if lambda_adam == 0:
            g_hat = torch._foreach_add(g, p, alpha=weight_decay) if weight_decay != 0 else g
            foreach_adam_moments(m, v, vmax, g_hat, beta1, beta2, amsgrad)

        batches: dict[tuple[float, bool], list[int]] = defaultdict(list)
        for j, step in enumerate(steps):
            batches[(step.item(), bufs[j] is None)].append(j)
        for (step, first_step), idx in batches.items():
            if momentum != 0 and first_step:
                for j in idx:
                    bufs[j] = momentum_buffer_list[indices[j]] = torch.empty_like(g[j])

            def pick(tensors: list, idx: list[int] = idx) -> list:
                return [tensors[j] for j in idx]

            _fused_batch(
                pick(p), pick(kernel_grads), pick(m), pick(v), pick(vmax) if amsgrad else [],
                pick(bufs) if momentum != 0 else [],
                step=step, first_step=first_step, weight_decay=kernel_decay, **hyper,
            )


def _fused_batch(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    max_exp_avg_sqs: list[Tensor],
    bufs: list[Tensor],
    *,
    step: float,
    first_step: bool,
    weight_decay: float,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    amsgrad: bool,
    momentum: float,
    dampening: float,
    nesterov: bool,
    lambda_adam: float,
    lambda_sgd: float,
    bias_correction: str,
) -> None:
    """Both kernels over parameters that share one step count; the one that leaves p alone runs first."""
    bc1, _ = bias_corrections(beta1, beta2, step, bias_correction)
    _, sgd_coef = mix_coefficients(lr, bc1, lambda_adam, lambda_sgd)

    def sgd() -> None:
        if momentum == 0 and lambda_sgd == 0:
            return
        torch._fused_sgd_(
            params, grads, bufs, weight_decay=weight_decay, momentum=momentum, lr=sgd_coef, dampening=dampening,
            nesterov=nesterov, maximize=False, is_first_step=first_step and momentum != 0,
        )

    def adam() -> None:
        if lambda_adam == 0:
            return
        kernel_step = torch.tensor(step if bias_correction == "step" else 1.0, dtype=torch.float32,
                                   device=params[0].device)
        torch._fused_adam_(
            params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, [kernel_step] * len(params),
            lr=lambda_adam * (lambda_sgd * lr * bc1 + lambda_adam * lr), beta1=beta1, beta2=beta2,
            weight_decay=weight_decay, eps=eps, amsgrad=amsgrad, maximize=False,
        )

    first, second = (sgd, adam) if lambda_sgd == 0 else (adam, sgd)
    first()
    second()


# Dynamo runs the fused path eagerly: it batches parameters by their step on the host
# (``.item()``), and each kernel is one pass over memory already, with nothing to gain
# from tracing. ``torch._disable_dynamo`` imports dynamo only when first called.
_fused_mas_outside_graph = torch._disable_dynamo(_fused_mas)


def _check_fused(params: list[Tensor]) -> None:
    if not fused_kernels_available():
        raise RuntimeError(f"fused=True needs torch._fused_adam_ and torch._fused_sgd_; torch {torch.__version__} lacks them")
    for p in params:
        if not torch.is_floating_point(p):
            raise RuntimeError(f"fused=True requires floating-point parameters, got {p.dtype}")
