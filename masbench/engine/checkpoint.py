"""Checkpoints: a member's state after an epoch, written (``saves``), read (``read``, ``load``) and put back (``restore``).

A checkpoint holds the model, the optimizer, the lambda and lr schedules, every RNG
state and the epochs so far; a run that finds its checkpoint continues at the
next epoch and ends with the metrics of an uninterrupted run. It is read onto
the CPU, whatever device it was written on: ``load_state_dict`` moves the
weights to the model's device, and the RNG states must be CPU byte tensors.

A checkpoint records its owner, the store and the run it was written for
(``CheckpointOwner``), and its file name carries the store's identity, so that
a run in one store never resumes, or copies the epochs of, another store's run.

What ``load`` does with what it finds:

- nothing: start fresh (noting another store's checkpoint of the same run, if there is one);
- a torn or damaged file, or one of another format, run or owner: start fresh with one warning (a
  format-1 checkpoint was written before each run drew its weights, batch order and augmentation from
  streams of their own, ``masbench.seeds``: resumed, it would mix the two seedings);
- anything else that goes wrong raises: a restore that fails is a bug, not a reason to start over.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from masbench.engine.callbacks import EpochMetrics
from masbench.fileio import CorruptFile, atomic_torch_saves, load_torch_file, remove_stale_temporaries
from masbench.spec import RunSpec
from masbench.text.shown import one_line
from masbench.engine.options import ExecOptions

if TYPE_CHECKING:
    from masbench.engine.members import MemberState

CHECKPOINT_FORMAT = 2  # 2: the order and augmentation generators apart (rng "data" and "augment")


@dataclass(frozen=True)
class CheckpointOwner:
    """Whose checkpoint it is: the store's identity (``Store.store_id``, a UUID) and the run's id there."""

    store: str
    run: int

    @property
    def tag(self) -> str:
        """The part of the store's identity that checkpoint file names carry."""
        return self.store.replace("-", "")[:12]

    def as_dict(self) -> dict[str, Any]:
        return {"store": self.store, "run": self.run}


def checkpoint_path(spec: RunSpec, options: ExecOptions, owner: CheckpointOwner | None = None) -> Path:
    """``KEY-STORE.pt`` in the checkpoint folder (``KEY.pt`` without an owner): two stores never share a file."""
    name = spec.key if owner is None else f"{spec.key}-{owner.tag}"
    return Path(options.checkpoint_dir) / f"{name}.pt"


def global_rng_states(device: torch.device) -> dict[str, Any]:
    """The process's RNG states as a checkpoint records them (``data``, the run's own generator, aside)."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else [],
        "python": list(random.getstate()[1]),
    }


def data_rng_states(order: torch.Generator, augment: torch.Generator | None) -> dict[str, Any]:
    """The run's own generators as a checkpoint records them: ``data`` the order's, ``augment`` the crops'."""
    return {"data": order.get_state(), "augment": augment.get_state() if augment is not None else None}


def restore_data_rng(rng: dict[str, Any], order: torch.Generator, augment: torch.Generator | None) -> None:
    order.set_state(rng_bytes(rng["data"]))
    if augment is not None:
        augment.set_state(rng_bytes(rng["augment"]))


def checkpoint_state(spec: RunSpec, owner: CheckpointOwner | None, epoch: int, model: dict, optimizer: dict,
                     schedule: dict, history: list[EpochMetrics], rng: dict[str, Any], *,
                     lr_schedule: dict | None = None) -> dict[str, Any]:
    """A checkpoint's contents."""
    return {
        "format": CHECKPOINT_FORMAT,
        "key": spec.key,
        "owner": owner.as_dict() if owner is not None else None,
        "epoch": epoch,
        "model": model,
        "optimizer": optimizer,
        "schedule": schedule,
        "lr_schedule": lr_schedule or {},
        "history": [m.as_dict() for m in history],
        "rng": {key: rng[key] for key in ("torch", "cuda", "data", "augment", "python")},
    }


def rng_bytes(state: torch.Tensor) -> torch.Tensor:
    """An RNG state as the setters take it, a CPU byte tensor, wherever and however it was loaded."""
    return state.to(device="cpu", dtype=torch.uint8)


def restore(s: MemberState, state: dict[str, Any], load_model: Callable[[dict], None]) -> None:
    """Put ``state`` (one of this member's checkpoints: see ``foreign``) back into ``s`` (its model through
    ``load_model``); the process's RNG states it records become the member's (``s.rng``)."""
    load_model(state["model"])
    s.optimizer.load_state_dict(state["optimizer"])
    if s.schedule is not None:
        s.schedule.load_state_dict(state["schedule"])
    if s.lr_schedule is not None:  # the key is in the run's, so a checkpoint of it has its lr schedule's state
        s.lr_schedule.load_state_dict(state["lr_schedule"])
    rng = state["rng"]
    restore_data_rng(rng, s.generator, s.augment_generator)
    s.rng = {"torch": rng_bytes(rng["torch"]), "cuda": [rng_bytes(state) for state in rng["cuda"]],
             "python": rng["python"]}
    s.start_epoch = int(state["epoch"])
    s.history = [EpochMetrics(**m) for m in state["history"]]


def set_global_rng_states(rng: dict[str, Any], device: torch.device) -> None:
    """Make ``rng`` (as ``global_rng_states`` gives them, or a checkpoint holds them) the process's RNG states."""
    torch.set_rng_state(rng_bytes(rng["torch"]))
    if device.type == "cuda" and rng["cuda"]:
        torch.cuda.set_rng_state_all([rng_bytes(state) for state in rng["cuda"]])
    random.setstate((3, tuple(rng["python"]), None))


def foreign(state: Any, key: str, owner: CheckpointOwner | None) -> str | None:
    """Why ``state`` is not a checkpoint of run ``key`` for ``owner`` (None: it is one); no owner, no owner check."""
    if isinstance(state, dict) and state.get("format") == 1:
        return ("was written before masbench drew the weights, batch order and augmentation from separate "
                "seeds (format 1): resuming it would mix the two seedings")
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        return f"is not a masbench checkpoint of format {CHECKPOINT_FORMAT} (found {found!r})"
    if state.get("key") != key:
        return f"belongs to another run (key {state.get('key')!r})"
    if owner is None:
        return None
    recorded = state.get("owner")
    if not isinstance(recorded, dict) or "store" not in recorded:
        return "records no store"
    if recorded["store"] != owner.store:
        return f"belongs to another store ({recorded['store']}; this one is {owner.store})"
    if recorded.get("run") != owner.run:
        return f"belongs to run {recorded.get('run')} of this store, not run {owner.run}"
    return None


class Unfit(RuntimeError):
    """A checkpoint of the run (its key and owner) that does not fit the run's model or optimizer: one line.

    A ``RuntimeError``, as the failed ``load_state_dict`` it wraps was before."""


def load(s: MemberState, options: ExecOptions, load_model: Callable[[dict], None], main: bool = True) -> None:
    """Restore ``s`` from its checkpoint if there is a usable one (see ``read``).

    ``main``: this process writes the run's checkpoints (under DDP, rank 0 alone), so it cleans up and warns.
    Raises ``Unfit`` when the checkpoint is the run's but its tensors or records do not fit (edited by hand,
    or written by other code): the member cannot go on from it, and a fresh start would hide it.
    """
    state = read(s.spec, options, s.member.owner, s.warn, main)
    if state is None:
        return
    try:
        restore(s, state, load_model)
    # load_state_dict's size or key mismatch (RuntimeError), a missing entry (KeyError), an optimizer's other
    # param groups (ValueError), a history entry with other fields (TypeError).
    except (RuntimeError, KeyError, ValueError, TypeError) as error:
        path = checkpoint_path(s.spec, options, s.member.owner)
        raise Unfit(f"checkpoint {path} does not fit {s.spec.describe()}: {type(error).__name__}: "
                    f"{one_line(error, 300)}") from error


def read(spec: RunSpec, options: ExecOptions, owner: CheckpointOwner | None, warn: Callable[[str], None],
         main: bool = True) -> dict[str, Any] | None:
    """The run's usable checkpoint, read onto the CPU, or None (nothing there, or unusable: see the module)."""
    path = checkpoint_path(spec, options, owner)
    if main:
        # With an owner the cell is claimed: no one else may be writing this file.
        remove_stale_temporaries(path, exclusive=owner is not None)
    cell = spec.describe()
    if not path.exists():
        if main and owner is not None:
            _note_other_owners(path, spec, cell, warn)
        return None
    try:
        state = load_torch_file(path)
    except CorruptFile as error:
        if main:
            warn(f"checkpoint {path} is unusable ({error}); restarting {cell} from scratch")
        return None
    problem = foreign(state, spec.key, owner)
    if problem is not None:
        if main:
            warn(f"checkpoint {path} {problem}: starting {cell} fresh")
        return None
    return state


def _note_other_owners(path: Path, spec: RunSpec, cell: str, warn: Callable[[str], None]) -> None:
    """One line when the run has a checkpoint written for another store (or for none), which is left alone."""
    others = sorted({*path.parent.glob(f"{spec.key}.pt"), *path.parent.glob(f"{spec.key}-*.pt")} - {path})
    if not others:
        return
    whose = ("records no store (an older masbench's, or train() without an owner)" if others[0].stem == spec.key
             else "belongs to another store")
    warn(f"checkpoint {others[0]} {whose}; this store's would be {path.name}: starting {cell} fresh")


@contextlib.contextmanager
def saves(members: Sequence[MemberState], options: ExecOptions, epoch: int,
          states: Sequence[tuple[dict, dict[str, Any]]]) -> Iterator[Callable[[int], Path]]:
    """Write the checkpoints of ``members`` after ``epoch`` atomically (``fileio.atomic_torch_saves``: written and
    fsynced together, an interrupt meanwhile held back until the block is left); ``place(k)`` puts member
    ``k``'s in place and returns its path. ``states``: per member, its model's state dict and the process's
    RNG states of its run."""
    items = []
    for s, (model, rng) in zip(members, states, strict=True):
        state = checkpoint_state(s.spec, s.member.owner, epoch, model, s.optimizer.state_dict(),
                                 s.schedule.state_dict() if s.schedule is not None else {}, s.history,
                                 {**rng, **data_rng_states(s.generator, s.augment_generator)},
                                 lr_schedule=s.lr_schedule.state_dict() if s.lr_schedule is not None else {})
        items.append((state, checkpoint_path(s.spec, options, s.member.owner)))
    with atomic_torch_saves(items) as place:
        yield place


def remove(s: MemberState, options: ExecOptions) -> None:
    checkpoint_path(s.spec, options, s.member.owner).unlink(missing_ok=True)
