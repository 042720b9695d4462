"""The members of a pack: what a caller passes for each cell, what it gets back, and each member's own state.

A member's checkpoint is an ordinary checkpoint of its cell (``masbench.engine.checkpoint``: the same
file name, owner check and contents), so a packed member resumes from its unpacked run's checkpoint
and an unpacked run resumes a packed member's. Its ``rng`` entry holds the process's RNG states as the
member's unpacked run would have them: captured right after its model was built with its seed (the
packable models draw nothing from the global generators while training) or restored from its checkpoint.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from masbench.engine import checkpoint
from masbench.engine.callbacks import Callback, EpochMetrics, RunResult
from masbench.engine.checkpoint import CheckpointOwner, checkpoint_path
from masbench.fileio import atomic_torch_save
from masbench.spec import RunSpec
from masbench.engine.options import ExecOptions


@dataclass(frozen=True)
class PackMember:
    """One cell of a pack, as a sweep hands it over: its spec, its callbacks and whose checkpoint it writes."""

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
class Member:
    """A member's running state inside ``train_pack``."""

    index: int
    cell: PackMember
    optimizer: torch.optim.Optimizer  # the member's own, over its views of the pack's parameters
    schedule: Any  # its LambdaSchedule, or None
    generator: torch.Generator  # its batch order (masbench.seeds: its "order" stream)
    augment_generator: torch.Generator  # its crops and flips (its "augment" stream)
    rng: dict[str, Any]  # torch, cuda, python: the process's RNG states of its unpacked run
    start_epoch: int = 0
    history: list[EpochMetrics] = field(default_factory=list)
    status: str = "running"  # running, completed, diverged, detached
    error: str | None = None
    exception: Exception | None = None
    trace: str | None = None

    @property
    def spec(self) -> RunSpec:
        return self.cell.spec

    def trains_in(self, epoch: int) -> bool:
        return self.status == "running" and self.start_epoch < epoch

    def notify(self, hook: str, *args: Any) -> None:
        """Call ``hook`` on this member's callbacks; an exception there sets the member aside (``detached``).

        Any ``Exception``: what a member's own callbacks raise concerns that cell alone (its store, its
        claim), so the pack goes on; the exception is handed back in its ``MemberOutcome``.
        """
        if self.status == "detached":
            return
        try:
            for cb in self.cell.callbacks:
                getattr(cb, hook)(*args)
        except Exception as error:
            self.status, self.exception, self.trace = "detached", error, traceback.format_exc()

    def warn(self, message: str) -> None:
        self.notify("on_warning", message)

    def current(self, spec_lambdas: tuple[float, float]) -> tuple[float, float | None, float | None]:
        """(lr, lambda_adam, lambda_sgd) in force, as the unpacked engine reports them."""
        group = self.optimizer.param_groups[0]
        if "lambda_adam" in group:
            return group["lr"], group["lambda_adam"], group["lambda_sgd"]
        return group["lr"], *spec_lambdas

    def diverge(self, epoch: int, value: float, at_batch: int) -> None:
        self.status = "diverged"
        self.error = f"non-finite training loss ({value}) at epoch {epoch}, batch {at_batch}"

    def outcome(self, device: str) -> MemberOutcome:
        if self.status == "detached":
            return MemberOutcome(self.spec, None, self.exception, self.trace)
        result = RunResult(self.status, self.history, device, self.error, self.start_epoch)
        return MemberOutcome(self.spec, result)


def restore(member: Member, state: dict[str, Any], load_model: Callable[[dict], None],
            load_optimizer: Callable[[dict], None]) -> None:
    """Put a member's checkpoint (read by ``checkpoint.read``) back into the pack and the member."""
    load_model(state["model"])
    load_optimizer(state["optimizer"])
    if member.schedule is not None:
        member.schedule.load_state_dict(state["schedule"])
    rng = state["rng"]
    checkpoint.restore_data_rng(rng, member.generator, member.augment_generator)
    member.rng = {"torch": rng["torch"], "cuda": rng["cuda"], "python": rng["python"]}
    member.start_epoch = int(state["epoch"])
    member.history = [EpochMetrics(**m) for m in state["history"]]


def load(member: Member, options: ExecOptions, load_model: Callable[[dict], None],
         load_optimizer: Callable[[dict], None]) -> None:
    """Resume ``member`` from its checkpoint when it has a usable one (see ``checkpoint.read``)."""
    state = checkpoint.read(member.spec, options, member.cell.owner, member.warn)
    if state is not None:
        restore(member, state, load_model, load_optimizer)


def save(member: Member, options: ExecOptions, epoch: int, model: dict, optimizer: dict) -> None:
    """Write the member's checkpoint after ``epoch`` (atomically, as the unpacked engine does), then tell it."""
    schedule = member.schedule.state_dict() if member.schedule is not None else {}
    rng = {**member.rng, **checkpoint.data_rng_states(member.generator, member.augment_generator)}
    state = checkpoint.checkpoint_state(member.spec, member.cell.owner, epoch, model, optimizer, schedule,
                                        member.history, rng)
    path = checkpoint_path(member.spec, options, member.cell.owner)
    atomic_torch_save(state, path)
    member.notify("on_checkpoint", epoch, path)


def remove(member: Member, options: ExecOptions) -> None:
    checkpoint_path(member.spec, options, member.cell.owner).unlink(missing_ok=True)
