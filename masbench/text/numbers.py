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

import re
import sys
from decimal import Decimal
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
