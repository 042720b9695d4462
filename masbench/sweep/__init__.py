"""Cells and how they run: units of K >= 1 cells through the engine into the store, and sweeps of many.

``units``: ``run_unit``, K >= 1 cells decided, claimed, trained in one pass, recorded and given back
(``masbench run`` is ``run_cell``, a unit of one; every local worker and every Ray task runs its units
through it). ``local``: ``work_through``, the one worker loop (a local worker's, a Ray task's body), and
``run_sweep``, a grid in this process or in worker processes. ``ray``: ``run_sweep_ray``, a task per unit
on a Ray cluster. ``plan``: what both executors share (settings, ``execute``: preflight, registration, the
summary). Which cells share a pack is the grid's (``masbench.grid.packs``). ``adaptive``:
``run_adaptive``, rounds of seeds until each cell's CI95 is narrow enough (``sweep --until-ci``).
SIGINT and SIGTERM stop a sweep cleanly, giving every claim back (``masbench.signals``).
"""

from masbench.sweep.units import (
    HEARTBEAT_EVERY_S,
    STALE_AFTER_S,
    CellOutcome,
    UnitRecorder,
    new_worker_id,
    run_cell,
    run_unit,
    run_values,
)
from masbench.grid.packs import AUTO_SIZE, device_type, pack_cells, pack_size, unpacked_notes
from masbench.sweep.local import default_workers, gpu_assignment, run_sweep, work_through
from masbench.sweep.plan import POLL_S, SweepSettings, SweepSummary, cell_options, dry_run, execute, preflight, register, summarize
from masbench.sweep.ray import run_sweep_ray

__all__ = ["AUTO_SIZE", "CellOutcome", "SweepSettings", "SweepSummary", "UnitRecorder", "device_type",
           "dry_run", "execute", "pack_cells", "pack_size", "preflight", "register", "run_cell", "run_sweep",
           "run_sweep_ray", "run_unit", "run_values", "summarize", "unpacked_notes", "work_through"]
