"""The stacked path of the packed optimizer: the MAS rule over [K, ...] tensors, per-member values broadcast.

A member's hyperparameters are the K entries of [K]-shaped tensors, viewed as [K, 1, ..., 1] against
each parameter. Where members differ in kind (momentum or none, nesterov, amsgrad, a zero lambda),
``torch.where`` picks each member's branch, so that a part a member does not use never touches it
(no 0 * inf = NaN). See ``masbench.pack.optim`` for the rule.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def hyper_vectors(hypers: list, device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    """The members' hyperparameters as [K] tensors on ``device``, and flags for the branches any member takes."""

    def vector(values) -> Tensor:
        return torch.tensor(list(values), dtype=torch.float64).to(device=device, dtype=dtype)

    def flags(values) -> Tensor:
        return torch.tensor(list(values), dtype=torch.bool).to(device)

    out: dict[str, Any] = {
        "decay": vector(1 - h.lr * h.decoupled for h in hypers),
        "wd": vector(h.weight_decay for h in hypers),
        "momentum": vector(h.momentum for h in hypers),
        "dampened": vector(1 - h.dampening for h in hypers),
        "one_minus_beta1": vector(1 - h.beta1 for h in hypers),
        "beta2": vector(h.beta2 for h in hypers),
        "one_minus_beta2": vector(1 - h.beta2 for h in hypers),
        "eps": vector(h.eps for h in hypers),
        "has_momentum": flags(h.momentum != 0 for h in hypers),
        "nesterov": flags(h.nesterov for h in hypers),
        "amsgrad": flags(h.amsgrad for h in hypers),
        "adam_on": flags(h.lambda_adam != 0 for h in hypers),
        "sgd_on": flags(h.lambda_sgd != 0 for h in hypers),
    }
    out.update(
        any_decoupled=any(h.decoupled != 0 for h in hypers), any_wd=any(h.weight_decay != 0 for h in hypers),
        any_momentum=any(h.momentum != 0 for h in hypers), all_momentum=all(h.momentum != 0 for h in hypers),
        any_nesterov=any(h.nesterov for h in hypers), any_amsgrad=any(h.amsgrad for h in hypers),
        any_adam=any(h.lambda_adam != 0 for h in hypers), all_adam=all(h.lambda_adam != 0 for h in hypers),
        any_sgd=any(h.lambda_sgd != 0 for h in hypers), all_sgd=all(h.lambda_sgd != 0 for h in hypers),
    )
    return out


def stacked_update(p: Tensor, g: Tensor, state: dict[str, Any], vec: dict[str, Any], coef: dict[str, Tensor],
                   hypers: list) -> None:
    """One MAS step of every member of ``p`` [K, ...] (with gradient ``g``); ``state["step"]`` already counts it.

    The operations are the reference loop's (``masbench.optim.functional._single_tensor_mas``), in its
    order, with AdamW's decoupled decay first, as torch's AdamW applies it.
    """
    shape = (p.shape[0],) + (1,) * (p.dim() - 1)

    def v(name: str) -> Tensor:
        return vec[name].view(shape)

    if vec["any_decoupled"]:
        p.mul_(v("decay"))
    if vec["any_wd"]:
        g = g.addcmul(p, v("wd"))
    d_sgd = g
    if vec["any_momentum"]:
        buf = state["momentum_buffer"]
        first = (~state["has_buffer"]).to(p.device).view(shape)  # a member's first step: buf = g_hat
        buf.copy_(torch.where(first, g, buf.mul(v("momentum")).addcmul_(g, v("dampened"))))
        d_sgd = buf
        if vec["any_nesterov"]:
            d_sgd = torch.where(v("nesterov"), g.addcmul(buf, v("momentum")), buf)
        if not vec["all_momentum"]:
            d_sgd = torch.where(v("has_momentum"), d_sgd, g)
    exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
    exp_avg.lerp_(g, v("one_minus_beta1"))
    exp_avg_sq.mul_(v("beta2")).addcmul_(g.square(), v("one_minus_beta2"))
    second = exp_avg_sq
    if vec["any_amsgrad"]:
        most = state["max_exp_avg_sq"]
        most.copy_(torch.where(v("amsgrad"), torch.maximum(most, exp_avg_sq), most))
        second = torch.where(v("amsgrad"), most, exp_avg_sq)
    if vec["any_adam"]:
        step = exp_avg / second.sqrt().div_(coef["bc2_sqrt"]).add_(v("eps"))
        step.mul_(coef["adam"])
        p.sub_(step if vec["all_adam"] else torch.where(v("adam_on"), step, 0.0))
    if vec["any_sgd"]:
        step = d_sgd * coef["sgd"]
        p.sub_(step if vec["all_sgd"] else torch.where(v("sgd_on"), step, 0.0))


_STACKED = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq", "momentum_buffer")


class _Kept:
    """Slices of members that must not move, copied before an update and put back after it."""

    def __init__(self, tensors: list[Tensor], index: Tensor | None) -> None:
        self.tensors, self.index = tensors, index
        self.saved = [t.index_select(0, index) for t in tensors] if index is not None else []

    def restore(self) -> None:
        for tensor, saved in zip(self.tensors, self.saved):
            tensor.index_copy_(0, self.index, saved)


def frozen_slices(p: Tensor, state: dict[str, Any], members: list[int]) -> _Kept:
    """The slices of ``members`` (none: nothing to keep) of ``p`` and of its stacked state."""
    if not members:
        return _Kept([], None)
    tensors = [p] + [state[name] for name in _STACKED if name in state]
    return _Kept(tensors, torch.tensor(members, device=p.device))


def member_entry(state: dict[str, Any], k: int, kind: str, hyper) -> dict[str, Tensor]:
    """Member ``k``'s state of one parameter as its optimizer (``kind``: mas, adam, sgd) keeps it; {} for none."""
    entry: dict[str, Tensor] = {}
    if kind in ("mas", "adam") and state["step"][k] > 0:
        entry["step"] = torch.tensor(float(state["step"][k]), dtype=torch.float32)
        entry["exp_avg"] = state["exp_avg"][k].clone()
        entry["exp_avg_sq"] = state["exp_avg_sq"][k].clone()
        if hyper.amsgrad:
            entry["max_exp_avg_sq"] = state["max_exp_avg_sq"][k].clone()
    if kind in ("mas", "sgd") and hyper.momentum != 0 and bool(state["has_buffer"][k]):
        entry["momentum_buffer"] = state["momentum_buffer"][k].clone()
    return entry


def load_entry(state: dict[str, Any], k: int, entry: dict[str, Any]) -> None:
    """Put one parameter's ordinary optimizer state (``{}``: none yet) into member ``k``'s slices."""
    state["step"][k] = float(entry["step"]) if "step" in entry else 0.0
    for name in ("exp_avg", "exp_avg_sq"):
        if name in entry:
            state[name][k].copy_(entry[name])
        else:
            state[name][k].zero_()
    if "max_exp_avg_sq" in state:
        state["max_exp_avg_sq"][k].copy_(entry.get("max_exp_avg_sq", state["exp_avg_sq"][k]))
    buf = entry.get("momentum_buffer")
    if "momentum_buffer" in state:
        if buf is not None:
            state["momentum_buffer"][k].copy_(buf)
        else:
            state["momentum_buffer"][k].zero_()
    state["has_buffer"][k] = buf is not None and "momentum_buffer" in state
