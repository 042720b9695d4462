"""Packed cells in a sweep: several cells trained as one (``masbench.engine``), each its own run in the store.

``run_pack`` does for every member what ``run_cell`` does for a cell: a finished cell is skipped and
one held by a live worker is left to it; each member is claimed under its own lease with its own
heartbeat, its epochs go to the store as they end, and its own ending is recorded (completed,
diverged, failed, lost). Reports, ``compare`` and the gate cannot tell a packed run from an unpacked
one; only its execution config says ``packed: K``. Cells that cannot be packed run unpacked, with one
line saying why.

``pack_cells`` groups a sweep's cells into packs by their ``pack`` setting (``Cell.pack``): N members,
``off``, or ``auto``, which packs the MLP and the CNN on every device and the ResNets on CUDA only,
``AUTO_SIZE`` members at a time. The evidence (benchmarks/pack_speed.py, 2-core CPU, one thread): packed,
the quick suite's MLP trains 1.3-1.5x faster and the nightly CNN grid 1.15x (each member's own forward,
``masbench.engine.fuse``), while ResNet18 is even (0.97x): its steps are long enough that what a pack
shares (data, optimizer calls) is little. HFTA's grouped convolutions run slower on a CPU (CNN 0.72x,
ResNet18 0.77x); horizontal fusion pays where one small model leaves a GPU idle.
"""

from __future__ import annotations

import traceback
from collections.abc import Sequence
from contextlib import ExitStack
from datetime import datetime


from masbench.benchmarks import Cell
from masbench.engine import (
    Callback,
    CheckpointOwner,
    Member,
    MemberOutcome,
    Unpackable,
    can_pack,
    describe_device,
    pack_key,
    plan_packs,
    resolve_device,
    train,
)
from masbench.environment import git_commit, hostname, versions
from masbench.errors import DiskFull
from masbench.spec import RunSpec
from masbench.engine import ExecOptions
from masbench.engine.fuse import default_conv
from masbench.store import ClaimLost, Store
from masbench.sweep import stopping
from masbench.sweep.cells import (
    FINAL,
    HEARTBEAT_EVERY_S,
    STALE_AFTER_S,
    CellOutcome,
    Heartbeat,
    StoreRecorder,
    finished,
    new_worker_id,
    record_failure,
    run_cell,
    run_values,
)

AUTO_SIZE = 7  # the size measured in benchmarks/pack_speed.py
AUTO_DEVICES = {"mlp": ("cpu", "cuda"), "cnn": ("cpu", "cuda"), "resnet18": ("cuda",), "resnet34": ("cuda",)}


def pack_size(cell: Cell, device_type: str) -> int:
    """Members per pack for ``cell`` on a device of ``device_type`` (1: unpacked)."""
    if cell.pack == "off":
        return 1
    if cell.pack == "auto":
        return AUTO_SIZE if device_type in AUTO_DEVICES.get(cell.spec.model, ()) else 1
    return int(cell.pack)


def pack_cells(cells: Sequence[Cell], device_type: str) -> list[list[Cell]]:
    """The cells in packs, in their order (a pack of one runs unpacked).

    Cells share a pack when they have the same pack size, ``can_pack`` together and take their data from
    the same folders (``Cell.data_dir``, ``Cell.base_dir``).
    """
    groups: dict[tuple, list[Cell]] = {}
    for cell in cells:
        groups.setdefault((pack_size(cell, device_type), cell.data_dir, cell.base_dir), []).append(cell)
    if any(size > 1 for size, *_ in groups):
        default_conv()  # a bad $MASBENCH_PACK_CONV: one line before any cell is claimed, not failed packs
    packs = []
    for (size, *_), group in groups.items():
        by_key = {cell.spec.key: cell for cell in group}
        packs += [[by_key[spec.key] for spec in pack] for pack in plan_packs([c.spec for c in group], size)]
    return packs


def unpacked_reason(cell: Cell, device_type: str) -> str | None:
    """Why ``cell``, which asks to be packed, cannot be (whatever the other cells); None if it can, or is off."""
    if cell.pack == "auto" and pack_size(cell, device_type) == 1:
        return (f"--pack auto leaves model {cell.spec.model!r} unpacked on {device_type} (it packs the MLP and "
                f"the CNN, and ResNets on CUDA only)")
    if pack_size(cell, device_type) > 1 and (why := can_pack([cell.spec])) is not None:
        return f"not packed: {why}"
    return None


def unpacked_notes(cells: Sequence[Cell], device_type: str) -> list[str]:
    """One line per reason why cells that ask to be packed run unpacked."""
    reasons: dict[str, int] = {}
    for cell in cells:
        if (reason := unpacked_reason(cell, device_type)) is not None:
            reasons[reason] = reasons.get(reason, 0) + 1
    return [f"{n} cell(s) run unpacked: {reason}" for reason, n in reasons.items()]


def unfinished(cells: Sequence[Cell], store: Store, retry_failed_before: datetime | None) -> list[Cell]:
    """The cells the store does not have finished for this sweep (so that packs are made of work to do)."""
    states = store.cell_states([cell.spec.key for cell in cells])
    return [cell for cell in cells if (state := states.get(cell.spec.key)) is None
            or not finished(state["status"], state["finished_at"], retry_failed_before)]


def run_pack(
    specs: Sequence[RunSpec],
    store: Store,
    options: ExecOptions = ExecOptions(),
    *,
    callbacks: Sequence[Callback] = (),
    worker: str | None = None,
    retry_failed_before: datetime | None = None,
    stale_after: float = STALE_AFTER_S,
    heartbeat_every: float = HEARTBEAT_EVERY_S,
    datasets: dict | None = None,
    refused: dict | None = None,
) -> list[CellOutcome]:
    """Train the cells of ``specs`` as one pack; one ``CellOutcome`` per cell, in order, as ``run_cell``'s.

    ``refused``: pack keys (``pack_key``) whose models the fuser refused, with why; filled in here, so
    that a sweep says it once and runs the later cells of that kind unpacked at once. A full disk gives
    every claim back and raises ``DiskFull``; a stop (KeyboardInterrupt, SIGTERM) gives every claim back
    and is raised.
    """
    worker = worker or new_worker_id()
    refused = {} if refused is None else refused
    outcomes: dict[str, CellOutcome] = {}
    todo = []
    for spec in specs:
        decided = _decided_before(spec, store, retry_failed_before)
        if decided is not None:
            outcomes[spec.key] = decided
        else:
            todo.append(spec)
    reason = (refused.get(pack_key(todo[0])) or can_pack(todo)) if len(todo) > 1 else "one cell to train"
    if reason is None:
        held: list[tuple[RunSpec, int]] = []
        try:
            outcomes |= _claim(todo, store, worker, stale_after, retry_failed_before, held)
            if held:
                outcomes |= _train_held(held, store, options, worker, callbacks, stale_after, heartbeat_every,
                                        datasets)
            todo = []
        except Unpackable as error:
            for _, run_id in held:
                store.release(run_id, worker)
            refused[pack_key(todo[0])] = str(error)
            _warn(callbacks, f"{len(held)} cells run unpacked: {error}")
            todo = [spec for spec, _ in held]
        except (KeyboardInterrupt, SystemExit):
            for _, run_id in held:  # a stop anywhere from the first claim on gives every claim back
                store.release(run_id, worker)
            raise
    for spec in todo:
        outcomes[spec.key] = run_cell(spec, store, options, callbacks=callbacks, worker=worker,
                                      retry_failed_before=retry_failed_before, stale_after=stale_after,
                                      heartbeat_every=heartbeat_every, datasets=datasets)
    return [outcomes[spec.key] for spec in specs]


def _warn(callbacks: Sequence[Callback], message: str) -> None:
    for callback in callbacks:
        callback.on_warning(message)


def _decided_before(spec: RunSpec, store: Store, retry_failed_before: datetime | None) -> CellOutcome | None:
    """``skipped`` (finished) or ``busy`` (held by a live worker), as ``run_cell`` decides; None: to train."""
    existing = store.get_run(spec.key)
    if existing is None:
        return None
    if finished(existing.status, existing.finished_at, retry_failed_before):
        return CellOutcome(spec, "skipped", existing.id, message=f"already {existing.status}", previous=existing)
    if existing.status == "running" and store.is_held(existing.id):
        return CellOutcome(spec, "busy", existing.id, message=f"held by worker {existing.worker}", previous=existing)
    return None


def _claim(specs: Sequence[RunSpec], store: Store, worker: str, stale_after: float,
           retry_failed_before: datetime | None, held: list[tuple[RunSpec, int]]) -> dict[str, CellOutcome]:
    """Claim each cell; those claimed go into ``held`` (before the claim, so that a stop inside its commit
    gives it back too), the others come back as skipped or busy."""
    outcomes = {}
    for spec in specs:
        run = store.ensure_run(run_values(spec))
        held.append((spec, run.id))
        if not store.claim(run.id, worker, stale_after=stale_after, retry_failed_before=retry_failed_before):
            held.pop()
            current = store.get_run(spec.key)
            status = "skipped" if current is not None and current.status in FINAL else "busy"
            outcomes[spec.key] = CellOutcome(spec, status, run.id, previous=current,
                                             message=f"taken by worker {current.worker}" if current else None)
    return outcomes


def _train_held(held: list[tuple[RunSpec, int]], store: Store, options: ExecOptions, worker: str,
                callbacks: Sequence[Callback], stale_after: float, heartbeat_every: float,
                datasets: dict | None) -> dict[str, CellOutcome]:
    """Start and train the claimed cells as one pack, then record how each ended."""
    device = resolve_device(options.device)
    amp = options.uses_amp(device)
    execution = {"device": str(device), "amp_bf16": amp, "channels_last": False, "compile": options.compile,
                 "packed": len(held)}
    environment = dict(host=hostname(), device=describe_device(device), versions=versions(), git_commit=git_commit())
    outcomes, members, run_ids = {}, [], {}
    try:
        with ExitStack() as stack:
            for spec, run_id in held:
                heartbeat = stack.enter_context(Heartbeat(store, run_id, worker, heartbeat_every, stale_after))
                try:
                    store.start(run_id, worker, config={**run_values(spec)["config"], "execution": execution},
                                **environment)
                except ClaimLost as error:
                    outcomes[spec.key] = CellOutcome(spec, "lost", run_id, message=str(error))
                    continue
                members.append(Member(spec, [StoreRecorder(store, run_id, worker, stale_after), heartbeat,
                                                 *callbacks], CheckpointOwner(store.store_id, run_id)))
                run_ids[spec.key] = run_id
            results = train(members, options, datasets=datasets)
    except DiskFull as error:
        raise _given_back(store, list(run_ids.values()), worker, stale_after, error) from None
    except Unpackable:
        raise
    except Exception as error:
        if stopping.interrupted(error):
            raise KeyboardInterrupt from error
        trace = traceback.format_exc()
        for member in members:  # the pack failed as a whole: each member with the pack's error
            outcomes[member.spec.key] = _failed(member.spec, store, run_ids[member.spec.key], worker, error, trace,
                                                f" (in a pack of {len(members)})")
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
        if stopping.interrupted(error):
            raise KeyboardInterrupt from error
        return _failed(spec, store, run_id, worker, error, result.traceback or "")
    except ClaimLost as lost:
        return CellOutcome(spec, "lost", run_id, message=str(lost))
    except DiskFull as full:
        return full


def _given_back(store: Store, run_ids: list[int], worker: str, stale_after: float, error: DiskFull) -> DiskFull:
    """A full disk is not the cells' failure: every claim still held is given back, so that a rerun resumes
    them (or, when the database's own disk is full, the claims lapse with their lease)."""
    runs = ", ".join(map(str, run_ids))
    try:
        for run_id in run_ids:
            store.release(run_id, worker)
    except DiskFull:
        return DiskFull(f"{error} (runs {runs} stay claimed until their {stale_after:g} s lease expires by the "
                        f"database server's clock; after that a rerun resumes them from their last checkpoints)")
    return DiskFull(f"{error} (runs {runs} are pending again and resume from their last checkpoints)")
