"""The training loop: ``train(spec, options, callbacks) -> RunResult``.

No printing and no database: what happens goes to callbacks (progress, the
metric store). Per epoch the engine reports train loss and accuracy, test loss
and accuracy, validation loss and accuracy (with a ``val_fraction``: the same
evaluation on the split held out of training), the learning rate, the lambdas in
force, seconds and samples per second (training only: evaluation is left out of
the timing).

Reproducible: a seed fixes the initial weights, the order of the batches and
the augmentation, each through a stream of its own (``masbench.seeds``), so on
CPU the same spec gives the same metrics. Resumable:
after every epoch a checkpoint is written atomically (see ``checkpoint``).
A NaN or infinite loss ends the run with status ``diverged``.

Under DDP every process takes a share of each global batch. Each process's loss
is its examples' summed loss over the global batch size, times the number of
processes, so that DDP's average of the gradients is the gradient of the global
batch's mean loss however unevenly a batch divides; a share may be empty (a
last batch smaller than the number of processes). Evaluation counts every test
example once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from masbench import faults
from masbench.data.base import train_batches
from masbench.engine import checkpoint
from masbench.engine.callbacks import Callback, EpochMetrics, RunInfo, RunResult
from masbench.engine.checkpoint import CheckpointOwner
from masbench.engine.prepare import Prepared, describe_device, prepare
from masbench.spec import ENDPOINT_LAMBDAS, RunSpec
from masbench.engine.options import ExecOptions


def train(
    spec: RunSpec,
    options: ExecOptions = ExecOptions(),
    callbacks: Sequence[Callback] = (),
    prepared: Prepared | None = None,
    *,
    owner: CheckpointOwner | None = None,
) -> RunResult:
    """Train one cell; resumes from its checkpoint in ``options.checkpoint_dir`` when one is there.

    ``owner``: the store and run the checkpoints belong to; a checkpoint written for another owner is not
    resumed. ``None`` (a run outside any store) uses the checkpoint named by the run's key alone.

    Example:
        >>> from masbench.spec import RunSpec
        >>> result = train(RunSpec(dataset="digits", model="mlp", epochs=1))  # doctest: +SKIP
        >>> result.status, len(result.epochs)  # doctest: +SKIP
        ('completed', 1)
    """
    p = prepared if prepared is not None else prepare(spec, options)
    dist = options.distributed
    main = dist is None or dist.is_main
    if dist is not None:
        owner = dist.broadcast(owner)  # every rank reads the checkpoint rank 0 writes

    def warn(message: str) -> None:
        for cb in callbacks:
            cb.on_warning(message)

    start_epoch, history = checkpoint.load(p, owner, warn, main)
    forward, eval_forward = _forwards(p)
    train_size = len(p.dataset.train)
    info = RunInfo(spec, describe_device(p.device), train_size, len(p.dataset.test),
                   math.ceil(train_size / spec.batch_size), sum(t.numel() for t in p.model.parameters()), start_epoch)
    for cb in callbacks:
        cb.on_start(info)
    if history:
        for cb in callbacks:
            cb.on_resume(history)

    for epoch in range(start_epoch + 1, spec.epochs + 1):
        metrics, diverged = _epoch(p, epoch, forward, eval_forward, callbacks, info.batches_per_epoch)
        history.append(metrics)
        for cb in callbacks:
            cb.on_epoch(metrics)
        if diverged is not None:
            if main:
                checkpoint.remove(p, owner)
            return RunResult("diverged", history, info.device, diverged, start_epoch)
        if p.schedule is not None:
            p.schedule.step()
        if p.lr_schedule is not None:
            p.lr_schedule.step()
        # After the callbacks (the store has the epoch), so that a crash in between only repeats an epoch.
        if main:
            path = checkpoint.save(p, epoch, history, owner)
            for cb in callbacks:
                cb.on_checkpoint(epoch, path)
        faults.point("epoch.saved")

    if main and not options.keep_checkpoint:
        checkpoint.remove(p, owner)
    return RunResult("completed", history, info.device, None, start_epoch)


def _forwards(p: Prepared):
    """The forward used for training (DDP-wrapped under DDP, compiled if asked) and the one for evaluation."""
    dist = p.options.distributed
    # DDP after the checkpoint is loaded (every rank reads the same file); evaluation uses the bare model,
    # since each rank evaluates a different share of the test set.
    trained = p.model
    if dist is not None:
        from torch.nn.parallel import DistributedDataParallel

        trained = DistributedDataParallel(p.model, device_ids=[p.device.index] if p.device.type == "cuda" else None)
    forward = torch.compile(trained) if p.options.compile else trained
    if dist is None:
        return forward, forward
    return forward, torch.compile(p.model) if p.options.compile else p.model


@dataclass
class _Sums:
    """Running sums of an epoch on this process, on its device (read once at the end)."""

    loss: torch.Tensor
    correct: torch.Tensor
    n: int = 0

    @classmethod
    def zeros(cls, device: torch.device) -> _Sums:
        return cls(torch.zeros((), dtype=torch.float64, device=device), torch.zeros((), dtype=torch.int64, device=device))

    def totals(self, p: Prepared) -> tuple[float, int, int]:
        """(loss sum, correct, examples) over every process of a DDP run."""
        dist = p.options.distributed
        if dist is None:
            return self.loss.item(), int(self.correct.item()), self.n
        totals = dist.sum_(torch.stack([self.loss.double(), self.correct.double(),
                                        torch.tensor(float(self.n), dtype=torch.float64, device=p.device)]))
        return totals[0].item(), int(totals[1].item()), int(totals[2].item())


def _epoch(p: Prepared, epoch: int, forward, eval_forward, callbacks: Sequence[Callback],
           batches: int) -> tuple[EpochMetrics, str | None]:
    """Train one epoch and evaluate; returns its metrics and, if the loss stopped being finite, why."""
    lambda_adam, lambda_sgd = _current_lambdas(p)
    lr = p.optimizer.param_groups[0]["lr"]
    _sync(p.device)
    start = time.perf_counter()
    sums, diverged = _train_batches(p, epoch, forward, callbacks, batches)
    _sync(p.device)
    seconds = time.perf_counter() - start
    total_loss, total_correct, seen = sums.totals(p)
    speed = seen / seconds if seconds > 0 else 0.0
    if diverged is not None:
        value, at_batch = diverged
        metrics = EpochMetrics(epoch, value, total_correct / max(seen, 1), None, None, lr, lambda_adam, lambda_sgd,
                               seconds, speed)
        return metrics, f"non-finite training loss ({value}) at epoch {epoch}, batch {at_batch}"
    eval_batch = max(p.spec.batch_size, 256)
    test_loss, test_acc = _evaluate(p, eval_batch, eval_forward)
    val_loss, val_acc = _evaluate(p, eval_batch, eval_forward, "val") if p.dataset.val is not None else (None, None)
    metrics = EpochMetrics(epoch, total_loss / seen, total_correct / seen, test_loss, test_acc, lr, lambda_adam,
                           lambda_sgd, seconds, speed, val_loss, val_acc)
    return metrics, None


def _train_batches(p: Prepared, epoch: int, forward, callbacks: Sequence[Callback],
                   batches: int) -> tuple[_Sums, tuple[float, int] | None]:
    """One pass over the training set: (this process's sums, (loss, batch) where the loss was not finite)."""
    dist = p.options.distributed
    train_size, batch_size = len(p.dataset.train), p.spec.batch_size
    # How often the host looks at the loss: every batch on CPU, where it costs nothing, less often on a GPU.
    check_every = 1 if p.device.type == "cpu" else 25
    p.model.train()
    sums = _Sums.zeros(p.device)
    for i, batch in enumerate(train_batches(p.dataset, batch_size, p.device, p.generator, p.augment_generator,
                                            p.channels_last, _shard(p))):
        with torch.autocast(p.device.type, dtype=torch.bfloat16, enabled=p.amp):
            logits = forward(batch.inputs)
        if dist is None:
            loss = F.cross_entropy(logits.float(), batch.labels)
            summed = loss.detach().double() * len(batch)
        else:
            summed = F.cross_entropy(logits.float(), batch.labels, reduction="sum")
            global_size = min(batch_size, train_size - i * batch_size)
            loss = summed * (dist.world_size / global_size)  # DDP averages over ranks: the global mean's gradient
            summed = summed.detach().double()
        p.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        p.optimizer.step()
        faults.point("batch")
        sums.loss += summed
        sums.correct += (logits.detach().argmax(1) == batch.labels).sum()
        sums.n += len(batch)
        if (i + 1) % check_every == 0 or i + 1 == batches:
            value = loss.item()
            if dist is not None and dist.any(not math.isfinite(value), p.device):
                value = value if not math.isfinite(value) else float("nan")  # another rank's loss is not finite
            if not math.isfinite(value):
                return sums, (value, i + 1)
        for cb in callbacks:
            cb.on_batch(epoch, i + 1, batches)
    return sums, None


def _evaluate(p: Prepared, batch_size: int, forward, split: str = "test") -> tuple[float, float]:
    """Loss and accuracy over every example of ``split`` (test or val), each counted once (under DDP, on one rank)."""
    p.model.eval()
    sums = _Sums.zeros(p.device)
    with torch.no_grad(), torch.autocast(p.device.type, dtype=torch.bfloat16, enabled=p.amp):
        for batch in p.dataset.batches(split, batch_size, p.device, None, p.channels_last, _shard(p)):
            if len(batch) == 0:  # this rank's share of a last batch smaller than the number of ranks
                continue
            logits = forward(batch.inputs).float()
            sums.loss += F.cross_entropy(logits, batch.labels, reduction="sum").double()
            sums.correct += (logits.argmax(1) == batch.labels).sum()
            sums.n += len(batch)
    total_loss, total_correct, total = sums.totals(p)
    return total_loss / total, total_correct / total


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _shard(p: Prepared) -> tuple[int, int] | None:
    dist = p.options.distributed
    return (dist.rank, dist.world_size) if dist is not None else None


def _current_lambdas(p: Prepared) -> tuple[float | None, float | None]:
    """MAS's lambdas in force; Adam's, AdamW's and SGD's endpoints; none for other optimizers."""
    group = p.optimizer.param_groups[0]
    if "lambda_adam" in group:
        return group["lambda_adam"], group["lambda_sgd"]
    return p.spec.lambdas if p.spec.optimizer in ENDPOINT_LAMBDAS else (None, None)
