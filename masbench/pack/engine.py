"""``train_pack``: K cells that share data set, data options, model, batch size and epochs, trained in one pass.

Each member is its own cell, as if it had run alone:

- its initial weights are its unpacked cell's, bit for bit (built with its seed by
  ``engine.prepare.build_seeded_model``, then fused: ``masbench.pack.fuse``);
- it sees its unpacked cell's batches, in the same order, with the same augmentation
  (``masbench.pack.data``: its own order and augmentation generators, from its seed: ``masbench.seeds``);
- the loss is the sum of the members' mean losses, so each member's gradient is its own;
- its optimizer is its own (``masbench.pack.optim``), with its own lambda schedule;
- its metrics go to its own callbacks, as ``EpochMetrics`` (``seconds`` is the pack's epoch, in which it
  trained with the others), and it ends with its own ``RunResult``;
- a member whose loss stops being finite is frozen and ends ``diverged`` while the others go on;
- after each epoch it writes its own ordinary checkpoint (``masbench.pack.members``), from which a
  killed pack resumes it, or an unpacked run does; a member whose checkpoint is ahead of the others'
  waits (its weights, statistics and optimizer untouched) until the pack reaches its epoch.

On a CPU (each member's own forward, ``masbench.pack.fuse``, and its own optimizer) the
numbers are the unpacked cell's bit for bit, the MLP's on one thread (a batched matmul splits its sums
over threads otherwise than ``mm``). On CUDA, grouped convolutions sum in another order than the
unpacked layers do: the numbers agree to float rounding.

Example:
    >>> from masbench.spec import RunSpec
    >>> cells = [PackMember(RunSpec(dataset="digits", epochs=1, seed=s)) for s in range(3)]  # doctest: +SKIP
    >>> [o.result.status for o in train_pack(cells)]  # doctest: +SKIP
    ['completed', 'completed', 'completed']
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from masbench import faults, seeds
from masbench.engine.callbacks import EpochMetrics, RunInfo
from masbench.engine.checkpoint import global_rng_states
from masbench.engine.prepare import build_seeded_model, data_cache_key, describe_device, load_data, resolve_device
from masbench.pack import members as member_io
from masbench.pack.data import member_batches, test_batches
from masbench.pack.fuse import PackedModel, Unpackable, fuse
from masbench.pack.members import Member, MemberOutcome, PackMember
from masbench.pack.optim import PackedOptimizer, member_views
from masbench.spec import RunSpec
from masbench.engine.options import ExecOptions

SHARED_FIELDS = ("dataset", "model", "batch_size", "epochs")
PACKED_OPTIMIZERS = ("mas", "sgd", "adam", "adamw")  # the rules pack.optim steps as one


def can_pack(specs: Sequence[RunSpec]) -> str | None:
    """Why ``specs`` cannot train as one pack (one line), or None if they can.

    A pack shares the data set, its options, the model, the batch size and the epochs; the members may
    differ in optimizer, every optimizer hyperparameter, lambda schedule and seed. Execution options
    (device, precision) are the caller's, shared by construction.
    """
    if not specs:
        return "there are no cells to pack"
    first = specs[0]
    for name in SHARED_FIELDS:
        values = {getattr(s, name) for s in specs}
        if len(values) > 1:
            return f"the cells differ in {name} ({', '.join(sorted(map(str, values)))}); a pack's cells share it"
    if any(s.data_options() != first.data_options() for s in specs):
        return "the cells differ in their data options; a pack's cells share them"
    other = next((s for s in specs if s.optimizer not in PACKED_OPTIMIZERS), None)
    if other is not None:  # told here, at planning, so that it cannot take the pack's other members with it
        return f"optimizer {other.optimizer!r} has no packed form (packable: {', '.join(PACKED_OPTIMIZERS)})"
    scheduled = next((s for s in specs if s.lr_schedule != "constant"), None)
    if scheduled is not None:  # a member's lr would stay constant: other numbers than its cell's, silently
        return f"{scheduled.name} has an lr schedule, which packing does not run; it trains unpacked"
    held_out = next((s for s in specs if s.val_fraction is not None), None)
    if held_out is not None:  # each member's split follows its seed; the pack evaluates the test set alone
        return f"{held_out.name} has a validation split, which packing does not evaluate; it trains unpacked"
    if first.kind != "image":
        return f"model {first.model!r} takes {first.kind}; packing covers image data (mlp, cnn, resnet18, resnet34)"
    keys = [s.key for s in specs]
    if len(set(keys)) < len(keys):
        return "a cell appears twice (same key); each member writes its own checkpoint"
    return None


def pack_key(spec: RunSpec) -> tuple:
    """What the cells of one pack share (``can_pack``): cells with equal keys may train together."""
    return (*(getattr(spec, name) for name in SHARED_FIELDS), tuple(sorted(spec.data_options().items())))


def plan_packs(specs: Sequence[RunSpec], size: int) -> list[list[RunSpec]]:
    """``specs`` in packs of at most ``size`` cells that ``can_pack``, in their order; a cell that cannot
    be packed with any other (a text model, say) is a pack of one."""
    if size < 1:
        raise ValueError(f"Invalid pack size: {size} (must be >= 1)")
    groups: dict[tuple, list[RunSpec]] = {}
    for spec in specs:
        key = pack_key(spec) if can_pack([spec]) is None else ("alone", spec.key)
        groups.setdefault(key, []).append(spec)
    packs = []
    for group in groups.values():
        packs.extend(group[i : i + size] for i in range(0, len(group), size))
    return packs


@dataclass
class _Pack:
    spec: RunSpec  # the first member's: the shared fields
    options: ExecOptions
    device: torch.device
    dataset: Any
    model: PackedModel
    optimizer: PackedOptimizer
    members: list[Member]
    amp: bool


def train_pack(cells: Sequence[PackMember], options: ExecOptions = ExecOptions(), *, datasets: dict | None = None,
               optimizer_path: str = "auto", conv: str | None = None) -> list[MemberOutcome]:
    """Train ``cells`` as one pack; one ``MemberOutcome`` per cell, in order.

    Raises ``Unpackable`` (one line: why) before anything is trained or written when the cells cannot be
    packed, so that the caller runs them unpacked. ``datasets`` caches loaded data sets, as in ``prepare``.
    A member's own callbacks raising sets that member aside (see ``MemberOutcome``); anything else raises.
    ``options.channels_last`` is not applied to a pack (its convolution weights have a member dimension).
    ``conv`` is the convolutions' strategy (``masbench.pack.fuse``; None: ``$MASBENCH_PACK_CONV`` or auto).
    """
    reason = can_pack([c.spec for c in cells])
    if reason is None and options.distributed is not None:
        reason = "a DDP run is not packed"
    if reason is not None:
        raise Unpackable(reason)
    pack = _build(cells, options, datasets, optimizer_path, conv)
    device = describe_device(pack.device)
    for m in pack.members:
        member_io.load(m, options, lambda sd, k=m.index: pack.model.load_member_state_dict(k, sd),
                       lambda sd, k=m.index: pack.optimizer.load_member_state_dict(k, sd))
    _start(pack, device)
    forward = torch.compile(pack.model) if options.compile else pack.model
    for epoch in range(min(m.start_epoch for m in pack.members) + 1, pack.spec.epochs + 1):
        training = [m for m in pack.members if m.trains_in(epoch)]
        if training:
            _epoch(pack, epoch, training, forward)
    for m in pack.members:
        if m.status == "running":
            m.status = "completed"
            if not options.keep_checkpoint:
                member_io.remove(m, options)
    return [m.outcome(device) for m in pack.members]


def _build(cells: Sequence[PackMember], options: ExecOptions, datasets: dict | None, path: str,
           conv: str | None) -> _Pack:
    """The shared data, the fused model and the members' optimizers, schedules and generators."""
    from masbench.optim import build_lambda_schedule, build_optimizer

    spec = cells[0].spec
    device = resolve_device(options.device)
    key = data_cache_key(spec, options)
    dataset = datasets.get(key) if datasets is not None else None
    if dataset is None:
        dataset = load_data(spec, options)
        if datasets is not None:
            datasets[key] = dataset
    models, rngs = [], []
    for cell in cells:
        models.append(build_seeded_model(cell.spec, dataset))
        rngs.append(global_rng_states(device))  # what its unpacked run's checkpoints record
    model = fuse(models, conv).to(device)
    del models
    params = list(model.parameters())
    optimizers, schedules = [], []
    for k, cell in enumerate(cells):
        opt = build_optimizer(cell.spec.optimizer, member_views(params, k), **cell.spec.optimizer_hparams())
        optimizers.append(opt)
        schedules.append(build_lambda_schedule(cell.spec.lambda_schedule, opt, cell.spec.epochs)
                         if cell.spec.optimizer == "mas" else None)
    optimizer = PackedOptimizer(params, optimizers, path)
    amp = options.amp if options.amp is not None else device.type == "cuda" and torch.cuda.is_bf16_supported()
    members = [Member(k, cell, optimizers[k], schedules[k], seeds.order_generator(cell.spec.seed),
                      seeds.augment_generator(cell.spec.seed), rngs[k]) for k, cell in enumerate(cells)]
    return _Pack(spec, options, device, dataset, model, optimizer, members, amp)


def _start(pack: _Pack, device: str) -> None:
    train_size, batch_size = len(pack.dataset.train), pack.spec.batch_size
    parameters = sum(t.numel() for t in pack.model.parameters()) // pack.model.size
    for m in pack.members:
        m.notify("on_start", RunInfo(m.spec, device, train_size, len(pack.dataset.test),
                                     math.ceil(train_size / batch_size), parameters, m.start_epoch))
        if m.history:
            m.notify("on_resume", m.history)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _epoch(pack: _Pack, epoch: int, training: list[Member], forward) -> None:
    """Train ``training`` for one epoch and evaluate them; the members still waiting keep their state."""
    waiting = {m.index: pack.model.member_state_dict(m.index) for m in pack.members
               if m.status == "running" and m not in training}
    settings = {m.index: m.current(m.spec.lambdas) for m in training}
    _sync(pack.device)
    start = time.perf_counter()
    sums, diverged = _train_batches(pack, epoch, training, forward, start)
    _sync(pack.device)
    seconds = time.perf_counter() - start
    for k, state in waiting.items():
        pack.model.load_member_state_dict(k, state)
    evaluated = [m for m in training if m.status == "running"]
    tests = _evaluate(pack, forward) if evaluated else {}
    losses, correct, seen = sums[0].tolist(), sums[1].tolist(), sums[2]
    for m in training:
        lr, lambda_adam, lambda_sgd = settings[m.index]
        if m.index in diverged:
            value, at_batch, at_seconds, right, n = diverged[m.index]
            metrics = EpochMetrics(epoch, value, right / max(n, 1), None, None, lr, lambda_adam, lambda_sgd,
                                   at_seconds, n / at_seconds if at_seconds > 0 else 0.0)
            m.diverge(epoch, value, at_batch)
        elif m.status == "running":
            test_loss, test_acc = tests[m.index]
            metrics = EpochMetrics(epoch, losses[m.index] / seen, correct[m.index] / seen, test_loss, test_acc, lr,
                                   lambda_adam, lambda_sgd, seconds, seen / seconds if seconds > 0 else 0.0)
        else:
            continue  # set aside during the epoch: its epoch is not reported, as a failed run's is not
        m.history.append(metrics)
        m.notify("on_epoch", metrics)
        if m.status == "diverged":
            member_io.remove(m, pack.options)
    for m in training:
        if m.status == "running":  # after the callbacks, so that a crash in between only repeats an epoch
            if m.schedule is not None:
                m.schedule.step()
            member_io.save(m, pack.options, epoch, pack.model.member_state_dict(m.index),
                           pack.optimizer.member_state_dict(m.index))
    faults.point("epoch.saved")


def _train_batches(pack: _Pack, epoch: int, training: list[Member], forward, start: float):
    """One pass over the training set: ((loss sums, correct counts, examples), {member: where it diverged})."""
    size, batch_size = pack.model.size, pack.spec.batch_size
    batches = math.ceil(len(pack.dataset.train) / batch_size)
    check_every = 1 if pack.device.type == "cpu" else 25  # as the unpacked engine looks at the loss
    active = [m.index for m in training]
    generators = [(m.generator, m.augment_generator) if m in training else None for m in pack.members]
    loss_sums = torch.zeros(size, dtype=torch.float64, device=pack.device)
    correct = torch.zeros(size, dtype=torch.int64, device=pack.device)
    seen, diverged = 0, {}
    pack.model.train()
    for i, (inputs, labels) in enumerate(member_batches(pack.dataset, batch_size, pack.device, generators)):
        with torch.autocast(pack.device.type, dtype=torch.bfloat16, enabled=pack.amp):
            logits = forward(inputs)
        losses = _member_losses(logits.float(), labels)
        total = losses.sum() if len(active) == size else losses[torch.tensor(active, device=pack.device)].sum()
        pack.optimizer.zero_grad()
        total.backward()
        pack.optimizer.step(active)
        faults.point("batch")
        loss_sums += losses.detach().double() * labels.shape[1]
        correct += (logits.detach().argmax(-1) == labels).sum(1)
        seen += labels.shape[1]
        if (i + 1) % check_every == 0 or i + 1 == batches:
            values = losses.detach().tolist()
            for k in [k for k in active if not math.isfinite(values[k])]:
                diverged[k] = (values[k], i + 1, time.perf_counter() - start, int(correct[k]), seen)
                active.remove(k)
        for m in training:
            if m.index in active:
                m.notify("on_batch", epoch, i + 1, batches)
                if m.status != "running":
                    active.remove(m.index)
        if not active:
            break
    return (loss_sums, correct, seen), diverged


def _member_losses(logits: Tensor, labels: Tensor) -> Tensor:
    """[K] mean losses, each computed as its unpacked cell computes it (one reduction over [B, classes]): the
    same logits give the same loss, bit for bit (one loss over [K*B] sums in another order)."""
    return torch.stack([F.cross_entropy(out, y) for out, y in zip(logits.unbind(0), labels.unbind(0))])


def _evaluate(pack: _Pack, forward) -> dict[int, tuple[float, float]]:
    """Every member's test loss and accuracy over every test example, as the unpacked engine computes them."""
    size = pack.model.size
    loss_sums = torch.zeros(size, dtype=torch.float64, device=pack.device)
    correct = torch.zeros(size, dtype=torch.int64, device=pack.device)
    total = 0
    pack.model.eval()
    with torch.no_grad(), torch.autocast(pack.device.type, dtype=torch.bfloat16, enabled=pack.amp):
        for inputs, labels in test_batches(pack.dataset, max(pack.spec.batch_size, 256), pack.device, size):
            logits = forward(inputs).float()
            sums = [F.cross_entropy(out, labels, reduction="sum") for out in logits.unbind(0)]  # as unpacked
            loss_sums += torch.stack(sums).double()
            correct += (logits.argmax(-1) == labels).sum(1)
            total += len(labels)
    pack.model.train()
    losses, right = loss_sums.tolist(), correct.tolist()
    return {k: (losses[k] / total, right[k] / total) for k in range(size)}
