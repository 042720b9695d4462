"""The lambda-schedule grammar, parsed once: the check, the normal form and the schedule all read its result.

    constant                    lambda_adam and lambda_sgd stay as the run sets them
    linear:START:END[:EPOCHS]   lambda_adam from START to END over EPOCHS epochs (the run's, if not given),
                                lambda_sgd = 1 - lambda_adam; START, END in [0, 1], EPOCHS in [1, 100000]

Numbers are written in digits 0-9 (``masbench.text.numbers``). The normal form writes each of START and
END as Python's shortest repr less a trailing ``.0``, and EPOCHS as an integer: ``linear:1.0:0.0``,
``linear:1e0:0`` and ``linear:1:0`` are all ``linear:1:0``, one cell.

>>> parse_lambda_schedule("linear:0.70:0.3:10")
ParsedSchedule(kind='linear', numbers=(0.7, 0.3, 10.0))
>>> normalise_lambda_schedule("linear:1.0:0.0:100.0")
'linear:1:0:100'
"""

from __future__ import annotations

import math
from typing import NamedTuple

from masbench.text.limits import MAX_EPOCHS, STR_LIMITS, check_str
from masbench.text.numbers import ascii_digits, is_number
from masbench.text.shown import shown

VALID = (f"valid: constant, or linear:START:END[:EPOCHS] with START and END in [0, 1] and EPOCHS an integer in "
         f"[1, {MAX_EPOCHS}], in digits 0-9, e.g. linear:0.7:0.3")


class ParsedSchedule(NamedTuple):
    kind: str  # "constant" or "linear"
    numbers: tuple[float, ...]  # () or (START, END) or (START, END, EPOCHS)

    @property
    def text(self) -> str:
        """The normal form: the one text of this schedule."""
        if self.kind == "constant":
            return "constant"
        texts = [repr(v).removesuffix(".0") for v in self.numbers[:2]] + [str(int(v)) for v in self.numbers[2:]]
        return ":".join([self.kind, *texts])


def _invalid(text: str, why: str = "") -> ValueError:
    return ValueError(f"Invalid lambda schedule: {shown(text)} ({why}; {VALID})" if why else
                      f"Invalid lambda schedule: {shown(text)} ({VALID})")


def parse_lambda_schedule(text: str) -> ParsedSchedule:
    """``text`` -> its ``ParsedSchedule``; ValueError, one line naming ``text`` and what is valid."""
    check_str("lambda_schedule", text, STR_LIMITS["lambda_schedule"])
    kind, _, rest = text.partition(":")
    if kind == "constant" and not rest:
        return ParsedSchedule("constant", ())
    if kind != "linear" or not rest or not ascii_digits(text):
        raise _invalid(text)
    numbers: list[float] = []
    for i, part in enumerate(rest.split(":")):
        if not is_number(part):
            raise _invalid(text)
        value = float(part) + 0.0  # + 0.0: -0 is 0
        if not math.isfinite(value):
            raise _invalid(text, f"{part!r} is not a finite number")
        if i == 2 and (not value.is_integer() or not 1 <= value <= MAX_EPOCHS):
            raise _invalid(text, f"EPOCHS {part!r} is out of range")
        numbers.append(value)
    if len(numbers) not in (2, 3) or not all(0.0 <= v <= 1.0 for v in numbers[:2]):
        raise _invalid(text)
    return ParsedSchedule("linear", tuple(numbers))


def normalise_lambda_schedule(text: str) -> str:
    """The one text of the schedule ``text`` names (the form of ``linear:1:0:100`` and ``linear:0.7:0.3``,
    which named cells before texts were normalised)."""
    return parse_lambda_schedule(text).text
