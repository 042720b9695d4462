"""What the engine reports: per-epoch metrics, the run's description and result, and the callbacks that get them."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from masbench.spec import RunSpec


@dataclass(frozen=True)
class EpochMetrics:
    epoch: int  # from 1
    train_loss: float
    train_acc: float  # fraction in [0, 1]
    test_loss: float | None
    test_acc: float | None
    lr: float
    lambda_adam: float | None
    lambda_sgd: float | None
    seconds: float
    samples_per_second: float
    val_loss: float | None = None  # on the validation split held out of train (spec.val_fraction); None without one
    val_acc: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RunInfo:
    spec: RunSpec
    device: str
    train_size: int
    test_size: int
    batches_per_epoch: int
    parameters: int
    start_epoch: int  # epochs already done when this process began (from a checkpoint)


@dataclass
class RunResult:
    status: str  # "completed", "diverged" or "pruned" (a callback's ``Prune``)
    epochs: list[EpochMetrics]
    device: str
    error: str | None = None
    resumed_from: int = 0

    @property
    def best_test_acc(self) -> float | None:
        values = [m.test_acc for m in self.epochs if m.test_acc is not None]
        return max(values) if values else None

    @property
    def final_test_acc(self) -> float | None:
        return self.epochs[-1].test_acc if self.epochs else None


class Prune(Exception):
    """Raised by a callback's ``on_epoch``: the member stops after this epoch, ``pruned``, with the epochs it ran.

    Every other callback of the member still hears of the epoch (the store records it); the member's
    checkpoint is removed, as a diverged member's is, and the other members of its pack go on. The
    message says why (the pruner's rung).
    """


class Callback:
    """Hooks the engine calls; override what you need. ``on_epoch`` may raise ``Prune``."""

    def for_cell(self, spec: RunSpec) -> Callback:
        """The callback that one cell's member gets, when this one is given to many cells (a sweep's, a
        pack's): itself, unless the callback needs to know whose epochs it hears (a tune's pruner)."""
        return self

    def on_start(self, info: RunInfo) -> None: ...

    def on_resume(self, history: list[EpochMetrics]) -> None:
        """The epochs restored from a checkpoint, before training goes on."""

    def on_batch(self, epoch: int, batch: int, batches: int) -> None: ...

    def on_epoch(self, metrics: EpochMetrics) -> None: ...

    def on_checkpoint(self, epoch: int, path: Path) -> None: ...

    def on_warning(self, message: str) -> None: ...
