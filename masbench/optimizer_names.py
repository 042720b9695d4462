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


def is_known(text: str) -> bool:
    """A registered name, or a plugin's (``masbench.plugins``: metadata only, no import, no torch)."""
    from masbench.plugins import find

    return text in OPTIMIZER_NAMES or find("optimizers", text) is not None


def unknown_optimizer(text: str, what: str = "optimizer") -> str:
    return (f"Unknown {what}: {shown(text)} ({did_you_mean(text, OPTIMIZER_NAMES)}valid: "
            f"{', '.join(OPTIMIZER_NAMES)}, or an import path package.module:Class of a torch.optim.Optimizer, or a "
            f"plugin's: see masbench list optimizers)")
