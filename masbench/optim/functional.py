"""The MAS update as pure functions over lists of tensors.

Three implementations take the same arguments, as in ``torch.optim.adam``:

- ``_single_tensor_mas``: a plain loop over parameters. It is the reference: it
  repeats the exact operation sequence of torch's single-tensor SGD and Adam, so
  that the endpoints (lambda_adam = 0 or 1) are bit-identical to them.
- ``_multi_tensor_mas``: the same sequence with ``torch._foreach_*`` ops, bit-identical
  to torch's foreach SGD and Adam at the endpoints.
- ``_fused_mas``: torch's fused Adam and SGD kernels (``torch._fused_adam_`` and
  ``torch._fused_sgd_``), one pass over memory each, with the learning rates
  rescaled so that their sum is the MAS update. Equal to the reference to float
  rounding, and bit-identical to torch's fused Adam and SGD at the endpoints.

For every parameter p with gradient g at its step t::

    g_hat = g + weight_decay * p
    m <- beta1 * m + (1 - beta1) * g_hat ;  v <- beta2 * v + (1 - beta2) * g_hat^2
    d_adam = m / (sqrt(v) / sqrt(bc2) + eps) ;  eta_adam = lr / bc1
    d_sgd  = torch.optim.SGD's direction (momentum, dampening, nesterov)
    p <- p - (lambda_sgd * lr + lambda_adam * eta_adam) * (lambda_sgd * d_sgd + lambda_adam * d_adam)

The product is applied as two additions, ``p -= c * lambda_adam * d_adam`` and
``p -= c * lambda_sgd * d_sgd`` with ``c = lambda_sgd * lr + lambda_adam * eta_adam``: it
needs no temporary for the mixed direction, and with one lambda zero the other
addition is exactly the one torch's optimizer performs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import torch
from torch import Tensor

BIAS_CORRECTIONS = ("step", "constant")


def bias_corrections(beta1: float, beta2: float, step: float, mode: str) -> tuple[float, float]:
    """Adam's bias corrections (bc1, bc2) at step ``step``.

    ``"step"`` is ``1 - beta^t`` (the authors' code and torch's Adam); ``"constant"`` is
    ``1 - beta``, the formula as printed in the paper.
    """
    if mode == "step":
        return 1 - beta1**step, 1 - beta2**step
    return 1 - beta1, 1 - beta2


def mix_coefficients(lr: float, bc1: float, lambda_adam: float, lambda_sgd: float) -> tuple[float, float]:
    """The step sizes that multiply d_adam and d_sgd: ``(c * lambda_adam, c * lambda_sgd)``.

    ``c = lambda_sgd * lr + lambda_adam * lr / bc1``. At lambda_adam = 1, lambda_sgd = 0
    the first is exactly ``lr / bc1`` (Adam's step size); at lambda_adam = 0,
    lambda_sgd = 1 the second is exactly ``lr`` (SGD's).
    """
    c = lambda_sgd * lr + lambda_adam * (lr / bc1)
    return c * lambda_adam, c * lambda_sgd


def fused_kernels_available() -> bool:
    return hasattr(torch, "_fused_adam_") and hasattr(torch, "_fused_sgd_")


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
        func = _fused_mas
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

        bc1, bc2 = bias_corrections(beta1, beta2, step_t.item(), bias_correction)
        adam_coef, sgd_coef = mix_coefficients(lr, bc1, lambda_adam, lambda_sgd)
        if lambda_adam != 0:
            denom = (exp_avg_sq.sqrt() / bc2**0.5).add_(eps)
            param.addcdiv_(exp_avg, denom, value=-adam_coef)
        if lambda_sgd != 0:
            param.add_(d_sgd, alpha=-sgd_coef)


def _group_by_device_and_dtype(tensorlists: list[list], with_indices: bool = True):
    from torch.optim.optimizer import Optimizer

    return Optimizer._group_tensors_by_device_and_dtype(tensorlists, with_indices=with_indices)


def _foreach_add_scaled_(params: list[Tensor], directions: list[Tensor], alphas: list[float]) -> None:
    """``params[i] += alphas[i] * directions[i]``, one foreach call per distinct alpha."""
    by_alpha: dict[float, list[int]] = defaultdict(list)
    for i, alpha in enumerate(alphas):
        by_alpha[alpha].append(i)
    for alpha, idx in by_alpha.items():
        if len(idx) == len(params):
            torch._foreach_add_(params, directions, alpha=alpha)
        else:
            torch._foreach_add_([params[i] for i in idx], [directions[i] for i in idx], alpha=alpha)


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
    grouped = _group_by_device_and_dtype(
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
        if device_steps[0].is_cpu:
            # One wrapped scalar instead of one per tensor, as torch's foreach Adam does.
            torch._foreach_add_(device_steps, torch.tensor(1.0, device="cpu"), alpha=1.0)
        else:
            torch._foreach_add_(device_steps, 1)
        if weight_decay != 0:
            device_grads = torch._foreach_add(device_grads, device_params, alpha=weight_decay)

        # SGD direction: torch's foreach SGD, without its in-place update of the gradients.
        if momentum != 0:
            if all(buf is not None for buf in device_bufs):
                bufs = list(device_bufs)
                torch._foreach_mul_(bufs, momentum)
                torch._foreach_add_(bufs, device_grads, alpha=1 - dampening)
            else:
                bufs = []
                for j, buf in enumerate(device_bufs):
                    if buf is None:
                        buf = device_grads[j].detach().clone()
                        device_bufs[j] = momentum_buffer_list[indices[j]] = buf
                    else:
                        buf.mul_(momentum).add_(device_grads[j], alpha=1 - dampening)
                    bufs.append(buf)
            d_sgd = torch._foreach_add(device_grads, bufs, alpha=momentum) if nesterov else bufs
        else:
            d_sgd = device_grads

        # Adam moments: torch's foreach Adam.
        torch._foreach_lerp_(device_exp_avgs, device_grads, 1 - beta1)
        torch._foreach_mul_(device_exp_avg_sqs, beta2)
        torch._foreach_addcmul_(device_exp_avg_sqs, device_grads, device_grads, 1 - beta2)
        second_moments = device_exp_avg_sqs
        if amsgrad:
            torch._foreach_maximum_(device_max_exp_avg_sqs, device_exp_avg_sqs)
            second_moments = device_max_exp_avg_sqs

        corrections = [bias_corrections(beta1, beta2, step.item(), bias_correction) for step in device_steps]
        coefficients = [mix_coefficients(lr, bc1, lambda_adam, lambda_sgd) for bc1, _ in corrections]
        if lambda_adam != 0:
            denom = torch._foreach_sqrt(second_moments)
            torch._foreach_div_(denom, [bc2**0.5 for _, bc2 in corrections])
            torch._foreach_add_(denom, eps)
            torch._foreach_addcdiv_(device_params, device_exp_avgs, denom, [-a for a, _ in coefficients])
        if lambda_sgd != 0:
            _foreach_add_scaled_(device_params, d_sgd, [-s for _, s in coefficients])


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
    """MAS as torch's fused Adam kernel followed by its fused SGD kernel.

    The Adam kernel moves p by ``kernel_lr / bc1 * d_adam``; passing
    ``kernel_lr = lambda_adam * (lambda_sgd * lr * bc1 + lambda_adam * lr)`` makes that
    ``c * lambda_adam * d_adam``, and exactly Adam's step at lambda_adam = 1,
    lambda_sgd = 0. The SGD kernel gets ``c * lambda_sgd`` as its learning rate. Both
    kernels read the same g_hat, computed before either moves p, and both run even
    at a zero lambda so that the moments and the momentum buffer keep their
    definitions (a lambda schedule may raise it later). Parameters are batched by
    step, since the kernels take one learning rate per call.
    """
    if not fused_kernels_available():
        raise RuntimeError(f"fused=True needs torch._fused_adam_ and torch._fused_sgd_; torch {torch.__version__} lacks them")
    for p in params:
        if not torch.is_floating_point(p):
            raise RuntimeError(f"fused=True requires floating-point parameters, got {p.dtype}")

    grouped = _group_by_device_and_dtype(
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
        device = device_params[0].device
        torch._foreach_add_(device_steps, torch.tensor(1.0, device=device_steps[0].device), alpha=1.0)
        if weight_decay != 0:
            device_grads = torch._foreach_add(device_grads, device_params, alpha=weight_decay)

        batches: dict[tuple[float, bool], list[int]] = defaultdict(list)
        for j, step in enumerate(device_steps):
            batches[(step.item(), device_bufs[j] is None)].append(j)
        for (step, first_step), idx in batches.items():
            bc1, _ = bias_corrections(beta1, beta2, step, bias_correction)
            _, sgd_coef = mix_coefficients(lr, bc1, lambda_adam, lambda_sgd)
            kernel_lr = lambda_adam * (lambda_sgd * lr * bc1 + lambda_adam * lr)
            kernel_step = torch.tensor(step if bias_correction == "step" else 1.0, dtype=torch.float32, device=device)
            batch_params = [device_params[j] for j in idx]
            batch_grads = [device_grads[j] for j in idx]
            torch._fused_adam_(
                batch_params,
                batch_grads,
                [device_exp_avgs[j] for j in idx],
                [device_exp_avg_sqs[j] for j in idx],
                [device_max_exp_avg_sqs[j] for j in idx] if amsgrad else [],
                [kernel_step] * len(idx),
                lr=kernel_lr,
                beta1=beta1,
                beta2=beta2,
                weight_decay=0.0,
                eps=eps,
                amsgrad=amsgrad,
                maximize=False,
            )
            if momentum == 0 and lambda_sgd == 0:
                continue
            if momentum != 0 and first_step:
                for j in idx:
                    device_bufs[j] = momentum_buffer_list[indices[j]] = torch.empty_like(device_grads[j])
            torch._fused_sgd_(
                batch_params,
                batch_grads,
                [device_bufs[j] for j in idx] if momentum != 0 else [],
                weight_decay=0.0,
                momentum=momentum,
                lr=sgd_coef,
                dampening=dampening,
                nesterov=nesterov,
                maximize=False,
                is_first_step=first_step and momentum != 0,
            )
