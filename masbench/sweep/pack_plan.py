"""What ``sweep --dry-run`` says of packing: the packs the sweep would train, and the cells that would train
alone, with why. It plans with the sweep's own ``pack_cells``, so the dry run shows the packs the sweep makes.

Only cells still to run are packed (as the sweep packs them): those the store does not hold finished.
"""

from __future__ import annotations

from collections.abc import Sequence

from masbench.benchmarks import Cell
from masbench.errors import MasbenchError
from masbench.engine import can_pack, pack_key
from masbench.sweep.packs import pack_cells, pack_size, unpacked_reason


def planned_device_type(name: str) -> str:
    """The device type a sweep on ``--device name`` would pack for; a named device need not be here (a plan)."""
    import torch

    from masbench.engine import resolve_device

    if name == "auto":
        return resolve_device(name).type
    try:
        return torch.device(name).type
    except RuntimeError:
        raise MasbenchError(f"Invalid device: {name!r} (valid: auto, cpu, cuda, cuda:N, mps)") from None


def to_run(status: str, retry_failed: bool) -> bool:
    """Whether a sweep would train a cell in ``status`` (``"new"`` when the store lacks it)."""
    if status == "completed":
        return False
    return retry_failed or status not in ("failed", "diverged")


def pack_lines(listed: Sequence[tuple[Cell, str]], device_type: str, retry_failed: bool = False) -> list[str]:
    """The dry run's lines on packing ``listed`` (cells and their states, numbered from 1 in this order) on a
    device of ``device_type``; none when no cell asks to be packed."""
    if all(cell.pack == "off" for cell, _ in listed):
        return []
    number = {id(cell): i for i, (cell, _) in enumerate(listed, start=1)}
    cells = [cell for cell, status in listed if to_run(status, retry_failed)]
    units = pack_cells(cells, device_type)
    packs = [unit for unit in units if len(unit) > 1]
    alone = sorted((unit[0] for unit in units if len(unit) == 1), key=lambda cell: number[id(cell)])
    lines = [f"packing on {device_type}: {len(cells)} cell(s) to run, {sum(map(len, packs))} in {len(packs)} "
             f"pack(s), {len(alone)} alone"]
    for i, unit in enumerate(packs, start=1):
        first = unit[0].spec
        lines.append(f"  pack {i}: {len(unit)} cells ({first.dataset}, {first.model}, batch {first.batch_size}, "
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
