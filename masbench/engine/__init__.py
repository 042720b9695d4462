"""The training engine: ``train(members, options) -> [MemberOutcome]``, K >= 1 cells in one pass.

- ``prepare``: the device, the data, the models and the optimizers of K >= 1 cells, built before anything
  is written (``Unpackable`` when K cells cannot train together: ``packing``);
- ``train``: the epochs, with metrics going to each member's callbacks (no printing, no database);
  ``train_one``: one cell's ``RunResult``;
- ``checkpoint``: a member's state after each epoch, written, read and restored;
- ``fuse`` and ``packed_optim``: grouped convolutions of K models as one, and the members' optimizers;
- ``options``: how a run is executed (``ExecOptions``); ``distributed``: DDP under torchrun.

The engine receives plain values (specs, options, owners): it imports neither the store nor the sweep.
"""

from masbench.engine.callbacks import Callback, EpochMetrics, Prune, RunInfo, RunResult
from masbench.engine.checkpoint import CHECKPOINT_FORMAT, CheckpointOwner, checkpoint_path
from masbench.engine.fuse import Unpackable
from masbench.engine.members import Member, MemberOutcome
from masbench.engine.options import ExecOptions
from masbench.engine.packing import can_pack, pack_key, plan_packs
from masbench.engine.prepare import (
    Prepared,
    build_seeded_model,
    data_cache_key,
    dataset_for,
    describe_device,
    load_data,
    prepare,
    resolve_device,
    seed_everything,
)
from masbench.engine.train import train, train_one

__all__ = [
    "CHECKPOINT_FORMAT", "Callback", "CheckpointOwner", "EpochMetrics", "ExecOptions", "Member", "MemberOutcome",
    "Prepared", "Prune", "RunInfo", "RunResult", "Unpackable", "build_seeded_model", "can_pack", "checkpoint_path", "data_cache_key", "dataset_for",
    "describe_device", "load_data", "pack_key", "plan_packs", "prepare", "resolve_device",
    "seed_everything", "train", "train_one",
]
