"""The packed optimizer: K members' optimizers stepping a pack's stacked parameters.

Each member keeps an ordinary optimizer (``MAS``, ``SGD``, ``Adam`` or ``AdamW``, built by
``masbench.optim.build_optimizer`` over ``member_views(params, k)``: leaf views of its slice of every
stacked parameter). It holds the member's hyperparameters, is what its lambda schedule drives, and
defines its checkpoint format. Two paths update the pack:

- ``"stacked"`` (HFTA's fused optimizer): one update over the stacked tensors, the members'
  hyperparameters broadcast as [K]-shaped tensors over the member dimension. Every member follows
  the MAS rule (``masbench.optim.functional``)::

      p <- p * (1 - lr * wd_decoupled)                                      (AdamW)
      g_hat = g + wd * p
      d_sgd = torch.optim.SGD's direction of g_hat (momentum, dampening, nesterov)
      m, v  = Adam's moments of g_hat (amsgrad: the running maximum of v)
      p <- p - c * lambda_adam * m / (sqrt(v) / sqrt(bc2) + eps) - c * lambda_sgd * d_sgd,
      c = lambda_sgd * lr + lambda_adam * lr / bc1

  with Adam and AdamW at lambda = (1, 0) and SGD at (0, 1), as in MAS. It equals the members'
  own optimizers to float rounding; its state is stacked and converted on ``member_state_dict``.
- ``"members"``: each member's own optimizer steps its views, so its kernels and its numbers are
  exactly those of the unpacked cell (bit for bit), and its state is the optimizer's own. Members of
  one class with equal param groups (a cell's seeds) step in one call (``masbench.pack.shared_step``).

``"auto"`` is the members path. Measured on a CPU (``benchmarks/pack_speed.py --optimizer-path``,
the quick suite in packs of 7, one thread) packs trained at 1.29x the unpacked cells' throughput with
the members path and at 0.59x with the stacked one: a member's step on the members path is torch's
fused kernels, one pass over memory, where the stacked path makes about twenty passes, one per
elementwise operation. It also launches them per parameter tensor (62 in a ResNet18), which on a GPU
would cost more than the members path's ~15 foreach launches per member. The stacked path is the HFTA
form, exact against the members' optimizers, for a compiled variant to build on.
A member left out of ``step(active)`` (diverged, or waiting for the others to reach its epoch) gets no
update.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor

from masbench.optim import MAS
from masbench.optim.coefficients import bias_corrections, mix_coefficients
from masbench.pack.fuse import Unpackable

PATHS = ("auto", "stacked", "members")
_KINDS = {MAS: "mas", torch.optim.SGD: "sgd", torch.optim.Adam: "adam", torch.optim.AdamW: "adam"}


def member_views(params: Sequence[Tensor], k: int) -> list[Tensor]:
    """Member ``k``'s slice of each stacked parameter, as leaf tensors an optimizer can own (they share storage)."""
    with torch.no_grad():
        return [p[k] for p in params]


class Hyper(NamedTuple):
    """One member's hyperparameters in the MAS rule's terms."""

    lr: float
    weight_decay: float  # coupled (added to the gradient)
    decoupled: float  # AdamW's: p *= 1 - lr * decoupled
    momentum: float
    dampening: float
    nesterov: bool
    beta1: float
    beta2: float
    eps: float
    amsgrad: bool
    lambda_adam: float
    lambda_sgd: float
    bias_correction: str


def member_hyper(optimizer: torch.optim.Optimizer) -> Hyper:
    """``optimizer``'s (one param group's) hyperparameters as the MAS rule takes them."""
    kind = _KINDS[type(optimizer)]
    g = optimizer.param_groups[0]
    if kind == "sgd":  # no Adam part: its moments are kept but never used (lambda_adam = 0)
        return Hyper(g["lr"], g["weight_decay"], 0.0, g["momentum"], g["dampening"], g["nesterov"], 0.9, 0.999, 1e-8,
                     False, 0.0, 1.0, "step")
    beta1, beta2 = g["betas"]
    if kind == "adam":
        decoupled = g.get("decoupled_weight_decay", False) or type(optimizer) is torch.optim.AdamW
        wd = g["weight_decay"]
        return Hyper(g["lr"], 0.0 if decoupled else wd, wd if decoupled else 0.0, 0.0, 0.0, False, beta1, beta2,
                     g["eps"], g["amsgrad"], 1.0, 0.0, "step")
    return Hyper(g["lr"], g["weight_decay"], 0.0, g["momentum"], g["dampening"], g["nesterov"], beta1, beta2, g["eps"],
                 g["amsgrad"], g["lambda_adam"], g["lambda_sgd"], g["bias_correction"])


def check_member_optimizer(optimizer: torch.optim.Optimizer) -> None:
    """Raise ``Unpackable`` unless the packed optimizer can step ``optimizer``'s member."""
    if type(optimizer) not in _KINDS:
        raise Unpackable(f"optimizer {type(optimizer).__name__} has no packed form (packable: MAS, SGD, Adam, AdamW)")
    if len(optimizer.param_groups) != 1:
        raise Unpackable(f"a member's optimizer has {len(optimizer.param_groups)} param groups; packing needs one")
    group = optimizer.param_groups[0]
    if group.get("maximize") or group.get("differentiable"):
        raise Unpackable("a member's optimizer maximizes or is differentiable, which packing does not support")


class PackedOptimizer:
    """K member optimizers over stacked parameters [K, ...]: ``step(active)``, and state dicts per member.

    Example:
        >>> import torch
        >>> from masbench.optim import build_optimizer
        >>> w = torch.nn.Parameter(torch.zeros(2, 3))  # two members' 3-vectors
        >>> members = [build_optimizer("mas", member_views([w], 0), lr=0.1),
        ...            build_optimizer("sgd", member_views([w], 1), lr=0.1, momentum=0.9)]
        >>> opt = PackedOptimizer([w], members, path="stacked")
        >>> w.grad = torch.ones(2, 3); opt.step()
    """

    def __init__(self, params: Sequence[Tensor], members: Sequence[torch.optim.Optimizer], path: str = "auto") -> None:
        if path not in PATHS:
            raise ValueError(f"Invalid path: {path!r} (valid: {', '.join(PATHS)})")
        self.params, self.members, self.size = list(params), list(members), len(members)
        for k, optimizer in enumerate(self.members):
            check_member_optimizer(optimizer)
            views = optimizer.param_groups[0]["params"]
            if len(views) != len(self.params) or any(
                    v.shape != p.shape[1:] or v.data_ptr() != p[k].data_ptr() for v, p in zip(views, self.params)):
                raise ValueError(f"member {k}'s optimizer does not own member_views(params, {k})")
        self.path = "members" if path == "auto" else path
        self.state: list[dict[str, Any]] = [{} for _ in self.params]  # the stacked path's
        self._vectors: tuple[tuple, dict] | None = None

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, active: Sequence[int] | None = None) -> None:
        """Update the members in ``active`` (default: all); the others' parameters and state stay as they are."""
        active = list(range(self.size)) if active is None else sorted(active)
        if not active:
            return
        if self.path == "members":
            self._members_step(active)
        else:
            self._stacked_step(active)

    def _members_step(self, active: list[int]) -> None:
        from masbench.pack.shared_step import shared_step, step_groups

        for k in active:
            for p, view in zip(self.params, self.members[k].param_groups[0]["params"]):
                view.grad = None if p.grad is None else p.grad[k]
        for group in step_groups(self.members, active):  # members alike (seeds of one cell) step as one call
            shared_step([self.members[k] for k in group])
        for k in active:
            for view in self.members[k].param_groups[0]["params"]:
                view.grad = None

    # --- the stacked path ----------------------------------------------------------------------

    def _stacked_step(self, active: list[int]) -> None:
        from masbench.pack.stacked import frozen_slices, stacked_update

        hypers = [member_hyper(m) for m in self.members]
        others = [k for k in range(self.size) if k not in active]
        vectors = self._hyper_vectors(hypers)
        mask = torch.zeros(self.size, dtype=torch.bool)
        mask[active] = True
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            state = self._stacked_state(i, hypers)
            kept = frozen_slices(p, state, others)
            state["step"][mask] += 1
            stacked_update(p, p.grad, state, vectors, self._coefficients(hypers, state["step"], p), hypers)
            state["has_buffer"] |= mask & torch.tensor([h.momentum != 0 for h in hypers])
            kept.restore()

    def _hyper_vectors(self, hypers: list[Hyper]) -> dict[str, Any]:
        from masbench.pack.stacked import hyper_vectors

        if self._vectors is None or self._vectors[0] != tuple(hypers):
            p = self.params[0]
            self._vectors = (tuple(hypers), hyper_vectors(hypers, p.device, p.dtype))
        return self._vectors[1]

    def _coefficients(self, hypers: list[Hyper], steps: Tensor, p: Tensor) -> dict[str, Tensor]:
        """Per member: the Adam and SGD step sizes and sqrt(bc2) at its step, as MAS computes them (float64)."""
        adam, sgd, bc2_sqrt = [], [], []
        for h, step in zip(hypers, steps.tolist()):
            bc1, bc2 = bias_corrections(h.beta1, h.beta2, step, h.bias_correction)
            a, s = mix_coefficients(h.lr, bc1, h.lambda_adam, h.lambda_sgd) if step > 0 else (0.0, 0.0)
            adam.append(a)
            sgd.append(s)
            bc2_sqrt.append(bc2**0.5 if bc2 > 0 else 1.0)
        shape = (self.size,) + (1,) * (p.dim() - 1)
        values = torch.tensor([adam, sgd, bc2_sqrt], dtype=torch.float64).to(device=p.device, dtype=p.dtype)
        return {"adam": values[0].view(shape), "sgd": values[1].view(shape), "bc2_sqrt": values[2].view(shape)}

    def _stacked_state(self, i: int, hypers: list[Hyper] | None = None) -> dict[str, Any]:
        """Parameter ``i``'s stacked state, allocated on first use (moment buffers only if a member needs them)."""
        state, p = self.state[i], self.params[i]
        hypers = hypers if hypers is not None else [member_hyper(m) for m in self.members]
        if not state:
            state.update(step=torch.zeros(self.size, dtype=torch.float64), exp_avg=torch.zeros_like(p),
                         exp_avg_sq=torch.zeros_like(p), has_buffer=torch.zeros(self.size, dtype=torch.bool))
        if "max_exp_avg_sq" not in state and any(h.amsgrad for h in hypers):
            state["max_exp_avg_sq"] = state["exp_avg_sq"].clone()  # MAS's and Adam's start when amsgrad turns on
        if "momentum_buffer" not in state and any(h.momentum != 0 for h in hypers):
            state["momentum_buffer"] = torch.zeros_like(p)
        return state

    # --- members' state dicts -----------------------------------------------------------------

    def member_state_dict(self, k: int) -> dict[str, Any]:
        """Member ``k``'s optimizer state dict in its own optimizer's format (an unpacked run can load it)."""
        if self.path == "members":
            return self.members[k].state_dict()
        from masbench.pack.stacked import member_entry

        out = self.members[k].state_dict()  # the param groups, in the member's format (its own state is empty)
        kind, hyper = _KINDS[type(self.members[k])], member_hyper(self.members[k])
        out["state"] = {}
        for i, state in enumerate(self.state):
            entry = member_entry(state, k, kind, hyper) if state else {}
            if entry:
                out["state"][i] = entry
        return out

    def load_member_state_dict(self, k: int, state_dict: dict[str, Any]) -> None:
        """Load an ordinary optimizer state dict of member ``k``'s optimizer (from an unpacked run or a pack)."""
        if self.path == "members":
            self.members[k].load_state_dict(state_dict)
            return
        from masbench.pack.stacked import load_entry

        # The param groups (validated by torch: group and parameter counts), then the state, into the stacks.
        self.members[k].load_state_dict({"state": {}, "param_groups": state_dict["param_groups"]})
        hypers = [member_hyper(m) for m in self.members]
        entries = {int(i): entry for i, entry in state_dict["state"].items()}
        for i in range(len(self.params)):
            load_entry(self._stacked_state(i, hypers), k, entries.get(i, {}))
