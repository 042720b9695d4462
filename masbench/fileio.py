"""Files written so that a crash never leaves a torn one in place."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from masbench import faults


def atomic_torch_save(obj, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, fsync, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            faults.point("checkpoint")
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def cached_payload(path: Path, build):
    """The tensors saved at ``path``, or ``build()``'s, saved there for next time.

    A torn or unreadable cache file is rebuilt, never trusted; a read-only
    directory only costs the cache.
    """
    path = Path(path)
    if path.exists():
        try:
            return torch.load(path, weights_only=True)
        except Exception:
            pass
    payload = build()
    try:
        atomic_torch_save(payload, path)
    except OSError:
        pass
    return payload
