"""The numbers users type, in digits 0-9: one set of strict parsers for every option, file and grammar.

``int()``, ``float()`` and ``Decimal()`` read ``３`` (fullwidth), ``٣`` (Arabic-Indic) and ``1_0`` (as 10);
older Typer releases hand option text to them as it is. A number masbench reads is written in ASCII:

    integer   [-+]?[0-9]+                                      "3", "-1", "+2"
    number    [-+]?(MANTISSA | inf | infinity | nan)           "0.1", "1e-3", ".5", "2.", "inf"
    MANTISSA  ([0-9]+(.[0-9]*)? | .[0-9]+)([eE][-+]?[0-9]+)?

Whitespace around the text is dropped, as ``int()`` drops it; none may stand inside. ``inf`` and ``nan`` pass
as numbers: the range checks (``masbench.text.limits``) name them. No pattern can backtrack, so a
megabyte of digits is answered in linear time.

>>> integer(" 3"), number("1e-3"), decimal("0.30")
(3, 0.001, Decimal('0.30'))
"""

from __future__ import annotations

import math
import re
import sys
from decimal import Decimal
from fractions import Fraction
from typing import Any

from masbench.text.shown import shown

DIGITS = re.compile(r"[0-9]+", re.ASCII)
INTEGER = re.compile(r"[-+]?[0-9]+", re.ASCII)
_MANTISSA = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
MANTISSA = re.compile(_MANTISSA, re.ASCII)
NUMBER = re.compile(rf"[-+]?(?:{_MANTISSA}|inf|infinity|nan)", re.ASCII | re.IGNORECASE)
# int() refuses longer text (sys.get_int_max_str_digits); past it, the text is named, not int()'s own error
MAX_DIGITS = sys.get_int_max_str_digits() if hasattr(sys, "get_int_max_str_digits") else 4300


def ascii_digits(text: str) -> bool:
    """Whether every number in ``text`` can only be written in 0-9: no other script's digits, no ``1_000``.

    The guard of a grammar that holds numbers among other words (``linear:0.7:0.3``, ``0.9,0.999``)."""
    return text.isascii() and "_" not in text


def is_digits(text: str) -> bool:
    """``text`` is an unsigned integer in 0-9, exactly (no sign, no whitespace): a list item, a count, a pid."""
    return DIGITS.fullmatch(text) is not None


def is_integer(text: str) -> bool:
    """``text`` is what ``integer`` takes."""
    return INTEGER.fullmatch(text.strip()) is not None


def is_number(text: str) -> bool:
    """``text`` is what ``number`` takes."""
    return NUMBER.fullmatch(text.strip()) is not None


def is_mantissa(text: str) -> bool:
    """``text`` is an unsigned finite decimal in 0-9 (``0.5``, ``1e-3``), exactly: a weight, a step."""
    return MANTISSA.fullmatch(text) is not None


def integer(value: Any) -> int:
    """An integer's text: ``"3"`` -> 3; ``"３"``, ``"1_0"``, ``"3.0"`` and ``"1e3"`` are refused.

    An ``int`` (a default, or a YAML value, already typed) passes as it is; a ``bool`` is no integer."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, str) or not is_integer(value):
        raise ValueError(f"{shown(value)} is not an integer in digits 0-9")
    if len(value.strip().lstrip("+-")) > MAX_DIGITS:
        raise ValueError(f"{shown(value)} is not an integer in digits 0-9 of at most {MAX_DIGITS} digits")
    return int(value)


def number(value: Any) -> float:
    """A float's text: ``"1e-3"`` -> 0.001; ``"٠.١"``, ``"0_1"`` and ``"0x10"`` are refused.

    An ``int`` or ``float`` passes as a float; a ``bool`` is no number."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str) or not is_number(value):
        raise ValueError(f"{shown(value)} is not a number in digits 0-9 (e.g. 0.1, 1e-3)")
    return float(value)


def decimal(text: str) -> Decimal:
    """A number's text as an exact ``Decimal``: ``"0.30"`` -> Decimal('0.30'); the forms ``number`` takes."""
    if not isinstance(text, str) or not is_number(text):
        raise ValueError(f"{shown(text)} is not a number in digits 0-9 (e.g. 0.1, 1e-3)")
    return Decimal(text.strip())


# Exact thresholds (issue 21): an accuracy is stored as the double nearest a fraction k/N of a test set's N
# examples, a threshold is typed in decimal; 566/1000 must reach 56.6 although 56.6 / 100 is 0.5660000000000001.
MAX_EXAMPLES = 10_000_000  # the largest test set whose k/N every stored accuracy identifies (see ``examples``)
ACC_DECIMALS = 6  # decimals of a percent that a saved baseline holds (``report --format csv``'s seed_accs)
STATISTIC_TIE = 1e-9  # relative: a computed statistic this close to a typed bound is at it


def exact(value: Any) -> Fraction:
    """The number a user typed, exactly: text (``decimal``'s forms) or a ``Decimal`` as written, a float as
    the shortest decimal that reads back as it, which is what was typed for up to 15 significant digits
    (typer and YAML hand options and keys over as floats: ``56.6`` -> Fraction(283, 5), not 56.6's double).

    >>> exact(56.6), exact("0.30")
    (Fraction(283, 5), Fraction(3, 10))
    """
    if isinstance(value, str):
        value = decimal(value)
    elif isinstance(value, float):
        value = Decimal(repr(value))
    elif isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise ValueError(f"{shown(value)} is not a number")
    return Fraction(value)


def examples(accuracy: float, scale: int = 1) -> Fraction:
    """The fraction k/N of a test set that a computed accuracy stands for (``accuracy / scale``: scale 100 for
    a percent): of the fractions with N <= MAX_EXAMPLES, the nearest to it.

    Two such fractions lie at least 1 / MAX_EXAMPLES**2 = 1e-14 apart, a hundred times the rounding of a
    stored double (and of a few operations on it, such as ``* 100`` or a mean of doubles), so the nearest is
    the one it was made from: the accuracy is decided at the example, whatever N up to ten million.

    >>> examples(0.566), examples(0.566 * 100, 100)
    (Fraction(283, 500), Fraction(283, 500))
    """
    return (Fraction(accuracy) / scale).limit_denominator(MAX_EXAMPLES)


def reaches(accuracies: Any, bound: Any, scale: int = 100) -> Any:
    """Which of ``accuracies`` (fractions k/N as stored, an array) are at least ``bound`` / ``scale`` exactly:
    ``bound`` as typed (e.g. a target in percent), or an array of typed floats, one per accuracy. NaN reaches
    nothing. Rounding to the nearest double keeps order, so only an accuracy equal to its bound's own double
    (correctly rounded) needs ``examples`` to decide: the rest is one comparison of arrays.

    >>> reaches([0.565, 0.566, 0.567], 56.6).tolist(), reaches([0.566, 0.566], [56.6, 56.7]).tolist()
    ([False, True, True], [True, False])
    """
    import numpy as np

    values = np.asarray(accuracies, dtype=float)
    if np.ndim(bound) == 0:
        targets, which = [exact(bound) / scale], np.zeros(values.shape, dtype=int)
    else:
        typed, which = np.unique(np.asarray(bound, dtype=float), return_inverse=True)
        targets = [exact(float(t)) / scale for t in typed]
    nearest = np.array([float(t) for t in targets])[which]
    out = values > nearest
    for i in np.flatnonzero(values == nearest):
        out[i] = examples(float(values[i])) >= targets[which[i]]
    return out


def is_percent_target(value: Any) -> bool:
    """Whether ``value`` is a target test accuracy in percent: a number in [1, 100] (``--target``, ``target:``)."""
    return not isinstance(value, bool) and isinstance(value, (int, float)) and 1 <= value <= 100


def percent_meant(value: Any) -> float | None:
    """The percentage that a fraction in (0, 1), typed where a percentage goes, stands for (0.95 -> 95.0; the
    store and ``show`` hold fractions); None for any other value."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        return None
    return round(value * 100, 10)


def acc_text(percent: float) -> str:
    """An accuracy in percent as a saved baseline writes it, with ``ACC_DECIMALS`` decimals (the gate's resolution).

    >>> acc_text(0.566 * 100)
    '56.600000'
    """
    return f"{percent:.{ACC_DECIMALS}f}"


def at_most(statistic: float, bound: Any) -> bool:
    """``statistic`` (a width, a computed number) <= ``bound`` as typed, a tie counted within ``STATISTIC_TIE``
    of the bound (relative): the statistic's last digits are rounding, so a width printed to 10 significant
    digits and typed back is reached.

    >>> at_most(4.968316, "4.968316"), at_most(4.9683160000000001, 4.968316), at_most(4.97, 4.968316)
    (True, True, False)
    """
    if math.isnan(statistic):
        return False
    return Fraction(statistic) <= exact(bound) * (1 + Fraction(STATISTIC_TIE))
