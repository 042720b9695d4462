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
            terms = [decimal(part) for part in text.split(",")]
    except ValueError:
        raise MasbenchError(f"Invalid lambdas {shown(text)} ({LAMBDAS_VALID})") from None
    if not all(term.is_finite() for term in terms):
        raise MasbenchError(f"Invalid lambdas {shown(text)}: every number must be finite ({LAMBDAS_VALID})")
    if ".." not in text:
        _in_unit_interval(terms, text)
        twice = next((t for i, t in enumerate(terms) if t in terms[:i]), None)
        if twice is not None:  # 0.3 and 0.30 are one cell
            raise MasbenchError(f"Invalid lambdas {shown(text)}: {str(twice)[:40]} is listed twice (give each once)")
        return terms, None
    start, end, step = terms
    if step <= 0:
        raise MasbenchError(f"Invalid lambda range {shown(text)}: the step must be > 0 ({LAMBDAS_VALID})")
    if start > end:
        raise MasbenchError(f"Invalid lambda range {shown(text)}: start {str(start)[:40]} is above end {str(end)[:40]} ({LAMBDAS_VALID})")
    _in_unit_interval([start, end], text)
    return [], (start, end, step)


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
        return len(dict.fromkeys(listed))
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
    return [float(v) for v in dict.fromkeys(listed)]


def count_text(count: int) -> str:
    return f"more than {HUGE:.0e}" if count > HUGE else f"{count:,}"


def complement(lambda_adam: float) -> float:
    """1 - lambda_adam without binary noise (1 - 0.7 is 0.30000000000000004 in floats)."""
    return float(Decimal(1) - Decimal(repr(lambda_adam)))
