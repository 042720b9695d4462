"""One cell through the engine and into the store.

``run_cell`` is what ``masbench run`` does and what every sweep worker does for
each of its cells: skip a finished cell, build the data and model (so that bad
input fails before anything is written), claim the cell atomically under a
lease, train it with its epochs going to the store, and record how it ended.
A stop (Ctrl-C, SIGTERM) gives the claim back and never records ``failed``; nor does a full disk
(``DiskFull``, raised once the claim is given back, or left to lapse when the database's disk is full).
"""

from __future__ import annotations

import os
import threading
import traceback
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from masbench.engine import (
    Callback,
    CheckpointOwner,
    EpochMetrics,
    RunResult,
    checkpoint_path,
    describe_device,
    prepare,
    train_one,
)
from masbench.environment import git_commit, hostname, versions
from masbench.errors import DiskFull
from masbench.spec import RunSpec
from masbench.engine import ExecOptions
from masbench.store import ClaimLost, Run, Store
from masbench.store.leases import DEFAULT_LEASE_S, as_utc
from masbench.sweep import stopping
from masbench.urls import scrub

HEARTBEAT_EVERY_S = 10.0
STALE_AFTER_S = DEFAULT_LEASE_S  # a worker's lease: how long its claim outlives its last heartbeat
FINAL = ("completed", "failed", "diverged")


def new_worker_id() -> str:
    return f"{hostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def run_values(spec: RunSpec) -> dict[str, Any]:
    """The identifying columns of a cell's row in ``runs``."""
    hparams = spec.optimizer_hparams()
    lambda_adam, lambda_sgd = spec.lambdas
    return dict(
        key=spec.key, config_key=spec.config_key, name=spec.name, benchmark=spec.benchmark, dataset=spec.dataset,
        model=spec.model, optimizer=spec.optimizer, lambda_adam=lambda_adam, lambda_sgd=lambda_sgd, lr=spec.lr,
        # A mix leaves weight_decay to each component (None): the column, not nullable, says 0 as for MAS.
        momentum=hparams.get("momentum", 0.0), weight_decay=hparams.get("weight_decay") or 0.0,
        batch_size=spec.batch_size, epochs=spec.epochs, seed=spec.seed,
        config={"spec": spec.model_dump(mode="json"), "canonical": spec.canonical()},
        # Left out for other optimizers: the JSON column would store None as the JSON text null, not NULL.
        **({"weights": spec.weights} if spec.weights is not None else {}),
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
    """Writes each epoch to the store as it ends (renewing the lease), and re-writes the epochs a checkpoint restored."""

    def __init__(self, store: Store, run_id: int, worker: str, stale_after: float = STALE_AFTER_S) -> None:
        self.store, self.run_id, self.worker, self.stale_after = store, run_id, worker, stale_after

    def on_resume(self, history: list[EpochMetrics]) -> None:
        # Idempotent upserts: epochs already stored are rewritten with the same values, missing ones appear.
        for metrics in history:
            self.store.record_epoch(self.run_id, self.worker, metrics.as_dict(), self.stale_after)

    def on_epoch(self, metrics: EpochMetrics) -> None:
        self.store.record_epoch(self.run_id, self.worker, metrics.as_dict(), self.stale_after)


class Heartbeat(Callback):
    """Renews the lease from a thread; the training loop stops at the next batch if the claim was lost."""

    def __init__(self, store: Store, run_id: int, worker: str, every: float = HEARTBEAT_EVERY_S,
                 stale_after: float = STALE_AFTER_S) -> None:
        self.store, self.run_id, self.worker, self.every, self.stale_after = store, run_id, worker, every, stale_after
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{run_id}", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.every):
            try:
                if not self.store.heartbeat(self.run_id, self.worker, self.stale_after):
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
    return not force and finished(run.status, run.finished_at, retry_failed_before)


def finished(status: str, finished_at: datetime | None, retry_failed_before: datetime | None) -> bool:
    """Done for this sweep: completed, or failed/diverged and not to be retried (both times are the server's)."""
    if status == "completed":
        return True
    if status in ("failed", "diverged"):
        return retry_failed_before is None or finished_at is None or as_utc(finished_at) >= retry_failed_before
    return False


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

    ``stale_after``: this worker's lease, in seconds (another worker may take the cell over once this one
    has not renewed it for that long, by the database server's clock). ``retry_failed_before``: a time of
    the server's clock (``Store.now``). Bad input (missing data, an unknown model) raises ``MasbenchError``
    before anything is written. A failure during training is recorded as ``failed`` with its traceback and
    returned, not raised; a stop (KeyboardInterrupt, SIGTERM) releases the claim and is raised.
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
        if existing.status == "running" and store.is_held(existing.id):
            return _decided(dist, CellOutcome(spec, "busy", existing.id, message=f"held by worker {existing.worker}",
                                              previous=existing))

    prepared = prepare([spec], options, datasets=datasets)
    run = store.ensure_run(run_values(spec))
    try:
        if not store.claim(run.id, worker, stale_after=stale_after, retry_failed_before=retry_failed_before,
                           force=force):
            current = store.get_run(spec.key)
            status = "skipped" if current is not None and current.status in FINAL else "busy"
            return _decided(dist, CellOutcome(spec, status, run.id, previous=current,
                                              message=f"taken by worker {current.worker}" if current else None))
        return _train_claimed(spec, store, options, run.id, worker, prepared, callbacks, force, stale_after,
                              heartbeat_every)
    except (KeyboardInterrupt, SystemExit):
        # A stop anywhere from the claim on (even inside the claim's own commit) gives the claim back.
        store.release(run.id, worker)
        raise


def _train_claimed(spec: RunSpec, store: Store, options: ExecOptions, run_id: int, worker: str, prepared,
                   callbacks: Sequence[Callback], force: bool, stale_after: float,
                   heartbeat_every: float) -> CellOutcome:
    dist = options.distributed
    owner = CheckpointOwner(store.store_id, run_id)  # so that no other store's run adopts this one's checkpoint
    if force:
        store.reset(run_id, worker)
        checkpoint_path(spec, options, owner).unlink(missing_ok=True)
    _decided(dist, None)
    try:
        with Heartbeat(store, run_id, worker, heartbeat_every, stale_after) as heartbeat:
            config = run_values(spec)["config"]
            config["execution"] = {
                "device": str(prepared.device), "amp_bf16": prepared.amp, "channels_last": prepared.channels_last,
                "compile": options.compile,
            }
            store.start(run_id, worker, host=hostname(), device=describe_device(prepared.device),
                        versions=versions(), git_commit=git_commit(), config=config)
            callbacks = [StoreRecorder(store, run_id, worker, stale_after), heartbeat, *callbacks]
            result = train_one(spec, options, callbacks, prepared=prepared, owner=owner)
        store.finish(run_id, worker, result.status, result.error)
        return CellOutcome(spec, result.status, run_id, result, result.error)
    except ClaimLost as error:
        return CellOutcome(spec, "lost", run_id, message=str(error))
    except DiskFull as error:
        raise _given_back(store, run_id, worker, stale_after, error) from None
    except Exception as error:
        if stopping.interrupted(error):
            # Cut short by the stop (an interrupt inside torch.save comes back as a RuntimeError): not a failure.
            raise KeyboardInterrupt from error
        return record_failure(spec, store, run_id, worker, error, traceback.format_exc())


def record_failure(spec: RunSpec, store: Store, run_id: int, worker: str, error: Exception, trace: str,
                   note: str = "") -> CellOutcome:
    """Record the run ``failed`` with its error and traceback, scrubbed: a driver's error may quote the
    database URL, password and all."""
    summary = scrub(f"{type(error).__name__}: {' '.join(str(error).split())}{note}", store.url)
    store.finish(run_id, worker, "failed", f"{summary}\n{scrub(trace, store.url)}")
    return CellOutcome(spec, "failed", run_id, message=summary)


def _given_back(store: Store, run_id: int, worker: str, stale_after: float, error: DiskFull) -> DiskFull:
    """A full disk is not the cell's failure: its claim is given back, so that a rerun resumes it.

    When the database's own disk is full, the release cannot be written either: the claim then lapses
    with its lease. Either way the checkpoint of the last whole epoch is intact.
    """
    try:
        store.release(run_id, worker)
    except DiskFull:
        return DiskFull(f"{error} (run {run_id} stays claimed until its {stale_after:g} s lease expires by the "
                        f"database server's clock; after that a rerun resumes it from its last checkpoint)")
    return DiskFull(f"{error} (run {run_id} is pending again and resumes from its last checkpoint)")


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
    result = train_one(spec, options, list(callbacks), prepared=prepare([spec], options, datasets=datasets))
    return CellOutcome(spec, result.status, result=result, message=result.error)
