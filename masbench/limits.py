"""The ranges every number and string a user gives must lie in, in one place.

Every value that reaches the store must be one that both stores hold: an
integer column is PostgreSQL's 32-bit INTEGER (SQLite would take 64 bits, and
Python's ints are unbounded), a float must be finite (JSON has no ``Infinity``,
PostgreSQL's JSON refuses it), and a string must fit its VARCHAR and hold no NUL
(PostgreSQL refuses NUL; SQLite stores it). Checking here, at the boundary,
means that what one store accepts the other accepts too, and that bad input is
one line naming the value and the range, before anything is written.

The tables below are the documented ranges (the README lists them).
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Mapping
from typing import Any

INT32_MAX = 2**31 - 1  # PostgreSQL's INTEGER, the narrowest integer column of the store
MAX_SCALE = 1e15  # scale-free hyperparameters: any finite value a run could mean, and room for divergence tests
MAX_EPOCHS = 100_000
MAX_BATCH_SIZE = 2**20
MAX_LENGTH = 65_536
MAX_NAME = 512  # runs.name is VARCHAR(512)
MAX_SHOWN = 80  # a value in a message
MAX_LINE = 600  # an error line's longest: room for a path and a list of valid keys, never a value's dump

FLOAT_RANGES: dict[str, tuple[float, float]] = {
    "lr": (0.0, MAX_SCALE),
    "weight_decay": (0.0, MAX_SCALE),
    "eps": (0.0, MAX_SCALE),
    "momentum": (0.0, 1.0),
    "dampening": (0.0, 1.0),
    "lambda_adam": (0.0, 1.0),
    "lambda_sgd": (0.0, 1.0),
}
INT_RANGES: dict[str, tuple[int, int]] = {
    "seed": (0, INT32_MAX),
    "epochs": (1, MAX_EPOCHS),
    "batch_size": (1, MAX_BATCH_SIZE),
    "max_length": (1, MAX_LENGTH),
    "train_subset": (1, INT32_MAX),
    "test_subset": (1, INT32_MAX),
    "seeds": (1, INT32_MAX),  # a grid's seed count: seeds 0 .. seeds - 1 (the cell cap bounds it further)
}
# Strings that reach a VARCHAR column (benchmark, dataset) or a path or hub name: their longest.
STR_LIMITS: dict[str, int] = {
    "benchmark": 255,
    "dataset": 1024,
    "model": 255,
    "pretrained": 1024,
    "text_column": 255,
    "label_column": 255,
    "test_file": 1024,
    "data_dir": 1024,
    "lambda_schedule": 100,
    "lr_schedule": 200,
    "optimizer": 255,  # as written (an import path); the name it resolves to is at most 32, the store's column
    "lambdas": 10_000,  # a grid's lambda_adam values as text: a thousand listed values and more
}

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
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."


def one_line(message: str) -> str:
    """``message`` on one line, at most ``MAX_LINE`` characters."""
    text = " ".join(message.split())
    return text if len(text) <= MAX_LINE else text[: MAX_LINE - 3] + "..."


def check_ranges(values: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming the first value outside its range (fields absent from the tables pass)."""
    for name, value in values.items():
        if value is None:
            continue
        if name in FLOAT_RANGES:
            check_float(name, value, *FLOAT_RANGES[name])
        elif name in INT_RANGES:
            check_int(name, value, *INT_RANGES[name])
        elif name in STR_LIMITS:
            for item in value if isinstance(value, list) else [value]:  # a grid may list several (lambda_schedule)
                check_str(name, item, STR_LIMITS[name])
        elif name == "seed_list":
            for seed in value:
                check_int("seed_list", seed, *INT_RANGES["seed"])


def check_float(name: str, value: float, low: float, high: float) -> None:
    if not math.isfinite(value):
        raise ValueError(f"Invalid {name}: {shown(value)} (must be a finite number in [{low:g}, {high:g}])")
    if value < low:
        raise ValueError(f"Invalid {name}: {shown(value)} (must be >= {low:g})")
    if value > high:
        raise ValueError(f"Invalid {name}: {shown(value)} (must be <= {high:g})")


def check_int(name: str, value: int, low: int, high: int) -> None:
    if value < low:
        raise ValueError(f"Invalid {name}: {shown(value)} (must be >= {low})")
    if value > high:
        why = ", the largest integer both stores hold" if high == INT32_MAX else ""
        raise ValueError(f"Invalid {name}: {shown(value)} (must be <= {high}{why})")


def check_str(name: str, value: str, longest: int) -> None:
    if len(value) > longest:
        raise ValueError(f"Invalid {name}: {shown(value)} is {len(value)} characters (at most {longest})")
    if any(ord(c) < 32 and c not in "\t" for c in value):
        raise ValueError(f"Invalid {name}: {shown(value)} holds a control character (NUL, newline, ...)")


def check_lambda_schedule(text: str) -> None:
    """Refuse what the schedule parser cannot: non-finite numbers, and EPOCHS past the epoch range.

    ``linear:0.7:0.3:inf`` would otherwise reach ``int(inf)``; the parser's own message covers the rest.
    """
    check_str("lambda_schedule", text, STR_LIMITS["lambda_schedule"])
    kind, _, rest = text.partition(":")
    if kind != "linear" or not rest:
        return
    valid = "valid: linear:START:END[:EPOCHS], START and END in [0, 1], EPOCHS an integer in [1, 100000]"
    for i, part in enumerate(rest.split(":")):
        try:
            number = float(part)
        except ValueError:
            return  # not a number: the parser names it
        if not math.isfinite(number):
            raise ValueError(f"Invalid lambda schedule: {shown(text)} ({part!r} is not a finite number; {valid})")
        if i == 2 and (number != int(number) or not 1 <= number <= MAX_EPOCHS):
            raise ValueError(f"Invalid lambda schedule: {shown(text)} (EPOCHS {part!r} is out of range; {valid})")
