"""Helpers for the tests that run real sweep processes against SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import create_engine, text

from masbench.engine import Callback

TIMING = ("seconds", "samples_per_second")


def numbers(result) -> list[dict]:
    """Every metric of a ``RunResult`` but the timings, epoch by epoch: what two runs must agree on."""
    return [{k: v for k, v in m.as_dict().items() if k not in TIMING} for m in result.epochs]


class Warnings(Callback):
    """Collects a run's warnings (``on_warning``) in ``messages``."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def on_warning(self, message: str) -> None:
        self.messages.append(message)


class StopAfter(Callback):
    """A crash right after epoch ``n`` has been checkpointed."""

    class Crash(Exception):
        pass

    def __init__(self, n: int) -> None:
        self.n = n

    def on_checkpoint(self, epoch, path):
        if epoch == self.n:
            raise self.Crash


def rows(url: str, sql: str) -> list[tuple]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return [tuple(r) for r in connection.execute(text(sql))]
    finally:
        engine.dispose()


def metrics(url: str) -> list[tuple]:
    """Every epoch's numbers (not its timings), by cell key and epoch."""
    return rows(url, "select r.key, e.epoch, e.train_loss, e.train_acc, e.test_loss, e.test_acc, e.lambda_adam "
                     "from epochs e join runs r on r.id = e.run_id order by r.key, e.epoch")


def environment(fault: str | None = None, hold: Path | None = None) -> dict[str, str]:
    """The environment of a masbench process under test: the fault asked for (none inherited), and a hold.

    ``hold``: every training process stops after its epochs are stored and checkpointed (``faults``'
    ``epoch.saved``) until ``release(hold)``, so that a test sees a cell part-way through for certain, however
    fast the machine or slow the test's polling."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("MASBENCH_FAULT", None)
    if fault:
        env["MASBENCH_FAULT"] = fault
    if hold is not None:
        hold.mkdir(parents=True, exist_ok=True)
        env["MASBENCH_HOLD"] = f"epoch.saved:{hold}"
    return env


def release(hold: Path) -> None:
    """Let the processes held by ``environment(hold=...)`` go on (and never stop again)."""
    (hold / "go").touch()


def sweep(bench_file: Path, url: str, workdir: Path, *extra: str, benchmark: str = "crash",
          fault: str | None = None, hold: Path | None = None) -> subprocess.Popen:
    """``masbench sweep`` in a process of its own (and its own process group, for killing)."""
    env = environment(fault, hold)
    workdir.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-m", "masbench.cli", "sweep", "--benchmark", benchmark, "--benchmarks", str(bench_file),
         "--db", url, "--checkpoint-dir", str(workdir / "ckpt"), "--data-dir", str(workdir / "data"), *extra],
        cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )


def finish(process: subprocess.Popen, timeout: float = 900) -> tuple[str, str]:
    """Wait for a sweep process; it must succeed."""
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, f"rc {process.returncode}\n{out}\n{err}"
    return out, err


def wait_for_running_cell(url: str, deadline_s: float = 300) -> str:
    """The worker id of a cell that is running and has stored an epoch (so it is part-way through)."""
    deadline = time.time() + deadline_s
    while time.time() < deadline:
        time.sleep(0.2)
        try:
            held = rows(url, "select r.worker from runs r join epochs e on e.run_id = r.id "
                             "where r.status = 'running' and e.epoch >= 1")
        except Exception:  # the schema may not exist yet
            continue
        if held:
            return held[0][0]
    raise AssertionError("no cell got going")
