"""The MAS update as pure functions over lists of tensors.

Three implementations take the same arguments, as in ``torch.optim.adam``:

- ``_single_tensor_mas``: a plain loop over parameters. It is the reference: it
  repeats the exact operation sequence of torch's single-tensor SGD and Adam, so
  that the endpoints (lambda_adam = 0 or 1) are bit-identical to them.
- ``_multi_tensor_mas`` (``multi_tensor.py``): the same sequence with
  ``torch._foreach_*`` ops, bit-identical to torch's foreach SGD and Adam at the endpoints.
- ``_fused_mas`` (``fused.py``): torch's fused Adam and SGD kernels
  (``torch._fused_adam_`` and ``torch._fused_sgd_``), one pass over memory each, with
  the learning rates rescaled so that their sum is the MAS update. Equal to the
  reference to float rounding, and bit-identical to torch's fused Adam and SGD at the
  endpoints, in every floating dtype.

For every parameter p with gradient g at its step t::

    g_hat = g + weight_decay * p
    m <- beta1 * m + (1 - beta1) * g_hat ;  v <- beta2 * v + (1 - beta2) * g_hat^2
    d_adam = m / (sqrt(v) / sqrt(bc2) + eps) ;  eta_adam = lr / bc1
    d_sgd  = torch.optim.SGD's direction (momentum, dampening, nesterov)
    p <- p - (lambda_sgd * lr + lambda_adam * eta_adam) * (lambda_sgd * d_sgd + lambda_adam * d_adam)

The product is applied as two additions, ``p -= c * lambda_adam * d_adam`` and
``p -= c * lambda_sgd * d_sgd`` with ``c = lambda_sgd * lr + lambda_adam * eta_adam``: it
needs no temporary for the mixed direction, and with one lambda zero the other
addition is exactly the one torch's optimizer performs. A part whose lambda is zero
does not move p at all, so eps = 0 gives no 0 * (0 / 0) = NaN at lambda_adam = 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from masbench.optim.coefficients import BIAS_CORRECTIONS, bias_corrections, mix_coefficients, step_value
from masbench.optim.fused import _fused_mas, _fused_mas_outside_graph, fused_kernels_available
from masbench.optim.multi_tensor import _multi_tensor_mas

__all__ = ["BIAS_CORRECTIONS", "bias_corrections", "default_path", "fused_kernels_available", "mas", "mix_coefficients"]


MAS_DEFAULT_PATH = ("sgd", "adam", "adamw")  # built alone, these run MAS's default path (``build_optimizer``)


def default_path(params: Sequence[Tensor]) -> tuple[bool, bool]:
    """Choose (fused, foreach) when the user chose neither.

    Where torch's own optimizers would use foreach (CUDA and its kin), MAS uses
    foreach. Where torch would fall back to the for-loop, which on CPU is its
    slowest path, MAS uses the fused kernels when torch has them for the device:
    benchmarks/optim_step.py measures that as the fastest CPU path.
    """
    from torch.optim.optimizer import _default_to_fused_or_foreach

    if torch.jit.is_scripting():
        return False, False
    _, foreach = _default_to_fused_or_foreach(list(params), differentiable=False, use_fused=False)
    if foreach:
        return False, True
    fused = fused_kernels_available() and all(p.device.type == "cpu" and torch.is_floating_point(p) for p in params)
    return fused, False


def mas(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    max_exp_avg_sqs: list[Tensor],
    momentum_buffer_list: list[Tensor | None],
    state_steps: list[Tensor],
    *,
    foreach: bool | None = None,
    fused: bool | None = None,
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
    """Functional MAS: update ``params`` and the state lists in place.

    ``momentum_buffer_list`` holds ``None`` for a parameter without a buffer yet; the
    new buffer is written into the list, as ``torch.optim.sgd.sgd`` does.
    ``max_exp_avg_sqs`` is empty unless ``amsgrad``.
    """
    if not params:
        return
    if fused is None and foreach is None:
        fused, foreach = default_path(params)
    if fused and foreach:
        raise RuntimeError("fused and foreach cannot both be True")
    if fused:
        func = _fused_mas_outside_graph if torch.compiler.is_compiling() else _fused_mas
    elif foreach:
        func = _multi_tensor_mas
    else:
        func = _single_tensor_mas
    func(
        params,
        grads,
        exp_avgs,
        exp_avg_sqs,
        max_exp_avg_sqs,
        momentum_buffer_list,
        state_steps,
        lr=lr,
        beta1=beta1,
        beta2=beta2,
        eps=eps,
        weight_decay=weight_decay,
        amsgrad=amsgrad,
        momentum=momentum,
        dampening=dampening,
        nesterov=nesterov,
        lambda_adam=lambda_adam,
        lambda_sgd=lambda_sgd,
        bias_correction=bias_correction,
    )


def _single_tensor_mas(
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
    for i, param in enumerate(params):
        grad = grads[i]
        step_t = state_steps[i]
        step_t += 1
        if weight_decay != 0:
            grad = grad.add(param, alpha=weight_decay)

        # SGD direction: torch.optim.SGD's operations, in its order.
        if momentum != 0:
            buf = momentum_buffer_list[i]
            if buf is None:
                buf = grad.detach().clone()
                momentum_buffer_list[i] = buf
            else:
                buf.mul_(momentum).add_(grad, alpha=1 - dampening)
            d_sgd = grad.add(buf, alpha=momentum) if nesterov else buf
        else:
            d_sgd = grad

        # Adam moments: torch.optim.Adam's operations, in its order.
        exp_avg, exp_avg_sq = exp_avgs[i], exp_avg_sqs[i]
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        if amsgrad:
            torch.maximum(max_exp_avg_sqs[i], exp_avg_sq, out=max_exp_avg_sqs[i])
            exp_avg_sq = max_exp_avg_sqs[i]

        bc1, bc2 = bias_corrections(beta1, beta2, step_value(step_t), bias_correction)
        adam_coef, sgd_coef = mix_coefficients(lr, bc1, lambda_adam, lambda_sgd)
        # A zero lambda skips its part: besides saving work, 0 * (0 / 0) would be NaN with eps = 0.
        if lambda_adam != 0:
            denom = (exp_avg_sq.sqrt() / bc2**0.5).add_(eps)
            param.addcdiv_(exp_avg, denom, value=-adam_coef)
        if lambda_sgd != 0:
            if isinstance(sgd_coef, Tensor):
                # Compiling: the step size is a 0-d tensor, which ``alpha=`` does not take.
                param.sub_(d_sgd * sgd_coef)
            else:
                param.add_(d_sgd, alpha=-sgd_coef)
