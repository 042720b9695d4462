"""The training engine: ``train(spec, options, callbacks, owner=...) -> RunResult``.

- ``prepare``: the device, the data, the model and the optimizer of a run, built before anything is written;
- ``train``: the epochs, with metrics going to callbacks (no printing, no database);
- ``checkpoint``: a run's state after each epoch, captured, written, read and restored.

The engine receives plain values (a spec, options, an owner): it imports neither the store nor the sweep.
"""

from masbench.engine.callbacks import Callback, EpochMetrics, RunInfo, RunResult
from masbench.engine.options import ExecOptions
from masbench.engine.checkpoint import CHECKPOINT_FORMAT, CheckpointOwner, checkpoint_path
from masbench.engine.prepare import (
    Prepared,
    data_cache_key,
    describe_device,
    load_data,
    prepare,
    resolve_device,
    seed_everything,
)
from masbench.engine.train import train

__all__ = [
    "CHECKPOINT_FORMAT", "Callback", "CheckpointOwner", "EpochMetrics", "ExecOptions", "Prepared", "RunInfo", "RunResult",
    "checkpoint_path", "data_cache_key", "describe_device", "load_data", "prepare", "resolve_device",
    "seed_everything", "train",
]
