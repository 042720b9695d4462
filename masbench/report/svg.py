"""Matplotlib figures as SVG that can sit inline in an HTML page, several to a page, byte for byte the same
from one report to the next.

Deterministic: ``svg.hashsalt`` fixes the ids matplotlib derives from a hash, and the metadata (creator,
date) is dropped. Text stays text (``svg.fonttype: none``) and is never read as mathtext, so a data set
named ``$x`` prints as it is instead of failing to parse. Self-contained: the XML declaration, doctype
and namespace declarations, which name ``http://`` URLs, are left out (HTML's parser knows SVG without
them); ids get a per-figure prefix so that two figures on one page never share one.
"""

from __future__ import annotations

import re
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

SVG = "http://www.w3.org/2000/svg"
XLINK = "http://www.w3.org/1999/xlink"
RC = {"svg.hashsalt": "masbench", "svg.fonttype": "none", "text.parse_math": False}
_REFERENCE = re.compile(r"#([A-Za-z_][\w.\-]*)")


def figure_svg(draw: Callable[[Path], object], prefix: str) -> str:
    """Call ``draw(path)`` (a ``masbench.report.plots`` function that saves a figure to ``path``) under
    deterministic SVG settings, and return the figure as inline SVG with ids prefixed by ``prefix``."""
    import matplotlib

    with tempfile.TemporaryDirectory(prefix="masbench-svg-") as folder:
        path = Path(folder) / "figure.svg"
        with matplotlib.rc_context(RC):
            draw(path)
        return inline(path.read_text(encoding="utf-8"), prefix)


def inline(text: str, prefix: str) -> str:
    """A standalone SVG document as an ``<svg>`` element for HTML: no declaration, doctype, metadata or
    namespace declarations, and every id (and each reference to it, in attributes only) prefixed."""
    ET.register_namespace("", SVG)
    ET.register_namespace("xlink", XLINK)
    root = ET.fromstring(text)
    for metadata in root.findall(f"{{{SVG}}}metadata"):
        root.remove(metadata)
    ids = {element.get("id") for element in root.iter() if element.get("id")}

    def prefixed(match: re.Match) -> str:
        return f"#{prefix}-{match[1]}" if match[1] in ids else match[0]

    for element in root.iter():
        for name, value in element.attrib.items():
            if name == "id":
                element.set(name, f"{prefix}-{value}")
            elif "#" in value:  # href="#m1", clip-path="url(#p1)", but never text, which is no attribute
                element.set(name, _REFERENCE.sub(prefixed, value))
    out = ET.tostring(root, encoding="unicode")
    head, rest = out.split(">", 1)
    head = head.replace(f' xmlns="{SVG}"', "").replace(f' xmlns:xlink="{XLINK}"', "")
    return f'{head} role="img">{rest}'
