"""Cells and how they run: one cell through the engine into the store, and sweeps of many.

``run_cell`` is what ``masbench run`` does and what every sweep worker does for
each of its cells: skip a finished cell, build the data and model (so that bad
input fails before anything is written), claim the cell atomically, train it
with its epochs going to the store, and record how it ended.

``run_sweep`` registers a grid's cells and works through them in one process
or several. Every cell is claimed in the database, so workers, and sweeps
started at once against the same database, never run the same cell; a claim
whose worker stopped beating is taken over, and the cell resumes from its
checkpoint.
"""

from __future__ import annotations

import os
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from masbench.benchmarks import Cell
from masbench.spec import ExecOptions, RunSpec
from masbench.engine import Callback, EpochMetrics, RunResult, checkpoint_path, describe_device, prepare, train
from masbench.environment import git_commit, hostname, versions
from masbench.errors import MasbenchError
from masbench.store import ClaimLost, Run, Store
from masbench.store.store import utcnow

HEARTBEAT_EVERY_S = 10.0
STALE_AFTER_S = 60.0
POLL_S = 2.0
FINAL = ("completed", "failed", "diverged")


def new_worker_id() -> str:
    return f"{hostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def run_values(spec: RunSpec) -> dict[str, Any]:
    """The identifying columns of a cell's row in ``runs``."""
    hparams = spec.optimizer_hparams()
    lambda_adam, lambda_sgd = spec.lambdas
    return dict(
        key=spec.key, config_key=spec.config_key, name=spec.name, benchmark=spec.benchmark, dataset=spec.dataset, model=spec.model,
        optimizer=spec.optimizer, lambda_adam=lambda_adam, lambda_sgd=lambda_sgd, lr=spec.lr,
        momentum=hparams.get("momentum", 0.0), weight_decay=hparams.get("weight_decay", 0.0),
        batch_size=spec.batch_size, epochs=spec.epochs, seed=spec.seed,
        config={"spec": spec.model_dump(mode="json"), "canonical": spec.canonical()},
    )


@dataclass
class CellOutcome:
    spec: RunSpec
    status: str  # completed, diverged, failed, skipped (finished before), busy (another worker has it), lost
    run_id: int | None = None
    result: RunResult | None = None
    message: str | None = None
    previous: Run | None = None  # the stored run, when the cell was skipped or busy


class StoreRecorder(Callback):
    """Writes each epoch to the store as it ends, and re-writes the epochs a checkpoint restored."""

    def __init__(self, store: Store, run_id: int, worker: str) -> None:
        self.store, self.run_id, self.worker = store, run_id, worker

    def on_resume(self, history: list[EpochMetrics]) -> None:
        # Idempotent upserts: epochs already stored are rewritten with the same values, missing ones appear.
        for metrics in history:
            self.store.record_epoch(self.run_id, self.worker, metrics.as_dict())

    def on_epoch(self, metrics: EpochMetrics) -> None:
        self.store.record_epoch(self.run_id, self.worker, metrics.as_dict())


class Heartbeat(Callback):
    """Refreshes the claim from a thread; the training loop stops at the next batch if the claim was lost."""

    def __init__(self, store: Store, run_id: int, worker: str, every: float = HEARTBEAT_EVERY_S) -> None:
        self.store, self.run_id, self.worker, self.every = store, run_id, worker, every
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{run_id}", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.every):
            try:
                if not self.store.heartbeat(self.run_id, self.worker):
                    self.lost = True
                    return
            except Exception:  # a passing database hiccup: try again at the next beat
                continue

    def on_batch(self, epoch: int, batch: int, batches: int) -> None:
        if self.lost:
            raise ClaimLost(f"run {self.run_id} was taken over by another worker")

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _finished(run: Run, force: bool, retry_failed_before: datetime | None) -> bool:
    if force:
        return False
    if run.status == "completed":
        return True
    if run.status in ("failed", "diverged"):
        return retry_failed_before is None or run.finished_at is None or _aware(run.finished_at) >= retry_failed_before
    return False


def _aware(moment: datetime) -> datetime:
    """SQLite gives back naive datetimes; the store writes UTC."""
    from datetime import timezone

    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def _held_elsewhere(run: Run, stale_after: float) -> bool:
    return (run.status == "running" and run.heartbeat_at is not None
            and _aware(run.heartbeat_at) >= utcnow() - timedelta(seconds=stale_after))


def run_cell(
    spec: RunSpec,
    store: Store,
    options: ExecOptions = ExecOptions(),
    *,
    callbacks: Sequence[Callback] = (),
    worker: str | None = None,
    force: bool = False,
    retry_failed_before: datetime | None = None,
    stale_after: float = STALE_AFTER_S,
    heartbeat_every: float = HEARTBEAT_EVERY_S,
    datasets: dict | None = None,
) -> CellOutcome:
    """Train ``spec`` unless the store has it finished; its epochs and final status go to ``store``.

    Bad input (missing data, an unknown model) raises ``MasbenchError`` before anything is written.
    A failure during training is recorded as ``failed`` with its traceback and returned, not raised.
    """
    dist = options.distributed
    if dist is not None and not dist.is_main:
        return _follow_main_rank(spec, options, callbacks, dist, datasets)
    worker = worker or new_worker_id()
    existing = store.get_run(spec.key)
    if existing is not None:
        if _finished(existing, force, retry_failed_before):
            return _decided(dist, CellOutcome(spec, "skipped", existing.id, message=f"already {existing.status}",
                                              previous=existing))
        if _held_elsewhere(existing, stale_after):
            return _decided(dist, CellOutcome(spec, "busy", existing.id, message=f"held by worker {existing.worker}",
                                              previous=existing))

    prepared = prepare(spec, options, datasets)
    run = store.ensure_run(run_values(spec))
    if not store.claim(run.id, worker, stale_after=stale_after, retry_failed_before=retry_failed_before, force=force):
        current = store.get_run(spec.key)
        status = "skipped" if current is not None and current.status in FINAL else "busy"
        return _decided(dist, CellOutcome(spec, status, run.id, previous=current,
                                          message=f"taken by worker {current.worker}" if current else None))
    from masbench.engine import CheckpointOwner

    owner = CheckpointOwner(store.store_id, run.id)  # so that no other store's run adopts this one's checkpoint
    if force:
        store.reset(run.id, worker)
        checkpoint_path(spec, options, owner).unlink(missing_ok=True)
    _decided(dist, None)

    try:
        with Heartbeat(store, run.id, worker, heartbeat_every) as heartbeat:
            config = run_values(spec)["config"]
            config["execution"] = {
                "device": str(prepared.device), "amp_bf16": prepared.amp, "channels_last": prepared.channels_last,
                "compile": options.compile,
            }
            store.start(run.id, worker, host=hostname(), device=describe_device(prepared.device),
                        versions=versions(), git_commit=git_commit(), config=config)
            result = train(spec, options, [StoreRecorder(store, run.id, worker), heartbeat, *callbacks],
                           prepared=prepared, owner=owner)
        store.finish(run.id, worker, result.status, result.error)
        return CellOutcome(spec, result.status, run.id, result, result.error)
    except ClaimLost as error:
        return CellOutcome(spec, "lost", run.id, message=str(error))
    except (KeyboardInterrupt, SystemExit):
        store.release(run.id, worker)
        raise
    except Exception as error:
        summary = f"{type(error).__name__}: {' '.join(str(error).split())}"
        store.finish(run.id, worker, "failed", f"{summary}\n{traceback.format_exc()}")
        return CellOutcome(spec, "failed", run.id, message=summary)


def _decided(dist, outcome: CellOutcome | None) -> CellOutcome | None:
    """Under DDP, rank 0 tells the other ranks whether to train (None) or how the cell ended."""
    if dist is not None:
        dist.broadcast(None if outcome is None else outcome.status)
    return outcome


def _follow_main_rank(spec: RunSpec, options: ExecOptions, callbacks: Sequence[Callback], dist,
                      datasets: dict | None) -> CellOutcome:
    """A DDP rank other than 0: train when rank 0 has claimed the cell; rank 0 alone writes anything."""
    status = dist.broadcast()
    if status is not None:
        return CellOutcome(spec, status)
    result = train(spec, options, list(callbacks), prepared=prepare(spec, options, datasets))
    return CellOutcome(spec, result.status, result=result, message=result.error)


# --- sweeps ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepSettings:
    """How a sweep runs its cells; none of it changes a cell's numbers."""

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


def preflight(cells: Sequence[Cell], options: ExecOptions) -> dict:
    """Load each distinct data set once, so that missing or broken data fails before anything is written.

    Returns the loaded sets (keyed by ``data_cache_key``), for a worker in this process to reuse.
    """
    from masbench.engine import data_cache_key, load_data, resolve_device

    resolve_device(options.device)
    datasets: dict = {}
    for cell in cells:
        opts = cell_options(cell, options)
        key = data_cache_key(cell.spec, opts)
        if key not in datasets:
            datasets[key] = load_data(cell.spec, opts)
    return datasets


def register(cells: Sequence[Cell], store: Store) -> None:
    """A pending row per cell, so that the store knows the whole plan (reports flag what is missing)."""
    for cell in cells:
        store.ensure_run(run_values(cell.spec))


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

    A cell held by a live worker elsewhere is passed over and looked at again after ``settings.poll``
    seconds; if that worker dies, its claim goes stale and this loop takes the cell over.
    """
    worker = worker or new_worker_id()
    order = list(cells[offset:]) + list(cells[:offset])
    retry_before = started if settings.retry_failed else None
    datasets = {} if datasets is None else datasets
    outcomes: list[CellOutcome] = []
    while True:
        waiting = False
        for cell in order:
            outcome = run_cell(cell.spec, store, cell_options(cell, settings.options), worker=worker,
                               callbacks=settings.callbacks, retry_failed_before=retry_before,
                               stale_after=settings.stale_after, heartbeat_every=settings.heartbeat_every,
                               datasets=datasets)
            if outcome.status in ("busy", "lost"):
                waiting = True
                continue
            if outcome.status != "skipped":
                outcomes.append(outcome)
                if on_outcome is not None:
                    on_outcome(outcome)
        if not waiting:
            return outcomes
        time.sleep(settings.poll)


def _worker_process(cells: list[Cell], url: str, settings: SweepSettings, started: datetime, index: int,
                    cuda_device: str | None) -> None:
    """Entry point of a worker process (spawned: it starts from scratch and opens its own store)."""
    if cuda_device is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = cuda_device
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // settings.workers))
    store = Store(url)
    try:
        work_through(cells, store, settings, started=started, offset=index * len(cells) // settings.workers)
    except KeyboardInterrupt:
        pass
    finally:
        store.close()


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


@dataclass
class SweepSummary:
    total: int
    states: dict[str, dict[str, Any]]  # key -> the stored state of the cell
    ran: int  # cells finished while this sweep ran
    interrupted: bool = False
    dead_workers: int = 0  # worker processes that died (their cells were taken over by the others)

    def count(self, status: str) -> int:
        return sum(1 for s in self.states.values() if s["status"] == status)

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [s for s in self.states.values() if s["status"] == "failed"]


def run_sweep(
    cells: Sequence[Cell],
    store: Store,
    settings: SweepSettings,
    *,
    on_start: Callable[[], None] | None = None,
) -> SweepSummary:
    """Run every cell not yet finished, in ``settings.workers`` processes (1: in this one)."""
    cells = list(cells)
    loaded = preflight(cells, settings.options)
    register(cells, store)
    started = utcnow()
    if on_start is not None:
        on_start()
    interrupted = False
    dead = 0
    if settings.workers <= 1:
        try:
            work_through(cells, store, settings, started=started, datasets=loaded)
        except KeyboardInterrupt:
            interrupted = True
    else:
        import multiprocessing

        loaded.clear()  # each worker process loads its own copy; the parent need not hold one meanwhile
        context = multiprocessing.get_context("spawn")
        processes = [
            context.Process(target=_worker_process, name=f"masbench-worker-{i}",
                            args=(cells, store.url, settings, started, i, gpu))
            for i, gpu in enumerate(gpu_assignment(settings.workers))
        ]
        for process in processes:
            process.start()
        try:
            for process in processes:
                process.join()
        except KeyboardInterrupt:
            interrupted = True
            for process in processes:
                process.join(timeout=30)
            for process in processes:
                if process.is_alive():
                    process.terminate()
        dead = sum(1 for process in processes if process.exitcode not in (0, None))
    states = store.cell_states([cell.spec.key for cell in cells])
    ran = sum(1 for s in states.values()
              if s["status"] in FINAL and s["finished_at"] is not None and _aware(s["finished_at"]) >= started)
    return SweepSummary(len(cells), states, ran, interrupted, 0 if interrupted else dead)


# --- Ray ------------------------------------------------------------------------------------------------


def _ray_cell(cell: Cell, url: str, settings: SweepSettings, started: datetime) -> str:
    """A Ray task: one cell, claimed like any worker's. A cell held by a live worker is waited for; if that
    worker dies (a killed Ray worker, a crashed node), its claim goes stale and this task takes it over."""
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
    preflight(cells, settings.options)
    try:
        ray.init(address=address, include_dashboard=False, logging_level="warning", log_to_driver=True,
                 configure_logging=True)
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise MasbenchError(f"cannot reach the Ray cluster at {address!r}: {' '.join(str(error).split())[:200]}") from None
    try:
        nodes = [node for node in ray.nodes() if node.get("Alive")]
        if len(nodes) > 1 and store.is_sqlite:
            raise MasbenchError(
                f"the Ray cluster has {len(nodes)} nodes, which cannot share the SQLite file {store.masked_url}: "
                f"give --db a PostgreSQL URL (postgresql+psycopg://USER:PASSWORD@HOST/DB) that every node reaches"
            )
        resources = {"num_gpus": 1} if ray.cluster_resources().get("GPU", 0) >= 1 else {"num_cpus": 1}
        register(cells, store)
        started = utcnow()
        if on_start is not None:
            on_start()
        # Paths the tasks see must not depend on their working directory.
        options = settings.options
        options = replace(options, checkpoint_dir=Path(options.checkpoint_dir).absolute(),
                          data_dir=None if options.data_dir is None else Path(options.data_dir).absolute())
        task_settings = replace(settings, options=options)
        task = ray.remote(max_retries=3)(_ray_cell).options(**resources)
        refs = [task.remote(cell, store.url, task_settings, started) for cell in cells]
        interrupted = False
        try:
            ray.get(refs)
        except KeyboardInterrupt:
            # Each task's KeyboardInterrupt makes its run_cell release the claim.
            interrupted = True
            for ref in refs:
                ray.cancel(ref, force=False)
            ray.wait(refs, num_returns=len(refs), timeout=30)
        except ray.exceptions.RayError as error:
            raise MasbenchError(f"the Ray sweep failed: {' '.join(str(error).split())[:300]}") from None
    finally:
        ray.shutdown()
    states = store.cell_states([cell.spec.key for cell in cells])
    ran = sum(1 for s in states.values()
              if s["status"] in FINAL and s["finished_at"] is not None and _aware(s["finished_at"]) >= started)
    return SweepSummary(len(cells), states, ran, interrupted)


def dry_run(cells: Sequence[Cell], url: str | None) -> list[tuple[Cell, str]]:
    """Each cell and its state in the store ("new" when absent), writing nothing."""
    from sqlalchemy.engine import make_url

    from masbench.store import resolve_url

    resolved = resolve_url(url)
    try:
        parsed = make_url(resolved)
    except Exception:
        parsed = None
    if parsed is not None and parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        if not Path(parsed.database).exists():
            return [(cell, "new") for cell in cells]
    store = Store(resolved, writable=False)
    states = store.cell_states([cell.spec.key for cell in cells])
    return [(cell, states.get(cell.spec.key, {}).get("status", "new")) for cell in cells]


__all__ = ["CellOutcome", "Heartbeat", "StoreRecorder", "SweepSettings", "SweepSummary", "dry_run",
           "preflight", "register", "run_cell", "run_sweep", "run_values", "work_through"]
