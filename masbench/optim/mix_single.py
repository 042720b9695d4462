"""A mix of one component at weight 1 is that torch optimizer, on the path it would run alone.

``Mix``'s loop performs exactly the operations of torch's single-tensor optimizer of each kind, but torch's
multi-tensor (``foreach``) and fused kernels round otherwise. A corner of a mix (``mix:adam=1,sgd=0``,
whose zero weight the spec drops, or a ``--mix`` simplex's corner) must equal its single optimizer
(``adam``) bit for bit on every path, so such a mix steps torch's own optimizer over its parameters, on
the path that optimizer would take with the same ``foreach``/``fused``: given, or its default
(``build_optimizer``'s: MAS's default path for sgd, adam and adamw, torch's for the others). Components of
weight 0 beside it keep their state moving, as in Mix's loop, and never choose the path. The state
stays Mix's (``state[p][kind]``, which ``mix_kinds.init_state`` makes as torch does), so that a
checkpoint resumes on any path.
"""

from __future__ import annotations

from typing import Any

import torch

from masbench.optim import mix_kinds
from masbench.optim.functional import MAS_DEFAULT_PATH, default_path
from masbench.optim.registry import OPTIMIZERS, hyperparameter_names

TORCH_KINDS = ("adam", "adamw", "sgd", "adamax", "nadam", "rmsprop", "adagrad")  # lion has no torch class


def kind(group: dict[str, Any], linear: bool) -> str | None:
    """The torch kind that ``group`` is at weight 1, the others' weights 0 (with torch's own settings), else None."""
    moving = [(name, weight) for name, weight in group["weights"].items() if weight != 0]
    if linear or len(moving) != 1:
        return None
    (name, weight), = moving
    if name not in TORCH_KINDS or weight != 1 or group["components"][name].get("bias_correction", "step") != "step":
        return None
    accepted = hyperparameter_names(name)
    if (group["fused"] and "fused" not in accepted) or (group["foreach"] and "foreach" not in accepted):
        return None  # a path torch has not for this kind: Mix's loop, as before
    return name


def build(name: str, group: dict[str, Any]) -> torch.optim.Optimizer:
    """Torch's ``name`` over the group's parameters with the component's settings, on its path."""
    hp = dict(group["components"][name])
    hp.pop("bias_correction", None)
    hp.setdefault("lr", group["lr"])
    fused, foreach = group["fused"], group["foreach"]
    if fused is None and foreach is None and name in MAS_DEFAULT_PATH:
        fused, foreach = default_path(group["params"])
    paths = {key: value for key, value in (("fused", fused), ("foreach", foreach)) if value is not None}
    return OPTIMIZERS[name]([{"params": group["params"], **hp, **paths}])


def step(inner: torch.optim.Optimizer, state: dict, name: str, group: dict[str, Any],
         params: list[torch.Tensor]) -> None:
    """One step of ``inner`` (``build``'s) over ``params`` (each with a gradient), on Mix's state and lr.

    The components of weight 0 advance their state first, as in Mix's loop (they read p_{t-1}, never write it)."""
    if "lr" not in group["components"][name]:
        inner.param_groups[0]["lr"] = group["lr"]  # an lr schedule moves the group's
    for p in params:
        own = state[p]
        for other, hp in group["components"].items():
            if other not in own:
                own[other] = mix_kinds.init_state(other, p, hp)
            if other != name:
                mix_kinds.prepare(other, p, p.grad, own[other], hp, hp.get("lr", group["lr"]))
        inner.state[p] = own[name]
    inner.step()
