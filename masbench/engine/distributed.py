"""One cell on several processes: DistributedDataParallel under ``torchrun``.

``torchrun --nproc-per-node N -m masbench run ...`` starts N processes with
``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` set. Each trains on its share of every
global batch (``--batch-size`` stays the global batch, as in the paper), each
process's loss is weighted so that DDP's average of the gradients is the gradient
of the global batch's mean loss however unevenly a batch divides (a share may be
empty), and the epoch's metrics are summed over the processes, every example
counted once: the numbers are those of one process, to float rounding. Only
rank 0 talks to the store and writes checkpoints; every rank reads the checkpoint
when a run resumes, so several nodes need a checkpoint folder they all see.
"""

from __future__ import annotations

import gc
import os
import sys
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as torch_dist


@dataclass(frozen=True)
class Distributed:
    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def broadcast(self, obj: Any = None) -> Any:
        """Rank 0's ``obj``, on every rank."""
        box = [obj]
        torch_dist.broadcast_object_list(box, src=0)
        return box[0]

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        torch_dist.all_reduce(tensor, op=torch_dist.ReduceOp.SUM)
        return tensor

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every rank when it is true on any."""
        value = torch.tensor([1.0 if flag else 0.0], device=device)
        torch_dist.all_reduce(value, op=torch_dist.ReduceOp.MAX)
        return bool(value.item())


def from_environment() -> Distributed | None:
    """The process group that torchrun set up, initialised once; None for a plain single process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return None
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not torch_dist.is_initialized():
        use_nccl = torch.cuda.is_available() and os.environ.get("MASBENCH_DIST_BACKEND", "") != "gloo"
        if use_nccl:
            torch.cuda.set_device(local_rank)
        torch_dist.init_process_group(backend="nccl" if use_nccl else "gloo")
    return Distributed(rank, world_size, local_rank)


def shutdown() -> None:
    """Leave the process group; after a run that ended normally, only once every rank is done with it.

    Without the barrier a rank that finishes first tears the group down while another still uses it, and
    that one aborts at exit. A rank leaving on an exception does not wait (the others may never come):
    torchrun stops the rest.
    """
    if not torch_dist.is_initialized():
        return
    # DistributedDataParallel and its reducer sit in reference cycles that hold the process group: collected
    # at interpreter exit, after gloo's threads are gone, they abort the process ("terminate called without an
    # active exception", exit -6, and torchrun then SIGTERMs the other ranks). Free them while all is alive.
    gc.collect()
    if sys.exc_info()[1] is None:
        torch_dist.barrier()
    torch_dist.destroy_process_group()
