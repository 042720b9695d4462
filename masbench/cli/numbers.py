"""The text of a single-number option (``--epochs 3``, ``--lr 1e-3``), in digits 0-9.

``int()`` and ``float()`` read ``３`` (fullwidth), ``٣`` (Arabic-Indic) and ``1_0`` (as 10); older Typer
releases hand option text to them as it is. A number on masbench's command line is written in ASCII:
the parsers here are the options' ``parser=``, so that every Typer release refuses the others alike.
``inf`` and ``nan`` pass as numbers: the range checks (``masbench.limits``) name them.
"""

from __future__ import annotations

import re
from typing import Any

from masbench.limits import shown

INTEGER = re.compile(r"[-+]?[0-9]+", re.ASCII)
NUMBER = re.compile(r"[-+]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:e[-+]?[0-9]+)?|inf|infinity|nan)", re.ASCII | re.IGNORECASE)


def integer(value: Any) -> int:
    """An integer option's value: ``"3"`` -> 3; ``"３"``, ``"1_0"`` and ``"3.0"`` are refused."""
    if isinstance(value, int) and not isinstance(value, bool):  # a default, already typed
        return value
    if not isinstance(value, str) or not INTEGER.fullmatch(value.strip()):
        raise ValueError(f"{shown(value)} is not an integer in digits 0-9")
    return int(value)


def number(value: Any) -> float:
    """A float option's value: ``"1e-3"`` -> 0.001; ``"٠.١"`` and ``"0_1"`` are refused."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str) or not NUMBER.fullmatch(value.strip()):
        raise ValueError(f"{shown(value)} is not a number in digits 0-9 (e.g. 0.1, 1e-3)")
    return float(value)
