"""The members path's step: one optimizer call for all the members that share a rule and hyperparameters.

Cells of a grid that differ only in seed have the same optimizer class and the same param group (lr,
lambdas, betas, ...). Their updates act tensor by tensor and element by element (MAS, torch's SGD, Adam
and AdamW, on the loop, foreach and fused paths alike), so one call of their optimizer over all their
tensors is each member's own step: the same kernels on the same values, bit for bit. It does the
per-step Python of an optimizer (``Optimizer.step``'s wrapper, ``_init_group``, the grouping by device
and dtype) once per group instead of once per member: the quick suite's packs hold its cells' seeds in
pairs, and that Python is most of the members path's time on a CPU.

The shared call runs a shallow copy of the group's first optimizer (its class, defaults and hooks) whose
one param group is the members' group with all their views, and whose state entries are the members'
own dicts, the same objects: each member's ``state_dict``, checkpoint and ``load_state_dict`` see and
change only its own entries, as before.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import torch


def step_groups(members: Sequence[torch.optim.Optimizer], active: Sequence[int]) -> list[list[int]]:
    """``active`` members in groups that one call can step: the same class and equal param groups."""
    groups: dict[tuple, list[int]] = {}
    for k in active:
        optimizer = members[k]
        settings = tuple(sorted(((n, v) for n, v in optimizer.param_groups[0].items() if n != "params"),
                                key=lambda item: item[0]))
        key: tuple = (type(optimizer), settings)
        if "step" in optimizer.__dict__:  # a step patched on the instance (an LR scheduler's counter): its own
            key = ("alone", k)
        try:
            hash(key)
        except TypeError:  # a hyperparameter that cannot be compared by hashing (a list): it steps alone
            key = ("alone", k)
        groups.setdefault(key, []).append(k)
    return list(groups.values())


def shared_step(optimizers: Sequence[torch.optim.Optimizer]) -> None:
    """One ``step()`` of ``optimizers`` (one class, equal param groups; their views' ``grad`` set) as one call."""
    if len(optimizers) == 1:
        optimizers[0].step()
        return
    first = optimizers[0]
    runner = object.__new__(type(first))
    runner.__dict__.update(first.__dict__)
    views = [v for opt in optimizers for v in opt.param_groups[0]["params"]]
    runner.param_groups = [{**first.param_groups[0], "params": views}]
    runner.state = defaultdict(dict)
    for opt in optimizers:
        for view in opt.param_groups[0]["params"]:
            if view in opt.state:
                runner.state[view] = opt.state[view]
    runner.step()
    for opt in optimizers:  # entries the step created (a first step's moments and buffers)
        for view in opt.param_groups[0]["params"]:
            if view in runner.state:
                opt.state[view] = runner.state[view]
