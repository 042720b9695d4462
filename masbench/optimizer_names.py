"""The registered optimizer names, torch-free: a grid's plain names are checked before torch is imported.

``masbench.optim.registry`` maps each to its class (and holds them in this order); import paths need the
import, and are resolved there.
"""

from __future__ import annotations

import re

from masbench.text.shown import did_you_mean, shown

OPTIMIZER_NAMES = ("mas", "sgd", "adam", "adamw", "radam", "nadam", "adamax", "rmsprop", "adagrad", "adadelta",
                   "asgd", "rprop", "mix")
DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")  # a module or attribute path: pkg.mod, Outer.Inner
# Their hyperparameters are RunSpec fields (lr, momentum, betas, ...): the cells and keys masbench has always had
# (and mix's: the spec's settings reach each of its components that takes them).
SPEC_OPTIMIZERS = ("mas", "sgd", "adam", "adamw", "mix")
# Each registered name's class as ``module:Class``, torch-free (a test holds it to the registry's classes): a path
# to that class, through its module or the package that exports it (``torch.optim.adam:Adam``, ``torch.optim.Adam``),
# is that name, as the registry resolves it.
CLASSES = {"mas": "masbench.optim.mas:MAS", "sgd": "torch.optim.sgd:SGD", "adam": "torch.optim.adam:Adam",
           "adamw": "torch.optim.adamw:AdamW", "radam": "torch.optim.radam:RAdam", "nadam": "torch.optim.nadam:NAdam",
           "adamax": "torch.optim.adamax:Adamax", "rmsprop": "torch.optim.rmsprop:RMSprop",
           "adagrad": "torch.optim.adagrad:Adagrad", "adadelta": "torch.optim.adadelta:Adadelta",
           "asgd": "torch.optim.asgd:ASGD", "rprop": "torch.optim.rprop:Rprop", "mix": "masbench.optim.mix:Mix"}
MAX_OPTIMIZER = 32  # runs.optimizer is VARCHAR(32): a longer name is refused when used


def is_path(text: str) -> bool:
    """An import path (``pkg.mod:Class``, ``pkg.mod.Class``), not a plain name."""
    return "." in text or ":" in text


def stored_name(path: str) -> str:
    """The name the store holds for a user's optimizer named by import path, from the text alone: nothing is
    imported (``compare``, a command that only reads, matches it so). ValueError for text that is no path.

    >>> stored_name("my_pkg.optim.Lion"), stored_name("my_pkg.optim:Lion")
    ('my_pkg.optim:Lion', 'my_pkg.optim:Lion')
    """
    module, colon, attribute = path.partition(":")
    if not colon:
        module, _, attribute = path.rpartition(".")
    if not (DOTTED.fullmatch(module) and DOTTED.fullmatch(attribute)):
        raise ValueError(f"Invalid optimizer {shown(path)}: not an import path package.module:Class")
    return f"{module}:{attribute}"


def stored_optimizer(text: str) -> str:
    """The name the store holds for the optimizer ``text`` names, as ``run`` and ``sweep`` resolve it
    (``masbench.optim.registry``), found from the text and plugins' metadata alone: a command that only reads
    (``--optimizer``'s filter, ``compare``'s configurations) imports nothing. A path to a registered class is its
    name; a path that a plugin's entry point gives is that plugin's name (the first by name); a plugin's name
    whose entry gives a registered class, or the class of a plugin named before it, is that name; any other path
    is ``module:Class`` and any other name itself. ValueError for text that is neither a name nor a path.

    A path to a class that a package re-exports under another path (``my_pkg:Lion`` for ``my_pkg.optim:Lion``)
    is told from the text only by the registry, which imports it: here it stays ``my_pkg:Lion``.

    >>> stored_optimizer("torch.optim:Adam"), stored_optimizer("torch.optim.adam.Adam"), stored_optimizer("sgd")
    ('adam', 'adam', 'sgd')
    """
    if is_path(text):
        path = stored_name(text)
        return _one_name(path, None) or path
    from masbench.plugins import find

    try:
        plugin = find("optimizers", text) if text not in OPTIMIZER_NAMES else None
        path = stored_name(plugin.value) if plugin is not None else None
    except ValueError:  # a name two plugins give, or an entry that is no path: refused when used, never stored
        return text
    return (_one_name(path, text) or text) if path else text


def _one_name(path: str, given: str | None) -> str | None:
    """The registry's one name for the class at ``path`` (``module:Class``), as ``stored_optimizer`` finds it:
    a registered name, else the first plugin by name (before ``given``, the plugin name typed) whose entry
    gives that path; None when neither."""
    module, _, attribute = path.partition(":")
    for name, where in CLASSES.items():
        home, _, cls = where.partition(":")
        if attribute == cls and module in (home, home.rpartition(".")[0]):
            return name
    from masbench.plugins import discovered

    plugins = discovered("optimizers")
    for plugin in sorted(plugins, key=lambda p: p.name):
        if given is not None and plugin.name >= given:
            break
        unique = sum(p.name == plugin.name for p in plugins) == 1
        if not unique or plugin.name in OPTIMIZER_NAMES or len(plugin.name) > MAX_OPTIMIZER:
            continue
        try:
            if stored_name(plugin.value) == path:
                return plugin.name
        except ValueError:
            continue
    return None


def is_known(text: str) -> bool:
    """A registered name, or a plugin's (``masbench.plugins``: metadata only, no import, no torch)."""
    from masbench.plugins import find

    return text in OPTIMIZER_NAMES or find("optimizers", text) is not None


def unknown_optimizer(text: str, what: str = "optimizer") -> str:
    return (f"Unknown {what}: {shown(text)} ({did_you_mean(text, OPTIMIZER_NAMES)}valid: "
            f"{', '.join(OPTIMIZER_NAMES)}, or an import path package.module:Class of a torch.optim.Optimizer, or a "
            f"plugin's: see masbench list optimizers)")
