"""One unit of work, K >= 1 cells, decided, claimed, trained, recorded and given back: ``run_unit``.

``run_unit`` is what ``masbench run`` does for its cell and what every sweep worker, local or a Ray task,
does for each unit of its sweep: a finished cell is skipped and one held by a live worker is left to it;
the rest are prepared (so that bad input fails before anything is written), claimed under a lease, trained
in one pass of the engine (a pack when K > 1), their epochs going to the store as they end, and each
member's own ending is recorded (completed, diverged, pruned, failed, lost). Reports, ``compare`` and the gate
cannot tell a packed run from an unpacked one; only its execution config says ``packed: K``.

The members share their store work (``UnitRecorder``): one statement claims them, one heartbeat renews
their leases, one transaction writes an epoch's rows of all of them. A stop (Ctrl-C, SIGTERM) gives every
claim back and never records ``failed``; nor does a full disk (``DiskFull``, raised once the claims are
given back, or left to lapse when the database's disk is full).
"""

from __future__ import annotations

import logging
import os
import threading
import traceback
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import OperationalError

from masbench import signals
from masbench.engine import (
    Callback,
    CheckpointOwner,
    EpochMetrics,
    ExecOptions,
    Member,
    MemberOutcome,
    Prepared,
    RunResult,
    Unpackable,
    can_pack,
    checkpoint_path,
    describe_device,
    pack_key,
    prepare,
    train,
)
from masbench.engine.environment import git_commit, hostname, versions
from masbench.errors import DiskFull
from masbench.spec import RunSpec
from masbench.store import ClaimLost, Run, Store
from masbench.store.leases import DEFAULT_LEASE_S, FINAL, finished
from masbench.store.urls import scrub
from masbench.text.shown import one_line

HEARTBEAT_EVERY_S = 10.0
STALE_AFTER_S = DEFAULT_LEASE_S  # a worker's lease: how long its claim outlives its last heartbeat

log = logging.getLogger(__name__)


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
    status: str  # completed, diverged, pruned, failed, skipped (finished before), busy (another worker has it), lost
    run_id: int | None = None
    result: RunResult | None = None
    message: str | None = None
    previous: Run | None = None  # the stored run, when the cell was skipped or busy


class UnitRecorder:
    """The store work a unit's members share: their epochs, their leases, their heartbeat.

    Each member gets its own callback (``member``). An epoch's rows are written in one transaction once
    every member that trained in the epoch has reported it, which the engines do before they write the
    epoch's checkpoints (so a crash in between only repeats an epoch); the lease of every member still held
    is renewed by that write and by one heartbeat thread. A member whose claim is lost stops at its next
    batch (``ClaimLost``). What is left unwritten (a member set aside before it reported) is written at the
    next batch or by ``flush``; a checkpoint that got ahead of the store is re-written at resume
    (``on_resume``), and rows are upserts, so nothing is lost and nothing is written twice.

    A heartbeat that fails with a database error (a locked, busy or unreachable database, a full disk)
    is logged and tried again at the next beat; any other error is a bug, raised in the training thread.
    """

    def __init__(self, store: Store, worker: str, run_ids: Sequence[int], stale_after: float = STALE_AFTER_S,
                 heartbeat_every: float = HEARTBEAT_EVERY_S) -> None:
        self.store, self.worker, self.stale_after, self.every = store, worker, stale_after, heartbeat_every
        self.run_ids = list(run_ids)
        self.lost: set[int] = set()
        self.failure: Exception | None = None  # a bug in the heartbeat, raised at the next batch
        self._pending: dict[int, EpochMetrics] = {}
        self._training: set[int] = set()  # the members that batched in the epoch being trained
        self._epoch: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{self.run_ids[:3]}", daemon=True)

    def member(self, run_id: int) -> Callback:
        return _MemberRecorder(self, run_id)

    def _beat(self) -> None:
        try:
            while not self._stop.wait(self.every):
                ids = [run_id for run_id in self.run_ids if run_id not in self.lost]
                if not ids:
                    return
                try:
                    kept = self.store.renew(ids, self.worker, self.stale_after)
                except (OperationalError, DiskFull) as error:  # a passing database hiccup: try at the next beat
                    log.warning("heartbeat of runs %s failed, trying again in %g s: %s", ids, self.every,
                                one_line(error, 300))
                    continue
                self.lost |= set(ids) - kept
        except Exception as error:  # not swallowed: the training thread raises it at its next batch
            self.failure = error

    def batched(self, run_id: int, epoch: int) -> None:
        if self._pending and epoch != self._epoch:
            self.flush()  # a member set aside before it reported: the others' rows go now
        if epoch != self._epoch:
            self._epoch, self._training = epoch, set()
        self._training.add(run_id)
        if self.failure is not None:
            raise RuntimeError(f"the heartbeat of runs {self.run_ids} failed") from self.failure
        if run_id in self.lost:
            raise ClaimLost(f"run {run_id} was taken over by another worker")

    def reported(self, run_id: int, metrics: EpochMetrics) -> None:
        self._pending[run_id] = metrics
        if self._training <= self._pending.keys():
            self.flush()
        if run_id in self.lost:
            raise ClaimLost(f"run {run_id} is no longer held by worker {self.worker}")

    def write(self, rows: list[tuple[int, EpochMetrics]]) -> None:
        """Write ``rows`` now, in one transaction; the runs no longer held join ``lost``."""
        self.lost |= self.store.record_epochs([(run_id, m.as_dict()) for run_id, m in rows], self.worker,
                                              self.stale_after)

    def flush(self) -> None:
        """Write the rows reported and not yet written (kept for a next try if the write fails)."""
        rows, self._pending = list(self._pending.items()), {}
        if rows:
            try:
                self.write(rows)
            except BaseException:
                self._pending = dict(rows) | self._pending
                raise

    def __enter__(self) -> UnitRecorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class _MemberRecorder(Callback):
    """One member's view of its unit's ``UnitRecorder``."""

    def __init__(self, recorder: UnitRecorder, run_id: int) -> None:
        self.recorder, self.run_id = recorder, run_id

    def on_resume(self, history: list[EpochMetrics]) -> None:
        # Idempotent upserts: epochs already stored are rewritten with the same values, missing ones appear.
        self.recorder.write([(self.run_id, metrics) for metrics in history])
        if self.run_id in self.recorder.lost:
            raise ClaimLost(f"run {self.run_id} is no longer held by worker {self.recorder.worker}")

    def on_batch(self, epoch: int, batch: int, batches: int) -> None:
        self.recorder.batched(self.run_id, epoch)

    def on_epoch(self, metrics: EpochMetrics) -> None:
        self.recorder.reported(self.run_id, metrics)


def run_cell(spec: RunSpec, store: Store, options: ExecOptions = ExecOptions(), **settings: Any) -> CellOutcome:
    """``run_unit`` of one cell (``masbench run``): its ``CellOutcome``."""
    return run_unit([spec], store, options, **settings)[0]


def run_unit(
    specs: Sequence[RunSpec],
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
    refused: dict | None = None,
) -> list[CellOutcome]:
    """Train the cells of ``specs`` the store does not have finished, as one pass of the engine; one
    ``CellOutcome`` per cell, in order.

    ``stale_after``: this worker's lease, in seconds (another worker may take a cell over once this one
    has not renewed it for that long, by the database server's clock). ``retry_failed_before``: a time of
    the server's clock (``Store.now``). Bad input (missing data, an unknown model) raises ``MasbenchError``
    before anything is written. A failure during training is recorded as ``failed`` with its traceback and
    returned, not raised. A stop (KeyboardInterrupt, SIGTERM) gives every claim back and is raised; a full
    disk gives them back and raises ``DiskFull``. Cells that cannot share a pack train one by one;
    ``refused``: pack keys (``pack_key``) whose models the engine refused, with why, filled in here so
    that a sweep says it once and trains the later cells of that kind one by one at once.
    """
    dist = options.distributed
    if dist is not None and not dist.is_main:
        return [_follow_main_rank(specs[0], options, callbacks, dist, datasets)]
    worker = worker or new_worker_id()
    refused = {} if refused is None else refused
    outcomes = _decided_before(specs, store, force, retry_failed_before)
    if dist is not None and outcomes:
        dist.broadcast(outcomes[specs[0].key].status)  # DDP: rank 0 tells the other ranks how the cell ended
    common = dict(callbacks=callbacks, worker=worker, force=force, retry_failed_before=retry_failed_before,
                  stale_after=stale_after, heartbeat_every=heartbeat_every, datasets=datasets)
    todo = [spec for spec in specs if spec.key not in outcomes]
    if len(todo) > 1 and pack_key(todo[0]) in refused:
        groups = [[spec] for spec in todo]
    else:
        groups = [todo] if todo else []
    while groups:
        group = groups.pop(0)
        try:
            _run_group(group, store, options, outcomes, **common)
        except (Unpackable, _Refused) as error:  # Unpackable: before anything was written, as planned
            left = [spec for spec in group if spec.key not in outcomes]
            if isinstance(error, _Refused):
                refused[pack_key(group[0])] = str(error)
                for callback in callbacks:
                    callback.on_warning(f"{len(left)} runs train unpacked: {error}")
            groups = [[spec] for spec in left] + groups
    return [outcomes[spec.key] for spec in specs]


def _decided_before(specs: Sequence[RunSpec], store: Store, force: bool,
                    retry_failed_before: datetime | None) -> dict[str, CellOutcome]:
    """The cells not to train: ``skipped`` (finished) or ``busy`` (held by a live worker), by key."""
    existing = store.get_runs([spec.key for spec in specs])
    held = store.held([run.id for run in existing.values() if run.status == "running"])
    outcomes = {}
    for spec in specs:
        run = existing.get(spec.key)
        if run is None:
            continue
        if not force and finished(run.status, run.finished_at, retry_failed_before):
            outcomes[spec.key] = CellOutcome(spec, "skipped", run.id, message=f"already {run.status}", previous=run)
        elif run.id in held:
            outcomes[spec.key] = CellOutcome(spec, "busy", run.id, message=f"held by worker {run.worker}",
                                             previous=run)
    return outcomes


def _run_group(specs: list[RunSpec], store: Store, options: ExecOptions, outcomes: dict[str, CellOutcome], *,
               callbacks: Sequence[Callback], worker: str, force: bool, retry_failed_before: datetime | None,
               stale_after: float, heartbeat_every: float, datasets: dict | None) -> None:
    """Prepare, claim and train ``specs`` as one pass; their outcomes go into ``outcomes``.

    Raises ``Unpackable`` when they cannot share a pack (as planned), and ``_Refused`` when the engine refused
    their model (its fuser), both before anything is written; ``_Refused`` from training gives every claim back.
    """
    try:
        prepared = prepare(specs, options, datasets=datasets)
    except Unpackable as error:
        if len(specs) > 1 and can_pack(specs) is None and options.distributed is None:
            raise _Refused(str(error)) from None  # the model's refusal (the fuser's), which planning cannot see
        raise
    existing = store.get_runs([spec.key for spec in specs])
    run_ids = {spec.key: (existing.get(spec.key) or store.ensure_run(run_values(spec))).id for spec in specs}
    try:
        claimed = store.claim_many(list(run_ids.values()), worker, stale_after=stale_after,
                                   retry_failed_before=retry_failed_before, force=force)
        if len(claimed) < len(specs):
            current = store.get_runs([spec.key for spec in specs if run_ids[spec.key] not in claimed])
            for spec in specs:
                if run_ids[spec.key] not in claimed:
                    run = current.get(spec.key)
                    status = "skipped" if run is not None and run.status in FINAL else "busy"
                    outcomes[spec.key] = CellOutcome(spec, status, run_ids[spec.key], previous=run,
                                                     message=f"taken by worker {run.worker}" if run else None)
        held = [(spec, run_ids[spec.key]) for spec in specs if run_ids[spec.key] in claimed]
        if options.distributed is not None:
            options.distributed.broadcast(None if held else outcomes[specs[0].key].status)
        if not held:
            return
        if force:
            for spec, run_id in held:
                store.reset(run_id, worker)
                checkpoint_path(spec, options, CheckpointOwner(store.store_id, run_id)).unlink(missing_ok=True)
        outcomes |= _train_held(held, store, options, prepared, worker, callbacks, stale_after, heartbeat_every,
                                datasets)
    except Unpackable as error:
        store.release(list(run_ids.values()), worker)
        raise _Refused(str(error)) from None
    except (KeyboardInterrupt, SystemExit):
        # A stop anywhere from the claim on (even inside the claim's own commit) gives every claim back.
        store.release(list(run_ids.values()), worker)
        raise


class _Refused(Exception):
    """The engine refused to pack the cells' model (its fuser): why. Raised before anything is written."""


def _train_held(held: list[tuple[RunSpec, int]], store: Store, options: ExecOptions, prepared, worker: str,
                callbacks: Sequence[Callback], stale_after: float, heartbeat_every: float,
                datasets: dict | None) -> dict[str, CellOutcome]:
    """Start and train the claimed cells in one pass, then record how each ended."""
    execution, device = execution_config(prepared, len(held))
    environment = dict(host=hostname(), device=device, git_commit=git_commit())
    outcomes: dict[str, CellOutcome] = {}
    ids = [run_id for _, run_id in held]
    try:
        with UnitRecorder(store, worker, ids, stale_after, heartbeat_every) as recorder:
            lost = store.start_many({run_id: {**run_values(spec)["config"], "execution": execution}
                                     for spec, run_id in held}, worker,
                                    per_run={run_id: {"versions": versions([spec])} for spec, run_id in held},
                                    **environment)
            members, run_ids = [], {}
            for spec, run_id in held:
                if run_id in lost:
                    outcomes[spec.key] = CellOutcome(spec, "lost", run_id,
                                                     message=f"run {run_id} was claimed by another worker")
                    continue
                own = [recorder.member(run_id), *(callback.for_cell(spec) for callback in callbacks)]
                members.append(Member(spec, own, CheckpointOwner(store.store_id, run_id)))
                run_ids[spec.key] = run_id
            if [m.spec.key for m in members] != [m.spec.key for m in prepared.members]:
                # Some cells were taken by another worker since: the pack is what this worker holds.
                prepared = prepare([m.spec for m in members], options, datasets=datasets) if members else None
            results = train(members, options, prepared=prepared) if members else []
            recorder.flush()
    except DiskFull as error:
        raise _given_back(store, ids, worker, stale_after, error) from None
    except Unpackable:
        raise
    except Exception as error:
        if signals.interrupted(error):
            # Cut short by the stop (an interrupt inside torch.save comes back as a RuntimeError): not a failure.
            raise KeyboardInterrupt from error
        trace = traceback.format_exc()
        note = f" (in a pack of {len(members)})" if len(members) > 1 else ""
        for member in members:  # the pass failed as a whole: each member with its error
            key = member.spec.key
            outcomes[key] = _failed(member.spec, store, run_ids[key], worker, error, trace, note)
        return outcomes
    full: list[tuple[int, DiskFull]] = []
    for result in results:
        outcome = _finish(result, run_ids[result.spec.key], store, worker)
        if isinstance(outcome, DiskFull):
            full.append((run_ids[result.spec.key], outcome))
        else:
            outcomes[result.spec.key] = outcome
    if full:  # the others are recorded; these are given back, and the sweep stops with one line
        raise _given_back(store, [run_id for run_id, _ in full], worker, stale_after, full[0][1]) from None
    return outcomes


def execution_config(prepared: Prepared, size: int) -> tuple[dict[str, Any], str]:
    """How a unit of ``size`` cells executes, as its runs' config records it (``packed: K`` for a pack), and
    its device, described."""
    execution = {"device": str(prepared.device), "amp_bf16": prepared.amp, "channels_last": prepared.channels_last,
                 "compile": prepared.options.compile}
    if size > 1:
        execution["packed"] = size
    return execution, describe_device(prepared.device)


def record_failure(spec: RunSpec, store: Store, run_id: int, worker: str, error: Exception, trace: str,
                   note: str = "") -> CellOutcome:
    """Record the run ``failed`` with its error and traceback, scrubbed: a driver's error may quote the
    database URL, password and all."""
    summary = scrub(f"{type(error).__name__}: {one_line(error, limit=None)}{note}", store.url)
    store.finish(run_id, worker, "failed", f"{summary}\n{scrub(trace, store.url)}")
    return CellOutcome(spec, "failed", run_id, message=summary)


def _failed(spec: RunSpec, store: Store, run_id: int, worker: str, error: Exception, trace: str,
            note: str = "") -> CellOutcome:
    try:
        return record_failure(spec, store, run_id, worker, error, trace, note)
    except ClaimLost as lost:
        return CellOutcome(spec, "lost", run_id, message=str(lost))


def _finish(result: MemberOutcome, run_id: int, store: Store, worker: str) -> CellOutcome | DiskFull:
    """Record how one member ended; a full disk comes back (not raised) so that the others are recorded."""
    spec, error = result.spec, result.exception
    try:
        if error is None:
            store.finish(run_id, worker, result.result.status, result.result.error)
            return CellOutcome(spec, result.result.status, run_id, result.result, result.result.error)
        if isinstance(error, ClaimLost):
            return CellOutcome(spec, "lost", run_id, message=str(error))
        if isinstance(error, DiskFull):
            return error
        if signals.interrupted(error):
            raise KeyboardInterrupt from error
        return _failed(spec, store, run_id, worker, error, result.traceback or "")
    except ClaimLost as lost:
        return CellOutcome(spec, "lost", run_id, message=str(lost))
    except DiskFull as full:
        return full


def _given_back(store: Store, run_ids: list[int], worker: str, stale_after: float, error: DiskFull) -> DiskFull:
    """A full disk is not the cells' failure: every claim still held is given back, so that a rerun resumes
    them. When the database's own disk is full, the release cannot be written either: the claims then
    lapse with their lease. Either way the checkpoint of each member's last whole epoch is intact."""
    one = len(run_ids) == 1
    runs = f"run {run_ids[0]}" if one else f"runs {', '.join(map(str, run_ids))}"
    try:
        store.release(run_ids, worker)
    except DiskFull:
        return DiskFull(f"{error} ({runs} {'stays' if one else 'stay'} claimed until {'its' if one else 'their'} "
                        f"{stale_after:g} s lease expires by the database server's clock; after that a rerun "
                        f"resumes {'it' if one else 'them'} from {'its last checkpoint' if one else 'their last checkpoints'})")
    return DiskFull(f"{error} ({runs} {'is' if one else 'are'} pending again and resume{'s' if one else ''} from "
                    f"{'its last checkpoint' if one else 'their last checkpoints'})")


def _follow_main_rank(spec: RunSpec, options: ExecOptions, callbacks: Sequence[Callback], dist,
                      datasets: dict | None) -> CellOutcome:
    """A DDP rank other than 0: train when rank 0 has claimed the cell; rank 0 alone writes anything."""
    status = dist.broadcast()
    if status is not None:
        return CellOutcome(spec, status)
    (outcome,) = train([Member(spec, tuple(callbacks))], options, prepared=prepare([spec], options, datasets=datasets))
    if outcome.exception is not None:
        raise outcome.exception
    return CellOutcome(spec, outcome.result.status, result=outcome.result, message=outcome.result.error)
