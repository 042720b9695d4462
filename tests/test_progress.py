"""The sweep's progress display polls the store from a thread: a busy database costs one poll, and is logged;
any other error is a bug, and is not swallowed."""

from __future__ import annotations

import io
import logging

import pytest
from rich.console import Console
from sqlalchemy.exc import OperationalError

from masbench.cli.progress import SweepProgress

STATE = {"status": "running", "name": "mas[lambda_adam=0.5]", "dataset": "digits", "model": "mlp", "seed": 0,
         "epochs": 3, "last_epoch": 2}


class FlakyStore:
    """Raises each of ``errors`` on successive polls (None: answers), and ends the display after the last."""

    def __init__(self, errors: list[BaseException | None]) -> None:
        self.errors = errors
        self.polls = 0
        self.display: SweepProgress | None = None

    def cell_states(self, keys: list[str]) -> dict[str, dict]:
        error = self.errors[self.polls]
        self.polls += 1
        if self.polls == len(self.errors):
            self.display._stop.set()
        if error is not None:
            raise error
        return {key: dict(STATE) for key in keys}


def _display(errors: list[BaseException | None]) -> tuple[SweepProgress, FlakyStore]:
    store = FlakyStore(errors)
    store.display = SweepProgress(store, ["k1"], Console(file=io.StringIO()), every=0.0)
    return store.display, store


def test_a_busy_database_costs_one_poll_and_is_logged(caplog):
    busy = OperationalError("SELECT ...", {}, Exception("database is locked"))
    display, store = _display([busy, None])
    with caplog.at_level(logging.INFO, logger="masbench.cli.progress"):
        display._loop()
    assert store.polls == 2  # the poll after the busy one ran
    assert display.progress.tasks[display.running["k1"]].completed == 2
    [record] = [r for r in caplog.records if r.name == "masbench.cli.progress"]
    assert "database is locked" in record.getMessage() and "\n" not in record.getMessage()


@pytest.mark.parametrize("bug", [KeyError("status"), TypeError("unsupported operand"), RuntimeError("boom")])
def test_any_other_error_is_not_swallowed(bug):
    display, store = _display([bug, None])
    with pytest.raises(type(bug)):
        display._loop()
    assert store.polls == 1
