"""The open axes on the command line: optimizer arguments, and settings that would not reach the optimizer.

``--optimizer-arg KEY=VALUE`` (``run``) and ``--optimizer-arg NAME:KEY=VALUE`` (``sweep``, per optimizer of
the grid) are split here into mappings of text; the optimizer's signature types them when the spec is
built (``masbench.optim.arguments``), so that a flag and a benchmarks file's value mean the same.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from masbench.errors import MasbenchError
from masbench.text.shown import one_line, shown


def parse_assignments(items: Iterable[str], flag: str) -> dict[str, str]:
    """``["KEY=VALUE", ...]`` -> ``{KEY: VALUE}``; a malformed item or a key given twice is one line.

    >>> parse_assignments(["betas=0.9,0.99", "decoupled_weight_decay=true"], "--optimizer-arg")
    {'betas': '0.9,0.99', 'decoupled_weight_decay': 'true'}
    """
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise MasbenchError(one_line(f"Invalid {flag}: {shown(item)} (expected KEY=VALUE, e.g. "
                                         f"decoupled_weight_decay=true)"))
        if key in out:
            raise MasbenchError(one_line(f"Invalid {flag}: {shown(key)} is given twice"))
        out[key] = value.strip()
    return out


def parse_optimizer_assignments(items: Iterable[str] | None) -> dict[str, dict[str, str]] | None:
    """``sweep --optimizer-arg NAME:KEY=VALUE``: ``{NAME: {KEY: VALUE}}`` (NAME may be a ``module:Class`` path)."""
    if items is None:
        return None
    out: dict[str, list[str]] = {}
    for item in items:
        head, sep, value = item.partition("=")
        name, colon, key = head.rpartition(":")
        if not sep or not colon or not name:
            raise MasbenchError(one_line(f"Invalid --optimizer-arg: {shown(item)} (a sweep's is OPTIMIZER:KEY=VALUE, "
                                         f"e.g. radam:decoupled_weight_decay=true)"))
        out.setdefault(name.strip(), []).append(f"{key}={value}")
    return {name: parse_assignments(assignments, f"--optimizer-arg for {name}") for name, assignments in out.items()}


def check_settings_reach(spec: Any, given: Iterable[str]) -> None:
    """Refuse a setting given on ``run``'s command line that the spec's optimizer would not use.

    mas, sgd, adam and adamw ignore the settings they do not take, as they always have (adam and --momentum);
    other optimizers take lr from the spec and their other settings as --optimizer-arg, so that the spec's
    defaults never replace theirs. A flag such as --momentum with --optimizer rmsprop would be dropped
    silently: it is refused, naming the --optimizer-arg that sets it where the optimizer has one.
    """
    from masbench.optim import SPEC_OPTIMIZERS, argument_names, hyperparameter_names, select_hyperparameters

    if spec.optimizer in SPEC_OPTIMIZERS:
        return
    settings = set(hyperparameter_names("mas")) - {"foreach", "fused"}
    used = set(select_hyperparameters(spec.optimizer, dict.fromkeys(type(spec).model_fields)))
    for name in sorted(set(given) & settings - used):
        flag = f"--{name.replace('_', '-')}"
        hint = (f"give --optimizer-arg {name}=VALUE" if name in argument_names(spec.optimizer, type(spec).model_fields)
                else f"{spec.optimizer} has no {name}")
        raise MasbenchError(f"{flag} does not reach optimizer {spec.optimizer}: only --lr and --optimizer-arg set "
                            f"its hyperparameters ({hint})")
