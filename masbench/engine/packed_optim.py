"""The members' optimizers, stepped as few calls as possible: ``shared_step`` and ``PackedOptimizer``.

Each member keeps an ordinary optimizer (``MAS``, ``SGD``, ``Adam``, ``AdamW``, or any other under each
member's own forward), built by ``masbench.optim.build_optimizer`` over its own parameters: its model's,
or under grouped convolutions ``member_views(params, k)``, leaf views of its slice of every stacked
parameter of the fused model (``masbench.engine.fuse``). It holds the member's hyperparameters, is what
its lambda and lr schedules drive, and defines its checkpoint format: its numbers are the unpacked
cell's, its state the optimizer's own.

Cells of a grid that differ only in seed have the same optimizer class and the same param group (lr,
lambdas, betas, ...). Their updates act tensor by tensor and element by element (MAS, torch's SGD, Adam
and AdamW, on the loop, foreach and fused paths alike), so one call of their optimizer over all their
tensors is each member's own step: the same kernels on the same values, bit for bit. ``shared_step`` does
the per-step Python of an optimizer (``Optimizer.step``'s wrapper, ``_init_group``, the grouping by device
and dtype) once per group instead of once per member, which on a CPU is much of a small model's step.

The shared call runs a shallow copy of the group's first optimizer (its class, defaults and hooks) whose
one param group is the members' group with all their tensors, and whose state entries are the members'
own dicts, the same objects: each member's ``state_dict``, checkpoint and ``load_state_dict`` see and
change only its own entries.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import torch
from torch import Tensor

from masbench.engine.fuse import Unpackable
from masbench.optim import MAS

_MEMBER_CLASSES = (MAS, torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW)  # engine.packing's names


def step_groups(members: Sequence[torch.optim.Optimizer], active: Sequence[int]) -> list[list[int]]:
    """``active`` members in groups that one call can step: the same class and equal param groups."""
    groups: dict[tuple, list[int]] = {}
    for k in active:
        optimizer = members[k]
        settings = tuple(sorted(((n, v) for n, v in optimizer.param_groups[0].items() if n != "params"),
                                key=lambda item: item[0]))
        key: tuple = (type(optimizer), len(optimizer.param_groups), settings)
        if "step" in optimizer.__dict__ or len(optimizer.param_groups) != 1:
            key = ("alone", k)  # a step patched on the instance (an LR scheduler's counter), or several groups
        try:
            hash(key)
        except TypeError:  # a hyperparameter that cannot be compared by hashing (a list): it steps alone
            key = ("alone", k)
        groups.setdefault(key, []).append(k)
    return list(groups.values())


def shared_step(optimizers: Sequence[torch.optim.Optimizer]) -> None:
    """One ``step()`` of ``optimizers`` (one class, equal param groups; their tensors' ``grad`` set) as one call."""
    if len(optimizers) == 1:
        optimizers[0].step()
        return
    first = optimizers[0]
    runner = object.__new__(type(first))
    runner.__dict__.update(first.__dict__)
    tensors = [v for opt in optimizers for v in opt.param_groups[0]["params"]]
    runner.param_groups = [{**first.param_groups[0], "params": tensors}]
    runner.state = defaultdict(dict)
    for opt in optimizers:
        for tensor in opt.param_groups[0]["params"]:
            if tensor in opt.state:
                runner.state[tensor] = opt.state[tensor]
    runner.step()
    for opt in optimizers:  # entries the step created (a first step's moments and buffers)
        for tensor in opt.param_groups[0]["params"]:
            if tensor in runner.state:
                opt.state[tensor] = runner.state[tensor]


def step_members(optimizers: Sequence[torch.optim.Optimizer], active: Sequence[int]) -> None:
    """One step of the ``active`` members' optimizers, members alike stepping as one call (``shared_step``)."""
    for group in step_groups(optimizers, active):
        shared_step([optimizers[k] for k in group])


def member_views(params: Sequence[Tensor], k: int) -> list[Tensor]:
    """Member ``k``'s slice of each stacked parameter, as leaf tensors an optimizer can own (they share storage)."""
    with torch.no_grad():
        return [p[k] for p in params]


def check_member_optimizer(optimizer: torch.optim.Optimizer) -> None:
    """Raise ``Unpackable`` unless ``optimizer`` can step a member of a fused model."""
    if type(optimizer) not in _MEMBER_CLASSES:
        raise Unpackable(f"optimizer {type(optimizer).__name__} has no packed form (packable: MAS, SGD, Adam, AdamW)")
    if len(optimizer.param_groups) != 1:
        raise Unpackable(f"a member's optimizer has {len(optimizer.param_groups)} param groups; packing needs one")
    group = optimizer.param_groups[0]
    if group.get("maximize") or group.get("differentiable"):
        raise Unpackable("a member's optimizer maximizes or is differentiable, which packing does not support")


class PackedOptimizer:
    """K member optimizers over a fused model's stacked parameters [K, ...]: ``step(active)`` steps members' own.

    A member left out of ``step(active)`` (diverged, or waiting for the others to reach its epoch) gets no
    update.

    Example:
        >>> import torch
        >>> from masbench.optim import build_optimizer
        >>> w = torch.nn.Parameter(torch.zeros(2, 3))  # two members' 3-vectors
        >>> members = [build_optimizer("mas", member_views([w], 0), lr=0.1),
        ...            build_optimizer("sgd", member_views([w], 1), lr=0.1, momentum=0.9)]
        >>> opt = PackedOptimizer([w], members)
        >>> w.grad = torch.ones(2, 3); opt.step()
    """

    def __init__(self, params: Sequence[Tensor], members: Sequence[torch.optim.Optimizer]) -> None:
        self.params, self.members, self.size = list(params), list(members), len(members)
        for k, optimizer in enumerate(self.members):
            check_member_optimizer(optimizer)
            views = optimizer.param_groups[0]["params"]
            if len(views) != len(self.params) or any(
                    v.shape != p.shape[1:] or v.data_ptr() != p[k].data_ptr() for v, p in zip(views, self.params)):
                raise ValueError(f"member {k}'s optimizer does not own member_views(params, {k})")

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, active: Sequence[int] | None = None) -> None:
        """Update the members in ``active`` (default: all); the others' parameters and state stay as they are."""
        active = list(range(self.size)) if active is None else sorted(active)
        for k in active:
            for p, view in zip(self.params, self.members[k].param_groups[0]["params"]):
                view.grad = None if p.grad is None else p.grad[k]
        step_members(self.members, active)
        for k in active:
            for view in self.members[k].param_groups[0]["params"]:
                view.grad = None
