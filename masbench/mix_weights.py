"""A mix's weights as text, torch-free: ``mix:adam=0.3,sgd=0.5,rmsprop=0.2``, and grids over the simplex.

The text is what ``--optimizer``, a sweep's baselines and a run's name use; ``parse_mix`` reads it into
``{component: weight}``, ``mix_text`` writes it back (components in order, weights as Python prints
them), so that one mix is one text. ``simplex`` lists the weights that are multiples of a step and sum
to 1, exactly: each weight is a decimal (``0.3``, never ``0.30000000000000004``).
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from itertools import combinations

from masbench.optimizer_names import OPTIMIZER_NAMES, is_path
from masbench.text.limits import MAX_SCALE
from masbench.text.numbers import is_mantissa
from masbench.text.shown import shown

PREFIX = "mix:"
# The components that take the product form (masbench.optim.mix_kinds.KINDS, held together by a test).
PRODUCT_KINDS = ("adam", "sgd", "adamw", "adamax", "nadam", "rmsprop", "adagrad", "lion")
MAX_COMPONENTS = 16
MAX_SIMPLEX = 100_000  # points a --mix grid may have before the cell cap is even asked
FORM = "mix:NAME=WEIGHT,NAME=WEIGHT,... (e.g. mix:adam=0.3,sgd=0.5,rmsprop=0.2)"


def is_mix(text: object) -> bool:
    return isinstance(text, str) and text.startswith(PREFIX)


def parse_mix(text: str) -> dict[str, float]:
    """``mix:adam=0.3,sgd=0.7`` -> ``{"adam": 0.3, "sgd": 0.7}``; ValueError names the bad part in one line."""
    body = text[len(PREFIX):] if is_mix(text) else None
    if not body:
        raise ValueError(f"Invalid mix {shown(text)}: no components ({FORM})")
    out: dict[str, float] = {}
    for item in body.split(","):
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ValueError(f"Invalid mix {shown(text)}: {shown(item)} is not NAME=WEIGHT ({FORM})")
        if name in out:
            raise ValueError(f"Invalid mix {shown(text)}: component {shown(name)} is given twice")
        out[name] = _weight(text, name, value)
    check_components(text, out)
    return out


def check_components(where: str, weights: dict[str, float]) -> None:
    """Names known (plain names; import paths are resolved later), at most MAX_COMPONENTS, not all zero."""
    if not weights:
        raise ValueError(f"Invalid mix {shown(where)}: no components ({FORM})")
    if len(weights) > MAX_COMPONENTS:
        raise ValueError(f"Invalid mix {shown(where)}: {len(weights)} components (at most {MAX_COMPONENTS})")
    for name in weights:
        if name in ("mix", "mas"):
            raise ValueError(f"Invalid mix {shown(where)}: component {name} cannot be mixed (mas is mix:adam=A,sgd=S)")
        if not is_path(name) and name not in PRODUCT_KINDS and name not in OPTIMIZER_NAMES:
            valid = ", ".join(n for n in dict.fromkeys(PRODUCT_KINDS + OPTIMIZER_NAMES) if n not in ("mas", "mix"))
            raise ValueError(f"Invalid mix {shown(where)}: unknown component {shown(name)} (valid: {valid}, or an "
                             f"import path package.module:Class)")
    if not any(weights.values()):
        raise ValueError(f"Invalid mix {shown(where)}: every weight is zero (at least one must be > 0)")


_NONZERO = re.compile(r"[1-9]")


def _weight(text: str, name: str, value: object) -> float:
    if isinstance(value, bool):
        number = math.nan
    else:
        text_value = value.strip() if isinstance(value, str) else value
        if isinstance(text_value, str) and not is_mantissa(text_value):
            number = math.nan  # digits 0-9 only: float() would take "1_0" as 10 and "０.3" as 0.3
        else:
            try:
                number = float(text_value)  # type: ignore[arg-type]
            except (TypeError, ValueError, OverflowError):
                number = math.nan
    if number == 0.0 and isinstance(value, str) and _NONZERO.search(value.split("e")[0].split("E")[0]):
        number = math.nan  # 1e-400 underflows to 0: a weight given as non-zero must not vanish
    if not (math.isfinite(number) and 0.0 <= number <= MAX_SCALE):
        raise ValueError(f"Invalid mix {shown(text)}: weight {shown(value)} of {shown(name)} "
                         f"(must be a finite number in [0, {MAX_SCALE:g}] in digits 0-9, 0 or not so small "
                         f"that it is 0)")
    return number + 0.0


def check_weights(weights: object) -> dict[str, float]:
    """A mapping of weights from YAML or Python, checked as ``parse_mix`` checks text."""
    if not isinstance(weights, dict):
        raise ValueError(f"Invalid weights: {shown(weights)} (a mapping component: weight, e.g. adam: 0.5)")
    where = mix_text(weights) if all(isinstance(k, str) for k in weights) else shown(weights)
    for name, value in weights.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):  # "0.5" in YAML is text, not a weight
            raise ValueError(f"Invalid mix {where}: weight {shown(value)} of {shown(name)} is not a number")
    out = {str(name): _weight(where, str(name), value) for name, value in weights.items()}
    check_components(where, out)
    return out


def resolve_weights(weights: object) -> dict[str, float]:
    """Checked weights with each component as its one name (an import path resolved, which imports it), less
    the components of weight 0, which move nothing: ``mix:adam=0.3,sgd=0.7,rmsprop=0`` is one cell with
    ``mix:adam=0.3,sgd=0.7``, and a corner of a simplex one with its single component."""
    out: dict[str, float] = {}
    checked = check_weights(weights)
    for name, weight in checked.items():
        if is_path(name):
            from masbench.optim.mix import component_name

            resolved = component_name(name)
        else:
            resolved = name
        if resolved in out:
            raise ValueError(f"Invalid mix {mix_text(checked)}: {shown(name)} names {resolved}, given twice")
        out[resolved] = weight
    return {name: weight for name, weight in out.items() if weight > 0}


def mix_text(weights: dict[str, object]) -> str:
    """``{"sgd": 0.7, "adam": 0.3}`` -> ``mix:adam=0.3,sgd=0.7``: product kinds in their order, then by name."""
    order = sorted(weights, key=lambda n: (PRODUCT_KINDS.index(n), "") if n in PRODUCT_KINDS else (99, n))
    return PREFIX + ",".join(f"{name}={weights[name]}" for name in order)


def parse_step(value: object) -> Decimal:
    """A simplex step: a decimal in (0, 1] that divides 1 (0.25, 0.1, 0.2; not 0.3)."""
    try:
        step = Decimal(str(value).strip())
    except InvalidOperation:
        step = Decimal("NaN")
    if not step.is_finite() or not 0 < step <= 1:
        raise ValueError(f"Invalid mix step: {shown(value)} (a number in (0, 1] that divides 1, e.g. 0.25 or 0.1)")
    # Finer than 1/MAX_SIMPLEX is too many mixes for any two components; refusing it here keeps the exact
    # arithmetic below small (1e-999999999 would be a billion-digit integer).
    if step * MAX_SIMPLEX < 1:
        raise ValueError(f"Invalid mix step: {shown(value)} makes more than {MAX_SIMPLEX:,} mixes "
                         f"(at least {Decimal(1) / MAX_SIMPLEX})")
    # Exactly, as a fraction: Decimal's 28 digits would let 0.333...3 (29 digits) "divide" 1.
    if (1 / Fraction(step)).denominator != 1:
        raise ValueError(f"Invalid mix step: {shown(value)} (a number in (0, 1] that divides 1, e.g. 0.25 or 0.1)")
    return step


def simplex_count(names: list[str], step: object) -> int:
    """How many mixes ``simplex(names, step)`` lists, from the arithmetic; ValueError for a bad grid."""
    unit = parse_step(step)
    if len(names) < 2 or len(set(names)) != len(names):
        raise ValueError(f"Invalid mix: {shown(','.join(map(str, names)))} (at least two components, each once)")
    check_components(",".join(names), dict.fromkeys(names, 1.0))
    count = math.comb(int(1 / unit) + len(names) - 1, len(names) - 1)
    if count > MAX_SIMPLEX:
        raise ValueError(f"Invalid mix: {len(names)} components at step {unit} make {count:,} mixes "
                         f"(at most {MAX_SIMPLEX:,})")
    return count


def join_mix_items(items: list[str]) -> list[str]:
    """A comma-split list with its mixes whole again: ``[mix:adam=0.5, sgd=0.5, radam]`` -> two items.

    An item with ``=`` that follows a mix continues it (no optimizer's name holds ``=``).
    """
    out: list[str] = []
    for item in items:
        if out and is_mix(out[-1]) and "=" in item and not is_mix(item):
            out[-1] += "," + item
        else:
            out.append(item)
    return out


def simplex(names: list[str], step: object) -> list[dict[str, float]]:
    """The weights of ``names`` that are multiples of ``step`` and sum to 1, each exact, in a fixed order.

    >>> simplex(["adam", "sgd"], 0.5)
    [{'adam': 0.0, 'sgd': 1.0}, {'adam': 0.5, 'sgd': 0.5}, {'adam': 1.0, 'sgd': 0.0}]
    """
    simplex_count(names, step)
    unit = parse_step(step)
    parts, k = int(1 / unit), len(names)
    points = []
    # Stars and bars: k - 1 bars among parts + k - 1 places, in lexicographic order of the counts reversed.
    for bars in combinations(range(parts + k - 1), k - 1):
        edges = (-1, *bars, parts + k - 1)
        counts = [edges[i + 1] - edges[i] - 1 for i in range(k)]
        points.append({name: float(unit * n) for name, n in zip(names, counts)})
    return sorted(points, key=lambda point: [point[n] for n in names])
