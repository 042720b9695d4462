"""Tables written line by line (``render.BlockTable``) are, character for character, what rich writes.

Where the console shows no styles, does not wrap and the table fits, the report's tables are written line by
line instead of through rich's per-cell layout (5,000 rows: seconds). Each case here compares that output with
rich's own rendering of the same table on the same console; where the table does not fit, rich draws it.
"""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from masbench.report import cell_table, render_tables, run_accuracies
from masbench.report.render import BlockTable
from masbench.store import Store
from tests.report_fixtures import fill


class _Ascii(io.StringIO):
    encoding = "ascii"  # a console that cannot write box-drawing characters: rich substitutes an ASCII box


def _printed(renderable, width: int, ascii_only: bool = False, soft_wrap: bool = True) -> str:
    console = Console(file=_Ascii() if ascii_only else io.StringIO(), width=width, soft_wrap=soft_wrap,
                      color_system=None, highlight=False)
    console.print(renderable)
    return console.file.getvalue()


def _blocks(title="digits: best test accuracy", caption=None, names=("Adam", "MAS (lr=0.01)"), flags=""):
    columns = (("Name", "left"), ("λa", "right"), ("avg acc", "right"), ("flags", "left"))
    blocks = [[[("mlp", "bold"), ("", ""), ("", ""), ("", "")]]
              + [[(name, ""), ("0.3", ""), ("91.25", "bold"), (flags, "yellow")] for name in names],
              [[("cnn", "bold"), ("", ""), ("", ""), ("", "")], [("SGD", ""), ("", ""), ("-", ""), ("1/3 seeds", "yellow")]]]
    return BlockTable(dict(title=title, title_justify="left", caption=caption, caption_justify="left"), columns,
                      blocks)


CASES = {
    "plain": _blocks(),
    "long title": _blocks(title="a title much longer than the table itself is wide, which rich does not wrap"),
    "caption of two lines": _blocks(caption="* beats Adam (p < 0.05)\n2 runs left out: masbench check"),
    "wide characters": _blocks(names=("名前の長い最適化器", "Adam")),
    "empty flags column": _blocks(flags=""),
    "control characters, which rich strips": _blocks(names=("ad\ram", "a\x07b\x0bc")),
    "brackets and markup-like text": _blocks(names=("mix:adam=0.3,sgd=0.7", "[bold]not markup[/bold]"),
                                            title="bench [x]: best", caption="[red]left out[/red]"),
}


@pytest.mark.parametrize("ascii_only", [False, True], ids=["utf8", "ascii"])
@pytest.mark.parametrize("case", list(CASES))
def test_lines_equal_rich_where_the_table_fits(case, ascii_only):
    table = CASES[case]
    wide = _printed(table.table(), 200, ascii_only)
    assert _printed(table, 200, ascii_only) == wide
    width = next(len(line) for line in wide.splitlines() if line[:1] in ("┏", "+"))  # the table's top rule
    for at in (width, width + 1):  # the narrowest console it fits, and one more
        assert _printed(table, at, ascii_only) == _printed(table.table(), at, ascii_only)


def test_a_table_too_wide_for_the_console_is_drawn_by_rich():
    table = CASES["plain"]
    narrow = _printed(table, 20)
    assert narrow == _printed(table.table(), 20)
    assert len(narrow.splitlines()) > len(_printed(table, 200).splitlines())  # a cell wrapped, as rich does


def test_a_console_that_wraps_is_drawn_by_rich():
    table = CASES["long title"]
    assert _printed(table, 200, soft_wrap=False) == _printed(table.table(), 200, soft_wrap=False)


def test_the_reports_table_equals_rich(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    fill(store)
    rendered = render_tables(cell_table(run_accuracies(store)), "best", "rich")
    for table in rendered.rich:
        assert _printed(table, 200) == _printed(table.table(), 200)
    store.close()


def test_markdown_escapes_what_would_end_a_cell_or_read_as_html():
    from masbench.report.render import _markdown_escape

    assert _markdown_escape("a|b<i>x</i> & *y* back\\slash") == "a\\|b&lt;i&gt;x&lt;/i&gt; &amp; \\*y\\* back\\\\slash"
