"""Sweeps on a Ray cluster: a task per unit (a cell, or a pack of cells), claimed in the store like any worker's.

Units are made by the driver with the local executor's ``pack_cells``, of the cells the store does not hold
finished, for the device the tasks train on (CUDA where the cluster has GPUs). Each task's body is the local
workers' own loop (``work_through``) over its unit's cells: each member its own claim, lease and epochs, a
member held by another live worker left to it and waited for in the same task; the task then trains, as a
smaller unit, whichever of those members that worker let go unfinished (its lease expired), and ends when
every member is finished by someone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from masbench import signals
from masbench.grid.benchmarks import Cell
from masbench.errors import MasbenchError
from masbench.engine import ExecOptions
from masbench.store import Store
from masbench.sweep.local import work_through
from masbench.grid.packs import device_type as decide_device_type, plan_units
from masbench.sweep.plan import SweepSettings, SweepSummary, cell_options, execute
from masbench.text.shown import one_line


def _ray_unit(cells: list[Cell], url: str, settings: SweepSettings, started: datetime,
              device_type: str = "cpu") -> list[str]:
    """A Ray task: the cells of one unit through ``work_through``; each cell's last status, in order.

    A cell held by a live worker is waited for; if that worker dies (a killed Ray worker, a crashed node),
    its lease expires and this task takes it over. A stop anywhere gives back whatever this task holds.
    """
    settings = replace(settings, options=cell_options(cells[0], settings.options))  # a unit shares its folders
    outcomes = work_through(cells, _task_store(url), settings, started=started, device_type=device_type)
    statuses = {outcome.spec.key: outcome.status for outcome in outcomes}
    return [statuses[cell.spec.key] for cell in cells]


def task_device_type(options: ExecOptions, cluster_gpus: float) -> str:
    """The device type a task trains on, which packing follows (``pack_plan.device_type``)."""
    return decide_device_type(options.device, cluster_gpus)


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
    datasets: dict | None = None,
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

    return execute(cells, store, settings, _Ray(ray, address, settings, store), on_start, datasets)


class _Ray:
    """The Ray executor: ``open`` joins or starts the cluster, ``run`` a task per unit, ``close`` shuts down."""

    def __init__(self, ray, address: str | None, settings: SweepSettings, store: Store) -> None:
        self.ray, self.address, self.settings, self.store = ray, address, settings, store
        self.resources: dict = {}

    def open(self, loaded: dict) -> str:
        # ray.init's own handlers would tear the local Ray instance down on SIGTERM and exit the driver (or
        # abort it), the tasks' claims left held: the sweep's are put back, which stop it cleanly.
        with signals.handlers_kept():
            try:
                self.ray.init(address=self.address, include_dashboard=False, logging_level="warning",
                              log_to_driver=True, configure_logging=True)
            except (ConnectionError, RuntimeError, ValueError) as error:
                raise MasbenchError(f"cannot reach the Ray cluster at {self.address!r}: "
                                    f"{one_line(error, 200)}") from None
        nodes = [node for node in self.ray.nodes() if node.get("Alive")]
        if len(nodes) > 1 and self.store.is_sqlite:
            raise MasbenchError(
                f"the Ray cluster has {len(nodes)} nodes, which cannot share the SQLite file "
                f"{self.store.masked_url}: give --db a PostgreSQL URL (postgresql+psycopg://USER:PASSWORD@HOST/DB) "
                f"that every node reaches"
            )
        gpus = self.ray.cluster_resources().get("GPU", 0)
        self.resources = {"num_gpus": 1} if gpus >= 1 else {"num_cpus": 1}
        return task_device_type(self.settings.options, gpus)

    def run(self, cells: list[Cell], store: Store, started: datetime, device_type: str, loaded: dict) -> int:
        ray = self.ray
        # Paths the tasks see must not depend on their working directory.
        options = self.settings.options
        options = replace(options, checkpoint_dir=Path(options.checkpoint_dir).absolute(),
                          data_dir=None if options.data_dir is None else Path(options.data_dir).absolute())
        settings = replace(self.settings, options=options)
        units = plan_units(cells, store, device_type, started if settings.retry_failed else None)
        task = ray.remote(max_retries=3)(_ray_unit).options(**self.resources)
        refs = [task.remote(unit, store.url, settings, started, device_type) for unit in units]
        try:
            ray.get(refs)
        except KeyboardInterrupt:
            # Each task's KeyboardInterrupt makes its work_through give its claims back.
            for ref in refs:
                ray.cancel(ref, force=False)
            ray.wait(refs, num_returns=len(refs), timeout=30)
            raise
        except ray.exceptions.RayError as error:
            raise MasbenchError(f"the Ray sweep failed: {one_line(error, 300)}") from None
        return 0

    def close(self) -> None:
        self.ray.shutdown()
