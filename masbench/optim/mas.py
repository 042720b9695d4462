"""MAS: Mixing ADAM and SGD, as a ``torch.optim.Optimizer``."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim.optimizer import _use_grad_for_differentiable

from masbench.optim.functional import BIAS_CORRECTIONS, mas


class MAS(Optimizer):
    r"""Mixing ADAM and SGD (Landro, Gallo, La Grassa, 2020, arXiv:2011.08042).

    Each parameter moves along a weighted sum of an SGD direction and an Adam
    direction, with a step size that mixes the two learning rates:

    .. math::
        \hat g_t &= g_t + \text{weight\_decay}\,p_{t-1} \\
        m_t &= \beta_1 m_{t-1} + (1-\beta_1)\hat g_t, \qquad
        v_t = \beta_2 v_{t-1} + (1-\beta_2)\hat g_t^2
            \quad(\text{amsgrad: } \hat v_t = \max(\hat v_{t-1}, v_t)) \\
        d^{adam}_t &= \frac{m_t}{\sqrt{v_t}/\sqrt{bc_2} + \epsilon}, \qquad
        \eta^{adam}_t = \frac{\text{lr}}{bc_1} \\
        d^{sgd}_t &= \text{the direction of torch.optim.SGD (momentum, dampening, nesterov)} \\
        p_t &= p_{t-1} - (\lambda_s\,\text{lr} + \lambda_a\,\eta^{adam}_t)
               (\lambda_s\, d^{sgd}_t + \lambda_a\, d^{adam}_t)

    with ``bias_correction="step"``: :math:`bc_i = 1-\beta_i^t` (the authors' code and
    torch's Adam) or ``"constant"``: :math:`bc_i = 1-\beta_i` (the formula printed in
    the paper). ``lambda_adam=1, lambda_sgd=0`` is Adam and ``lambda_adam=0,
    lambda_sgd=1`` is SGD: on each path (``foreach=False``, ``foreach=True``,
    ``fused=True``) the parameters are then bit-identical to ``torch.optim.Adam`` /
    ``torch.optim.SGD`` with the same flag, in every floating dtype, weight decay
    included, because MAS performs exactly their operations, in their order. Between
    paths, MAS agrees to float rounding, as torch's own paths do.

    Every hyperparameter lives in the param group, so groups may differ, lambdas
    included. A parameter whose ``grad`` is ``None`` is skipped and its step does not
    advance. State per parameter: ``step``, ``exp_avg``, ``exp_avg_sq``,
    ``max_exp_avg_sq`` (amsgrad) and ``momentum_buffer`` (momentum != 0); both parts
    update their state at every step, even while their lambda is zero.

    Args:
        params: iterable of parameters or dicts defining parameter groups.
        lr: base learning rate (SGD's, and Adam's before bias correction).
        betas: Adam's (beta1, beta2).
        eps: Adam's epsilon.
        weight_decay: L2 penalty added to the gradient that both parts see.
        amsgrad: use the running maximum of v.
        momentum, dampening, nesterov: as in ``torch.optim.SGD``.
        lambda_adam, lambda_sgd: the weights of the Adam and SGD parts.
        bias_correction: ``"step"`` or ``"constant"``.
        foreach: use the multi-tensor path; ``None`` picks a path (see below).
        fused: use torch's fused kernels; ``None`` picks a path.

    With neither ``foreach`` nor ``fused`` given, MAS uses foreach where torch's
    optimizers would (CUDA) and the fused kernels on CPU, where torch would use its
    for-loop; ``benchmarks/optim_step.py`` measures the paths.
    ``masbench.optim.build_optimizer`` gives the baselines the same default, so that a
    sweep compares MAS and them on the same kernels.

    ``torch.compile(opt.step)`` works: dynamo traces the loop and foreach paths
    (with the step count kept as a tensor) and runs the fused path outside the graph.

    Example:
        >>> import torch
        >>> from masbench.optim import MAS
        >>> model = torch.nn.Linear(4, 2)
        >>> opt = MAS(model.parameters(), lr=1e-3, momentum=0.95, lambda_adam=0.3, lambda_sgd=0.7)
        >>> loss = model(torch.randn(8, 4)).pow(2).mean()
        >>> loss.backward()
        >>> opt.step()
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        momentum: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
        lambda_adam: float = 0.5,
        lambda_sgd: float = 0.5,
        *,
        bias_correction: str = "step",
        foreach: bool | None = None,
        fused: bool | None = None,
    ) -> None:
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            momentum=momentum,
            dampening=dampening,
            nesterov=nesterov,
            lambda_adam=lambda_adam,
            lambda_sgd=lambda_sgd,
            bias_correction=bias_correction,
            foreach=foreach,
            fused=fused,
            # Not an option: MAS's step is not differentiable. torch's step decorator
            # (``_use_grad_for_differentiable``) reads it to run the step without grad.
            differentiable=False,
        )
        _validate(defaults)
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        _validate(self.param_groups[-1])

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("bias_correction", "step")
            group.setdefault("foreach", None)
            group.setdefault("fused", None)
            group.setdefault("differentiable", False)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        # The update reads each step on the host; keep it there whatever the saved device.
        for state in self.state.values():
            step = state.get("step")
            if isinstance(step, torch.Tensor) and (step.device.type != "cpu" or step.dtype != torch.float32):
                state["step"] = step.to(device="cpu", dtype=torch.float32)

    def _init_group(
        self,
        group: dict[str, Any],
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
        exp_avgs: list[torch.Tensor],
        exp_avg_sqs: list[torch.Tensor],
        max_exp_avg_sqs: list[torch.Tensor],
        bufs: list[torch.Tensor | None],
        steps: list[torch.Tensor],
    ) -> None:
        """Fill the lists with the group's parameters that have a gradient, and their state.

        It fills lists it is given and returns nothing, as torch's optimizers do: under
        ``torch.compile`` dynamo runs this method eagerly and wraps what it appended.
        """
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError("MAS does not support sparse gradients; use dense gradients (e.g. nn.Embedding(sparse=False))")
            if torch.is_complex(p):
                raise RuntimeError(f"MAS does not support complex parameters (got {p.dtype})")
            state = self.state[p]
            if not state:
                state["step"] = torch.tensor(0.0, dtype=torch.float32)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                if group["amsgrad"]:
                    state["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            if group["amsgrad"] and "max_exp_avg_sq" not in state:
                state["max_exp_avg_sq"] = state["exp_avg_sq"].clone()
            params.append(p)
            grads.append(p.grad)
            exp_avgs.append(state["exp_avg"])
            exp_avg_sqs.append(state["exp_avg_sq"])
            if group["amsgrad"]:
                max_exp_avg_sqs.append(state["max_exp_avg_sq"])
            bufs.append(state.get("momentum_buffer"))
            steps.append(state["step"])

    @_use_grad_for_differentiable
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """Perform one optimization step; ``closure`` re-evaluates the model and returns the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        for group in self.param_groups:
            params: list[torch.Tensor] = []
            grads: list[torch.Tensor] = []
            exp_avgs: list[torch.Tensor] = []
            exp_avg_sqs: list[torch.Tensor] = []
            max_exp_avg_sqs: list[torch.Tensor] = []
            bufs: list[torch.Tensor | None] = []
            steps: list[torch.Tensor] = []
            self._init_group(group, params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, bufs, steps)
            if not params:
                continue
            beta1, beta2 = group["betas"]
            mas(
                params,
                grads,
                exp_avgs,
                exp_avg_sqs,
                max_exp_avg_sqs,
                bufs,
                steps,
                foreach=group["foreach"],
                fused=group["fused"],
                lr=group["lr"],
                beta1=beta1,
                beta2=beta2,
                eps=group["eps"],
                weight_decay=group["weight_decay"],
                amsgrad=group["amsgrad"],
                momentum=group["momentum"],
                dampening=group["dampening"],
                nesterov=group["nesterov"],
                lambda_adam=group["lambda_adam"],
                lambda_sgd=group["lambda_sgd"],
                bias_correction=group["bias_correction"],
            )
            if group["momentum"] != 0:
                for p, buf in zip(params, bufs):
                    self.state[p]["momentum_buffer"] = buf
        return loss


def _validate(group: dict[str, Any]) -> None:
    """Reject a hyperparameter that MAS cannot use, naming it and what would be valid."""
    lr, eps, wd, momentum = group["lr"], group["eps"], group["weight_decay"], group["momentum"]
    if isinstance(lr, torch.Tensor):
        raise ValueError(f"Invalid learning rate: a Tensor (use a float >= 0): {lr}")
    if not lr >= 0.0:
        raise ValueError(f"Invalid learning rate: {lr} (must be >= 0)")
    if not eps >= 0.0:
        raise ValueError(f"Invalid epsilon value: {eps} (must be >= 0)")
    betas = group["betas"]
    if len(betas) != 2:
        raise ValueError(f"Invalid betas: {betas} (must be a pair (beta1, beta2))")
    for i, beta in enumerate(betas):
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"Invalid beta parameter at index {i}: {beta} (must be in [0, 1))")
    if not wd >= 0.0:
        raise ValueError(f"Invalid weight_decay value: {wd} (must be >= 0)")
    if not momentum >= 0.0:
        raise ValueError(f"Invalid momentum value: {momentum} (must be >= 0)")
    for name in ("lambda_adam", "lambda_sgd"):
        if not group[name] >= 0.0:
            raise ValueError(f"Invalid {name} value: {group[name]} (must be >= 0)")
    if group["nesterov"] and (momentum <= 0 or group["dampening"] != 0):
        raise ValueError(
            f"Nesterov momentum requires momentum > 0 and dampening = 0 "
            f"(got momentum={momentum}, dampening={group['dampening']})"
        )
    if group["bias_correction"] not in BIAS_CORRECTIONS:
        raise ValueError(
            f"Invalid bias_correction: {group['bias_correction']!r} (valid: {', '.join(BIAS_CORRECTIONS)})"
        )
    if group.get("fused") and group.get("foreach"):
        raise ValueError("Invalid options: fused=True and foreach=True cannot both be set")
