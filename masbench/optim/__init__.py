"""Optimizers: MAS, Mix (N optimizers), its lambda schedules, a registry of names and import paths, and learning-rate schedules."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from masbench.optim.arguments import check_builds, typed_arguments
from masbench.optim.functional import MAS_DEFAULT_PATH, default_path
from masbench.optim.lr_schedules import build_lr_schedule, check_lr_schedule, normalise_lr_schedule
from masbench.optim.mas import MAS
from masbench.optim.mix import Mix
from masbench.optim.registry import (
    OPTIMIZERS,
    SPEC_OPTIMIZERS,
    argument_names,
    hyperparameter_names,
    optimizer_class,
    optimizer_defaults,
    resolve_optimizer,
    select_hyperparameters,
)
from masbench.optim.schedules import (
    ConstantLambda,
    LambdaSchedule,
    LinearLambda,
    build_lambda_schedule,
)


def build_optimizer(name: str, params: Iterable[torch.Tensor] | Iterable[dict], **hparams: Any) -> torch.optim.Optimizer:
    """Build optimizer ``name`` (a registered name or an import path, see ``registry``) over ``params``.

    The baselines are torch's own classes. For sgd, adam and adamw, unless ``foreach`` or ``fused`` is given,
    they run on the kernel family that MAS's default picks for the same parameters
    (``masbench.optim.functional.default_path``: fused on CPU, foreach on CUDA), so that
    MAS at its endpoints equals them bit for bit; torch's own default on CPU would be
    its for-loop, which rounds differently. A keyword the optimizer does not take
    raises ``ValueError`` naming it and the valid ones.

    Example:
        >>> import torch
        >>> opt = build_optimizer("sgd", [torch.zeros(1, requires_grad=True)], lr=0.1, momentum=0.9)
    """
    cls = optimizer_class(name)
    valid = hyperparameter_names(name)
    unknown = sorted(set(hparams) - set(valid))
    if unknown:
        raise ValueError(f"Invalid hyperparameter(s) for optimizer {name!r}: {', '.join(unknown)} (valid: {', '.join(valid)})")
    if resolve_optimizer(name) in MAS_DEFAULT_PATH and "foreach" not in hparams and "fused" not in hparams:
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


__all__ = [
    "MAS",
    "Mix",
    "OPTIMIZERS",
    "ConstantLambda",
    "LambdaSchedule",
    "LinearLambda",
    "SPEC_OPTIMIZERS",
    "argument_names",
    "build_lambda_schedule",
    "build_lr_schedule",
    "build_optimizer",
    "check_builds",
    "check_lr_schedule",
    "hyperparameter_names",
    "normalise_lr_schedule",
    "optimizer_class",
    "optimizer_defaults",
    "resolve_optimizer",
    "select_hyperparameters",
    "typed_arguments",
]
