"""Before training: the device, the seed, and a run's data, model and optimizer (``prepare``)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import torch

from masbench.errors import MasbenchError
from masbench import seeds
from masbench.spec import RunSpec
from masbench.engine.options import ExecOptions


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
    generator: torch.Generator  # the batch order (masbench.seeds: the run's "order" stream)
    amp: bool
    channels_last: bool
    lr_schedule: Any = None  # a torch LR scheduler, or None for a constant lr (the spec's lr_schedule)
    augment_generator: torch.Generator | None = None  # crops and flips (the "augment" stream)


def data_cache_key(spec: RunSpec, options: ExecOptions) -> tuple:
    """Cells with the same key can share one loaded data set."""
    return (spec.dataset, spec.data_fingerprint, str(options.data_dir), str(options.base_dir),
            tuple(sorted(spec.data_options().items())))


def load_data(spec: RunSpec, options: ExecOptions):
    """The spec's data set; path-based data must still be those it was planned with (its key names them).

    The check comes after loading, so that missing data fail with the loader's own message, and data
    replaced while they loaded are caught too.
    """
    from masbench.data import check_fingerprint, load_dataset

    dataset = load_dataset(spec.dataset, options.data_dir, base_dir=options.base_dir, **spec.data_options())
    check_fingerprint(spec.dataset, spec.data_options(), options.base_dir, spec.data_fingerprint)
    return dataset


def build_seeded_model(spec: RunSpec, dataset) -> torch.nn.Module:
    """The run's model with its initial weights: every global RNG seeded with the run's ``weights`` stream
    (``masbench.seeds``), then the model built.

    Packed cells (``masbench.pack``) build each member through here, so that its weights are bitwise the
    unpacked cell's.
    """
    from masbench.models import build_model

    seed_everything(seeds.stream_seed(spec.seed, "weights"))
    return build_model(spec.model, dataset, spec.resolved_pretrained)


def prepare(spec: RunSpec, options: ExecOptions = ExecOptions(), datasets: dict | None = None) -> Prepared:
    """Load the data and build the model, optimizer and schedule; raises ``MasbenchError`` for bad input.

    ``datasets`` caches loaded data sets across the cells of a sweep (keyed by ``data_cache_key``).
    """
    from masbench.optim import build_lambda_schedule, build_lr_schedule, build_optimizer

    dist = options.distributed
    device = resolve_device(options.device, dist.local_rank if dist is not None else None)
    key = data_cache_key(spec, options)
    if datasets is not None and key in datasets:
        dataset = datasets[key]
    else:
        dataset = load_data(spec, options)
        if datasets is not None:
            datasets[key] = dataset
    if spec.val_fraction is not None:  # per run (its seed): the cached data set keeps its whole training split
        from masbench.data.validation import with_validation

        dataset = with_validation(dataset, spec.val_fraction, spec.seed)
    model = build_seeded_model(spec, dataset)
    channels_last = (device.type == "cuda") if options.channels_last is None else options.channels_last
    channels_last = channels_last and dataset.kind == "image"
    model = model.to(device, memory_format=torch.channels_last) if channels_last else model.to(device)
    optimizer = build_optimizer(spec.optimizer, model.parameters(), **spec.optimizer_hparams())
    schedule = build_lambda_schedule(spec.lambda_schedule, optimizer, spec.epochs) if spec.optimizer == "mas" else None
    lr_schedule = build_lr_schedule(spec.lr_schedule, optimizer, spec.epochs)
    amp = options.amp if options.amp is not None else device.type == "cuda" and torch.cuda.is_bf16_supported()
    return Prepared(spec, options, device, dataset, model, optimizer, schedule, seeds.order_generator(spec.seed), amp,
                    channels_last, lr_schedule, seeds.augment_generator(spec.seed))
