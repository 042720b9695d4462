"""The hostile case table (issue 21): each case is a store state or a file, one command, one exact outcome.

A case's ``setup`` edits a store that holds the runs of ``report_fixtures.RUNS`` (as a user would edit rows by
hand, or as corruption would), or writes files under ``env.dir``; then ``args`` run through the command line
and the outcome is checked exactly: either one error line (``error``; a non-zero exit, no traceback, nothing
on stdout), or an exit code with texts that stdout must and must not hold (``output``, ``absent``).
``tests/test_case_table.py`` runs every case on SQLite and on PostgreSQL (``stores=False``: once, with no
store). The cases live by class: ``read`` (reading runs no code; files), ``exact`` (thresholds; corners),
``rows`` (a report checks every row; ``masbench check``), ``identity``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Env:
    """What a case's setup and checks see: the store's URL (``db``), a folder of its own (``dir``, the
    command's working directory), and raw SQL on the store."""

    db: str
    dir: Path
    extra: dict[str, Any] = field(default_factory=dict)

    def sql(self, statement: str, **params: Any) -> list[tuple]:
        """Run ``statement`` on the store (an edit by hand: committed), returning its rows if any."""
        from sqlalchemy import create_engine, text

        engine = create_engine(self.db)
        try:
            with engine.begin() as connection:
                result = connection.execute(text(statement), params)
                return [tuple(row) for row in result] if result.returns_rows else []
        finally:
            engine.dispose()

    def store(self):
        from masbench.store import Store

        return Store(self.db)


@dataclass(frozen=True)
class Case:
    name: str
    args: tuple[str, ...]  # after ``masbench``; "{db}" and "{dir}" are filled in
    setup: Callable[[Env], None] | None = None
    error: str | None = None  # the text the only stderr line must hold (a refusal: exit != 0, stdout empty)
    code: int = 0  # the exit code expected when ``error`` is None
    output: tuple[str, ...] = ()  # texts stdout must hold
    absent: tuple[str, ...] = ()  # texts stdout must not hold
    stderr: tuple[str, ...] = ()  # texts stderr must hold when the command is not a refusal (warnings)
    stores: bool = True  # False: no filled store (files only); the case runs once
    subprocess: bool = False  # run ``python -m masbench`` in a subprocess in ``env.dir`` (import path cases)
    after: Callable[[Env], None] | None = None  # further checks once the command ended (asserts)

    def filled(self, env: Env) -> tuple[str, ...]:
        return tuple(arg.format(db=env.db, dir=env.dir) for arg in self.args)
