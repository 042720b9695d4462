"""Cells and how they run: one cell through the engine into the store, and sweeps of many.

``cells``: ``run_cell``, one cell claimed, trained and recorded (``masbench run``, and each
cell of a sweep). ``local``: ``run_sweep``, a grid in this process or in worker processes.
``packs``: ``run_pack``, several cells trained as one pack (``--pack``), each recorded as its own run.
``ray``: ``run_sweep_ray``, a task per cell or per pack on a Ray cluster. ``plan``: what both executors
share (settings, preflight, registration, the summary). ``adaptive``: ``run_adaptive``, rounds of
seeds until each cell's CI95 is narrow enough (``sweep --until-ci``). ``stopping``: SIGINT and SIGTERM
stop cleanly, giving every claim back.
"""

from masbench.sweep.cells import (
    FINAL,
    HEARTBEAT_EVERY_S,
    STALE_AFTER_S,
    CellOutcome,
    Heartbeat,
    StoreRecorder,
    new_worker_id,
    run_cell,
    run_values,
)
from masbench.sweep.packs import AUTO_SIZE, pack_cells, pack_size, run_pack, unpacked_notes
from masbench.sweep.local import default_workers, gpu_assignment, run_sweep, work_through
from masbench.sweep.plan import POLL_S, SweepSettings, SweepSummary, cell_options, dry_run, preflight, register, summarize
from masbench.sweep.ray import run_sweep_ray
from masbench.sweep.stopping import Stopped, stop_on_signals

__all__ = ["AUTO_SIZE", "CellOutcome", "Heartbeat", "StoreRecorder", "Stopped", "SweepSettings", "SweepSummary",
           "dry_run", "pack_cells", "pack_size", "preflight", "register", "run_cell", "run_pack", "run_sweep",
           "run_sweep_ray", "run_values", "stop_on_signals", "summarize", "unpacked_notes", "work_through"]
