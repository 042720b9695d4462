"""The optimizer registry: a name or an import path -> a ``torch.optim.Optimizer`` class and its hyperparameters.

Registered names: ``mas``, ``sgd``, ``adam`` and ``adamw``, whose hyperparameters are run spec fields
(``lr``, ``momentum``, ``betas``, ...), and torch's other built-ins (``radam``, ``nadam``, ``adamax``,
``rmsprop``, ``adagrad``, ``adadelta``, ``asgd``, ``rprop``), which take ``lr`` from the spec and the
rest as optimizer arguments (``masbench.optim.arguments``). Any other optimizer is an import path,
``package.module:Class`` or ``package.module.Class``, imported when a spec naming it is validated or
built, never before. Plugins' optimizers (``masbench.plugins``) go by their entry point's name, taking
``lr`` from the spec and the rest as optimizer arguments, as torch's other built-ins do; a built-in's name
is never a plugin's. One class has one name, whichever way it is given: a path to a registered class is
that class's name (``torch.optim.RAdam`` is ``radam``), a path to a plugin's class is the plugin's name
(``my_pkg.optim:Lion`` is ``lion``), a plugin whose entry gives a registered class is that class's name,
and ``pkg.mod.Class`` is written ``pkg.mod:Class``: one optimizer, one name, one cell key.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from masbench.optim.mas import MAS
from masbench.optimizer_names import MAX_OPTIMIZER, OPTIMIZER_NAMES, SPEC_OPTIMIZERS, is_path, unknown_optimizer
from masbench.plugins import WHERE_FROM, NoModule, import_attribute
from masbench.text.limits import STR_LIMITS
from masbench.text.shown import shown

# The names are listed torch-free in masbench.optimizer_names too (a test holds the two together). "mix" is
# registered last by masbench.optim.mix itself: a Mix resolves its components here, so this module never imports
# it (importing any of masbench.optim runs the package, which imports mix, so the entry is always there).

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "mas": MAS,
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "radam": torch.optim.RAdam,
    "nadam": torch.optim.NAdam,
    "adamax": torch.optim.Adamax,
    "rmsprop": torch.optim.RMSprop,
    "adagrad": torch.optim.Adagrad,
    "adadelta": torch.optim.Adadelta,
    "asgd": torch.optim.ASGD,
    "rprop": torch.optim.Rprop,
}
# How an optimizer runs, not what it computes (up to rounding): never a cell's argument.
EXECUTION_ARGS = frozenset({"foreach", "fused", "capturable", "differentiable"})
_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*(:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*)?")


def resolve_optimizer(text: str) -> str:
    """The optimizer's one name: a registered name, or an import path as ``module:Class``; ValueError if none.

    >>> resolve_optimizer("torch.optim.RAdam")
    'radam'
    """
    return _resolve(text)[0]


def optimizer_class(name: str) -> type[torch.optim.Optimizer]:
    return _resolve(name)[1]


@functools.cache
def _resolve(text: str) -> tuple[str, type[torch.optim.Optimizer]]:
    if text in OPTIMIZERS:
        return text, OPTIMIZERS[text]
    if not is_path(text):
        from masbench.plugins import find

        plugin = find("optimizers", text)
        if plugin is not None:
            found = _plugin_optimizer(plugin)
            return _canonical_name(found, text), found
    if len(text) > STR_LIMITS["optimizer"]:
        longest = STR_LIMITS["optimizer"]
        raise ValueError(f"Invalid optimizer: {shown(text)} is {len(text)} characters (at most {longest})")
    if not _PATH.fullmatch(text) or ("." not in text and ":" not in text):
        raise ValueError(unknown_optimizer(text))
    module, attribute, found = _import(text)
    if not (isinstance(found, type) and issubclass(found, torch.optim.Optimizer)):
        raise ValueError(f"Invalid optimizer {shown(text)}: {module}:{attribute} is {shown(found)}, not a "
                         f"torch.optim.Optimizer subclass")
    canonical = _canonical_name(found, None, attribute)
    if canonical is not None:
        return canonical, found
    name = f"{module}:{attribute}"
    if len(name) > MAX_OPTIMIZER:
        raise ValueError(f"Invalid optimizer {shown(text)}: {shown(name)} is {len(name)} characters (the store holds "
                         f"{MAX_OPTIMIZER}); give a shorter import path, e.g. through a package that re-exports it")
    return name, found


def _canonical_name(found: type, name: str | None, attribute: str | None = None) -> str | None:
    """The one name of class ``found``: a registered name, else the first plugin name (by name) whose entry
    gives this very class, else ``name``. Plugins are looked at by metadata, and only those whose entry names
    an attribute spelled as ``found`` or ``attribute`` are imported, to compare the classes themselves."""
    for registered, cls in OPTIMIZERS.items():
        if cls is found:
            return registered
    from masbench.plugins import discovered, load

    plugins = discovered("optimizers")
    spellings = {found.__name__, (attribute or found.__name__).rsplit(".", 1)[-1]}
    for plugin in sorted(plugins, key=lambda p: p.name):
        if name is not None and plugin.name >= name:
            break  # the name given comes first
        unique = sum(p.name == plugin.name for p in plugins) == 1  # a name two plugins give is refused when used
        if not unique or plugin.name in OPTIMIZER_NAMES or len(plugin.name) > MAX_OPTIMIZER:
            continue
        if plugin.value.rpartition(":")[2].rsplit(".", 1)[-1] not in spellings:
            continue
        try:
            same = load(plugin) is found
        except ValueError:  # that plugin fails to import: it gives no class, so not this one
            continue
        if same:
            return plugin.name
    return name


def _plugin_optimizer(plugin) -> type[torch.optim.Optimizer]:
    from masbench.plugins import load

    found = load(plugin)
    if not (isinstance(found, type) and issubclass(found, torch.optim.Optimizer)):
        raise ValueError(f"plugin {plugin.source}: its optimizer {shown(plugin.name)} ({plugin.value}) is "
                         f"{shown(found)}, not a torch.optim.Optimizer subclass")
    if len(plugin.name) > MAX_OPTIMIZER:
        raise ValueError(f"plugin {plugin.source}: its optimizer name {shown(plugin.name)} is {len(plugin.name)} "
                         f"characters (the store holds {MAX_OPTIMIZER})")
    return found


def _import(text: str) -> tuple[str, str, Any]:
    """``pkg.mod:Attr`` imports ``pkg.mod``; ``pkg.mod.Attr`` the longest importable module prefix."""
    if ":" in text:
        module, attribute = text.split(":")
        candidates = [(module, attribute)]
    else:
        parts = text.split(".")
        candidates = [(".".join(parts[:i]), ".".join(parts[i:])) for i in range(len(parts) - 1, 0, -1)]
    for module, attribute in candidates:
        try:
            return module, attribute, import_attribute(module, attribute, f"Invalid optimizer {shown(text)}")
        except NoModule:
            continue  # this prefix is not a module: try a shorter one
    raise ValueError(f"Invalid optimizer {shown(text)}: no module of that path can be imported ({WHERE_FROM})")


def hyperparameter_names(name: str) -> list[str]:
    """The keyword arguments that optimizer ``name`` accepts besides ``params``."""
    return list(_signature(name))


def select_hyperparameters(name: str, hparams: Mapping[str, Any]) -> dict[str, Any]:
    """The values among ``hparams`` (a run spec's fields) that optimizer ``name`` takes from the spec.

    mas, sgd, adam and adamw take every field they accept; the others only ``lr`` (their own settings are
    optimizer arguments, so that the spec's defaults, such as eps=1e-8, never replace theirs unasked).
    """
    accepted = set(hyperparameter_names(name))
    if resolve_optimizer(name) not in SPEC_OPTIMIZERS:
        accepted &= {"lr"}
    return {key: value for key, value in hparams.items() if key in accepted}


def spec_hyperparameters(name: str, fields: Iterable[str]) -> set[str]:
    """The hyperparameters of ``name`` that run spec ``fields`` set (so that no optimizer argument may)."""
    return set(select_hyperparameters(name, dict.fromkeys(fields)))


def argument_names(name: str, fields: Iterable[str]) -> list[str]:
    """The optimizer arguments ``name`` takes: its keywords, less those the spec's ``fields`` set and how it runs."""
    taken = spec_hyperparameters(name, fields)
    return [key for key, parameter in _signature(name).items()
            if key not in taken and key not in EXECUTION_ARGS
            and parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)]


def optimizer_defaults(name: str) -> dict[str, Any]:
    """The keyword defaults of optimizer ``name`` (for example AdamW's weight_decay=0.01)."""
    return {p.name: p.default for p in _signature(name).values() if p.default is not inspect.Parameter.empty}


def signature_of(name: str) -> dict[str, inspect.Parameter]:
    return dict(_signature(name))


@functools.cache
def _signature(name: str) -> dict[str, inspect.Parameter]:
    # Cached: planning a sweep asks for every cell, and inspect.signature was most of its time.
    parameters = inspect.signature(optimizer_class(name).__init__).parameters
    return {p: parameters[p] for p in parameters if p not in ("self", "params")}

