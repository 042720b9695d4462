"""What every executor shares: its settings, and ``execute``: the checks and registration before a sweep,
its start by the server's clock, the stop, and its summary."""

from __future__ import annotations

import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from masbench import faults, signals
from masbench.grid.benchmarks import Cell
from masbench.engine import Callback
from masbench.engine import ExecOptions
from masbench.store import Store
from masbench.store.leases import FINAL, as_utc, finished
from masbench.sweep.units import HEARTBEAT_EVERY_S, STALE_AFTER_S, run_values

POLL_S = 2.0


@dataclass(frozen=True)
class SweepSettings:
    """How a sweep runs its cells; none of it changes a cell's numbers.

    ``stale_after`` is each worker's lease (``--claim-timeout``): should a worker stop renewing its claim
    for that long, by the database server's clock, another worker takes its cell over.
    """

    options: ExecOptions = field(default_factory=ExecOptions)
    workers: int = 1
    retry_failed: bool = False
    stale_after: float = STALE_AFTER_S
    heartbeat_every: float = HEARTBEAT_EVERY_S
    poll: float = POLL_S
    callbacks: tuple[Callback, ...] = ()  # given to every cell's training; picklable, for worker processes


def cell_options(cell: Cell, options: ExecOptions) -> ExecOptions:
    """A grid's data folder applies unless the command line gave one; relative data paths follow the file."""
    if cell.data_dir is not None and options.data_dir is None:
        options = replace(options, data_dir=Path(cell.data_dir))
    if cell.base_dir is not None and options.base_dir is None:
        options = replace(options, base_dir=Path(cell.base_dir))
    return options


def preflight(cells: Sequence[Cell], options: ExecOptions, datasets: dict | None = None) -> dict:
    """Load each distinct data set once, so that missing or broken data fails before anything is written;
    so does a validation split that would leave a class without examples, and a model that cannot be built for
    its data (``tv:resnet18`` on 1-channel digits, weights that cannot be downloaded): each distinct model is
    built once here and dropped (every run seeds its RNGs before it builds its own, so this draws nothing of it).

    Returns the loaded sets (keyed by ``data_cache_key``), for a worker in this process to reuse; ``datasets``:
    sets loaded before (by a caller that ran ``preflight`` before opening its store), reused and added to.
    """
    from masbench.data.validation import val_indices
    from masbench.engine import build_seeded_model, dataset_for, resolve_device

    resolve_device(options.device)
    datasets = {} if datasets is None else datasets
    built: set[tuple] = set()
    for cell in cells:
        data = dataset_for(cell.spec, cell_options(cell, options), datasets)
        if cell.spec.val_fraction is not None:
            val_indices(data.train.labels, cell.spec.val_fraction, cell.spec.seed, data.classes)
        model = (cell.spec.model, cell.spec.resolved_pretrained, id(data))
        if model not in built:
            build_seeded_model(cell.spec, data)
            built.add(model)
    return datasets


def register(cells: Sequence[Cell], store: Store) -> None:
    """A pending row per cell, so that the store knows the whole plan (reports flag what is missing)."""
    for cell in cells:
        store.ensure_run(run_values(cell.spec))


@dataclass
class SweepSummary:
    total: int
    states: dict[str, dict[str, Any]]  # key -> the stored state of the cell
    ran: int  # cells finished while this sweep ran
    stopped_by: int | None = None  # the signal (SIGINT, SIGTERM) that stopped the sweep
    dead_workers: int = 0  # worker processes that died (their cells were taken over by the others)

    @property
    def interrupted(self) -> bool:
        return self.stopped_by is not None

    @property
    def exit_code(self) -> int:
        """What the shell expects of a process stopped by the signal (``signals.exit_code``), else 0."""
        return 0 if self.stopped_by is None else signals.exit_code(self.stopped_by)

    def count(self, status: str) -> int:
        return sum(1 for s in self.states.values() if s["status"] == status)

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [s for s in self.states.values() if s["status"] == "failed"]


def summarize(cells: Sequence[Cell], store: Store, started: datetime, stopped_by: int | None = None,
              dead_workers: int = 0, retry_failed: bool = False) -> SweepSummary:
    """The cells' states in the store; ``started`` (the server's clock) tells the cells this sweep finished.

    Finishing wins over a stop: if the stop left nothing undone (every cell finished, and none failed
    before ``started`` still waiting for ``retry_failed``), the sweep is not reported as interrupted.
    """
    states = store.cell_states([cell.spec.key for cell in cells])
    ran = sum(1 for s in states.values()
              if s["status"] in FINAL and s["finished_at"] is not None and as_utc(s["finished_at"]) >= started)
    undone = len(states) < len(cells) or any(_undone(s, started, retry_failed) for s in states.values())
    if stopped_by is not None and not undone:
        stopped_by = None
    return SweepSummary(len(cells), states, ran, stopped_by, 0 if stopped_by is not None else dead_workers)


def _undone(state: dict[str, Any], started: datetime, retry_failed: bool) -> bool:
    """Whether the sweep would still have run this cell (as ``run_unit`` decides)."""
    return not finished(state["status"], state["finished_at"], started if retry_failed else None)


class Executor(Protocol):
    """How a sweep's cells run once checked and registered: ``open`` (the device type they train on),
    ``run`` (the number of workers that died), ``close``."""

    def open(self, loaded: dict) -> str: ...

    def run(self, cells: list[Cell], store: Store, started: datetime, device_type: str, loaded: dict) -> int: ...

    def close(self) -> None: ...


def execute(cells: Sequence[Cell], store: Store, settings: SweepSettings, executor: Executor,
            on_start: Callable[[str], None] | None = None, datasets: dict | None = None) -> SweepSummary:
    """A sweep, for either executor: preflight, register, start (the server's clock), run, summarize.

    A stop (SIGINT, SIGTERM) once the cells are running ends the sweep with every claim given back, and
    the summary names the signal, unless every cell was finished anyway (see ``summarize``); a stop
    before that raises ``Stopped``. ``on_start`` is called once the cells are registered, with the device
    type they train on. ``datasets``: what ``preflight`` loaded before the store was opened, reused.
    """
    cells = list(cells)
    with signals.stop_on_signals():
        loaded = preflight(cells, settings.options, datasets)
        dead, stopped_by = 0, None
        try:
            device_type = executor.open(loaded)
            register(cells, store)
            started = store.now()
            if on_start is not None:
                on_start(device_type)
            try:
                try:
                    dead = executor.run(cells, store, started, device_type, loaded)
                finally:
                    signals.finishing()  # a signal from here on does not cut the summary short
            except KeyboardInterrupt:
                stopped_by = signal.SIGINT  # stopped, every claim given back; requested() names the signal
        finally:
            executor.close()
        faults.point("sweep.finished")
        return summarize(cells, store, started, signals.requested() or stopped_by, dead_workers=dead,
                         retry_failed=settings.retry_failed)


def dry_run(cells: Sequence[Cell], url: str | None) -> list[tuple[Cell, str]]:
    """Each cell and its state in the store ("new" when absent), writing nothing."""
    from masbench.store import EmptyStore, open_for_reading, resolve_url
    from masbench.store.opening import parse_url
    from masbench.store.urls import mask_url

    resolved = resolve_url(url)
    parsed = parse_url(resolved, mask_url(resolved))  # a bad URL is refused here too, store or no store
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        if not Path(parsed.database).exists():
            return [(cell, "new") for cell in cells]
    try:
        store = open_for_reading(resolved)  # read-only: a dry run writes nothing, not even a new store's tables
    except EmptyStore:
        return [(cell, "new") for cell in cells]
    states = store.cell_states([cell.spec.key for cell in cells])
    store.close()
    return [(cell, states.get(cell.spec.key, {}).get("status", "new")) for cell in cells]
