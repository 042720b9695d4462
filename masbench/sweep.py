"""Cells and how they run: one cell through the engine into the store, claimed and heart-beaten.

``run_cell`` is what ``masbench run`` does and what every sweep worker does for
each of its cells: skip a completed cell, build the data and model (so that bad
input fails before anything is written), claim the cell atomically, train it
with its epochs going to the store, and record how it ended.
"""

from __future__ import annotations

import os
import threading
import traceback
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from masbench.config import ExecOptions, RunSpec
from masbench.engine import Callback, EpochMetrics, RunResult, checkpoint_path, describe_device, prepare, train
from masbench.environment import git_commit, hostname, versions
from masbench.store import ClaimLost, Run, Store

HEARTBEAT_EVERY_S = 10.0
STALE_AFTER_S = 60.0


def new_worker_id() -> str:
    return f"{hostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def run_values(spec: RunSpec) -> dict[str, Any]:
    """The identifying columns of a cell's row in ``runs``."""
    hparams = spec.optimizer_hparams()
    lambda_adam, lambda_sgd = spec.lambdas
    return dict(
        key=spec.key, name=spec.name, benchmark=spec.benchmark, dataset=spec.dataset, model=spec.model,
        optimizer=spec.optimizer, lambda_adam=lambda_adam, lambda_sgd=lambda_sgd, lr=spec.lr,
        momentum=hparams.get("momentum", 0.0), weight_decay=hparams.get("weight_decay", 0.0),
        batch_size=spec.batch_size, epochs=spec.epochs, seed=spec.seed,
        config={"spec": spec.model_dump(mode="json"), "canonical": spec.canonical()},
    )


@dataclass
class CellOutcome:
    spec: RunSpec
    status: str  # completed, diverged, failed, skipped (done before), busy (another worker has it), lost
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


def run_cell(
    spec: RunSpec,
    store: Store,
    options: ExecOptions = ExecOptions(),
    *,
    callbacks: Sequence[Callback] = (),
    worker: str | None = None,
    force: bool = False,
    retry_failed: bool = False,
    stale_after: float = STALE_AFTER_S,
    heartbeat_every: float = HEARTBEAT_EVERY_S,
) -> CellOutcome:
    """Train ``spec`` unless the store has it already; its epochs and final status go to ``store``.

    Bad input (missing data, an unknown model) raises ``MasbenchError`` before anything is written.
    A failure during training is recorded as ``failed`` with its traceback and returned, not raised.
    """
    worker = worker or new_worker_id()
    existing = store.get_run(spec.key)
    if existing is not None and not force:
        if existing.status == "completed" or (existing.status in ("failed", "diverged") and not retry_failed):
            return CellOutcome(spec, "skipped", existing.id, message=f"already {existing.status}", previous=existing)

    prepared = prepare(spec, options)
    run = store.ensure_run(run_values(spec))
    if not store.claim(run.id, worker, stale_after=stale_after, retry_failed=retry_failed, force=force):
        current = store.get_run(spec.key)
        return CellOutcome(spec, "busy", run.id, message=f"held by worker {current.worker}" if current else None,
                           previous=current)
    if force:
        store.reset(run.id, worker)
        checkpoint_path(spec, options).unlink(missing_ok=True)

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
                           prepared=prepared)
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
