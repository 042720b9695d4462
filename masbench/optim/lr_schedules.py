"""Learning-rate schedules, a cell setting for every optimizer: ``--lr-schedule`` text -> a torch LR scheduler.

Each is one of ``torch.optim.lr_scheduler``'s, stepped once per epoch after the epoch (as the lambda
schedules are). At epoch e (0-based) of E, with the run's lr η:

- ``constant``: η (no scheduler);
- ``step:K:G``: η·G^⌊e/K⌋ (``StepLR``);
- ``multistep:M1,M2,...:G``: η·G^#{Mi ≤ e} (``MultiStepLR``; the authors' CIFAR harness: ``multistep:100,150:0.1``);
- ``linear-warmup:N``: η·min(e+1, N+1)/(N+1), a rise over N epochs, then η (``LinearLR`` from 1/(N+1) to 1);
- ``cosine[:W]``: that warm-up for e < W, then η·(1 + cos(π(e−W)/(E−W)))/2 (``CosineAnnealingLR`` over the
  E−W epochs left, after ``SequentialLR``'s switch).

The text is normalised (``step:30:0.10`` is ``step:30:0.1``, ``cosine:0`` is ``cosine``), so that one
schedule is one cell. Its state (``state_dict``) goes into checkpoints, so that a resumed run continues it.

Example:
    >>> import torch
    >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    >>> sched = build_lr_schedule("step:2:0.5", opt, epochs=6)
    >>> [round(opt.param_groups[0]["lr"], 4) for _ in range(4) if not opt.step() and not sched.step()]
    [0.1, 0.05, 0.05, 0.025]
"""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, LRScheduler, MultiStepLR, SequentialLR, StepLR

from masbench.text.limits import MAX_EPOCHS
from masbench.text.numbers import ascii_digits, is_digits, number
from masbench.text.shown import shown

MAX_MILESTONES = 100
VALID = ("valid: constant, step:EVERY:GAMMA, multistep:M1,M2,...:GAMMA, cosine[:WARMUP], linear-warmup:N; "
         "epochs are integers in [1, 100000] (WARMUP may be 0), GAMMA in (0, 1]")


def parse_lr_schedule(text: str) -> tuple[str, tuple]:
    """``text`` -> (kind, numbers): ``("step", (K, G))``, ``("multistep", ((M1, ...), G))``, ``("cosine", (W,))``,
    ``("linear-warmup", (N,))`` or ``("constant", ())``; ValueError names what is wrong."""
    kind, *parts = text.split(":")
    if not ascii_digits(text):
        raise ValueError(f"Invalid lr schedule: {shown(text)} (numbers are written in digits 0-9; {VALID})")
    try:
        if kind == "constant" and not parts:
            return "constant", ()
        if kind == "step" and len(parts) == 2:
            return "step", (_epochs(parts[0]), _gamma(parts[1]))
        if kind == "multistep" and len(parts) == 2:
            milestones = tuple(_epochs(m) for m in parts[0].split(","))
            if len(milestones) > MAX_MILESTONES or any(a >= b for a, b in zip(milestones, milestones[1:])):
                raise ValueError(f"milestones must increase, at most {MAX_MILESTONES} of them")
            return "multistep", (milestones, _gamma(parts[1]))
        if kind == "cosine" and len(parts) <= 1:
            return "cosine", (_epochs(parts[0], low=0) if parts else 0,)
        if kind == "linear-warmup" and len(parts) == 1:
            return "linear-warmup", (_epochs(parts[0]),)
    except ValueError as error:
        raise ValueError(f"Invalid lr schedule: {shown(text)} ({error}; {VALID})") from None
    raise ValueError(f"Invalid lr schedule: {shown(text)} ({VALID})")


def _epochs(text: str, low: int = 1) -> int:
    if not is_digits(text.strip()) or not low <= int(text) <= MAX_EPOCHS:
        raise ValueError(f"{text!r} is not an integer in [{low}, {MAX_EPOCHS}]")
    return int(text)


def _gamma(text: str) -> float:
    try:
        value = number(text)
    except ValueError:
        value = math.nan
    if not 0.0 < value <= 1.0:  # NaN fails too
        raise ValueError(f"GAMMA {text!r} is not a number in (0, 1]")
    return value


def normalise_lr_schedule(text: str) -> str:
    """The one text of the schedule ``text`` names (its key and name use it)."""
    kind, numbers = parse_lr_schedule(text)
    if kind == "step":
        return f"step:{numbers[0]}:{numbers[1]!r}"
    if kind == "multistep":
        return f"multistep:{','.join(str(m) for m in numbers[0])}:{numbers[1]!r}"
    if kind == "cosine":
        return f"cosine:{numbers[0]}" if numbers[0] else "cosine"
    if kind == "linear-warmup":
        return f"linear-warmup:{numbers[0]}"
    return kind


def check_lr_schedule(text: str, epochs: int) -> None:
    """What the schedule needs of the run's epochs: cosine's warm-up leaves at least one epoch to anneal over."""
    kind, numbers = parse_lr_schedule(text)
    if kind == "cosine" and numbers[0] >= epochs:
        raise ValueError(f"Invalid lr schedule: {shown(text)} (its {numbers[0]} warm-up epochs leave none of the "
                         f"run's {epochs} to anneal over; WARMUP must be < epochs)")


def build_lr_schedule(text: str, optimizer: Optimizer, epochs: int) -> LRScheduler | None:
    """The scheduler ``text`` names over ``optimizer`` for a run of ``epochs``; None for ``constant``."""
    kind, numbers = parse_lr_schedule(text)
    if kind == "step":
        return StepLR(optimizer, step_size=numbers[0], gamma=numbers[1])
    if kind == "multistep":
        return MultiStepLR(optimizer, milestones=list(numbers[0]), gamma=numbers[1])
    if kind == "linear-warmup":
        return _warmup(optimizer, numbers[0])
    if kind == "cosine":
        warmup = numbers[0]
        if warmup == 0:
            return CosineAnnealingLR(optimizer, T_max=epochs)
        annealing = CosineAnnealingLR(optimizer, T_max=epochs - warmup)
        return SequentialLR(optimizer, [_warmup(optimizer, warmup), annealing], milestones=[warmup])
    return None


def _warmup(optimizer: Optimizer, epochs: int) -> LinearLR:
    return LinearLR(optimizer, start_factor=1.0 / (epochs + 1), end_factor=1.0, total_iters=epochs)
