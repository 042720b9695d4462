"""Sweeps on this machine: in this process, or in worker processes.

Every cell is claimed in the database, so workers, and sweeps started at once
against the same database, never run the same cell; a claim whose worker
stopped renewing its lease is taken over, and the cell resumes from its
checkpoint.

Stopping: SIGINT or SIGTERM to the sweep (or to its whole process group)
reaches every worker, which gives its claim back and exits; the parent waits
for them and reports the signal. A worker still starting up has both signals
blocked (from its first instruction) and stops once its handlers are in; a
signal to one worker alone stops that worker, and the others take its cells.
A worker whose parent dies (even by SIGKILL) stops the same way, so that no
worker outlives its sweep.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime

from masbench import signals
from masbench.grid.benchmarks import Cell
from masbench.errors import MasbenchError
from masbench.store import Store
from masbench.grid.packs import device_type as decide_device_type, plan_units
from masbench.sweep.plan import SweepSettings, SweepSummary, cell_options, execute
from masbench.sweep.units import CellOutcome, new_worker_id, run_unit

STOP_GRACE_S = 60.0  # how long a stopping worker may take to give its claim back before it is killed


def work_through(
    cells: Sequence[Cell],
    store: Store,
    settings: SweepSettings,
    *,
    started: datetime,
    device_type: str = "cpu",
    worker: str | None = None,
    offset: int = 0,
    on_outcome: Callable[[CellOutcome], None] | None = None,
    datasets: dict | None = None,
) -> list[CellOutcome]:
    """One worker's loop, a local worker's or a Ray task's: run units of ``cells`` until every cell is
    finished, by this worker or another; the last outcome of each cell it looked at (``skipped`` ones too).

    Each pass makes the units afresh of the cells still to do (so that finished cells leave no gaps in
    packs): packs where the cells' ``pack`` setting asks for them on ``device_type``, else one cell each.
    A unit goes through ``run_unit``. The one busy-retry: a cell held by a live worker elsewhere (busy),
    or taken over from this one (lost), is looked at again after ``settings.poll`` seconds; if that worker
    dies, its lease expires and this loop takes the cell over. ``started``: the sweep's start by the
    database server's clock (``Store.now``). A stop gives back whatever this worker still holds.
    """
    worker = worker or new_worker_id()
    order = list(cells[offset:]) + list(cells[:offset])
    retry_before = started if settings.retry_failed else None
    datasets = {} if datasets is None else datasets
    refused: dict = {}  # pack keys whose models the engine refused: said once, then run one by one
    last: dict[str, CellOutcome] = {}
    try:
        while True:
            waiting = False
            for unit in plan_units(order, store, device_type, retry_before):
                for outcome in run_unit([cell.spec for cell in unit], store, cell_options(unit[0], settings.options),
                                        callbacks=settings.callbacks, worker=worker, retry_failed_before=retry_before,
                                        stale_after=settings.stale_after, heartbeat_every=settings.heartbeat_every,
                                        datasets=datasets, refused=refused):
                    last[outcome.spec.key] = outcome
                    if outcome.status in ("busy", "lost"):
                        waiting = True
                    elif outcome.status != "skipped" and on_outcome is not None:
                        on_outcome(outcome)
            if not waiting:
                return list(last.values())
            time.sleep(settings.poll)
    except (KeyboardInterrupt, SystemExit):
        store.release(None, worker)  # whatever this worker still holds, wherever the stop landed
        raise


def _worker_process(cells: list[Cell], url: str, settings: SweepSettings, started: datetime, device_type: str,
                    index: int, cuda_device: str | None) -> None:
    """Entry point of a worker process (spawned: it starts from scratch and opens its own store).

    No signal at any moment of its life ends it with a traceback. It starts with SIGINT and SIGTERM
    blocked (see ``signals.blocked_for_children``): a signal while multiprocessing's bootstrap imports torch waits,
    and stops the worker as soon as its own handlers are in and the signals are unblocked. Once its work
    is over (done, stopped, or failed) it blocks them again: the process is only exiting.
    """
    error = None
    try:
        try:
            signals.install()
            signals.unblock()  # a signal that waited stops it here
            _work(cells, url, settings, started, device_type, index, cuda_device)
        except MasbenchError as raised:  # a full disk, a store gone read-only: one line, not a traceback
            error = raised
        finally:
            signals.block()
    except KeyboardInterrupt:
        pass  # stopped by a signal: run_unit and work_through have given the claims back
    if error is not None:
        print(f"Error: {error}", file=sys.stderr, flush=True)
        sys.exit(1)


def _work(cells: list[Cell], url: str, settings: SweepSettings, started: datetime, device_type: str, index: int,
          cuda_device: str | None) -> None:
    _stop_with_parent()
    if cuda_device is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = cuda_device
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // settings.workers))
    store = Store(url)
    try:
        work_through(cells, store, settings, started=started, device_type=device_type,
                     offset=index * len(cells) // settings.workers)
    finally:
        store.close()


def _stop_with_parent() -> None:
    """Stop this worker (as SIGTERM would) when the sweep's process dies, however it dies."""
    import multiprocessing
    from multiprocessing.connection import wait

    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        wait([parent.sentinel])
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _run_processes(cells: list[Cell], store: Store, settings: SweepSettings, started: datetime,
                   device_type: str) -> int:
    """The cells in ``settings.workers`` spawned processes; the number of workers that died."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_worker_process, name=f"masbench-worker-{i}",
                        args=(cells, store.url, settings, started, device_type, i, gpu))
        for i, gpu in enumerate(gpu_assignment(settings.workers))
    ]
    try:
        # held: a stop while they start waits until every worker has a pid to pass it on to
        with signals.held(), signals.blocked_for_children():
            for process in processes:
                process.start()
        for process in processes:
            process.join()
    except KeyboardInterrupt:
        _stop_processes(processes, signals.requested() or signal.SIGINT)
        raise
    return sum(1 for process in processes if process.exitcode not in (0, None))


def _stop_processes(processes: list, signum: int) -> None:
    """Pass the stop on to every worker (a signal to the parent alone reaches no worker), and wait for them."""
    started = [process for process in processes if process.pid is not None]
    for process in started:
        if process.is_alive():
            os.kill(process.pid, signum)
    for process in started:
        process.join(timeout=STOP_GRACE_S)
    for process in started:
        if process.is_alive():  # stuck: its claim expires with its lease
            process.kill()
            process.join()


def gpu_assignment(workers: int) -> list[str | None]:
    """With several visible GPUs, worker i sees GPU i mod count (through CUDA_VISIBLE_DEVICES)."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count < 2:
        return [None] * workers
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = visible.split(",") if visible else [str(i) for i in range(count)]
    return [ids[i % len(ids)] for i in range(workers)]


def default_workers() -> int:
    """One worker per GPU when there are several, else one."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() and torch.cuda.device_count() > 1 else 1


class _Local:
    """The local executor: the cells in this process, or in ``settings.workers`` worker processes."""

    def __init__(self, settings: SweepSettings) -> None:
        self.settings = settings

    def open(self, loaded: dict) -> str:
        return decide_device_type(self.settings.options.device)

    def run(self, cells: list[Cell], store: Store, started: datetime, device_type: str, loaded: dict) -> int:
        if self.settings.workers <= 1:
            work_through(cells, store, self.settings, started=started, device_type=device_type, datasets=loaded)
            return 0
        loaded.clear()  # each worker process loads its own copy; the parent need not hold one meanwhile
        return _run_processes(cells, store, self.settings, started, device_type)

    def close(self) -> None:
        pass


def run_sweep(
    cells: Sequence[Cell],
    store: Store,
    settings: SweepSettings,
    *,
    on_start: Callable[[], None] | None = None,
    datasets: dict | None = None,
) -> SweepSummary:
    """Run every cell not yet finished, in ``settings.workers`` processes (1: in this one); see ``execute``."""
    return execute(cells, store, settings, _Local(settings), None if on_start is None else lambda _: on_start(),
                   datasets)
