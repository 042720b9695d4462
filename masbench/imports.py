"""Importing what a user names by path (``package.module:attribute``): an optimizer class, a model function.

Importing a user's module runs its code, so whatever it raises is that path's fault, told in one line;
``SystemExit`` too, since a module that exits at import must not end masbench with its own status, silently.
"""

from __future__ import annotations

import importlib
from typing import Any


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
