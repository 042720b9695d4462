"""The training loop: ``train(members, options) -> [MemberOutcome]``, K >= 1 cells in one pass.

One member is a plain run; K members (a pack: cells that share data set, data options, model, batch
size and epochs, ``masbench.engine.packing``) train side by side, each as if it ran alone:

- its initial weights, batch order and augmentation are its unpacked cell's, each from a stream of its
  own seed (``masbench.seeds``), and so is its validation split (``val_fraction``);
- its optimizer, lambda schedule and lr schedule are its own (members alike step in one call:
  ``masbench.engine.packed_optim``); its loss is its own mean, so its gradient is its own;
- the process's RNG (dropout) is its own: the states its unpacked run would have are put in place around
  its forward and taken back after it;
- its metrics go to its own callbacks, as ``EpochMetrics`` (``seconds`` is the pass's epoch, in which it
  trained with the others), and it ends with its own ``RunResult``;
- a member whose loss stops being finite is frozen and ends ``diverged`` while the others go on; so does
  one whose callback prunes it after an epoch (``Prune``: it ends ``pruned``, its epochs kept); one
  whose own callbacks raise an ``Exception`` (its claim lost, its disk full) is set aside with it in its
  ``MemberOutcome``, its last checkpoint kept;
- after each epoch it writes its own ordinary checkpoint (``masbench.engine.checkpoint``), from which it
  resumes packed or unpacked; a member whose checkpoint is ahead of the others' waits until the pass
  reaches its epoch.

How the forwards run is the engine's choice (``prepare``): each member's own model (the default; for one
member simply the plain model, so DDP, ``--compile`` and channels_last apply), or on CUDA one fused model
of grouped convolutions (``masbench.engine.fuse``). Each member's own forward gives its unpacked cell's
numbers bit for bit; grouped convolutions sum in another order: they agree to float rounding.

Per epoch the engine reports train loss and accuracy, test loss and accuracy, validation loss and
accuracy (with a ``val_fraction``: the same evaluation on the split held out of training), the learning
rate, the lambdas in force, seconds and samples per second (training only: evaluation is left out of the
timing). No printing and no database: what happens goes to callbacks. On CPU the same spec gives the
same metrics.

Under DDP (one member) every process takes a share of each global batch. Each process's loss is its
examples' summed loss over the global batch size, times the number of processes, so that DDP's average
of the gradients is the gradient of the global batch's mean loss however unevenly a batch divides; a
share may be empty (a last batch smaller than the number of processes). Evaluation counts every test
example once.

Example:
    >>> from masbench.spec import RunSpec
    >>> outcomes = train([Member(RunSpec(dataset="digits", epochs=1, seed=s)) for s in range(3)])  # doctest: +SKIP
    >>> [o.result.status for o in outcomes]  # doctest: +SKIP
    ['completed', 'completed', 'completed']
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from masbench import faults
from masbench.data.base import train_batches
import masbench.engine.checkpoint as checkpoint
from masbench.engine.callbacks import Callback, EpochMetrics, RunInfo, RunResult
from masbench.engine.checkpoint import CheckpointOwner, global_rng_states, set_global_rng_states
from masbench.engine.data import member_batches, test_batches
from masbench.engine.members import Member, MemberOutcome, MemberState
from masbench.engine.options import ExecOptions
from masbench.engine.packed_optim import step_members
from masbench.engine.prepare import Prepared, describe_device, prepare
from masbench.spec import ENDPOINT_LAMBDAS, RunSpec


def train(members: Sequence[Member], options: ExecOptions = ExecOptions(), *, prepared: Prepared | None = None,
          datasets: dict | None = None, conv: str | None = None) -> list[MemberOutcome]:
    """Train ``members`` (K >= 1) in one pass; one ``MemberOutcome`` per member, in order.

    Each resumes from its checkpoint in ``options.checkpoint_dir`` when one is there (``Member.owner``: the
    store and run the checkpoints belong to; another owner's is not resumed). ``prepared``: what ``prepare``
    built for these members, whose options then apply (else built here, with ``datasets`` and ``conv``).
    ``BaseException``s that are not ``Exception``s (an interrupt, a stop) propagate.
    """
    members = list(members)
    p = prepared if prepared is not None else prepare([m.spec for m in members], options, datasets=datasets,
                                                      conv=conv)
    if [s.spec.key for s in p.members] != [m.spec.key for m in members]:
        raise ValueError("train: prepared for other cells than the members given")
    dist = p.options.distributed
    main = dist is None or dist.is_main
    alone = len(p.members) == 1
    for s, member in zip(p.members, members):
        # Under DDP every rank reads the checkpoint rank 0 writes.
        s.member = member if dist is None else replace(member, owner=dist.broadcast(member.owner))
        try:
            checkpoint.load(s, p.options, lambda state, s=s: _load_model(p, s, state), main)
        except checkpoint.Unfit as error:  # that member's alone: it fails, the others go on
            s.set_aside(error)
    if alone:  # the process's RNG is the member's
        set_global_rng_states(p.members[0].rng, p.device)
    forwards = _forwards(p)
    device = describe_device(p.device)
    _start(p, device)
    for epoch in range(min(s.start_epoch for s in p.members) + 1, p.spec.epochs + 1):
        training = [s for s in p.members if s.trains_in(epoch)]
        if training:
            _epoch(p, epoch, training, forwards, main)
    for s in p.members:
        if s.status == "running":
            s.status = "completed"
            if main and not p.options.keep_checkpoint:
                checkpoint.remove(s, p.options)
    return [s.outcome(device) for s in p.members]


def train_one(spec: RunSpec, options: ExecOptions = ExecOptions(), callbacks: Sequence[Callback] = (), *,
              owner: CheckpointOwner | None = None, prepared: Prepared | None = None,
              datasets: dict | None = None) -> RunResult:
    """One cell: ``train([Member(spec, callbacks, owner)])``'s result; what its callbacks raised, raised.

    Example:
        >>> result = train_one(RunSpec(dataset="digits", model="mlp", epochs=1))  # doctest: +SKIP
        >>> result.status, len(result.epochs)  # doctest: +SKIP
        ('completed', 1)
    """
    outcome, = train([Member(spec, tuple(callbacks), owner)], options, prepared=prepared, datasets=datasets)
    if outcome.exception is not None:
        raise outcome.exception
    return outcome.result


def check_every(device: torch.device) -> int:
    """How often (in batches) the host looks at the loss: every batch on CPU, where it costs nothing."""
    return 1 if device.type == "cpu" else 25


def eval_batch_size(spec: RunSpec) -> int:
    return max(spec.batch_size, 256)


def current_lambdas(optimizer: torch.optim.Optimizer, spec: RunSpec) -> tuple[float | None, float | None]:
    """MAS's lambdas in force; Adam's, AdamW's and SGD's endpoints; none for other optimizers."""
    group = optimizer.param_groups[0]
    if "lambda_adam" in group:
        return group["lambda_adam"], group["lambda_sgd"]
    return spec.lambdas if spec.optimizer in ENDPOINT_LAMBDAS else (None, None)


def _load_model(p: Prepared, s: MemberState, state: dict) -> None:
    if p.fused is not None:
        p.fused.load_member_state_dict(s.index, state)
    else:
        s.model.load_state_dict(state)


def _model_state(p: Prepared, s: MemberState) -> dict:
    return p.fused.member_state_dict(s.index) if p.fused is not None else s.model.state_dict()


def _rng(p: Prepared, s: MemberState) -> dict:
    """The process's RNG states of ``s``'s run: the process's own for one member."""
    return global_rng_states(p.device) if len(p.members) == 1 else s.rng


def _start(p: Prepared, device: str) -> None:
    batch_size = p.spec.batch_size
    for s in p.members:
        model = s.model if p.fused is None else None
        parameters = (sum(t.numel() for t in model.parameters()) if model is not None
                      else sum(t.numel() for t in p.fused.parameters()) // p.fused.size)
        train_size = len(s.dataset.train)
        s.notify("on_start", RunInfo(s.spec, device, train_size, len(s.dataset.test),
                                     math.ceil(train_size / batch_size), parameters, s.start_epoch))
        if s.history:
            s.notify("on_resume", s.history)


def _forwards(p: Prepared) -> dict[int, tuple]:
    """Per member: the forward used for training (DDP-wrapped under DDP, compiled if asked) and the one for
    evaluation; under grouped convolutions every member's are the fused model's."""
    dist = p.options.distributed

    def compiled_if_asked(model):
        return torch.compile(model) if p.options.compile else model

    if p.fused is not None:
        forward = compiled_if_asked(p.fused)
        return {s.index: (forward, forward) for s in p.members}
    out = {}
    for s in p.members:
        if dist is None:
            forward = compiled_if_asked(s.model)
            out[s.index] = (forward, forward)
            continue
        # DDP after the checkpoint is loaded (every rank reads the same file); evaluation uses the bare model,
        # since each rank evaluates a different share of the test set.
        from torch.nn.parallel import DistributedDataParallel

        trained = DistributedDataParallel(s.model, device_ids=[p.device.index] if p.device.type == "cuda" else None)
        out[s.index] = (compiled_if_asked(trained), compiled_if_asked(s.model))
    return out


@dataclass
class _Sums:
    """Running sums of an epoch on this process, on its device (read once at the end)."""

    loss: torch.Tensor
    correct: torch.Tensor
    n: int = 0

    @classmethod
    def zeros(cls, device: torch.device) -> _Sums:
        return cls(torch.zeros((), dtype=torch.float64, device=device), torch.zeros((), dtype=torch.int64, device=device))

    def add(self, summed: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        self.loss += summed
        self.correct += (logits.argmax(-1) == labels).sum()
        self.n += len(labels)

    def totals(self, p: Prepared) -> tuple[float, int, int]:
        """(loss sum, correct, examples) over every process of a DDP run."""
        dist = p.options.distributed
        if dist is None:
            return self.loss.item(), int(self.correct.item()), self.n
        totals = dist.sum_(torch.stack([self.loss.double(), self.correct.double(),
                                        torch.tensor(float(self.n), dtype=torch.float64, device=p.device)]))
        return totals[0].item(), int(totals[1].item()), int(totals[2].item())


@dataclass
class _Step:
    """One member's batch in a training step, after the optimizer stepped."""

    member: MemberState
    logits: torch.Tensor  # detached
    labels: torch.Tensor
    loss: torch.Tensor  # what was differentiated (under DDP: weighted for DDP's average)
    summed: torch.Tensor  # the batch's summed loss on this process, float64, detached


def _epoch(p: Prepared, epoch: int, training: list[MemberState], forwards: dict, main: bool) -> None:
    """Train ``training`` for one epoch and evaluate them; the members still waiting keep their state."""
    waiting = {s.index: p.fused.member_state_dict(s.index) for s in p.members
               if p.fused is not None and s.status == "running" and s not in training}
    settings = {s.index: (s.optimizer.param_groups[0]["lr"], *current_lambdas(s.optimizer, s.spec))
                for s in training}
    _sync(p.device)
    start = time.perf_counter()
    sums, diverged = _train_batches(p, epoch, training, forwards, start)
    _sync(p.device)
    seconds = time.perf_counter() - start
    for k, state in waiting.items():  # the fused model's training steps moved their BatchNorm statistics
        p.fused.load_member_state_dict(k, state)
    evaluated = _evaluate(p, [s for s in training if s.status == "running" and s.index not in diverged], forwards)
    for s in training:
        lr, lambda_adam, lambda_sgd = settings[s.index]
        if s.index in diverged:
            value, at_batch, at_seconds = diverged[s.index]
            _, right, n = sums[s.index].totals(p)
            metrics = EpochMetrics(epoch, value, right / max(n, 1), None, None, lr, lambda_adam, lambda_sgd,
                                   at_seconds, n / at_seconds if at_seconds > 0 else 0.0)
            s.diverge(epoch, value, at_batch)
        elif s.status == "running":
            total_loss, right, n = sums[s.index].totals(p)
            test_loss, test_acc, val_loss, val_acc = evaluated[s.index]
            metrics = EpochMetrics(epoch, total_loss / n, right / n, test_loss, test_acc, lr, lambda_adam,
                                   lambda_sgd, seconds, n / seconds if seconds > 0 else 0.0, val_loss, val_acc)
        else:
            continue  # set aside during the epoch: its epoch is not reported, as a failed run's is not
        s.history.append(metrics)
        s.notify("on_epoch", metrics)
        if s.status in ("diverged", "pruned") and main:  # done: nothing resumes from its checkpoint
            checkpoint.remove(s, p.options)
    # After the callbacks (the store has the epoch): a crash between repeats an epoch.
    saving = [s for s in training if s.status == "running"]
    for s in saving:
        if s.schedule is not None:
            s.schedule.step()
        if s.lr_schedule is not None:
            s.lr_schedule.step()
    if main and saving:
        with checkpoint.saves(saving, p.options, epoch, [(_model_state(p, s), _rng(p, s)) for s in saving]) as place:
            for k, s in enumerate(saving):
                s.notify("on_checkpoint", epoch, place(k))
    if any(s.status == "running" for s in training):
        faults.point("epoch.saved")


def _train_batches(p: Prepared, epoch: int, training: list[MemberState], forwards: dict, start: float):
    """One pass over the training set: ({member: its sums on this process}, {member: (loss, batch, seconds)
    where its loss was not finite})."""
    dist = p.options.distributed
    every = check_every(p.device)
    batches = {s.index: math.ceil(len(s.dataset.train) / p.spec.batch_size) for s in training}
    sums = {s.index: _Sums.zeros(p.device) for s in training}
    diverged: dict[int, tuple[float, int, float]] = {}
    active = list(training)  # the members still training this epoch; the steps below draw for these alone
    steps = _fused_steps(p, training, forwards, active) if p.fused is not None else _own_steps(p, forwards, active)
    for i, step in enumerate(steps):
        faults.point("batch")
        for one in step:
            s = one.member
            sums[s.index].add(one.summed, one.logits, one.labels)
            if (i + 1) % every == 0 or i + 1 == batches[s.index]:
                value = one.loss.item()
                if dist is not None and dist.any(not math.isfinite(value), p.device):
                    value = value if not math.isfinite(value) else float("nan")  # another rank's loss is not finite
                if not math.isfinite(value):
                    diverged[s.index] = (value, i + 1, time.perf_counter() - start)
                    active.remove(s)
                    continue
            s.notify("on_batch", epoch, i + 1, batches[s.index])
            if s.status != "running":
                active.remove(s)
        if not active:
            break
    return sums, diverged


def _own_steps(p: Prepared, forwards: dict, active: list[MemberState]) -> Iterator[list[_Step]]:
    """Each member's own forward on its own batch, then one optimizer step of them all, batch by batch.

    With several members, each forward runs with the process's RNG states of its member's run (dropout).
    Members whose batches are bound to be the same (``_batch_streams``) share one stream of them.
    """
    dist, batch_size, device = p.options.distributed, p.spec.batch_size, p.device
    alone = len(p.members) == 1
    for s in active:
        s.model.train()
    drawer = _batch_streams(active)
    iterators = {d.index: iter(train_batches(d.dataset, batch_size, device, d.generator, d.augment_generator,
                                             p.channels_last, _shard(p))) for d in drawer.values()}
    sharing = {d.index for d in drawer.values() if sum(e is d for e in drawer.values()) > 1}
    i = 0
    while True:
        step, drawn = [], {}
        for s in list(active):
            d = drawer[s.index]
            if d.index not in drawn:
                drawn[d.index] = next(iterators[d.index], None)
            batch = drawn[d.index]
            if batch is None:
                active.remove(s)
                _take_generators(s, d)
                continue
            if not alone:
                _enter_rng(s, device)
            versions = _versions(batch.inputs)  # a forward that writes into its input would change the others'
            with _autocast(p):
                logits = forwards[s.index][0](batch.inputs)
            if d.index in sharing and _versions(batch.inputs) != versions:
                raise RuntimeError(f"model {p.spec.model} writes into its input batch, which the members of one "
                                   f"seed share in a pack: train it unpacked (--pack off)")
            if not alone:
                _leave_rng(s, device)
            if dist is None:
                loss = F.cross_entropy(logits.float(), batch.labels)
                summed = loss.detach().double() * len(batch)
            else:
                summed = F.cross_entropy(logits.float(), batch.labels, reduction="sum")
                global_size = min(batch_size, len(s.dataset.train) - i * batch_size)
                loss = summed * (dist.world_size / global_size)  # DDP averages over ranks: the global mean's gradient
                summed = summed.detach().double()
            _zero_grad(s.optimizer)
            step.append(_Step(s, logits.detach(), batch.labels, loss, summed))
        if not step:
            return
        if len(step) == 1:
            step[0].loss.backward()
            step[0].member.optimizer.step()
        else:
            # One backward: the sum's gradient reaches each member's loss as exactly 1, so each member's
            # gradients are those of its own loss.
            torch.stack([one.loss for one in step]).sum().backward()
            step_members([one.member.optimizer for one in step], range(len(step)))
        yield step
        i += 1


def _versions(inputs) -> tuple[int, ...]:
    """The version counters of a batch's input tensors (one tensor, or a text batch's dict of them): an
    in-place write to any of them moves its counter."""
    tensors = inputs.values() if isinstance(inputs, dict) else [inputs]
    return tuple(t._version for t in tensors if isinstance(t, torch.Tensor))


def _batch_streams(members: list[MemberState]) -> dict[int, MemberState]:
    """Per member (by index), the member that draws its training batches: itself, or the first member that
    holds the same data set and whose order and augmentation generators are in the same states (cells of
    one seed). Those draw the same batches, so one draws for all, and each of the others takes its
    generators' states at the end of the epoch (``_take_generators``), those its own draws would have left."""
    first: dict[tuple, MemberState] = {}
    return {s.index: first.setdefault((id(s.dataset), _state(s.generator), _state(s.augment_generator)), s)
            for s in members}


def _state(generator: torch.Generator | None) -> bytes | None:
    return None if generator is None else generator.get_state().numpy().tobytes()


def _take_generators(s: MemberState, drawer: MemberState) -> None:
    """``s``'s generators as its own draws of the epoch ``drawer`` drew for it would have left them."""
    if drawer is not s:
        s.generator.set_state(drawer.generator.get_state())
        if s.augment_generator is not None:
            s.augment_generator.set_state(drawer.augment_generator.get_state())


def _zero_grad(optimizer: torch.optim.Optimizer) -> None:
    """``optimizer.zero_grad(set_to_none=True)``; torch's own does that alone without its per-call wrappers
    (dynamo's guard, a profiler range), which cost more than the work on a small model."""
    if type(optimizer).zero_grad is not torch.optim.Optimizer.zero_grad:
        optimizer.zero_grad(set_to_none=True)
        return
    for group in optimizer.param_groups:
        for tensor in group["params"]:
            tensor.grad = None


def _autocast(p: Prepared):
    """bfloat16 autocast where the run asks for it; else nothing (an autocast disabled costs a few calls a
    forward, and the engine never runs inside an enabled one)."""
    return torch.autocast(p.device.type, dtype=torch.bfloat16) if p.amp else contextlib.nullcontext()


def _enter_rng(s: MemberState, device: torch.device) -> None:
    """Put member ``s``'s RNG states in the process for its forward (dropout draws from them; nothing in a
    forward draws from Python's ``random``, which stays as its run's checkpoint records it)."""
    torch.set_rng_state(s.rng["torch"])
    if device.type == "cuda" and s.rng["cuda"]:
        torch.cuda.set_rng_state_all(s.rng["cuda"])


def _leave_rng(s: MemberState, device: torch.device) -> None:
    s.rng["torch"] = torch.get_rng_state()
    if device.type == "cuda":
        s.rng["cuda"] = torch.cuda.get_rng_state_all()


def _fused_steps(p: Prepared, training: list[MemberState], forwards: dict,
                 active: list[MemberState]) -> Iterator[list[_Step]]:
    """The fused model's forward on every member's batch ([K, B, ...]), one backward of the active members'
    summed mean losses, and their optimizers' step, batch by batch."""
    forward = forwards[p.members[0].index][0]
    generators = [(s.generator, s.augment_generator) if s in training else None for s in p.members]
    p.fused.train()
    for inputs, labels in member_batches(p.dataset, p.spec.batch_size, p.device, generators):
        with _autocast(p):
            logits = forward(inputs).float()
        # Each member's loss as its unpacked cell computes it (one reduction over [B, classes]).
        losses = [F.cross_entropy(out, y) for out, y in zip(logits.unbind(0), labels.unbind(0))]
        p.packed_optimizer.zero_grad()
        torch.stack([losses[s.index] for s in active]).sum().backward()
        p.packed_optimizer.step([s.index for s in active])
        logits = logits.detach()
        yield [_Step(s, logits[s.index], labels[s.index], losses[s.index],
                     losses[s.index].detach().double() * labels.shape[1]) for s in active]


def _evaluate(p: Prepared, members: list[MemberState], forwards: dict) -> dict[int, tuple]:
    """Per member: (test loss, test accuracy, validation loss, validation accuracy), every example counted once
    (under DDP, on one rank); no validation split: None, None."""
    if not members:
        return {}
    if p.fused is not None:
        return _evaluate_fused(p, members, forwards)
    out = {}
    for s in members:
        forward = forwards[s.index][1]
        test = _evaluate_one(p, s, forward, "test")
        val = _evaluate_one(p, s, forward, "val") if s.dataset.val is not None else (None, None)
        out[s.index] = (*test, *val)
    return out


def _evaluate_one(p: Prepared, s: MemberState, forward, split: str) -> tuple[float, float]:
    """Loss and accuracy of one member's own model over every example of ``split`` (test or val)."""
    s.model.eval()
    sums = _Sums.zeros(p.device)
    with torch.no_grad(), _autocast(p):
        for batch in s.dataset.batches(split, eval_batch_size(s.spec), p.device, None, p.channels_last, _shard(p)):
            if len(batch) == 0:  # this rank's share of a last batch smaller than the number of ranks
                continue
            logits = forward(batch.inputs).float()
            sums.add(F.cross_entropy(logits, batch.labels, reduction="sum").double(), logits, batch.labels)
    s.model.train()
    total_loss, total_correct, total = sums.totals(p)
    return total_loss / total, total_correct / total


def _evaluate_fused(p: Prepared, members: list[MemberState], forwards: dict) -> dict[int, tuple]:
    """Every member's test loss and accuracy through the fused model, each as the unpacked engine computes it."""
    forward = forwards[p.members[0].index][1]
    sums = {s.index: _Sums.zeros(p.device) for s in members}
    p.fused.eval()
    with torch.no_grad(), _autocast(p):
        for inputs, labels in test_batches(p.dataset, eval_batch_size(p.spec), p.device, p.fused.size):
            logits = forward(inputs).float()
            for s in members:
                out = logits[s.index]
                sums[s.index].add(F.cross_entropy(out, labels, reduction="sum").double(), out, labels)
    p.fused.train()
    out = {}
    for s in members:
        total_loss, total_correct, total = sums[s.index].totals(p)
        out[s.index] = (total_loss / total, total_correct / total, None, None)
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _shard(p: Prepared) -> tuple[int, int] | None:
    dist = p.options.distributed
    return (dist.rank, dist.world_size) if dist is not None else None
