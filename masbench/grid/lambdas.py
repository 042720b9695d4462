"""Grids of lambda_adam values: ``0.3..0.7``, ``0.3..0.7:0.05``, ``0.3,0.5,0.7``, counted before they are built.

A range is counted from its arithmetic, floor((end - start) / step) + 1, in exact decimals, so that a
sweep's size is known (and refused past its cap) in microseconds, however small the step.
"""

from __future__ import annotations

from decimal import Decimal, localcontext

from masbench.errors import MasbenchError
from masbench.text.limits import STR_LIMITS
from masbench.text.numbers import ascii_digits, decimal
from masbench.text.shown import shown

LAMBDAS_VALID = "valid: START..END (step 0.1), START..END:STEP, or A,B,C, with values in [0, 1], e.g. 0.3..0.7"
# Two lambdas in [0, 1] further apart than this are two floats (the spacing of floats in [0.5, 1) is 2**-53).
FLOAT_SPACING = Decimal(2) ** -53
RANGE_CHECKED = 200_000  # a range with a smaller step is checked value by value up to this count (the cap is lower)
HUGE = 10**18  # a lambda count past this is reported as "more than" it: the exact number has no use


def _lambda_terms(text: str) -> tuple[list[Decimal], tuple[Decimal, Decimal, Decimal] | None]:
    """(the listed values, None) or ([], (start, end, step)): syntax and bounds checked, nothing materialised."""
    text = text.strip()
    if len(text) > STR_LIMITS["lambdas"]:  # the exact-decimal context grows with the text: bound it
        raise MasbenchError(f"Invalid lambdas {shown(text)}: {len(text):,} characters (at most {STR_LIMITS['lambdas']:,})")
    if not ascii_digits(text):
        raise MasbenchError(f"Invalid lambdas {shown(text)}: numbers are written in digits 0-9 ({LAMBDAS_VALID})")
    try:
        if ".." in text:
            start_text, _, rest = text.partition("..")
            end_text, _, step_text = rest.partition(":")
            terms = [decimal(start_text), decimal(end_text), decimal(step_text) if step_text else Decimal("0.1")]
        else:
            spellings = [part.strip() for part in text.split(",")]
            terms = [decimal(part) for part in spellings]
    except ValueError:
        raise MasbenchError(f"Invalid lambdas {shown(text)} ({LAMBDAS_VALID})") from None
    if not all(term.is_finite() for term in terms):
        raise MasbenchError(f"Invalid lambdas {shown(text)}: every number must be finite ({LAMBDAS_VALID})")
    if ".." not in text:
        _in_unit_interval(terms, text)
        _once(terms, spellings, text)
        return terms, None
    start, end, step = terms
    if step <= 0:
        raise MasbenchError(f"Invalid lambda range {shown(text)}: the step must be > 0 ({LAMBDAS_VALID})")
    if start > end:
        raise MasbenchError(f"Invalid lambda range {shown(text)}: start {str(start)[:40]} is above end {str(end)[:40]} ({LAMBDAS_VALID})")
    _in_unit_interval([start, end], text)
    if step <= FLOAT_SPACING:
        _once_in_range(start, end, step, text)
    return [], (start, end, step)


def _once(values: list[Decimal], spellings: list[str], text: str) -> None:
    """Refuse two values that are one number once a float: one cell. ``0.3,0.30``, ``0.3,3e-1`` and
    ``0.3,0.30000000000000001`` alike (the last two decimals differ, their floats do not), and ``0,-0.0``."""
    seen: dict[float, str] = {}
    for value, spelling in zip(values, spellings):
        number = float(value) + 0.0  # -0.0 is 0.0
        if number not in seen:
            seen[number] = spelling
            continue
        first = seen[number]
        same = "" if spelling == first else f"{first[:40]} and {spelling[:40]} are the same number, {number!r}; "
        raise MasbenchError(f"Invalid lambdas {shown(text)}: {spelling[:40]} is listed twice ({same}give each once)")


def _once_in_range(start: Decimal, end: Decimal, step: Decimal, text: str) -> None:
    """Refuse a range whose step is below the floats' spacing where two of its values are one float (one
    cell); a range of more values than any sweep may hold is left to the cap, which refuses it."""
    with _exact(text):
        count = int((end - start) / step) + 1 if end - start <= step * RANGE_CHECKED else RANGE_CHECKED + 1
        if count > RANGE_CHECKED:
            return
        values = [start + k * step for k in range(count)]
    for previous, value in zip(values, values[1:]):  # ascending: equal floats are neighbours
        if float(previous) == float(value):
            raise MasbenchError(f"Invalid lambda range {shown(text)}: its values {str(previous)[:40]} and "
                                f"{str(value)[:40]} are the same number, {float(value)!r} (give a step above "
                                f"{float(FLOAT_SPACING):.3g}, the floats' spacing below 1)")


def _in_unit_interval(values: list[Decimal], text: str) -> None:
    for v in values:
        if not Decimal(0) <= v <= Decimal(1):
            raise MasbenchError(f"Invalid lambda_adam {str(v)[:40]} in {shown(text)}: must be in [0, 1] so that "
                                f"lambda_sgd = 1 - it is too")


def _exact(text: str):
    """A decimal context wide enough that sums and the floor of quotients of numbers from ``text`` are exact."""
    from decimal import MAX_EMAX, MIN_EMIN, Context

    return localcontext(Context(prec=2 * len(text) + 60, Emax=MAX_EMAX, Emin=MIN_EMIN))


def count_lambdas(text: str) -> int:
    """How many lambda_adam values ``text`` gives, from the range arithmetic alone (at most ``HUGE + 1``).

    ``0.3..0.7:0.0000001`` counts 4,000,001 values in microseconds, without building them.
    """
    listed, span = _lambda_terms(text)
    if span is None:
        return len(listed)
    start, end, step = span
    with _exact(text):
        if end - start > step * HUGE:
            return HUGE + 1
        return int((end - start) / step) + 1  # int() truncates: the floor of a non-negative quotient


def parse_lambdas(text: str, limit: int = HUGE) -> list[float]:
    """lambda_adam values: ``0.3..0.7`` (step 0.1, inclusive), ``0.3..0.7:0.05``, or ``0.3,0.5,0.7``.

    Decimal arithmetic keeps 0.3 + 0.1 at 0.4. Every value must lie in [0, 1], so that
    lambda_sgd = 1 - lambda_adam is a valid weight too. More than ``limit`` values is an error,
    found from the count before any value is made.
    """
    count = count_lambdas(text)
    if count > limit:
        raise MasbenchError(f"Invalid lambdas {shown(text)}: {count_text(count)} values (at most {limit:,})")
    listed, span = _lambda_terms(text)
    if span is not None:
        start, _, step = span
        with _exact(text):
            listed = [start + k * step for k in range(count)]
    return [float(v) + 0.0 for v in listed]


def count_text(count: int) -> str:
    return f"more than {HUGE:.0e}" if count > HUGE else f"{count:,}"


def complement(lambda_adam: float) -> float:
    """1 - lambda_adam without binary noise (1 - 0.7 is 0.30000000000000004 in floats)."""
    return float(Decimal(1) - Decimal(repr(lambda_adam)))
