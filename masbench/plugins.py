"""Code a user brings: an object named by import path, and third-party optimizers, models and data sets
registered through entry points.

``import_attribute`` imports what a user names by path (``package.module:attribute``): an optimizer class, a
model function. Importing a user's module runs its code, so whatever it raises is that path's fault, told in
one line; ``SystemExit`` too, since a module that exits at import must not end masbench with its own status,
silently. A plugin's import (``load``) is told the same way, naming its distribution.

Plugins: a distribution declares them in its metadata (``pyproject.toml``)::

    [project.entry-points."masbench.optimizers"]
    lion = "my_pkg.optim:Lion"            # a torch.optim.Optimizer subclass
    [project.entry-points."masbench.models"]
    wide-mlp = "my_pkg.models:wide_mlp"   # function(num_classes, input_shape) -> torch.nn.Module
    [project.entry-points."masbench.datasets"]
    blobs = "my_pkg.data:blobs"           # function(data_dir) -> a masbench data set; blobs.kind = "tabular"

A path is imported from installed packages and ``PYTHONPATH`` only: never from the working directory,
whether masbench runs as ``masbench`` or as ``python -m masbench`` (``masbench.__main__``). Only ``run``,
``sweep`` and ``tune`` import user code; ``report``, ``compare``, ``plot``, ``show`` and ``list`` never do.

Discovery reads metadata only (``importlib.metadata``, no plugin code runs) and happens lazily: when a
name is not built-in, and for ``masbench list``. An entry is imported when a spec naming it is validated.
Built-ins win a clash: a plugin's ``adam`` is never used, and ``masbench list`` shows it as shadowed.
Two plugins giving one name are refused when that name is used, naming both distributions.

A plugin's name is its cell identity, as a built-in's is: a new version of the plugin with other
numbers is the same cell unless it takes another name. Each run's stored ``versions`` name the
distributions of the plugins and import paths its spec names (``masbench.engine.environment``), and a
report flags a cell whose runs differ in any of them, so that such a change is seen.
"""

from __future__ import annotations

import functools
import importlib
import re
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from masbench.text.shown import shown

GROUPS = {"optimizers": "masbench.optimizers", "models": "masbench.models", "datasets": "masbench.datasets"}
# A plugin's name is a plain name: a dot or colon would make it an import path (or a tv:/csv: prefix).
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


# Said wherever a user's module is not found: ``python -m masbench`` and the ``masbench`` script both leave the
# working directory off the import path (``masbench.__main__``), so code is never picked up from where one stands.
WHERE_FROM = ("user code is imported from installed packages and PYTHONPATH, never from the working directory: "
              "PYTHONPATH=. for a module there")


class NoModule(Exception):
    """The module itself does not exist (as opposed to one that exists and fails to import)."""


def import_attribute(module: str, attribute: str, label: str) -> Any:
    """``module``'s (dotted) ``attribute``; ``NoModule`` when ``module`` is not there, ValueError (starting
    with ``label``) when it fails to import or lacks the attribute."""
    try:
        imported = importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name is not None and (module == error.name or module.startswith(error.name + ".")):
            raise NoModule(module) from None
        raise ValueError(f"{label}: importing {module} failed ({error})") from None
    except (Exception, SystemExit) as error:  # noqa: BLE001
        raise ValueError(f"{label}: importing {module} failed ({type(error).__name__}: {error})") from None
    found: Any = imported
    for part in attribute.split("."):
        if not hasattr(found, part):
            raise ValueError(f"{label}: module {module} has no {attribute}")
        found = getattr(found, part)
    return found


@dataclass(frozen=True)
class Plugin:
    """One entry point of group ``masbench.<what>``: its name, target and distribution."""

    what: str  # "optimizers", "models" or "datasets"
    name: str
    value: str  # "package.module:attribute"
    distribution: str
    version: str

    @property
    def source(self) -> str:
        return f"{self.distribution} {self.version}"

    @property
    def singular(self) -> str:
        return self.what.removesuffix("s").replace("dataset", "data set")


@functools.cache
def discovered(what: str) -> tuple[Plugin, ...]:
    """Every entry point of group ``masbench.<what>``, in the order of the distributions found."""
    found = []
    for entry in metadata.entry_points(group=GROUPS[what]):
        dist = entry.dist
        name, version = (dist.name, dist.version) if dist is not None else ("an unknown distribution", "?")
        found.append(Plugin(what, entry.name, entry.value, name, version))
    return tuple(found)


def find(what: str, name: str) -> Plugin | None:
    """The plugin that gives ``name`` (a name no built-in has); ValueError if two distributions give it."""
    if not NAME.fullmatch(name):
        return None
    plugins = [p for p in discovered(what) if p.name == name]
    if len(plugins) > 1:
        sources = " and ".join(p.source for p in plugins)
        raise ValueError(f"{plugins[0].singular} {shown(name)} is registered by two plugins ({sources}): "
                         f"uninstall one of them")
    return plugins[0] if plugins else None


def load(plugin: Plugin) -> Any:
    """The object a plugin's entry point names, imported; ValueError naming the distribution if that fails."""
    if not NAME.fullmatch(plugin.name):
        raise ValueError(f"plugin {plugin.source}: its {plugin.singular} name {shown(plugin.name)} is not a plain "
                         f"name (letters, digits, _ and -)")
    if plugin not in _LOADED:
        _LOADED[plugin] = _import(plugin)
    return _LOADED[plugin]


# The plugins imported so far, as functools.cache would hold them (clear() forgets them).
_LOADED: dict[Plugin, Any] = {}


def _import(plugin: Plugin) -> Any:
    try:
        return metadata.EntryPoint(plugin.name, plugin.value, GROUPS[plugin.what]).load()
    # Importing a plugin runs its code: whatever it raises is that plugin's fault, told in one line naming it.
    # SystemExit too: a plugin that exits at import must not end masbench with its own status, silently.
    except (Exception, SystemExit) as error:  # noqa: BLE001
        raise ValueError(f"plugin {plugin.source}: its {plugin.singular} {shown(plugin.name)} ({plugin.value}) "
                         f"failed to import ({type(error).__name__}: {error})") from None


def clear() -> None:
    """Forget what was discovered and loaded (tests that install a plugin part-way through a process)."""
    discovered.cache_clear()
    _LOADED.clear()
