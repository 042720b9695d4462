"""``masbench list optimizers|models|datasets``: what a run may name, of what kind, and where it comes from.

Plugins (``masbench.plugins``) appear with their distribution and version; one whose name a built-in has
is listed as shadowed (the built-in wins), two plugins with one name as a clash (refused when used), and
one whose name is not a plain name (``<b>net``, ``a.b``), which no option can hold, as unusable.
"""

from __future__ import annotations

from typing import Annotated

import typer

from masbench.errors import MasbenchError
from masbench.text.shown import shown

WHAT = ("optimizers", "models", "datasets")


def list_(
    what: Annotated[str, typer.Argument(help="optimizers, models or datasets.", show_default=False)],
) -> None:
    """List the optimizers, models (torchvision's classifiers by name, tv:NAME) or data sets available: name, kind
    and source (built-in, torch or a plugin)."""
    if what not in WHAT:
        raise MasbenchError(f"Invalid list {shown(what)} (valid: {', '.join(WHAT)})")
    rows = {"optimizers": _optimizers, "models": _models, "datasets": _datasets}[what]()
    rows += _plugins(what, {name.partition(":")[0] if name.endswith(":PATH") else name for name, _, _ in rows})
    widths = [max(len(row[i]) for row in [("name", "kind", "source"), *rows]) for i in range(2)]
    for name, kind, source in [("name", "kind", "source"), *rows]:
        typer.echo(f"{name:<{widths[0]}}  {kind:<{widths[1]}}  {source}")


def _optimizers() -> list[tuple[str, str, str]]:
    from importlib import metadata

    from masbench.optimizer_names import OPTIMIZER_NAMES, SPEC_OPTIMIZERS

    torch = f"torch {metadata.version('torch')}"
    rows = [(name, "spec options" if name in SPEC_OPTIMIZERS else "lr + optimizer args",
             "built-in" if name in ("mas", "mix") else torch) for name in OPTIMIZER_NAMES]
    return [*rows, ("package.module:Class", "lr + optimizer args", "import path")]


def _models() -> list[tuple[str, str, str]]:
    from importlib import metadata

    from masbench.models import MODELS
    from masbench.models.external import IMAGE_AND_TABULAR

    from masbench.models.external import TV, classifiers

    rows = [(name, "/".join(entry.kinds), entry.source) for name, entry in MODELS.items()]
    torchvision = f"torchvision {metadata.version('torchvision')}"
    return [*rows, *((TV + arch, "image", torchvision) for arch in classifiers()),
            ("package.module:function", "/".join(IMAGE_AND_TABULAR), "import path")]


def _datasets() -> list[tuple[str, str, str]]:
    from masbench.data import DATASETS, PARAMETRIC

    rows = [(name, entry.kind, entry.source) for name, entry in DATASETS.items()]
    return rows + [(f"{prefix}:PATH", entry.kind, entry.source) for prefix, entry in PARAMETRIC.items()]


def _plugins(what: str, builtins: set[str]) -> list[tuple[str, str, str]]:
    from masbench.plugins import NAME, discovered

    plugins = discovered(what)
    rows = []
    for plugin in plugins:
        source = plugin.source
        if not NAME.fullmatch(plugin.name):  # no option can name it (find() never looks it up): say so, quoted
            rows.append((shown(plugin.name), "unusable",
                         f"{source} (not a plain name: letters, digits, _ and -, starting with a letter or _)"))
            continue
        others = [p.source for p in plugins if p.name == plugin.name and p is not plugin]
        if plugin.name in builtins:
            source += " (shadowed by the built-in)"
        elif others:
            source += f" (clashes with {', '.join(others)}: refused)"
        rows.append((plugin.name, _plugin_kind(what, plugin.name) if plugin.name not in builtins else "-", source))
    return rows


def _plugin_kind(what: str, name: str) -> str:
    """What the plugin is (a data set's kind needs its import); ``broken`` if it cannot be used."""
    if what == "optimizers":
        return "lr + optimizer args"
    if what == "models":
        from masbench.models.external import IMAGE_AND_TABULAR

        return "/".join(IMAGE_AND_TABULAR)
    from masbench.data import resolve

    try:
        return resolve(name)[0].kind
    except (MasbenchError, ValueError):
        return "broken (masbench run --dataset NAME says why)"
