"""What a run executed with: library versions, host and code version, recorded with every run."""

from __future__ import annotations

import functools
import platform
import socket
import subprocess
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from masbench.spec import RunSpec


def versions(specs: Iterable[RunSpec] = ()) -> dict[str, str]:
    """The libraries', and the distributions' that provide the third-party code ``specs`` name, so that a run
    records them: ``{"torch": "2.5.1", ..., "torch-optimizer": "0.3.0"}``."""
    return {**_library_versions(), **code_versions(specs)}


def code_versions(specs: Iterable[RunSpec]) -> dict[str, str]:
    """``{distribution: version}`` for the optimizers, models and data sets that ``specs`` name by import path
    or plugin: a plugin's distribution from its entry point, an import path's from the distribution that
    installed its top-level package (``importlib.metadata.packages_distributions``), for the path as written
    and for the module that defines the class. Built-ins have none (masbench's and torch's versions are
    always recorded), nor has a module that no distribution installed (a file beside the benchmarks)."""
    found: dict[str, str] = {}
    for spec in specs:
        optimizers = list(spec.weights or ()) if spec.optimizer == "mix" else [spec.optimizer]
        named = [*(("optimizers", name) for name in optimizers), ("models", spec.model), ("datasets", spec.dataset)]
        for what, name in named:
            for distribution in _providers(what, name):
                found[distribution] = _version(distribution)
    return found


def _providers(what: str, name: str) -> list[str]:
    """The distributions that provide optimizer, model or data set ``name``; none for a built-in."""
    from masbench.data import DATASETS, PARAMETRIC
    from masbench.models import MODELS
    from masbench.optimizer_names import OPTIMIZER_NAMES
    from masbench.plugins import find

    builtin = {"optimizers": OPTIMIZER_NAMES, "models": MODELS, "datasets": DATASETS}[what]
    if name in builtin or name.partition(":")[0] in ("tv", *PARAMETRIC):  # torchvision's, or data read from a path
        return []
    modules = [name.partition(":")[0]] if ":" in name else []
    plugin = None if modules else find(what, name)
    if what == "optimizers":
        from masbench.optim import optimizer_class

        modules.append(optimizer_class(name).__module__)  # where the class is defined (a path may re-export it)
    distributions = [plugin.distribution] if plugin is not None else []
    for module in modules:
        distributions += _distributions().get(module.partition(".")[0], [])
    return list(dict.fromkeys(distributions))


@functools.cache
def _distributions() -> dict[str, list[str]]:
    return metadata.packages_distributions()  # scans every installed distribution's files: once


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:  # a plugin's entry point read from metadata that has since gone
        return "?"


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
