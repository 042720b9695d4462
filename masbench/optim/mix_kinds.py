"""The components of ``Mix`` whose update is "step size x direction", each as a small pure function.

A kind's ``prepare(param, grad, state, hp, lr)`` advances that kind's state by one step and returns
``(eta, apply)``: its step size and a function ``apply(coef)`` that moves the parameter by
``-coef * direction``. Alone (weight 1, ``coef = eta``), each performs exactly the operations of torch's
single-tensor optimizer of that name, in its order, so a one-component mix is that optimizer:

====================  =========================  ===============================================
kind                  eta                        direction d
====================  =========================  ===============================================
adam, adamw           lr / (1 - beta1^t)         m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
sgd                   lr                         torch.optim.SGD's (momentum, dampening, nesterov)
adamax                lr / (1 - beta1^t)         m / u,  u = max(beta2 u, |g| + eps)
nadam                 lr                         NAdam's two terms (mu, mu_next), over one denominator
rmsprop               lr                         g / (sqrt(v) + eps), or its momentum buffer
adagrad               lr / (1 + (t-1) lr_decay)  g / (sqrt(sum g^2) + eps)
lion                  lr                         sign(beta1 m + (1 - beta1) g)
====================  =========================  ===============================================

``prepare`` reads the parameter (L2 weight decay) and never writes it, so that every component sees
the same p_{t-1}; ``decay`` is the decoupled weight decay (AdamW, Lion, NAdam's option), applied by
``Mix`` before the directions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from masbench.optim.coefficients import BIAS_CORRECTIONS, bias_corrections, step_value

Prepared = tuple[float, Callable[[float], None]]
_ADAM = dict(betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, bias_correction="step")

# Each kind's hyperparameters and their defaults (torch's; Lion's from its paper's reference code).
DEFAULTS: dict[str, dict[str, Any]] = {
    "adam": dict(_ADAM),
    "sgd": dict(momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0),
    "adamw": {**_ADAM, "weight_decay": 1e-2},
    "adamax": dict(betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0),
    "nadam": dict(betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, momentum_decay=4e-3, decoupled_weight_decay=False),
    "rmsprop": dict(alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False),
    "adagrad": dict(lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10),
    "lion": dict(betas=(0.9, 0.99), weight_decay=0.0),
}
KINDS = tuple(DEFAULTS)  # the order they move p in: adam before sgd, as MAS, so that Mix(adam, sgd) is MAS bitwise
DECOUPLED = ("adamw", "lion")  # weight decay shrinks p; the others add it to the gradient (nadam: its option)


def validate(kind: str, hp: dict[str, Any]) -> None:
    """Reject a hyperparameter of component ``kind`` that it cannot use, naming it and what would be valid."""
    for key in ("lr", "eps", "weight_decay", "momentum", "lr_decay", "momentum_decay", "initial_accumulator_value"):
        if key in hp and not hp[key] >= 0.0:
            raise ValueError(f"Invalid {key} for mix component {kind}: {hp[key]} (must be >= 0)")
    if "betas" in hp:
        betas = tuple(hp["betas"])
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"Invalid betas for mix component {kind}: {hp['betas']} (must be two numbers in [0, 1))")
    if "alpha" in hp and not 0.0 <= hp["alpha"] <= 1.0:
        raise ValueError(f"Invalid alpha for mix component {kind}: {hp['alpha']} (must be in [0, 1])")
    if kind == "sgd" and hp["nesterov"] and (hp["momentum"] <= 0 or hp["dampening"] != 0):
        raise ValueError(f"Nesterov momentum requires momentum > 0 and dampening = 0 (got momentum={hp['momentum']}, "
                         f"dampening={hp['dampening']})")
    if hp.get("bias_correction", "step") not in BIAS_CORRECTIONS:
        raise ValueError(f"Invalid bias_correction for mix component {kind}: {hp['bias_correction']!r} "
                         f"(valid: {', '.join(BIAS_CORRECTIONS)})")


def init_state(kind: str, p: Tensor, hp: dict[str, Any]) -> dict[str, Any]:
    """A new parameter's state for ``kind``, as torch's optimizer of that name makes it."""
    zeros = lambda: torch.zeros_like(p, memory_format=torch.preserve_format)  # noqa: E731
    step = torch.tensor(0.0, dtype=torch.float32)
    if kind in ("adam", "adamw"):
        state = dict(step=step, exp_avg=zeros(), exp_avg_sq=zeros())
        if hp["amsgrad"]:
            state["max_exp_avg_sq"] = zeros()
        return state
    if kind == "adamax":
        return dict(step=step, exp_avg=zeros(), exp_inf=zeros())
    if kind == "nadam":
        return dict(step=step, mu_product=torch.tensor(1.0, dtype=torch.float32), exp_avg=zeros(), exp_avg_sq=zeros())
    if kind == "rmsprop":
        state = dict(step=step, square_avg=zeros())
        if hp["momentum"] > 0:
            state["momentum_buffer"] = zeros()
        if hp["centered"]:
            state["grad_avg"] = zeros()
        return state
    if kind == "adagrad":
        return dict(step=step, sum=torch.full_like(p, hp["initial_accumulator_value"],
                                                   memory_format=torch.preserve_format))
    if kind == "lion":
        return dict(exp_avg=zeros())
    return {}  # sgd: its momentum buffer is the first gradient, made at the first step


def decay(kind: str, hp: dict[str, Any]) -> float:
    """The decoupled weight decay rate of ``kind`` (0 if it has none): p shrinks by ``weight * lr * rate``."""
    if kind in DECOUPLED or (kind == "nadam" and hp["decoupled_weight_decay"]):
        return hp["weight_decay"]
    return 0.0


def _l2(kind: str, grad: Tensor, param: Tensor, hp: dict[str, Any]) -> Tensor:
    if hp["weight_decay"] != 0 and decay(kind, hp) == 0:
        return grad.add(param, alpha=hp["weight_decay"])
    return grad


def prepare(kind: str, param: Tensor, grad: Tensor, state: dict[str, Any], hp: dict[str, Any], lr: float) -> Prepared:
    """Advance ``state`` by one step from ``grad``; return (eta, apply) as the module docstring says."""
    grad = _l2(kind, grad, param, hp)
    return _PREPARE[kind](param, grad, state, hp, lr)


def _sgd(param: Tensor, grad: Tensor, state: dict, hp: dict, lr: float) -> Prepared:
    momentum = hp["momentum"]
    direction = grad
    if momentum != 0:
        buf = state.get("momentum_buffer")
        if buf is None:
            buf = state["momentum_buffer"] = grad.detach().clone()
        else:
            buf.mul_(momentum).add_(grad, alpha=1 - hp["dampening"])
        direction = grad.add(buf, alpha=momentum) if hp["nesterov"] else buf
    return lr, lambda coef: _move(param, direction, coef)


def _adam(param: Tensor, grad: Tensor, state: dict, hp: dict, lr: float) -> Prepared:
    beta1, beta2 = hp["betas"]
    state["step"] += 1
    exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
    exp_avg.lerp_(grad, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    if hp["amsgrad"]:
        torch.maximum(state["max_exp_avg_sq"], exp_avg_sq, out=state["max_exp_avg_sq"])
        exp_avg_sq = state["max_exp_avg_sq"]
    bc1, bc2 = bias_corrections(beta1, beta2, step_value(state["step"]), hp["bias_correction"])

    def apply(coef: float) -> None:
        denom = (exp_avg_sq.sqrt() / bc2**0.5).add_(hp["eps"])
        param.addcdiv_(exp_avg, denom, value=-coef)

    return lr / bc1, apply


def _adamax(param: Tensor, grad: Tensor, state: dict, hp: dict, lr: float) -> Prepared:
    beta1, beta2 = hp["betas"]
    state["step"] += 1
    exp_avg, exp_inf = state["exp_avg"], state["exp_inf"]
    exp_avg.lerp_(grad, 1 - beta1)
    torch.maximum(exp_inf.mul_(beta2), grad.abs().add_(hp["eps"]), out=exp_inf)
    return lr / (1 - beta1 ** step_value(state["step"])), lambda coef: param.addcdiv_(exp_avg, exp_inf, value=-coef)


def _nadam(param: Tensor, grad: Tensor, state: dict, hp: dict, lr: float) -> Prepared:
    beta1, beta2 = hp["betas"]
    state["step"] += 1
    step = step_value(state["step"])
    bias_correction2 = 1 - beta2**step
    mu = beta1 * (1.0 - 0.5 * (0.96 ** (step * hp["momentum_decay"])))
    mu_next = beta1 * (1.0 - 0.5 * (0.96 ** ((step + 1) * hp["momentum_decay"])))
    state["mu_product"] *= mu
    exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
    exp_avg.lerp_(grad, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    denom = exp_avg_sq.div(bias_correction2).sqrt()
    mu_product = step_value(state["mu_product"])
    mu_product_next = mu_product * mu_next
    denom.add_(hp["eps"])

    def apply(coef: float) -> None:
        param.addcdiv_(grad, denom, value=(-coef * (1.0 - mu) / (1.0 - mu_product)))
        param.addcdiv_(exp_avg, denom, value=(-coef * mu_next) / (1.0 - mu_product_next))

    return lr, apply


def _rmsprop(param: Tensor, grad: Tensor, state: dict, hp: dict, lr: float) -> Prepared:
    alpha = hp["alpha"]
    state["step"] += 1
    square_avg = state["square_avg"]
    square_avg.mul_(alpha).addcmul_(grad, grad, value=1 - alpha)
    if hp["centered"]:
        grad_avg = state["grad_avg"]
        grad_avg.lerp_(grad, 1 - alpha)
        avg = square_avg.addcmul(grad_avg, grad_avg, value=-1).sqrt_()
    else:
        avg = square_avg.sqrt()
    avg = avg.add_(hp["eps"])
    if hp["momentum"] > 0:
        buf = state["momentum_buffer"]
        buf.mul_(hp["momentum"]).addcdiv_(grad, avg)
        return lr, lambda coef: _move(param, buf, coef)
    return lr, lambda coef: param.addcdiv_(grad, avg, value=-coef)


def _adagrad(param: Tensor, grad: Tensor, state: dict, hp: dict, lr: float) -> Prepared:
    state["step"] += 1
    clr = lr / (1 + (step_value(state["step"]) - 1) * hp["lr_decay"])
    state["sum"].addcmul_(grad, grad, value=1)
    std = state["sum"].sqrt().add_(hp["eps"])
    return clr, lambda coef: param.addcdiv_(grad, std, value=-coef)


def _lion(param: Tensor, grad: Tensor, state: dict, hp: dict, lr: float) -> Prepared:
    beta1, beta2 = hp["betas"]
    exp_avg = state["exp_avg"]
    # The direction is read before the momentum moves on: Lion interpolates with beta1, then tracks with beta2.
    direction = exp_avg.clone().mul_(beta1).add(grad, alpha=1 - beta1).sign_()
    exp_avg.mul_(beta2).add_(grad, alpha=1 - beta2)
    return lr, lambda coef: _move(param, direction, coef)


def _move(param: Tensor, direction: Tensor, coef: float | Tensor) -> None:
    """``param -= coef * direction``: torch's ``add_(alpha=-coef)`` eagerly; while compiling ``coef`` is a 0-d
    tensor (the step count stays one, see ``coefficients``), which ``alpha=`` does not take."""
    if isinstance(coef, Tensor):
        param.sub_(direction * coef)
    else:
        param.add_(direction, alpha=-coef)


_PREPARE: dict[str, Callable[..., Prepared]] = {
    "sgd": _sgd, "adam": _adam, "adamw": _adam, "adamax": _adamax, "nadam": _nadam,
    "rmsprop": _rmsprop, "adagrad": _adagrad, "lion": _lion,
}
