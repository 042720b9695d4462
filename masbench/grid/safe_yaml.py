"""Reading YAML that a user hands in, within bounds: no code, no alias bombs, no runaway nesting.

``yaml.safe_load`` already refuses to build objects, but it lets aliases share
nodes: eight levels of ten aliases each (a "billion laughs") parse in a
millisecond into a value that expands to 10^8 leaves the moment anything walks
it (a validator, a ``repr`` in an error message). ``BoundedLoader`` counts the
document's nodes as if every alias were copied out, and refuses it past
``MAX_NODES``; it also refuses nesting past ``MAX_DEPTH`` (deeper input would end in
a ``RecursionError``), integers too long to convert, and files past ``MAX_BYTES``.

Two departures from PyYAML's YAML 1.1, both so that a file means what it says: a key
given twice in one mapping is refused (PyYAML keeps the last, silently; keys merged in
with ``<<: *anchor`` may still be overridden), and ``1e-3`` is a number, as in YAML 1.2
and JSON (PyYAML reads it as text, which the benchmarks file refuses where a number belongs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import re

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.parser import ParserError
from yaml.scanner import ScannerError

from masbench.errors import MasbenchError
from masbench.text.shown import one_line, shown

MAX_BYTES = 1 << 20  # a benchmarks file is a few kilobytes; a megabyte is far beyond any real one
MAX_NODES = 100_000  # nodes with every alias expanded: merge keys (<<: *common) stay far below it
MAX_DEPTH = 64
MAX_INT_DIGITS = 40
MERGE_TAG = "tag:yaml.org,2002:merge"
# YAML 1.2's floats that YAML 1.1 reads as text: an exponent with no dot (1e-3) or no sign (1.0e8).
EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$")


class BoundedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses documents whose aliases expand past ``MAX_NODES`` nodes."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_mapping_node(self, anchor: Any) -> MappingNode:
        node = super().compose_mapping_node(anchor)
        seen: dict[tuple[str, str], int] = {}
        for key, _ in node.value:  # the mapping's own keys: merged-in ones are not in it yet
            if not isinstance(key, ScalarNode) or key.tag == MERGE_TAG:
                continue  # a list or mapping as a key is refused later, as "not a name"
            if (key.tag, key.value) in seen:
                raise ComposerError(None, None, f"key {shown(key.value)} given twice in one mapping (first at line "
                                    f"{seen[key.tag, key.value]}); give it once", key.start_mark)
            seen[key.tag, key.value] = key.start_mark.line + 1
        return node

    def compose_document(self) -> Node:
        node = super().compose_document()
        expanded_size(node, MAX_NODES)
        return node

    def construct_yaml_int(self, node: Node) -> int:
        digits = sum(c.isdigit() for c in str(node.value))
        if digits > MAX_INT_DIGITS:
            raise ConstructorError(None, None, f"an integer of {digits} digits (at most {MAX_INT_DIGITS})",
                                   node.start_mark)
        return super().construct_yaml_int(node)


BoundedLoader.add_constructor("tag:yaml.org,2002:int", BoundedLoader.construct_yaml_int)
BoundedLoader.add_implicit_resolver("tag:yaml.org,2002:float", EXPONENT_FLOAT, list("-+0123456789."))


def _children(node: Node) -> list[Node]:
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, SequenceNode):
        return list(node.value)
    return []


def expanded_size(root: Node, limit: int) -> int:
    """The node count with every alias copied out; ComposerError past ``limit`` or on a recursive alias.

    Shared nodes are counted once per reference but visited once (sizes are memoised), so the
    check itself takes time in proportion to the file, not to the expansion.
    """
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            on_path.discard(key)
            sizes[key] = min(limit + 1, 1 + sum(sizes[id(child)] for child in _children(node)))
            if sizes[key] > limit:
                raise ComposerError(None, None, f"its aliases expand to more than {limit:,} values (an alias bomb?)",
                                    node.start_mark)
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise ComposerError(None, None, "an alias refers to a value that contains it", node.start_mark)
        on_path.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in sizes)
    return sizes[id(root)]


def load_yaml(path: Path, what: str = "file") -> Any:
    """The YAML document in ``path``, or a one-line ``MasbenchError`` naming the file and the place."""
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise MasbenchError(f"{what} {path} is {size:,} bytes (at most {MAX_BYTES:,})")
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or error
        raise MasbenchError(one_line(f"cannot read {what} {path}: {reason}")) from None
    try:
        return yaml.load(text, Loader=BoundedLoader)  # noqa: S506 - BoundedLoader is a SafeLoader
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        # The scanner and parser find syntax errors; the composer and constructor refuse what BoundedLoader bounds.
        kind = "YAML syntax error" if isinstance(error, (ScannerError, ParserError)) else "refused"
        raise MasbenchError(one_line(f"{path}: {kind}{where}: {problem}")) from None
