"""The text shown to users: a value in a message, cut short, and a message on one line.

Every error a user sees is one line naming the value and what would be valid; these two functions are
how a value and a message are made fit for that line.

>>> shown("x" * 100), one_line("a\\n  b\\tc"), one_line("abcdef", 5)
("'xxxxxxxxxxxxxxxxxxxxxxxxxxx...xxxxxxxxxxxxxxxxxxxxxxxxxxxx'", 'a b c', 'ab...')
"""

from __future__ import annotations

import math
import reprlib
from typing import Any

MAX_SHOWN = 80  # a value in a message
MAX_LINE = 600  # an error line's longest: room for a path and a list of valid keys, never a value's dump
CUT = "..."

_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict, _REPR.maxset = 2, 4, 4, 4, 4
_REPR.maxstring, _REPR.maxother, _REPR.maxlong = 60, 60, 40


def shown(value: Any) -> str:
    """``repr(value)``, cut short: an error line never carries a huge value (or a billion-laughs list) whole."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"an integer of about {int(value.bit_length() * math.log10(2)) + 1} digits"
    try:
        text = _REPR.repr(value)
    except ValueError:  # an integer past Python's int-to-text limit, inside a container
        return f"a {type(value).__name__} too large to show"
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - len(CUT)] + CUT


def did_you_mean(text: str, choices, cutoff: float = 0.6) -> str:
    """``"did you mean NAME? "`` for the choice closest to a mistyped ``text`` (difflib's ratio at least
    ``cutoff``), or ``""``: the start of an unknown name's list of valid ones.

    >>> did_you_mean("tv:resnet_18", ["tv:resnet18", "tv:resnet34"]), did_you_mean("zzz", ["adam"])
    ('did you mean tv:resnet18? ', '')
    """
    import difflib

    close = difflib.get_close_matches(str(text), list(choices), n=1, cutoff=cutoff)
    return f"did you mean {close[0]}? " if close else ""


def one_line(x: object, limit: int | None = MAX_LINE) -> str:
    """``str(x)`` (a message or an exception) with every run of whitespace, newlines and tabs included, made one
    space; at most ``limit`` characters (``None``: any length), the last three ``...`` where it was cut."""
    text = " ".join(str(x).split())
    if limit is None or len(text) <= limit:
        return text
    return text[: max(limit - len(CUT), 0)] + CUT[: limit]
