"""Before training: the device, the seed, and K >= 1 members' data, models and optimizers (``prepare``)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from masbench import seeds
from masbench.engine.checkpoint import global_rng_states
from masbench.engine.fuse import CONV_STRATEGIES, PackedModel, Unpackable, conv_strategy, default_conv, fuse
from masbench.engine.members import MemberState
from masbench.engine.options import ExecOptions
from masbench.engine.packed_optim import PackedOptimizer, member_views
from masbench.engine.packing import can_pack
from masbench.errors import MasbenchError
from masbench.spec import RunSpec

# Under DDP each process takes a share of every batch of one model and averages its gradients with the
# others': K members would need K process groups' worth of collectives, or a gradient per member.
DDP_ALONE = "a DDP run trains one cell: its processes share one model's batches and gradients"


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
        threads = torch.get_num_threads()
        return f"cpu ({threads} thread{'s' if threads != 1 else ''})"
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
    """K >= 1 members' data, models and optimizers, built before anything is written anywhere.

    ``fused``: under grouped convolutions (``masbench.engine.fuse``) the members' models as one module, their
    optimizers stepped by ``packed_optimizer``; None when each member runs its own forward.
    """

    options: ExecOptions
    device: torch.device
    dataset: Any  # the loaded data set the members share (a member's own validation split aside)
    members: list[MemberState]
    amp: bool
    channels_last: bool
    fused: PackedModel | None = None
    packed_optimizer: PackedOptimizer | None = None

    @property
    def spec(self) -> RunSpec:
        """The first member's spec: what the members share (dataset, model, batch size, epochs)."""
        return self.members[0].spec


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

    Every member of a pack is built through here, so that its weights are bitwise its unpacked cell's.
    """
    from masbench.models import build_model

    seed_everything(seeds.stream_seed(spec.seed, "weights"))
    return build_model(spec.model, dataset, spec.resolved_pretrained)


def dataset_for(spec: RunSpec, options: ExecOptions, datasets: dict | None = None):
    """The spec's loaded data set, from ``datasets`` (keyed by ``data_cache_key``) when it holds it."""
    key = data_cache_key(spec, options)
    if datasets is not None and key in datasets:
        return datasets[key]
    dataset = load_data(spec, options)
    if datasets is not None:
        datasets[key] = dataset
    return dataset


def prepare(specs: Sequence[RunSpec], options: ExecOptions = ExecOptions(), *, datasets: dict | None = None,
            conv: str | None = None) -> Prepared:
    """Load the data and build the K >= 1 members' models, optimizers and schedules, in the order of ``specs``.

    Raises ``MasbenchError`` for bad input and ``Unpackable`` (one line: why) for K > 1 cells that cannot
    train together, before anything is written. ``datasets`` caches loaded data sets across the cells of a
    sweep (keyed by ``data_cache_key``). ``conv``: how a pack's forwards run on ``options.device`` (auto,
    grouped or members: ``masbench.engine.fuse``; None reads ``$MASBENCH_PACK_CONV``).
    """
    from masbench.optim import build_lambda_schedule, build_lr_schedule, build_optimizer

    specs = list(specs)
    dist = options.distributed
    if len(specs) > 1:
        reason = can_pack(specs)
        if reason is None and dist is not None:
            reason = DDP_ALONE
        if reason is not None:
            raise Unpackable(reason)
    elif not specs:
        raise Unpackable(can_pack(specs))
    device = resolve_device(options.device, dist.local_rank if dist is not None else None)
    shared = dataset_for(specs[0], options, datasets)
    channels_last = (device.type == "cuda") if options.channels_last is None else options.channels_last
    channels_last = channels_last and shared.kind == "image"
    conv = default_conv() if conv is None else conv
    members = []
    for k, spec in enumerate(specs):
        dataset = shared
        if spec.val_fraction is not None:  # per run (its seed): the cached data set keeps its whole training split
            from masbench.data.validation import with_validation

            dataset = with_validation(shared, spec.val_fraction, spec.seed)
        model = build_seeded_model(spec, dataset)
        rng = global_rng_states(device)  # what its unpacked run's checkpoints record
        members.append(MemberState(k, spec, dataset, model, None, None, None, seeds.order_generator(spec.seed),
                                   seeds.augment_generator(spec.seed), rng))
    fused = _fused(members, shared, device, conv)
    if fused is not None:
        channels_last = False  # the fused convolutions' weights have a member dimension
        params = list(fused.parameters())
    for m in members:
        if fused is not None:
            m.model = None
        elif channels_last:
            m.model = m.model.to(device, memory_format=torch.channels_last)
        else:
            m.model = m.model.to(device)
    for m in members:
        spec = m.spec
        tensors = member_views(params, m.index) if fused is not None else m.model.parameters()
        m.optimizer = build_optimizer(spec.optimizer, tensors, **spec.optimizer_hparams())
        m.schedule = build_lambda_schedule(spec.lambda_schedule, m.optimizer, spec.epochs) \
            if spec.optimizer == "mas" else None
        m.lr_schedule = build_lr_schedule(spec.lr_schedule, m.optimizer, spec.epochs)
    packed = PackedOptimizer(params, [m.optimizer for m in members]) if fused is not None else None
    return Prepared(options, device, shared, members, options.uses_amp(device), channels_last, fused, packed)


def _fused(members: list[MemberState], dataset, device: torch.device, conv: str) -> PackedModel | None:
    """The members' models as one module when their forwards run as grouped convolutions (``conv``, on
    ``device``: ``masbench.engine.fuse``), else None: each member runs its own forward, and one member always.

    Grouped convolutions take image data that every member trains on whole, and a model ``fuse`` takes;
    ``auto`` runs the members' own forwards where they do not apply, an explicit ``grouped`` is refused.
    """
    if conv not in CONV_STRATEGIES:
        raise ValueError(f"Invalid conv: {conv!r} (valid: {', '.join(CONV_STRATEGIES)})")
    if len(members) == 1 or conv_strategy(conv, device) != "grouped":
        return None
    first = members[0].spec
    try:
        if dataset.kind != "image":
            raise Unpackable(f"model {first.model!r} takes {dataset.kind} data; grouped convolutions take images")
        if any(m.spec.val_fraction is not None for m in members):
            raise Unpackable("the members hold validation splits of their own; grouped convolutions take one "
                             "training set")
        return fuse([m.model for m in members], "grouped").to(device)
    except Unpackable:
        if conv == "grouped":
            raise
        return None
