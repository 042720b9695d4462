"""Optimizer arguments (``--optimizer-arg KEY=VALUE``, ``optimizer_args:``), typed by the optimizer's signature.

A keyword's type comes from its annotation (``float | Tensor`` is a float, ``tuple[float, float]`` a pair
of floats), else from its default (``k=3`` is an int), else from the value as written (``3`` an int, ``3.0``
a float). Text is parsed (``true``/``false``, numbers, ``0.9,0.99`` for a tuple);
a value from YAML must already have the type (a number for a float, a list for a tuple). Keywords that
the run spec sets (``lr``; for mas, sgd, adam and adamw also momentum, betas, ...) and those that say how
the optimizer runs (foreach, fused, ...) are not arguments. An argument equal to its default is dropped,
so that writing a default out gives the same cell as leaving it out.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from masbench.optim.registry import argument_names, optimizer_class, signature_of, spec_hyperparameters
from masbench.text.limits import INT32_MAX, MAX_SCALE, check_str
from masbench.text.numbers import ascii_digits, is_integer
from masbench.text.shown import one_line, shown

_TRUE, _FALSE = ("true", "1"), ("false", "0")
_KINDS = ("tuple", "bool", "float", "int", "str")


def typed_arguments(name: str, args: Mapping[str, Any], fields: Iterable[str]) -> dict[str, Any]:
    """``args`` typed by optimizer ``name``'s signature, defaults dropped, keys sorted; ValueError names a bad one.

    ``fields``: the run spec's fields (what the spec sets is not an argument).

    >>> typed_arguments("radam", {"decoupled_weight_decay": "true", "betas": "0.9,0.999"}, ["lr"])
    {'decoupled_weight_decay': True}
    """
    fields = list(fields)
    valid = argument_names(name, fields)
    signature = signature_of(name)
    out: dict[str, Any] = {}
    for key, raw in args.items():
        if key not in valid:
            raise ValueError(_unknown(name, key, valid, spec_hyperparameters(name, fields)))
        parameter = signature[key]
        value = _typed(name, key, raw, parameter)
        if parameter.default is inspect.Parameter.empty or value != _default(name, key, parameter):
            out[key] = value
    return dict(sorted(out.items()))


def _unknown(name: str, key: str, valid: list[str], taken: set[str]) -> str:
    if key in taken:
        return f"Invalid optimizer argument {shown(key)} for {name}: it is set by --{key.replace('_', '-')}"
    return f"Unknown optimizer argument {shown(key)} for {name} (valid: {', '.join(valid) or 'none'})"


def check_builds(name: str, hparams: Mapping[str, Any]) -> None:
    """Build optimizer ``name`` with ``hparams`` over one tensor: its own checks (betas in range...) as one line."""
    try:
        optimizer_class(name)([torch.zeros(1, requires_grad=True)], **hparams)
    except (ValueError, TypeError) as error:
        raise ValueError(f"Invalid settings for optimizer {name}: {one_line(error, limit=None)}") from None


def _default(name: str, key: str, parameter: inspect.Parameter) -> Any:
    """The default as the arguments are typed (``step_sizes=(1e-6, 50)`` as floats), or as it is if it cannot be."""
    try:
        return _typed(name, key, parameter.default, parameter)
    except ValueError:
        return parameter.default


def _kind(parameter: inspect.Parameter) -> tuple[str | None, int | None]:
    """(tuple, bool, float, int, str or None: unknown) and a tuple's length (None: any)."""
    default = parameter.default
    length = len(default) if isinstance(default, tuple) else None
    annotation = parameter.annotation
    if annotation is not inspect.Parameter.empty:
        text = annotation if isinstance(annotation, str) else str(annotation)
        for kind in _KINDS:
            if re.search(rf"\b{kind}\b", text):
                if kind == "tuple" and length is None and "..." not in text:
                    inner = re.search(r"tuple\[(.*)\]", text)
                    length = inner.group(1).count(",") + 1 if inner and "[" not in inner.group(1) else None
                return kind, length
    for kind, types in (("bool", bool), ("tuple", tuple), ("int", int), ("float", float), ("str", str)):
        if isinstance(default, types):
            return kind, length
    return None, None


def _typed(name: str, key: str, raw: Any, parameter: inspect.Parameter) -> Any:
    where = f"optimizer argument {key}={shown(raw)} for {name}"
    if parameter.default is None and (raw is None or (isinstance(raw, str) and raw.lower() in ("none", "null"))):
        return None
    kind, length = _kind(parameter)
    kind = kind or _guess(raw)
    if kind == "tuple":
        parts = raw.split(",") if isinstance(raw, str) else raw
        if not isinstance(parts, (list, tuple)) or (length is not None and len(parts) != length) or not parts:
            count = f"{length} numbers" if length else "numbers"
            raise ValueError(f"Invalid {where} (expected {count}, comma-separated, e.g. 0.9,0.99)")
        return tuple(_number(where, part) for part in parts)
    if kind == "bool":
        text = raw.strip().lower() if isinstance(raw, str) else None
        if isinstance(raw, bool) or text in _TRUE + _FALSE:
            return raw if isinstance(raw, bool) else text in _TRUE
        raise ValueError(f"Invalid {where} (expected true or false)")
    if kind == "int":
        value = _number(where, raw)
        if not value.is_integer() or abs(value) > INT32_MAX:
            raise ValueError(f"Invalid {where} (expected an integer of at most {INT32_MAX} in size)")
        return int(value)
    if kind == "float":
        return _number(where, raw)
    if not isinstance(raw, str):
        raise ValueError(f"Invalid {where} (expected text)")
    check_str(f"optimizer argument {key}", raw, 255)
    return raw


def _guess(raw: Any) -> str:
    """The kind of a keyword with neither annotation nor default, from what its value looks like."""
    if isinstance(raw, (list, tuple)):
        return "tuple"
    if isinstance(raw, bool) or (isinstance(raw, str) and raw.strip().lower() in ("true", "false")):
        return "bool"
    if isinstance(raw, int) or (isinstance(raw, str) and is_integer(raw)):
        return "int"  # 3 as written, not 3.0: the optimizer may use it as a count
    try:
        float(raw)
    except (TypeError, ValueError, OverflowError):
        return "str"
    return "float"


def _number(where: str, raw: Any) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise ValueError(f"Invalid {where} (expected a number)")
    if isinstance(raw, str) and not ascii_digits(raw):
        raise ValueError(f"Invalid {where} (expected a number in digits 0-9)")
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"Invalid {where} (expected a number)") from None
    except OverflowError:  # an integer too large for a float
        value = math.inf
    if not math.isfinite(value) or abs(value) > MAX_SCALE:
        raise ValueError(f"Invalid {where} (must be a finite number of at most {MAX_SCALE:g} in size)")
    return value + 0.0  # -0.0 is 0.0: JSON would write it apart, another key for the same cell
