"""Which cells share a pack: the sweep's packing (``pack_cells``) and what ``sweep --dry-run`` says of it.

``pack_cells`` groups a sweep's cells into packs by their ``pack`` setting (``Cell.pack``): N members,
``off``, or ``auto``, which packs the MLP and the CNN on every device and the ResNets on CUDA only,
``AUTO_SIZE`` members at a time. The evidence (benchmarks/pack_speed.py, 2-core CPU, one thread): packed,
the quick suite's MLP trains 1.3-1.5x faster and the nightly CNN grid 1.15x (each member's own forward,
``masbench.engine.fuse``), while ResNet18 is even (0.97x): its steps are long enough that what a pack
shares (data, optimizer calls) is little. HFTA's grouped convolutions run slower on a CPU (CNN 0.72x,
ResNet18 0.77x); horizontal fusion pays where one small model leaves a GPU idle.

``pack_lines``: the packs the sweep would train, and the cells that would train alone, with why, planned
with the sweep's own ``pack_cells``. Only cells still to run are packed (as the sweep packs them): those
the store does not hold finished.
"""

from __future__ import annotations

from collections.abc import Sequence

from datetime import datetime, timezone

from masbench.grid.benchmarks import Cell
from masbench.errors import MasbenchError
from masbench.engine import can_pack, pack_key, plan_packs
from masbench.engine.fuse import default_conv
from masbench.store import Store
from masbench.store.leases import finished

AUTO_SIZE = 7  # the size measured in benchmarks/pack_speed.py
AUTO_DEVICES = {"mlp": ("cpu", "cuda"), "cnn": ("cpu", "cuda"), "resnet18": ("cuda",), "resnet34": ("cuda",)}


def pack_size(cell: Cell, device_type: str) -> int:
    """Members per pack for ``cell`` on a device of ``device_type`` (1: unpacked)."""
    if cell.pack == "off":
        return 1
    if cell.pack == "auto":
        return AUTO_SIZE if device_type in AUTO_DEVICES.get(cell.spec.model, ()) else 1
    return int(cell.pack)


def pack_cells(cells: Sequence[Cell], device_type: str) -> list[list[Cell]]:
    """The cells in packs, in their order (a pack of one runs unpacked).

    Cells share a pack when they have the same pack size, ``can_pack`` together and take their data from
    the same folders (``Cell.data_dir``, ``Cell.base_dir``).
    """
    groups: dict[tuple, list[Cell]] = {}
    for cell in cells:
        groups.setdefault((pack_size(cell, device_type), cell.data_dir, cell.base_dir), []).append(cell)
    if any(size > 1 for size, *_ in groups):
        default_conv()  # a bad $MASBENCH_PACK_CONV: one line before any cell is claimed, not failed packs
    packs = []
    for (size, *_), group in groups.items():
        by_key = {cell.spec.key: cell for cell in group}
        packs += [[by_key[spec.key] for spec in pack] for pack in plan_packs([c.spec for c in group], size)]
    return packs


def unpacked_reason(cell: Cell, device_type: str) -> str | None:
    """Why ``cell``, which asks to be packed, cannot be (whatever the other cells); None if it can, or is off."""
    if cell.pack == "auto" and pack_size(cell, device_type) == 1:
        return (f"--pack auto leaves model {cell.spec.model!r} unpacked on {device_type} (it packs the MLP and "
                f"the CNN, and ResNets on CUDA only)")
    if pack_size(cell, device_type) > 1 and (why := can_pack([cell.spec])) is not None:
        return f"not packed: {why}"
    return None


def unpacked_notes(cells: Sequence[Cell], device_type: str) -> list[str]:
    """One line per reason why cells that ask to be packed run unpacked."""
    reasons: dict[str, int] = {}
    for cell in cells:
        if (reason := unpacked_reason(cell, device_type)) is not None:
            reasons[reason] = reasons.get(reason, 0) + 1
    return [f"{n} run(s) train unpacked: {reason}" for reason, n in reasons.items()]


def unfinished(cells: Sequence[Cell], store: Store, retry_failed_before: datetime | None) -> list[Cell]:
    """The cells the store does not have finished for this sweep (so that packs are made of work to do)."""
    states = store.cell_states([cell.spec.key for cell in cells])
    return [cell for cell in cells if (state := states.get(cell.spec.key)) is None
            or not finished(state["status"], state["finished_at"], retry_failed_before)]


def plan_units(cells: Sequence[Cell], store: Store, device_type: str,
               retry_failed_before: datetime | None) -> list[list[Cell]]:
    """A sweep's units (a worker's pass, the Ray driver's tasks): one per cell when no cell asks to be packed
    (a finished cell's unit skips it); otherwise the packs of the cells still to do (a pack of one is a
    cell's unit)."""
    if all(cell.pack == "off" for cell in cells):
        return [[cell] for cell in cells]
    return pack_cells(unfinished(cells, store, retry_failed_before), device_type)


def device_type(name: str, cluster_gpus: float = 0) -> str:
    """The device type cells train on under ``--device name``, which packing follows; decided here alone.

    ``auto`` is CUDA where the tasks are given a GPU (a Ray cluster that has one), else what it resolves to
    here; a named device is its type, whether or not it is here (a dry run plans; preflight checks it).
    """
    import torch

    from masbench.engine import resolve_device

    if name == "auto":
        return "cuda" if cluster_gpus >= 1 else resolve_device(name).type
    try:
        return torch.device(name).type
    except RuntimeError:
        raise MasbenchError(f"Invalid device: {name!r} (valid: auto, cpu, cuda, cuda:N, mps)") from None


def pack_lines(listed: Sequence[tuple[Cell, str]], device_type: str, retry_failed: bool = False) -> list[str]:
    """The dry run's lines on packing ``listed`` (cells and their states, numbered from 1 in this order) on a
    device of ``device_type``; none when no cell asks to be packed."""
    if all(cell.pack == "off" for cell, _ in listed):
        return []
    number = {id(cell): i for i, (cell, _) in enumerate(listed, start=1)}
    # The dry run lists statuses, not times: with --retry-failed every failed or diverged cell is retried.
    retry_before = datetime.max.replace(tzinfo=timezone.utc) if retry_failed else None
    cells = [cell for cell, status in listed if not finished(status, None if status == "new" else datetime.min,
                                                             retry_before)]
    units = pack_cells(cells, device_type)
    packs = [unit for unit in units if len(unit) > 1]
    alone = sorted((unit[0] for unit in units if len(unit) == 1), key=lambda cell: number[id(cell)])
    lines = [f"packing on {device_type}: {len(cells)} run(s) to train, {sum(map(len, packs))} in {len(packs)} "
             f"pack(s), {len(alone)} alone"]
    for i, unit in enumerate(packs, start=1):
        first = unit[0].spec
        lines.append(f"  pack {i}: {len(unit)} runs ({first.dataset}, {first.model}, batch {first.batch_size}, "
                     f"{first.epochs} epochs): {_numbers(unit, number)}")
    reasons: dict[str, list[Cell]] = {}
    for cell in alone:
        reasons.setdefault(_why_alone(cell, cells, device_type), []).append(cell)
    for reason, group in reasons.items():
        lines.append(f"  alone: {_numbers(group, number)}: {reason}")
    return lines


def _numbers(cells: Sequence[Cell], number: dict[int, int]) -> str:
    return ", ".join(f"#{number[id(cell)]}" for cell in cells)


def _why_alone(cell: Cell, cells: Sequence[Cell], device_type: str) -> str:
    """Why ``cell`` trains unpacked: its setting, what keeps it from any pack, or no cell left to share one."""
    if cell.pack == "off":
        return "its grid's pack is off"
    reason = unpacked_reason(cell, device_type)
    if reason is not None:
        return reason
    size = pack_size(cell, device_type)
    peers = [other for other in cells if pack_size(other, device_type) == size and can_pack([other.spec]) is None
             and (other.data_dir, other.base_dir) == (cell.data_dir, cell.base_dir)
             and pack_key(other.spec) == pack_key(cell.spec)]
    if len(peers) == 1:
        return "no other cell to run shares its data, model, batch size and epochs"
    return f"left over from packs of {size}"
