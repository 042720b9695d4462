"""What goes with a RunSpec without being part of its key: how a run is executed (``ExecOptions``), and the
one-line message of a spec's validation error (``validation_message``). Both are re-exported by
``masbench.spec``, where they were first defined."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from masbench.text.shown import one_line, shown


def validation_message(error: ValidationError, where: str = "") -> str:
    """The first problem of a pydantic error, as one line that names the key and the value."""
    return one_line(_first_problem(error, where))


def _first_problem(error: ValidationError, where: str) -> str:
    first = error.errors()[0]
    message = first["msg"].removeprefix("Value error, ")
    location = ".".join(str(part) for part in first["loc"])
    prefix = f"{where}: " if where else ""
    if first["type"] == "value_error" or not location:
        return f"{prefix}{message}"
    if first["type"] == "extra_forbidden":
        return f"{prefix}unknown key {shown(location)} (see --help for the valid options)"
    return f"{prefix}invalid {location}: {shown(first.get('input'))} ({message})"
@dataclass(frozen=True)
class ExecOptions:
    """How a run is executed; none of it enters the run's key.

    ``amp`` (bf16 autocast) and ``channels_last`` default to on with CUDA and off elsewhere.
    """

    device: str = "auto"
    data_dir: Path | None = None
    amp: bool | None = None
    channels_last: bool | None = None
    compile: bool = False
    checkpoint_dir: Path = field(default_factory=lambda: Path(".masbench") / "checkpoints")
    keep_checkpoint: bool = False
    base_dir: Path | None = None  # what relative data paths in a spec are relative to (default: the working directory)
    distributed: Any = None  # a masbench.distributed.Distributed under torchrun, else None
