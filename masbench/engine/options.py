"""How a run is executed (``ExecOptions``): none of it enters the run's key."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch


@dataclass(frozen=True)
class ExecOptions:
    """How a run is executed; none of it enters the run's key.

    ``amp`` (bf16 autocast) and ``channels_last`` default to on with CUDA and off elsewhere (``uses_amp``).
    """

    device: str = "auto"
    data_dir: Path | None = None
    amp: bool | None = None
    channels_last: bool | None = None
    compile: bool = False
    checkpoint_dir: Path = field(default_factory=lambda: Path(".masbench") / "checkpoints")
    keep_checkpoint: bool = False
    base_dir: Path | None = None  # what relative data paths in a spec are relative to (default: the working directory)
    distributed: Any = None  # a masbench.engine.distributed.Distributed under torchrun, else None

    def uses_amp(self, device: torch.device) -> bool:
        """bf16 autocast on ``device``: as set, else on where CUDA supports bf16."""
        if self.amp is not None:
            return self.amp
        return device.type == "cuda" and torch.cuda.is_bf16_supported()
