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
from collections.abc import Mapping
from typing import Any

from masbench.text.shown import shown

INT32_MAX = 2**31 - 1  # PostgreSQL's INTEGER, the narrowest integer column of the store
MAX_SCALE = 1e15  # scale-free hyperparameters: any finite value a run could mean, and room for divergence tests
MAX_EPOCHS = 100_000
MAX_BATCH_SIZE = 2**20
MAX_LENGTH = 65_536
MAX_NAME = 512  # runs.name is VARCHAR(512)

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

def check_ranges(values: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming the first value outside its range (fields absent from the tables pass)."""
    for name, value in values.items():
        if value is None:
            continue
        if name in FLOAT_RANGES:  # a grid's lr may be an axis or a value per optimizer (masbench.grid.settings)
            items = value.values() if isinstance(value, Mapping) else value if isinstance(value, list) else [value]
            for item in items:
                check_float(name, item, *FLOAT_RANGES[name])
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
