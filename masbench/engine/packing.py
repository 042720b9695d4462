"""Which cells may train together in one pass of the engine (a pack): ``can_pack``, ``pack_key``, ``plan_packs``.

A pack shares the data set, its options, the model, the batch size and the epochs; its members may
differ in optimizer, every optimizer hyperparameter, lambda and lr schedule, validation split and seed.
Execution options (device, precision) are the caller's, shared by construction.
"""

from __future__ import annotations

from collections.abc import Sequence

from masbench.spec import RunSpec

SHARED_FIELDS = ("dataset", "model", "batch_size", "epochs")
PACKED_OPTIMIZERS = ("mas", "sgd", "adam", "adamw")  # the rules the engine steps as one (engine.packed_optim)


def can_pack(specs: Sequence[RunSpec]) -> str | None:
    """Why ``specs`` cannot train as one pack (one line), or None if they can."""
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
    keys = [s.key for s in specs]
    if len(set(keys)) < len(keys):
        return "a cell appears twice (same key); each member writes its own checkpoint"
    return None


def pack_key(spec: RunSpec) -> tuple:
    """What the cells of one pack share (``can_pack``): cells with equal keys may train together."""
    return (*(getattr(spec, name) for name in SHARED_FIELDS), tuple(sorted(spec.data_options().items())))


def plan_packs(specs: Sequence[RunSpec], size: int) -> list[list[RunSpec]]:
    """``specs`` in packs of at most ``size`` cells that ``can_pack``, in their order; a cell that cannot
    be packed with any other (another optimizer, say) is a pack of one."""
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
