"""A mix of adam and sgd alone is MAS: it may run MAS's multi-tensor and fused kernels.

``Mix``'s loop equals MAS's loop bit for bit; MAS's faster paths round otherwise (as torch's own paths
do), so that a mix of adam and sgd runs them when MAS would, and equals MAS on every path. The state
stays Mix's (``state[p]["adam"]``, ``state[p]["sgd"]``), so that a checkpoint resumes on any path.
"""

from __future__ import annotations

from typing import Any

import torch

from masbench.optim.functional import default_path, mas


def takes(group: dict[str, Any], params: list[torch.Tensor], linear: bool) -> bool:
    """Whether ``group`` is MAS (adam and sgd alone, one weight decay, the group's lr) on a fast path."""
    if linear or list(group["weights"]) != ["adam", "sgd"]:
        return False
    adam, sgd = group["components"]["adam"], group["components"]["sgd"]
    if "lr" in adam or "lr" in sgd or adam["weight_decay"] != sgd["weight_decay"]:
        return False
    fused, foreach = group["fused"], group["foreach"]
    if fused is None and foreach is None:
        fused, foreach = default_path(params)
    return bool(fused or foreach)


def step(states: list[dict[str, Any]], group: dict[str, Any], params: list[torch.Tensor]) -> None:
    """One MAS step over ``params`` (each with a gradient), reading and writing Mix's state: ``states[i]`` is
    ``params[i]``'s (a list rather than the optimizer's dict: under ``torch.compile``, a frame that holds a dict
    keyed by parameters guards on their gradients, which ``zero_grad`` frees at every step)."""
    adam, sgd = group["components"]["adam"], group["components"]["sgd"]
    exp_avgs, exp_avg_sqs, max_exp_avg_sqs, bufs, steps = [], [], [], [], []
    for own in states:  # made by Mix._init_group
        exp_avgs.append(own["adam"]["exp_avg"])
        exp_avg_sqs.append(own["adam"]["exp_avg_sq"])
        if adam["amsgrad"]:
            max_exp_avg_sqs.append(own["adam"]["max_exp_avg_sq"])
        bufs.append(own["sgd"].get("momentum_buffer"))
        steps.append(own["adam"]["step"])
    beta1, beta2 = adam["betas"]
    mas(params, [p.grad for p in params], exp_avgs, exp_avg_sqs, max_exp_avg_sqs, bufs, steps,
        foreach=group["foreach"], fused=group["fused"], lr=group["lr"], beta1=beta1, beta2=beta2, eps=adam["eps"],
        weight_decay=adam["weight_decay"], amsgrad=adam["amsgrad"], momentum=sgd["momentum"],
        dampening=sgd["dampening"], nesterov=sgd["nesterov"], lambda_adam=group["weights"]["adam"],
        lambda_sgd=group["weights"]["sgd"], bias_correction=adam["bias_correction"])
    if sgd["momentum"] != 0:
        for own, buf in zip(states, bufs):
            own["sgd"]["momentum_buffer"] = buf
