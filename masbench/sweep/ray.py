"""Sweeps on a Ray cluster: a task per cell, or per pack of cells, claimed in the store like any worker's.

Packs (``--pack``) are made by the driver with the local executor's ``pack_cells``, of the cells the store
does not hold finished, for the device the tasks train on (CUDA where the cluster has GPUs). A pack task
trains its members with ``run_pack``: each member its own claim, lease, heartbeat and epochs. A member held by
another live worker is left to it and waited for in the same task, as a cell task waits for a busy cell: the
task then trains, as a smaller pack, whichever of those members that worker let go unfinished (its lease
expired), and ends when every member is finished by someone.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from masbench.benchmarks import Cell
from masbench.errors import MasbenchError
from masbench.engine import ExecOptions
from masbench.store import Store
from masbench.sweep import stopping
from masbench.sweep.cells import new_worker_id, run_cell
from masbench.sweep.packs import pack_cells, run_pack, unfinished
from masbench.sweep.plan import SweepSettings, SweepSummary, cell_options, preflight, register, summarize


def _ray_cell(cell: Cell, url: str, settings: SweepSettings, started: datetime) -> str:
    """A Ray task: one cell, claimed like any worker's. A cell held by a live worker is waited for; if that
    worker dies (a killed Ray worker, a crashed node), its lease expires and this task takes it over."""
    store = _task_store(url)
    worker = new_worker_id()
    retry_before = started if settings.retry_failed else None
    while True:
        outcome = run_cell(cell.spec, store, cell_options(cell, settings.options), worker=worker,
                           callbacks=settings.callbacks, retry_failed_before=retry_before,
                           stale_after=settings.stale_after, heartbeat_every=settings.heartbeat_every)
        if outcome.status not in ("busy", "lost"):
            return outcome.status
        time.sleep(settings.poll)


def _ray_pack(cells: list[Cell], url: str, settings: SweepSettings, started: datetime) -> list[str]:
    """A Ray task: the cells of one pack (``run_pack``), each claimed and recorded as its own run.

    Members that come back busy (held by a live worker) or lost (taken over) are looked at again after
    ``settings.poll`` seconds, alone: the others are finished by then. A stop anywhere gives back whatever
    this task still holds. Returns each member's last status, in order.
    """
    store = _task_store(url)
    worker = new_worker_id()
    retry_before = started if settings.retry_failed else None
    options = cell_options(cells[0], settings.options)  # a pack's cells share their data folders
    refused: dict = {}  # a model the fuser refused is said once, and its members then run unpacked
    statuses: dict[str, str] = {}
    specs = [cell.spec for cell in cells]
    try:
        while True:
            outcomes = run_pack(specs, store, options, worker=worker, callbacks=settings.callbacks,
                                retry_failed_before=retry_before, stale_after=settings.stale_after,
                                heartbeat_every=settings.heartbeat_every, refused=refused)
            statuses |= {outcome.spec.key: outcome.status for outcome in outcomes}
            specs = [outcome.spec for outcome in outcomes if outcome.status in ("busy", "lost")]
            if not specs:
                return [statuses[cell.spec.key] for cell in cells]
            time.sleep(settings.poll)
    except (KeyboardInterrupt, SystemExit):
        store.release(None, worker)  # whatever this task still holds, wherever the stop landed
        raise


def task_device_type(options: ExecOptions, cluster_gpus: float) -> str:
    """The device type a task trains on, which packing follows: ``auto`` is CUDA where the task is given a
    GPU (the cluster has one), else what it means here; a named device is that device."""
    from masbench.engine import resolve_device

    if options.device == "auto" and cluster_gpus >= 1:
        return "cuda"
    return resolve_device(options.device).type


def plan_units(cells: Sequence[Cell], store: Store, device_type: str,
               retry_failed_before: datetime | None) -> list[list[Cell]]:
    """The sweep's tasks: one per cell when no cell asks to be packed (a finished cell's task skips it);
    otherwise the packs of the cells still to do, as the local executor makes them (a pack of one is a
    cell task)."""
    if all(cell.pack == "off" for cell in cells):
        return [[cell] for cell in cells]
    return pack_cells(unfinished(cells, store, retry_failed_before), device_type)


_STORES: dict[str, Store] = {}


def _task_store(url: str) -> Store:
    """One store per Ray worker process, reused by the tasks it runs."""
    if url not in _STORES:
        _STORES[url] = Store(url)
    return _STORES[url]


def run_sweep_ray(
    cells: Sequence[Cell],
    store: Store,
    settings: SweepSettings,
    *,
    address: str | None = None,
    on_start: Callable[[str], None] | None = None,
) -> SweepSummary:
    """Run the cells as Ray tasks, a task per cell or per pack: one GPU each where the cluster has GPUs, else
    one CPU each. ``on_start`` is called once the cells are registered, with the device type the tasks train
    on (the cluster's, not necessarily this machine's).

    ``address``: ``auto`` or ``HOST:PORT`` joins an existing cluster; ``None`` starts a local one.
    Results go to ``store``, which every node must reach: a cluster of several nodes needs PostgreSQL.
    """
    try:
        import ray
    except ImportError:
        raise MasbenchError("--executor ray needs Ray: pip install 'masbench[ray]'") from None

    cells = list(cells)
    with stopping.stop_on_signals():
        preflight(cells, settings.options)
        handlers = _signal_handlers()
        try:
            ray.init(address=address, include_dashboard=False, logging_level="warning", log_to_driver=True,
                     configure_logging=True)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise MasbenchError(f"cannot reach the Ray cluster at {address!r}: "
                                f"{' '.join(str(error).split())[:200]}") from None
        _reinstall(handlers)
        try:
            started, stopped_by = _run_tasks(ray, cells, store, settings, on_start)
        finally:
            stopping.finishing()  # a signal from here on does not cut the shutdown or the summary short
            ray.shutdown()
        return summarize(cells, store, started, stopping.requested() or stopped_by,
                         retry_failed=settings.retry_failed)


def _signal_handlers() -> dict:
    """This process's Python handlers of SIGINT and SIGTERM (none off the main thread, which has none of the
    sweep's: see stopping.stop_on_signals)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {signum: signal.getsignal(signum) for signum in stopping.SIGNALS}


def _reinstall(handlers: dict) -> None:
    """Put back the handlers ``ray.init`` replaced: on SIGTERM its own tear the local Ray instance down and exit
    the driver (or abort it), the tasks' claims left held, where the sweep's stop it cleanly."""
    for signum, handler in handlers.items():
        if handler is not None:
            signal.signal(signum, handler)


def _run_tasks(ray, cells: list[Cell], store: Store, settings: SweepSettings,
               on_start: Callable[[str], None] | None) -> tuple[datetime, int | None]:
    """The sweep's start (server clock) and the signal that stopped it, if one did."""
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    if len(nodes) > 1 and store.is_sqlite:
        raise MasbenchError(
            f"the Ray cluster has {len(nodes)} nodes, which cannot share the SQLite file {store.masked_url}: "
            f"give --db a PostgreSQL URL (postgresql+psycopg://USER:PASSWORD@HOST/DB) that every node reaches"
        )
    gpus = ray.cluster_resources().get("GPU", 0)
    resources = {"num_gpus": 1} if gpus >= 1 else {"num_cpus": 1}
    device_type = task_device_type(settings.options, gpus)
    register(cells, store)
    started = store.now()
    if on_start is not None:
        on_start(device_type)
    # Paths the tasks see must not depend on their working directory.
    options = settings.options
    options = replace(options, checkpoint_dir=Path(options.checkpoint_dir).absolute(),
                      data_dir=None if options.data_dir is None else Path(options.data_dir).absolute())
    settings = replace(settings, options=options)
    units = plan_units(cells, store, device_type, started if settings.retry_failed else None)
    cell_task = ray.remote(max_retries=3)(_ray_cell).options(**resources)
    pack_task = ray.remote(max_retries=3)(_ray_pack).options(**resources)
    refs = [cell_task.remote(unit[0], store.url, settings, started) if len(unit) == 1
            else pack_task.remote(unit, store.url, settings, started) for unit in units]
    try:
        ray.get(refs)
    except KeyboardInterrupt:
        # Each task's KeyboardInterrupt makes its run_cell or run_pack release the claims.
        for ref in refs:
            ray.cancel(ref, force=False)
        ray.wait(refs, num_returns=len(refs), timeout=30)
        return started, stopping.requested() or signal.SIGINT
    except ray.exceptions.RayError as error:
        raise MasbenchError(f"the Ray sweep failed: {' '.join(str(error).split())[:300]}") from None
    return started, None
