"""Sweeps on a Ray cluster: a task per cell, claimed in the store like any worker's."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from masbench.benchmarks import Cell
from masbench.errors import MasbenchError
from masbench.store import Store
from masbench.sweep import stopping
from masbench.sweep.cells import new_worker_id, run_cell
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


def check_unpacked(cells: Sequence[Cell]) -> None:
    """Ray runs a task per cell: a sweep whose cells ask to be packed is refused, not silently unpacked."""
    pack = next((cell.pack for cell in cells if cell.pack != "off"), None)
    if pack is not None:
        raise MasbenchError(f"--executor ray does not pack cells (pack {pack} asked for): give --pack off, "
                            f"or --executor local")


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
    on_start: Callable[[], None] | None = None,
) -> SweepSummary:
    """Run the cells as Ray tasks: one GPU each where the cluster has GPUs, else one CPU each.

    ``address``: ``auto`` or ``HOST:PORT`` joins an existing cluster; ``None`` starts a local one.
    Results go to ``store``, which every node must reach: a cluster of several nodes needs PostgreSQL.
    """
    try:
        import ray
    except ImportError:
        raise MasbenchError("--executor ray needs Ray: pip install 'masbench[ray]'") from None

    cells = list(cells)
    check_unpacked(cells)
    with stopping.stop_on_signals():
        preflight(cells, settings.options)
        try:
            ray.init(address=address, include_dashboard=False, logging_level="warning", log_to_driver=True,
                     configure_logging=True)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise MasbenchError(f"cannot reach the Ray cluster at {address!r}: "
                                f"{' '.join(str(error).split())[:200]}") from None
        try:
            started, stopped_by = _run_tasks(ray, cells, store, settings, on_start)
        finally:
            stopping.finishing()  # a signal from here on does not cut the shutdown or the summary short
            ray.shutdown()
        return summarize(cells, store, started, stopping.requested() or stopped_by,
                         retry_failed=settings.retry_failed)


def _run_tasks(ray, cells: list[Cell], store: Store, settings: SweepSettings,
               on_start: Callable[[], None] | None) -> tuple[datetime, int | None]:
    """The sweep's start (server clock) and the signal that stopped it, if one did."""
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    if len(nodes) > 1 and store.is_sqlite:
        raise MasbenchError(
            f"the Ray cluster has {len(nodes)} nodes, which cannot share the SQLite file {store.masked_url}: "
            f"give --db a PostgreSQL URL (postgresql+psycopg://USER:PASSWORD@HOST/DB) that every node reaches"
        )
    resources = {"num_gpus": 1} if ray.cluster_resources().get("GPU", 0) >= 1 else {"num_cpus": 1}
    register(cells, store)
    started = store.now()
    if on_start is not None:
        on_start()
    # Paths the tasks see must not depend on their working directory.
    options = settings.options
    options = replace(options, checkpoint_dir=Path(options.checkpoint_dir).absolute(),
                      data_dir=None if options.data_dir is None else Path(options.data_dir).absolute())
    task = ray.remote(max_retries=3)(_ray_cell).options(**resources)
    refs = [task.remote(cell, store.url, replace(settings, options=options), started) for cell in cells]
    try:
        ray.get(refs)
    except KeyboardInterrupt:
        # Each task's KeyboardInterrupt makes its run_cell release the claim.
        for ref in refs:
            ray.cancel(ref, force=False)
        ray.wait(refs, num_returns=len(refs), timeout=30)
        return started, stopping.requested() or signal.SIGINT
    except ray.exceptions.RayError as error:
        raise MasbenchError(f"the Ray sweep failed: {' '.join(str(error).split())[:300]}") from None
    return started, None
