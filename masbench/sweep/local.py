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
from contextlib import contextmanager
from datetime import datetime

from masbench import faults
from masbench.grid.benchmarks import Cell
from masbench.engine import resolve_device
from masbench.errors import MasbenchError
from masbench.store import Store
from masbench.sweep import stopping
from masbench.sweep.cells import CellOutcome, new_worker_id, run_cell
from masbench.sweep.packs import pack_cells, run_pack, unfinished
from masbench.sweep.plan import SweepSettings, SweepSummary, cell_options, preflight, register, summarize

STOP_GRACE_S = 60.0  # how long a stopping worker may take to give its claim back before it is killed


def work_through(
    cells: Sequence[Cell],
    store: Store,
    settings: SweepSettings,
    *,
    started: datetime,
    worker: str | None = None,
    offset: int = 0,
    on_outcome: Callable[[CellOutcome], None] | None = None,
    datasets: dict | None = None,
) -> list[CellOutcome]:
    """One worker's loop: claim and run cells until every cell is finished, by this worker or another.

    Cells whose ``pack`` setting asks for it train in packs (``masbench.sweep.packs``), each member claimed
    and recorded as its own cell; a pack whose members are partly held by another worker trains the rest.

    ``started``: the sweep's start by the database server's clock (``Store.now``). A cell held by a live
    worker elsewhere is passed over and looked at again after ``settings.poll`` seconds; if that worker
    dies, its lease expires and this loop takes the cell over.
    """
    worker = worker or new_worker_id()
    order = list(cells[offset:]) + list(cells[:offset])
    retry_before = started if settings.retry_failed else None
    datasets = {} if datasets is None else datasets
    packing = any(cell.pack != "off" for cell in order)
    device_type = resolve_device(settings.options.device).type if packing else "cpu"
    refused: dict = {}  # pack keys whose models the fuser refused: said once, then run unpacked
    outcomes: list[CellOutcome] = []
    try:
        while True:
            waiting = False
            # Packs are made afresh each pass, of the cells still to do, so that finished cells leave no gaps.
            units = pack_cells(unfinished(order, store, retry_before), device_type) if packing else [[c] for c in order]
            for unit in units:
                options = cell_options(unit[0], settings.options)
                common = dict(callbacks=settings.callbacks, worker=worker, retry_failed_before=retry_before,
                              stale_after=settings.stale_after, heartbeat_every=settings.heartbeat_every,
                              datasets=datasets)
                if len(unit) == 1:
                    done = [run_cell(unit[0].spec, store, options, **common)]
                else:
                    done = run_pack([cell.spec for cell in unit], store, options, refused=refused, **common)
                for outcome in done:
                    if outcome.status in ("busy", "lost"):
                        waiting = True
                    elif outcome.status != "skipped":
                        outcomes.append(outcome)
                        if on_outcome is not None:
                            on_outcome(outcome)
            if not waiting:
                return outcomes
            time.sleep(settings.poll)
    except (KeyboardInterrupt, SystemExit):
        store.release(None, worker)  # whatever this worker still holds, wherever the stop landed
        raise


def _worker_process(cells: list[Cell], url: str, settings: SweepSettings, started: datetime, index: int,
                    cuda_device: str | None) -> None:
    """Entry point of a worker process (spawned: it starts from scratch and opens its own store).

    No signal at any moment of its life ends it with a traceback. It starts with SIGINT and SIGTERM
    blocked (see ``_signals_blocked``): a signal while multiprocessing's bootstrap imports torch waits,
    and stops the worker as soon as its own handlers are in and the signals are unblocked. Once its work
    is over (done, stopped, or failed) it blocks them again: the process is only exiting.
    """
    error = None
    try:
        try:
            stopping.install()
            signal.pthread_sigmask(signal.SIG_UNBLOCK, stopping.SIGNALS)  # a signal that waited stops it here
            _work(cells, url, settings, started, index, cuda_device)
        except MasbenchError as raised:  # a full disk, a store gone read-only: one line, not a traceback
            error = raised
        finally:
            signal.pthread_sigmask(signal.SIG_BLOCK, stopping.SIGNALS)
    except KeyboardInterrupt:
        pass  # stopped by a signal: run_cell and work_through have given the claims back
    if error is not None:
        print(f"Error: {error}", file=sys.stderr, flush=True)
        sys.exit(1)


def _work(cells: list[Cell], url: str, settings: SweepSettings, started: datetime, index: int,
          cuda_device: str | None) -> None:
    _stop_with_parent()
    if cuda_device is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = cuda_device
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // settings.workers))
    store = Store(url)
    try:
        work_through(cells, store, settings, started=started, offset=index * len(cells) // settings.workers)
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


@contextmanager
def _signals_blocked():
    """SIGINT and SIGTERM blocked in this thread, and so in the processes it starts until the block ends.

    A blocked signal stays blocked across fork and exec, so a worker is protected from its first
    instruction (multiprocessing's bootstrap, before any masbench code) until it unblocks them itself.
    """
    from multiprocessing import resource_tracker

    # Starting the resource tracker ends with SIG_UNBLOCK of both signals (CPython's ensure_running), which
    # would leave the workers started after it unprotected: start it first.
    resource_tracker.ensure_running()
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, stopping.SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _run_processes(cells: list[Cell], store: Store, settings: SweepSettings, started: datetime) -> int:
    """The cells in ``settings.workers`` spawned processes; the number of workers that died."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_worker_process, name=f"masbench-worker-{i}",
                        args=(cells, store.url, settings, started, i, gpu))
        for i, gpu in enumerate(gpu_assignment(settings.workers))
    ]
    try:
        # held: a stop while they start waits until every worker has a pid to pass it on to
        with stopping.held(), _signals_blocked():
            for process in processes:
                process.start()
        for process in processes:
            process.join()
    except KeyboardInterrupt:
        _stop_processes(processes, stopping.requested() or signal.SIGINT)
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


def run_sweep(
    cells: Sequence[Cell],
    store: Store,
    settings: SweepSettings,
    *,
    on_start: Callable[[], None] | None = None,
) -> SweepSummary:
    """Run every cell not yet finished, in ``settings.workers`` processes (1: in this one).

    A stop (SIGINT, SIGTERM) once the cells are running ends the sweep with every claim given back, and
    the summary names the signal, unless every cell was finished anyway (see ``summarize``); a stop
    before that raises ``Stopped``.
    """
    cells = list(cells)
    with stopping.stop_on_signals():
        loaded = preflight(cells, settings.options)
        register(cells, store)
        started = store.now()
        if on_start is not None:
            on_start()
        dead, stopped_by = 0, None
        try:
            try:
                if settings.workers <= 1:
                    work_through(cells, store, settings, started=started, datasets=loaded)
                else:
                    loaded.clear()  # each worker process loads its own copy; the parent need not hold one meanwhile
                    dead = _run_processes(cells, store, settings, started)
            finally:
                stopping.finishing()  # a signal from here on does not cut the summary short
        except KeyboardInterrupt:
            stopped_by = signal.SIGINT  # stopped, every claim given back; requested() names the signal
        faults.point("sweep.finished")
        return summarize(cells, store, started, stopping.requested() or stopped_by, dead_workers=dead,
                         retry_failed=settings.retry_failed)
