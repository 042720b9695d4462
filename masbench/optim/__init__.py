"""Optimizers: MAS, its lambda schedules, and a registry with torch's baselines."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from masbench.optim.functional import default_path
from masbench.optim.mas import MAS
from masbench.optim.schedules import (
    ConstantLambda,
    LambdaSchedule,
    LinearLambda,
    build_lambda_schedule,
    parse_lambda_schedule,
)

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "mas": MAS,
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
}


def hyperparameter_names(name: str) -> list[str]:
    """The keyword arguments that optimizer ``name`` accepts besides ``params``."""
    return list(_signature(name))


def select_hyperparameters(name: str, hparams: Mapping[str, Any]) -> dict[str, Any]:
    """The subset of ``hparams`` that optimizer ``name`` accepts (a run config holds them all)."""
    accepted = set(hyperparameter_names(name))
    return {key: value for key, value in hparams.items() if key in accepted}


def optimizer_defaults(name: str) -> dict[str, Any]:
    """The keyword defaults of optimizer ``name`` (for example AdamW's weight_decay=0.01)."""
    return {p.name: p.default for p in _signature(name).values() if p.default is not inspect.Parameter.empty}


@functools.cache
def _signature(name: str) -> dict[str, inspect.Parameter]:
    # Cached: planning a sweep asks for every cell, and inspect.signature was most of its time.
    parameters = inspect.signature(_lookup(name).__init__).parameters
    return {p: parameters[p] for p in parameters if p not in ("self", "params")}


def build_optimizer(name: str, params: Iterable[torch.Tensor] | Iterable[dict], **hparams: Any) -> torch.optim.Optimizer:
    """Build optimizer ``name`` ("mas", "sgd", "adam", "adamw") over ``params``.

    The baselines are torch's own classes. Unless ``foreach`` or ``fused`` is given,
    they run on the kernel family that MAS's default picks for the same parameters
    (``masbench.optim.functional.default_path``: fused on CPU, foreach on CUDA), so that
    MAS at its endpoints equals them bit for bit; torch's own default on CPU would be
    its for-loop, which rounds differently. A keyword the optimizer does not take
    raises ``ValueError`` naming it and the valid ones.

    Example:
        >>> import torch
        >>> opt = build_optimizer("sgd", [torch.zeros(1, requires_grad=True)], lr=0.1, momentum=0.9)
    """
    cls = _lookup(name)
    valid = hyperparameter_names(name)
    unknown = sorted(set(hparams) - set(valid))
    if unknown:
        raise ValueError(f"Invalid hyperparameter(s) for optimizer {name!r}: {', '.join(unknown)} (valid: {', '.join(valid)})")
    if cls is not MAS and "foreach" not in hparams and "fused" not in hparams:
        params, hparams = _with_mas_default_path(list(params), hparams)
    return cls(params, **hparams)


def _with_mas_default_path(params: list, hparams: dict[str, Any]) -> tuple[list, dict[str, Any]]:
    """Set ``fused`` and ``foreach`` as MAS's default would, per param group where groups are given.

    MAS picks its path per group, so a group that names neither gets its own pick.
    """
    if not params or not isinstance(params[0], dict):
        fused, foreach = default_path(params)
        return params, {**hparams, "fused": fused, "foreach": foreach}
    groups = []
    for group in params:
        group = dict(group)
        if "foreach" not in group and "fused" not in group:
            tensors = group["params"]
            group["params"] = [tensors] if isinstance(tensors, torch.Tensor) else list(tensors)
            group["fused"], group["foreach"] = default_path(group["params"])
        groups.append(group)
    return groups, hparams


def _lookup(name: str) -> type[torch.optim.Optimizer]:
    try:
        return OPTIMIZERS[name]
    except KeyError:
        raise ValueError(f"Unknown optimizer: {name!r} (valid: {', '.join(sorted(OPTIMIZERS))})") from None


__all__ = [
    "MAS",
    "OPTIMIZERS",
    "ConstantLambda",
    "LambdaSchedule",
    "LinearLambda",
    "build_lambda_schedule",
    "build_optimizer",
    "hyperparameter_names",
    "optimizer_defaults",
    "parse_lambda_schedule",
    "select_hyperparameters",
]
