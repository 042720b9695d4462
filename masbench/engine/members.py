"""The members of a training pass: what a caller passes for each cell (``Member``), what it gets back
(``MemberOutcome``), and each member's own state while it trains (``MemberState``).

A member's checkpoint is an ordinary checkpoint of its cell (``masbench.engine.checkpoint``), whatever
the number of members it trained with: a packed member resumes from its unpacked run's checkpoint and
an unpacked run resumes a packed member's.
"""

from __future__ import annotations

import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from masbench.engine.callbacks import Callback, EpochMetrics, Prune, RunResult
from masbench.engine.checkpoint import CheckpointOwner
from masbench.spec import RunSpec


@dataclass(frozen=True)
class Member:
    """One cell of a training pass, as a caller hands it over: its spec, its callbacks and whose checkpoint
    it writes (``None``: a run outside any store, its checkpoint named by the run's key alone)."""

    spec: RunSpec
    callbacks: Sequence[Callback] = ()
    owner: CheckpointOwner | None = None


@dataclass
class MemberOutcome:
    """How one member ended: ``result`` (completed or diverged), or the exception its own callbacks raised.

    A member whose callbacks raised (its claim lost, its store unwritable) was set aside at that point,
    its last checkpoint kept, while the other members went on; ``traceback`` is the exception's.
    """

    spec: RunSpec
    result: RunResult | None = None
    exception: Exception | None = None
    traceback: str | None = None


@dataclass
class MemberState:
    """A member's data, model, optimizer, schedules and generators (``prepare``), and how its training goes."""

    index: int
    spec: RunSpec
    dataset: Any  # the shared data set, or the member's own validation split of it (its seed's)
    model: torch.nn.Module | None  # its own model; None under grouped convolutions (the fused model holds it)
    optimizer: torch.optim.Optimizer  # its own, over its model's parameters or its views of the fused ones
    schedule: Any  # its LambdaSchedule, or None for the baselines
    lr_schedule: Any  # a torch LR scheduler, or None for a constant lr
    generator: torch.Generator  # its batch order (masbench.seeds: its "order" stream)
    augment_generator: torch.Generator | None  # its crops and flips (its "augment" stream)
    rng: dict[str, Any]  # torch, cuda, python: the process's RNG states of its unpacked run
    member: Member | None = None  # set by ``train``: its callbacks and owner
    start_epoch: int = 0
    history: list[EpochMetrics] = field(default_factory=list)
    status: str = "running"  # running, completed, diverged, pruned, detached
    error: str | None = None
    exception: Exception | None = None
    trace: str | None = None

    def trains_in(self, epoch: int) -> bool:
        return self.status == "running" and self.start_epoch < epoch

    def notify(self, hook: str, *args: Any) -> None:
        """Call ``hook`` on this member's callbacks; an exception there sets the member aside (``detached``).

        Any ``Exception``: what a member's own callbacks raise concerns that cell alone (its store, its
        claim), so the others go on; the exception is handed back in its ``MemberOutcome``. ``Prune`` is
        not an error: the remaining callbacks are still called, then the member ends ``pruned``.
        """
        if self.status == "detached" or self.member is None:
            return
        pruned: Prune | None = None
        try:
            for cb in self.member.callbacks:
                try:
                    getattr(cb, hook)(*args)
                except Prune as stop:
                    pruned = stop
        except Exception as error:
            self.set_aside(error)
            return
        if pruned is not None and self.status == "running":
            self.status, self.error = "pruned", str(pruned) or None

    def set_aside(self, error: Exception) -> None:
        """The member stops here with ``error`` (handed back in its ``MemberOutcome``) while the others go on."""
        self.status, self.exception, self.trace = "detached", error, traceback.format_exc()

    def warn(self, message: str) -> None:
        self.notify("on_warning", message)

    def diverge(self, epoch: int, value: float, at_batch: int) -> None:
        self.status = "diverged"
        self.error = f"non-finite training loss ({value}) at epoch {epoch}, batch {at_batch}"

    def outcome(self, device: str) -> MemberOutcome:
        if self.status == "detached":
            return MemberOutcome(self.spec, None, self.exception, self.trace)
        result = RunResult(self.status, self.history, device, self.error, self.start_epoch)
        return MemberOutcome(self.spec, result)
