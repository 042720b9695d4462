"""Tuning search spaces as users write them: ``--search 'sgd:lr=log:1e-3:1'`` and a benchmark's ``search:``.

A dimension is ``KIND:LOW:HIGH`` (``log``: log-uniform, ``uniform``, ``int``: integers from LOW to HIGH
inclusive) or ``choice:A:B[:C...]``. A search override is ``OPTIMIZER:PARAM=DIMENSION`` on the command line
(repeatable, one parameter each) and ``{OPTIMIZER: {PARAM: DIMENSION}}`` in YAML; both go through
``parse_dimension``. OPTIMIZER is an optimizer's name (``sgd``, ``mas``, ``mix`` for every mix, ``radam`` or
an import path); PARAM a run spec's field that the optimizer takes (lr, momentum, weight_decay, lambda_adam,
whose lambda_sgd is 1 - it) or one of its optimizer arguments, which its cells check. Torch-free: grids
validate their ``search:`` with it, and ``masbench.tune.space`` builds the default spaces on it.

>>> parse_search(["sgd:lr=log:1e-3:1"])
{'sgd': {'lr': Dimension(name='lr', kind='log', low=0.001, high=1.0, choices=())}}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from masbench.errors import MasbenchError
from masbench.text.limits import FLOAT_RANGES, check_float
from masbench.text.numbers import integer, is_number, number
from masbench.text.shown import one_line, shown

KINDS = ("log", "uniform", "int", "choice")
DIMENSION_FORM = "KIND:LOW:HIGH with KIND log, uniform or int, or choice:A:B[:C...], e.g. log:1e-3:1"
SEARCH_FORM = f"OPTIMIZER:PARAM=DIMENSION, DIMENSION being {DIMENSION_FORM}; e.g. sgd:lr=log:1e-3:1"
NOT_SEARCHED = {"lambda_sgd": "it is 1 - lambda_adam: search lambda_adam", "seed": "the tune sets the seeds",
                "epochs": "every trial trains the same epochs (a setting of the tune)",
                "val_fraction": "the tune sets it (--val-fraction)", "optimizer": "it is the entry searched"}


@dataclass(frozen=True)
class Dimension:
    """One hyperparameter's range: ``log`` (log-uniform in [low, high]), ``uniform``, ``int`` (low..high, both
    included) or ``choice`` (one of ``choices``; low and high are 0)."""

    name: str
    kind: str
    low: float = 0.0
    high: float = 0.0
    choices: tuple[Any, ...] = ()

    def text(self) -> str:
        """The dimension as it is written: ``log:0.001:1``; ``parse_dimension`` reads it back."""
        if self.kind == "choice":
            return ":".join(["choice", *(str(c) for c in self.choices)])
        bounds = (int(self.low), int(self.high)) if self.kind == "int" else (self.low, self.high)
        return f"{self.kind}:{bounds[0]:g}:{bounds[1]:g}"


def parse_dimension(name: str, text: Any) -> Dimension:
    """``PARAM``'s ``KIND:LOW:HIGH`` (or ``choice:A:B``) as a Dimension; ValueError names a bad one."""
    bad = f"Invalid search dimension for {name}: {shown(text)}"
    if not isinstance(text, str):
        raise ValueError(f"{bad} (expected text, {DIMENSION_FORM})")
    kind, *values = [part.strip() for part in text.split(":")]
    if kind not in KINDS:
        raise ValueError(f"{bad}: unknown kind {shown(kind)} ({DIMENSION_FORM})")
    if kind == "choice":
        if not values or "" in values:
            raise ValueError(f"{bad}: give one value or more ({DIMENSION_FORM})")
        if any("," in v for v in values):
            raise ValueError(f"{bad}: choices are separated by ':', not ',' ({DIMENSION_FORM})")
        choices = tuple(number(v) if is_number(v) else v for v in values)
        if len(set(choices)) != len(choices):
            raise ValueError(f"{bad}: a value is given twice ({DIMENSION_FORM})")
        return Dimension(name, kind, choices=choices)
    if len(values) != 2:
        raise ValueError(f"{bad} ({DIMENSION_FORM})")
    try:
        low, high = (float(integer(v)) if kind == "int" else number(v) for v in values)
    except ValueError as error:
        raise ValueError(f"{bad}: {error} ({DIMENSION_FORM})") from None
    if not (abs(low) < float("inf") and abs(high) < float("inf")) or not low < high:
        raise ValueError(f"{bad}: LOW must be below HIGH, both finite ({DIMENSION_FORM})")
    if kind == "log" and low <= 0:
        raise ValueError(f"{bad}: a log dimension needs 0 < LOW ({DIMENSION_FORM})")
    if name in FLOAT_RANGES:  # a run spec's field: both ends within its range (others: the optimizer checks)
        check_float(name, low, *FLOAT_RANGES[name])
        check_float(name, high, *FLOAT_RANGES[name])
    return Dimension(name, kind, low, high)


def _check_param(name: Any, where: str) -> str:
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"Invalid {where}: {shown(name)} is not a parameter's name ({SEARCH_FORM})")
    if name in NOT_SEARCHED:
        raise ValueError(f"Invalid {where}: {name} cannot be searched ({NOT_SEARCHED[name]})")
    return name


def parse_search_mapping(mapping: Any, where: str = "search") -> dict[str, dict[str, Dimension]]:
    """A benchmark's ``search:`` (``{sgd: {lr: "log:1e-3:1"}}``) as ``{optimizer: {param: Dimension}}``."""
    if not isinstance(mapping, Mapping):
        raise ValueError(f"Invalid {where}: {shown(mapping)} (a mapping {{OPTIMIZER: {{PARAM: DIMENSION}}}}, "
                         f"e.g. {{sgd: {{lr: 'log:1e-3:1'}}}})")
    out: dict[str, dict[str, Dimension]] = {}
    for optimizer, params in mapping.items():
        if not isinstance(optimizer, str) or not optimizer:
            raise ValueError(f"Invalid {where}: {shown(optimizer)} is not an optimizer's name")
        if not isinstance(params, Mapping) or not params:
            raise ValueError(f"Invalid {where} for {optimizer}: {shown(params)} (a mapping {{PARAM: DIMENSION}}, "
                             f"e.g. {{lr: 'log:1e-3:1'}})")
        out[optimizer] = {_check_param(p, f"{where} for {optimizer}"): parse_dimension(p, text)
                          for p, text in params.items()}
    return out


def parse_search(items: Iterable[str] | None) -> dict[str, dict[str, Dimension]]:
    """``--search OPTIMIZER:PARAM=DIMENSION`` (repeatable) as ``{optimizer: {param: Dimension}}``;
    MasbenchError names a bad item and the valid form; a parameter given twice is refused."""
    out: dict[str, dict[str, Dimension]] = {}
    for item in items or ():
        head, sep, text = item.partition("=")
        optimizer, colon, param = head.strip().rpartition(":")
        try:
            if not sep or not colon or not optimizer:
                raise ValueError(f"Invalid --search: {shown(item)} ({SEARCH_FORM})")
            _check_param(param, f"--search {shown(item)}")
            if param in out.get(optimizer, {}):
                raise ValueError(f"Invalid --search: {optimizer}:{param} is given twice")
            out.setdefault(optimizer, {})[param] = parse_dimension(param, text)
        except ValueError as error:
            raise MasbenchError(one_line(f"--search: {error}" if "--search" not in str(error) else error)) from None
    return out


def merge_search(*layers: Mapping[str, Mapping[str, Dimension]]) -> dict[str, dict[str, Dimension]]:
    """Search overrides merged per optimizer and parameter, the later layers winning (YAML, then flags)."""
    out: dict[str, dict[str, Dimension]] = {}
    for layer in layers:
        for optimizer, params in layer.items():
            out.setdefault(optimizer, {}).update(params)
    return out
