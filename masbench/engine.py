"""The training engine: ``train(spec, options, callbacks) -> RunResult``.

No printing and no database: what happens goes to callbacks (progress, the
metric store). Per epoch the engine reports train loss and accuracy, test loss
and accuracy, the learning rate, the lambdas in force, seconds and samples per
second (training only: evaluation is left out of the timing).

Reproducible: a seed fixes the initial weights, the order of the batches and
the augmentation, so on CPU the same spec gives the same metrics. Resumable:
after every epoch a checkpoint (model, optimizer, lambda schedule, RNG states,
the epochs so far) is written atomically; a run that finds its checkpoint
continues at the next epoch and ends with the metrics of an uninterrupted run.
A NaN or infinite loss ends the run with status ``diverged``.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from masbench import faults
from masbench.config import ExecOptions, RunSpec
from masbench.errors import MasbenchError
from masbench.fileio import atomic_torch_save

CHECKPOINT_FORMAT = 1


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
    status: str  # "completed" or "diverged"
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


class Callback:
    """Hooks the engine calls; override what you need."""

    def on_start(self, info: RunInfo) -> None: ...

    def on_resume(self, history: list[EpochMetrics]) -> None:
        """The epochs restored from a checkpoint, before training goes on."""

    def on_batch(self, epoch: int, batch: int, batches: int) -> None: ...

    def on_epoch(self, metrics: EpochMetrics) -> None: ...

    def on_checkpoint(self, epoch: int, path: Path) -> None: ...

    def on_warning(self, message: str) -> None: ...


def resolve_device(name: str, local_rank: int | None = None) -> torch.device:
    """``auto``: CUDA, then MPS, then CPU; otherwise the named device, which must be present.

    Under DDP (``local_rank`` given), ``auto`` and ``cuda`` mean this process's GPU.
    """
    if local_rank is not None and name in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda", local_rank)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise MasbenchError(f"Invalid device: {name!r} (valid: auto, cpu, cuda, cuda:N, mps)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise MasbenchError(f"Invalid device: {name!r}: CUDA is not available here (use --device cpu or auto)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise MasbenchError(f"Invalid device: {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise MasbenchError(f"Invalid device: {name!r}: MPS is not available here (use --device cpu or auto)")
    return device


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return str(device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # pragma: no cover - numpy comes with torch's usual installs
        pass


@dataclass
class Prepared:
    """A run's data, model and optimizer, built before anything is written anywhere."""

    spec: RunSpec
    options: ExecOptions
    device: torch.device
    dataset: Any
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    schedule: Any  # a LambdaSchedule, or None for the baselines
    generator: torch.Generator
    amp: bool
    channels_last: bool


def data_cache_key(spec: RunSpec, options: ExecOptions) -> tuple:
    """Cells with the same key can share one loaded data set."""
    return spec.dataset, str(options.data_dir), str(options.base_dir), tuple(sorted(spec.data_options().items()))


def load_data(spec: RunSpec, options: ExecOptions):
    from masbench.data import load_dataset

    return load_dataset(spec.dataset, options.data_dir, base_dir=options.base_dir, **spec.data_options())


def prepare(spec: RunSpec, options: ExecOptions = ExecOptions(), datasets: dict | None = None) -> Prepared:
    """Load the data and build the model, optimizer and schedule; raises ``MasbenchError`` for bad input.

    ``datasets`` caches loaded data sets across the cells of a sweep (keyed by ``data_cache_key``).
    """
    from masbench.models import build_model
    from masbench.optim import build_lambda_schedule, build_optimizer

    dist = options.distributed
    device = resolve_device(options.device, dist.local_rank if dist is not None else None)
    key = data_cache_key(spec, options)
    if datasets is not None and key in datasets:
        dataset = datasets[key]
    else:
        dataset = load_data(spec, options)
        if datasets is not None:
            datasets[key] = dataset
    seed_everything(spec.seed)
    model = build_model(spec.model, dataset, spec.resolved_pretrained)
    channels_last = (device.type == "cuda") if options.channels_last is None else options.channels_last
    channels_last = channels_last and dataset.kind == "image"
    model = model.to(device, memory_format=torch.channels_last) if channels_last else model.to(device)
    optimizer = build_optimizer(spec.optimizer, model.parameters(), **spec.optimizer_hparams())
    schedule = build_lambda_schedule(spec.lambda_schedule, optimizer, spec.epochs) if spec.optimizer == "mas" else None
    amp = options.amp if options.amp is not None else device.type == "cuda" and torch.cuda.is_bf16_supported()
    generator = torch.Generator().manual_seed(spec.seed)
    return Prepared(spec, options, device, dataset, model, optimizer, schedule, generator, amp, channels_last)


def checkpoint_path(spec: RunSpec, options: ExecOptions) -> Path:
    return Path(options.checkpoint_dir) / f"{spec.key}.pt"


def _capture(p: Prepared, epoch: int, history: list[EpochMetrics]) -> dict[str, Any]:
    return {
        "format": CHECKPOINT_FORMAT,
        "key": p.spec.key,
        "epoch": epoch,
        "model": p.model.state_dict(),
        "optimizer": p.optimizer.state_dict(),
        "schedule": p.schedule.state_dict() if p.schedule is not None else {},
        "history": [m.as_dict() for m in history],
        "rng": {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if p.device.type == "cuda" else [],
            "data": p.generator.get_state(),
            "python": list(random.getstate()[1]),
        },
    }


def _restore(p: Prepared, state: dict[str, Any]) -> tuple[int, list[EpochMetrics]]:
    if state.get("format") != CHECKPOINT_FORMAT or state.get("key") != p.spec.key:
        raise ValueError("checkpoint belongs to another run or format")
    p.model.load_state_dict(state["model"])
    p.optimizer.load_state_dict(state["optimizer"])
    if p.schedule is not None:
        p.schedule.load_state_dict(state["schedule"])
    torch.set_rng_state(state["rng"]["torch"])
    if p.device.type == "cuda" and state["rng"]["cuda"]:
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    p.generator.set_state(state["rng"]["data"])
    random.setstate((3, tuple(state["rng"]["python"]), None))
    history = [EpochMetrics(**m) for m in state["history"]]
    return int(state["epoch"]), history


def _load_checkpoint(p: Prepared, path: Path, callbacks: Sequence[Callback]) -> tuple[int, list[EpochMetrics]]:
    if not path.exists():
        return 0, []
    try:
        state = torch.load(path, map_location=p.device, weights_only=True)
        return _restore(p, state)
    except Exception as error:  # torn, corrupt or foreign: start over rather than trust it
        message = f"checkpoint {path} is unusable ({type(error).__name__}: {' '.join(str(error).split())[:120]}); " \
                  f"restarting {p.spec.describe()} from scratch"
        for cb in callbacks:
            cb.on_warning(message)
        # The model and optimizer may be half-restored: build them again from the seed.
        fresh = prepare(p.spec, p.options, {data_cache_key(p.spec, p.options): p.dataset})
        p.model, p.optimizer, p.schedule, p.generator = fresh.model, fresh.optimizer, fresh.schedule, fresh.generator
        return 0, []


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _shard(p: Prepared) -> tuple[int, int] | None:
    dist = p.options.distributed
    return (dist.rank, dist.world_size) if dist is not None else None


def _totals(p: Prepared, loss_sum: torch.Tensor, correct: torch.Tensor, n: int) -> tuple[float, int, int]:
    """(loss sum, correct, examples) over every process of a DDP run."""
    dist = p.options.distributed
    if dist is None:
        return loss_sum.item(), correct.item(), n
    totals = dist.sum_(torch.stack([loss_sum.double(), correct.double(),
                                    torch.tensor(float(n), dtype=torch.float64, device=p.device)]))
    return totals[0].item(), int(totals[1].item()), int(totals[2].item())


def _evaluate(p: Prepared, batch_size: int, forward) -> tuple[float, float]:
    p.model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=p.device)
    correct = torch.zeros((), dtype=torch.int64, device=p.device)
    n = 0
    with torch.no_grad(), torch.autocast(p.device.type, dtype=torch.bfloat16, enabled=p.amp):
        for batch in p.dataset.batches("test", batch_size, p.device, None, p.channels_last, _shard(p)):
            logits = forward(batch.inputs).float()
            loss_sum += F.cross_entropy(logits, batch.labels, reduction="sum").double()
            correct += (logits.argmax(1) == batch.labels).sum()
            n += len(batch)
    total_loss, total_correct, total = _totals(p, loss_sum, correct, n)
    return total_loss / total, total_correct / total


def train(
    spec: RunSpec,
    options: ExecOptions = ExecOptions(),
    callbacks: Sequence[Callback] = (),
    prepared: Prepared | None = None,
) -> RunResult:
    """Train one cell; resumes from its checkpoint in ``options.checkpoint_dir`` when one is there.

    Example:
        >>> from masbench.config import RunSpec
        >>> result = train(RunSpec(dataset="digits", model="mlp", epochs=1))  # doctest: +SKIP
        >>> result.status, len(result.epochs)  # doctest: +SKIP
        ('completed', 1)
    """
    p = prepared if prepared is not None else prepare(spec, options)
    dist = options.distributed
    main = dist is None or dist.is_main
    path = checkpoint_path(spec, options)
    start_epoch, history = _load_checkpoint(p, path, callbacks)
    # DDP after the checkpoint is loaded (every rank reads the same file); evaluation uses the bare model,
    # since each rank evaluates a different share of the test set.
    trained = p.model
    if dist is not None:
        from torch.nn.parallel import DistributedDataParallel

        trained = DistributedDataParallel(p.model, device_ids=[p.device.index] if p.device.type == "cuda" else None)
    forward = torch.compile(trained) if options.compile else trained
    if dist is None:
        eval_forward = forward
    else:
        eval_forward = torch.compile(p.model) if options.compile else p.model

    train_size = len(p.dataset.train)
    batches = math.ceil(train_size / spec.batch_size)
    if dist is not None:
        batches -= int(train_size % spec.batch_size and train_size % spec.batch_size < dist.world_size)
    info = RunInfo(spec, describe_device(p.device), train_size, len(p.dataset.test), batches,
                   sum(t.numel() for t in p.model.parameters()), start_epoch)
    for cb in callbacks:
        cb.on_start(info)
    if history:
        for cb in callbacks:
            cb.on_resume(history)

    # How often the host looks at the loss: every batch on CPU, where it costs nothing, less often on a GPU.
    check_every = 1 if p.device.type == "cpu" else 25
    for epoch in range(start_epoch + 1, spec.epochs + 1):
        lambda_adam, lambda_sgd = _current_lambdas(p)
        lr = p.optimizer.param_groups[0]["lr"]
        p.model.train()
        loss_sum = torch.zeros((), dtype=torch.float64, device=p.device)
        correct = torch.zeros((), dtype=torch.int64, device=p.device)
        seen = 0
        diverged_loss = None
        _sync(p.device)
        start = time.perf_counter()
        for i, batch in enumerate(p.dataset.batches("train", spec.batch_size, p.device, p.generator, p.channels_last,
                                                    _shard(p))):
            with torch.autocast(p.device.type, dtype=torch.bfloat16, enabled=p.amp):
                logits = forward(batch.inputs)
            loss = F.cross_entropy(logits.float(), batch.labels)
            p.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            p.optimizer.step()
            faults.point("batch")
            loss_sum += loss.detach().double() * len(batch)
            correct += (logits.detach().argmax(1) == batch.labels).sum()
            seen += len(batch)
            if (i + 1) % check_every == 0 or i + 1 == batches:
                value = loss.item()
                if dist is not None and dist.any(not math.isfinite(value), p.device):
                    value = value if not math.isfinite(value) else float("nan")  # another rank's loss is not finite
                if not math.isfinite(value):
                    diverged_loss = (value, i + 1)
                    break
            for cb in callbacks:
                cb.on_batch(epoch, i + 1, batches)
        _sync(p.device)
        seconds = time.perf_counter() - start
        total_loss, total_correct, seen = _totals(p, loss_sum, correct, seen)

        if diverged_loss is not None:
            value, at_batch = diverged_loss
            metrics = EpochMetrics(epoch, value, total_correct / max(seen, 1), None, None, lr, lambda_adam,
                                   lambda_sgd, seconds, seen / seconds if seconds > 0 else 0.0)
            history.append(metrics)
            for cb in callbacks:
                cb.on_epoch(metrics)
            if main:
                _remove(path)
            error = f"non-finite training loss ({value}) at epoch {epoch}, batch {at_batch}"
            return RunResult("diverged", history, info.device, error, start_epoch)

        test_loss, test_acc = _evaluate(p, max(spec.batch_size, 256), eval_forward)
        metrics = EpochMetrics(epoch, total_loss / seen, total_correct / seen, test_loss, test_acc, lr,
                               lambda_adam, lambda_sgd, seconds, seen / seconds if seconds > 0 else 0.0)
        history.append(metrics)
        for cb in callbacks:
            cb.on_epoch(metrics)
        if p.schedule is not None:
            p.schedule.step()
        # After the callbacks (the store has the epoch), so that a crash in between only repeats an epoch.
        if main:
            atomic_torch_save(_capture(p, epoch, history), path)
            for cb in callbacks:
                cb.on_checkpoint(epoch, path)

    if main and not options.keep_checkpoint:
        _remove(path)
    return RunResult("completed", history, info.device, None, start_epoch)


def _current_lambdas(p: Prepared) -> tuple[float | None, float | None]:
    group = p.optimizer.param_groups[0]
    if "lambda_adam" in group:
        return group["lambda_adam"], group["lambda_sgd"]
    return p.spec.lambdas


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
