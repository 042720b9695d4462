"""What a run executed with: library versions, host and code version, recorded with every run."""

from __future__ import annotations

import functools
from importlib import metadata
import platform
import socket
import subprocess
from pathlib import Path


def versions() -> dict[str, str]:
    """The libraries', and the plugins' this process has imported (``plugin:NAME``), so a run records them."""
    from masbench.plugins import loaded_versions

    return {**_library_versions(), **loaded_versions()}


@functools.cache
def _library_versions() -> dict[str, str]:
    import torch

    from masbench import __version__

    found = {"python": platform.python_version(), "masbench": __version__, "torch": torch.__version__}
    if torch.version.cuda:
        found["cuda"] = torch.version.cuda
    for name in ("torchvision", "transformers", "numpy", "sqlalchemy"):
        try:
            found[name] = metadata.version(name)  # no import: transformers alone takes a second
        except metadata.PackageNotFoundError:  # pragma: no cover - all are dependencies
            pass
    return found


@functools.cache
def git_commit() -> str | None:
    """The commit of the masbench checkout in use ("-dirty" with local changes), or None when installed."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if dirty else commit


def hostname() -> str:
    return socket.gethostname()


def banner(device: str) -> str:
    """One line for the top of a run's log: code version, libraries and hardware."""
    v = versions()
    commit = git_commit()
    parts = [f"masbench {v['masbench']}" + (f" ({commit[:12]})" if commit else ""),
             f"torch {v['torch']}", f"python {v['python']}", f"device {device}", f"host {hostname()}"]
    return " · ".join(parts)
