"""A sweep grid's optimizers: its baselines (names or import paths, with their arguments) and MAS's cells.

``baselines`` takes what ``--optimizer`` takes but ``mas`` (``radam``, ``torch.optim.NAdam``), each resolved
to its one name. ``optimizer_args`` maps a baseline to its arguments (``{radam: {decoupled_weight_decay:
true}}``). ``lambda_schedule`` lists MAS's lambda schedules: ``constant`` gives the ``lambdas`` grid, and
each other schedule (``linear:1:0:100``, the authors' dynamic variant) one MAS cell, built with the spec's
default lambdas, as ``masbench run --lambda-schedule`` builds it, so that the run and the sweep share it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from masbench.errors import MasbenchError
from masbench.grid.mix_weights import simplex
from masbench.optimizer_names import is_known, is_path, unknown_optimizer
from masbench.spec import is_mix, mix_text, parse_mix
from masbench.text.lambda_schedule import normalise_lambda_schedule
from masbench.text.shown import one_line, shown

CONSTANT = "constant"


def optimizer_name(text: str, what: str = "optimizer") -> str:
    """A grid's optimizer as its one name: a plain name checked against the registry's names without torch,
    an import path resolved (imported); ValueError names a bad one."""
    if is_mix(text):  # mix:adam=0.3,sgd=0.7, written in its one order (its components resolve in its spec)
        return mix_text(parse_mix(text))
    if text == "mix":
        raise ValueError(f"Invalid {what} 'mix': give its weights, e.g. mix:adam=0.5,sgd=0.5")
    if not is_path(text):
        if not is_known(text):
            raise ValueError(unknown_optimizer(text, what))
        return text
    from masbench.optim import resolve_optimizer

    try:
        return resolve_optimizer(text)
    except ValueError as error:  # "Invalid baseline 'x': ..."
        raise ValueError(str(error).replace("optimizer", what, 1)) from None


def check_baselines(names: list[str]) -> list[str]:
    """The baselines as their names; ValueError for mas, and for one optimizer given twice however it is named
    (``adam,torch.optim:Adam``; the same name twice is refused by the grid's check, as other lists are)."""
    out = [optimizer_name(name, "baseline") for name in names]
    for i, (name, resolved) in enumerate(zip(names, out)):
        if resolved in out[:i] and name != names[out.index(resolved)]:
            first = names[out.index(resolved)]
            raise ValueError(f"Invalid baselines: {shown(first)} and {shown(name)} are one optimizer, {resolved} "
                             f"(give it once)")
    if "mas" in out:
        raise ValueError("Invalid baseline 'mas': MAS's cells come from lambdas (and lambda_schedule)")
    return out


def resolve_optimizer_args(args: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """``{optimizer: {key: value}}`` with each optimizer as its name (the values are typed per cell)."""
    out: dict[str, dict[str, Any]] = {}
    for name, values in args.items():
        resolved = optimizer_name(name)
        if resolved in out:
            raise ValueError(f"Invalid optimizer_args: {shown(name)} names {resolved}, given twice")
        out[resolved] = dict(values)
    return out


def merge_optimizer_args(file: Mapping[str, Mapping[str, Any]] | None,
                         flags: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """A sweep's ``--optimizer-arg`` over its benchmark's ``optimizer_args``: an optimizer's flags replace its
    arguments from the file; MasbenchError for an optimizer that cannot be resolved."""
    try:
        return {**resolve_optimizer_args(file or {}), **resolve_optimizer_args(flags)}
    except ValueError as error:
        raise MasbenchError(one_line(f"--optimizer-arg: {error}")) from None


def check_lambda_schedules(value: str | list[str]) -> list[str]:
    """One schedule or a list of them, each once; their numbers checked here (torch-free), their form when
    the grid's cells are built."""
    schedules = [value] if isinstance(value, str) else list(value)
    if not schedules:
        raise ValueError("Invalid lambda_schedule: the list is empty (give constant, linear:START:END[:EPOCHS], ...)")
    for i, schedule in enumerate(schedules):
        schedules[i] = schedule = normalise_lambda_schedule(schedule)  # linear:1:0 and linear:1.0:0.0 are one
        if schedule in schedules[:i]:
            raise ValueError(f"Invalid lambda_schedule: {shown(schedules)} gives {shown(schedule)} twice")
    return schedules


def mas_parts(schedules: list[str] | None) -> tuple[bool, int]:
    """(whether the lambdas grid is swept: a constant schedule, the default; how many other schedules)."""
    schedules = schedules or [CONSTANT]
    return CONSTANT in schedules, sum(1 for schedule in schedules if schedule != CONSTANT)


def mas_configs(schedules: list[str] | None, lambdas: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """MAS's cells: ``lambdas`` (each a lambda_adam, lambda_sgd pair) for a constant schedule, one cell per other."""
    out: list[dict[str, Any]] = []
    for schedule in schedules or [CONSTANT]:
        if schedule == CONSTANT:
            out += [dict(optimizer="mas", **pair) for pair in lambdas]
        else:
            out.append(dict(optimizer="mas", lambda_schedule=schedule))
    return out


def mix_configs(names: list[str] | None, step: Any) -> list[dict[str, Any]]:
    """A ``mix`` grid's cells: one per point of the simplex over ``names`` at ``step`` (none without names)."""
    return [dict(optimizer="mix", weights=point) for point in simplex(names, step)] if names else []


def optimizer_configs(baselines: list[str], args: Mapping[str, dict[str, Any]] | None) -> list[dict[str, Any]]:
    """One configuration per baseline, with its arguments; arguments for an optimizer not among them are refused."""
    args = args or {}
    stray = [name for name in args if name not in baselines]
    if stray:
        raise MasbenchError(one_line(f"optimizer_args for {shown(stray[0])}: it is not a baseline of the grid "
                                     f"(baselines: {', '.join(baselines) or 'none'})"))
    return [dict(optimizer=name, optimizer_args=args[name]) if args.get(name) else dict(optimizer=name)
            for name in baselines]
