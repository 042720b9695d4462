"""The package's layout, read from its source with ``ast``: no import cycle, no private name imported from
another package, and a short top level.

Every import counts, those inside functions too (a lazy import still ties two modules together), except those
under ``if TYPE_CHECKING:``, which never run. ``from P import x`` imports ``P/__init__`` (and ``P.x`` when that
is a module), so that a cycle through an ``__init__``'s re-exports is seen; a module's own packages are
imported before it, so ``from <its own package> import <a module>`` counts the module alone.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "masbench"
TOP_LEVEL_AT_MOST = 10  # the modules directly in masbench/, __init__ and __main__ included


def module_names(root: Path = ROOT) -> dict[str, Path]:
    """``masbench.a.b`` -> its file (``masbench.a`` -> ``a/__init__.py``)."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = [root.name, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """The Import and ImportFrom nodes that can run: anywhere but under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _package_of(name: str, modules: dict[str, Path]) -> str:
    """The package a module belongs to (a package's ``__init__`` belongs to the package itself)."""
    return name if modules[name].name == "__init__.py" else name.rpartition(".")[0]


def _absolute(node: ast.ImportFrom, importer: str, modules: dict[str, Path]) -> str:
    if not node.level:
        return node.module or ""
    base = _package_of(importer, modules).split(".")
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph(modules: dict[str, Path] | None = None):
    """(edges: module -> the masbench modules it imports, private: (importer, source, name) for every
    ``_name`` imported from a module of another package)."""
    modules = module_names() if modules is None else modules
    edges: dict[str, set[str]] = {name: set() for name in modules}
    private: list[tuple[str, str, str]] = []
    for importer, path in modules.items():
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
                names: list[tuple[str, str]] = []
            else:
                source = _absolute(node, importer, modules)
                names = [(source, alias.name) for alias in node.names]
                submodules = [f"{source}.{alias.name}" for alias in node.names if f"{source}.{alias.name}" in modules]
                # A module's own packages are imported before it runs: ``from <its package> import <a module>``
                # adds the module alone. Any other ``from P import x`` runs (and so depends on) P's __init__.
                own = importer == source or importer.startswith(source + ".")
                targets = submodules if own and len(submodules) == len(node.names) else [source, *submodules]
            edges[importer].update(t for t in targets if t in modules and t != importer)
            for source, name in names:
                if (name.startswith("_") and not name.startswith("__") and source in modules
                        and f"{source}.{name}" not in modules
                        and _package_of(source, modules) != _package_of(importer, modules)):
                    private.append((importer, source, name))
    return edges, private


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle's modules in import order (the first again at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_no_import_cycle():
    edges, _ = import_graph()
    cycle = find_cycle(edges)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_module_imports_a_private_name_from_another_package():
    _, private = import_graph()
    assert not private, "\n".join(f"{importer} imports {source}.{name}" for importer, source, name in private)


def test_the_top_level_is_short():
    top = sorted(path.name for path in ROOT.glob("*.py"))
    assert len(top) <= TOP_LEVEL_AT_MOST, top


# The checker itself, on packages made here: it must see what it is there to see.

def _package(tmp_path: Path, files: dict[str, str]) -> dict[str, Path]:
    root = tmp_path / "pkg"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return module_names(root)


@pytest.mark.parametrize("files, cycle", [
    ({"__init__.py": "", "a.py": "from pkg import b\n", "b.py": "import pkg.a\n"}, True),
    ({"__init__.py": "", "a.py": "def f():\n    from pkg.b import x\n", "b.py": "from pkg.a import y\n"}, True),
    ({"__init__.py": "from pkg.a import x\n", "a.py": "from pkg.b import y\n", "b.py": "from pkg import z\n"}, True),
    ({"__init__.py": "", "s/__init__.py": "", "s/a.py": "from . import b\n", "s/b.py": "from .a import x\n"}, True),
    ({"__init__.py": "", "a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import b\n",
      "b.py": "from pkg import a\n"}, False),
    ({"__init__.py": "", "a.py": "from pkg import b\n", "b.py": "import os\n"}, False),
])
def test_the_checker_finds_cycles_through_functions_and_inits(tmp_path, files, cycle):
    edges, _ = import_graph(_package(tmp_path, files))
    found = find_cycle(edges)
    assert (found is not None) == cycle, found
    if found:
        assert found[0] == found[-1]


def test_the_checker_names_private_imports_across_packages_only(tmp_path):
    modules = _package(tmp_path, {
        "__init__.py": "", "x/__init__.py": "", "x/base.py": "_hidden = 1\nshown = 2\n",
        "x/near.py": "from pkg.x.base import _hidden\n",  # its own package's: allowed
        "y/__init__.py": "", "y/far.py": "from pkg.x.base import _hidden, shown\n",
    })
    _, private = import_graph(modules)
    assert private == [("pkg.y.far", "pkg.x.base", "_hidden")]


def test_the_registry_knows_mix_imported_on_its_own():
    """``optim.registry`` does not import ``optim.mix`` (the cycle it ended); mix registers itself, and importing
    the registry alone, in a fresh process, still runs the package that imports mix."""
    import subprocess
    import sys

    code = ("from masbench.optim.registry import OPTIMIZERS, resolve_optimizer, optimizer_class\n"
            "from masbench.optimizer_names import OPTIMIZER_NAMES\n"
            "assert tuple(OPTIMIZERS) == OPTIMIZER_NAMES, list(OPTIMIZERS)\n"
            "assert optimizer_class('mix').__name__ == 'Mix'\n"
            "assert resolve_optimizer('masbench.optim.mix:Mix') == 'mix'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
