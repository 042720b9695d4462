"""The HTML report: self-contained, escaped, the text report's numbers, and a page Chromium renders."""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
from html.parser import HTMLParser

import pytest
import report_fixtures
from scipy import stats
from typer.testing import CliRunner

from masbench.cli import app
from masbench.report import METRIC_TITLES, cell_table, render_tables, run_accuracies
from masbench.report.html import render_html
from masbench.store import Store

runner = CliRunner()
HOSTILE_NAME = "<script>alert('name')</script>"
HOSTILE_DATASET = '<img src=x onerror="alert(1)">&amp; $x_{'  # and mathtext that cannot parse
HOSTILE_BENCHMARK = "</section><script>alert(2)</script>"
ENVIRONMENT = dict(device="cuda:0 (NVIDIA <H200>)", git_commit="0123abcd" * 5,
                   versions={"masbench": "0.1.0", "torch": "2.9.0", "python": "3.11.7"})

# The shared runs without MAS on cnn (the page's figures and profile are counted for these).
RUNS = {key: seeds for key, seeds in report_fixtures.RUNS.items() if key != ("mas", 0.3, "cnn")}


def fill(store: Store, benchmark: str = "b", dataset: str = "digits", rename: dict | None = None) -> None:
    def hostile(values):  # stored strings no spec would make: what a plugin's path or a hand-edited store holds
        name = (rename or {}).get(values["optimizer"], values["name"])
        return {**values, "benchmark": benchmark, "dataset": dataset, "name": name}

    report_fixtures.fill(store, RUNS, stored=hostile, environment=ENVIRONMENT)


class Page(HTMLParser):
    """The DOM as the tests need it: every start tag, every attribute, all text, and each table's rows."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str, str | None]] = []
        self.text: list[str] = []
        self.tables: list[dict] = []  # {"class": ..., "caption": ..., "rows": [[cell text, ...], ...]}
        self._cell: list[str] | None = None
        self._in_caption = False
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += [(tag, name, value) for name, value in attrs]
        if tag == "table":
            self.tables.append({"class": dict(attrs).get("class"), "caption": "", "rows": []})
        elif tag == "tr" and self.tables:
            self.tables[-1]["rows"].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "caption":
            self._in_caption = True

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1]["rows"][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "caption":
            self._in_caption = False

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)
        elif self._in_caption:
            self.tables[-1]["caption"] += data

    def of_class(self, name: str) -> list[dict]:
        return [t for t in self.tables if t["class"] == name]


@pytest.fixture
def db(sqlite_url):
    store = Store(sqlite_url)
    fill(store)
    store.close()
    return sqlite_url


def page_of(url: str, metric: str = "best") -> str:
    store = Store(url, writable=False, create=False)
    try:
        return render_html(store, metric=metric)
    finally:
        store.close()


def markdown_rows(url: str, metric: str) -> list[list[str]]:
    """The text report's rows (``report --format markdown``), without the bold marks."""
    store = Store(url, writable=False, create=False)
    try:
        text = render_tables(cell_table(run_accuracies(store, metric=metric)), metric, "markdown").text
    finally:
        store.close()
    rows = [[c.strip().strip("*") for c in line.strip("|").split("|")] for line in text.splitlines()
            if line.startswith("| ") and not line.startswith("| Name") and not line.startswith("| ---")]
    return [row for row in rows if any(row[1:])]  # model header rows are blank past their name


@pytest.mark.parametrize("metric", ["best", "final"])
def test_tables_hold_the_text_reports_numbers(db_url, metric):
    store = Store(db_url)
    fill(store)
    store.close()
    page = Page(page_of(db_url, metric))
    results = page.of_class("results")
    which = METRIC_TITLES[metric]
    assert [t["caption"] for t in results] == [f"digits (benchmark b): {which}, percent over seeds"]
    rows = [row for row in results[0]["rows"][1:] if len(row) > 1]  # past the header and the model rows
    assert rows == markdown_rows(db_url, metric)
    assert [row[0] for row in results[0]["rows"] if len(row) == 1] == ["cnn", "mlp"]  # as the text report orders them
    # And one cell against arithmetic done here: Adam on mlp, mean of each seed's best (or last) epoch.
    accs = [max(a) if metric == "best" else a[-1] for a in RUNS[("adam", None, "mlp")].values()]
    mlp = [row[0] for row in results[0]["rows"]].index("mlp")
    adam = next(row for row in results[0]["rows"][mlp:] if row[0] == "Adam")
    low, high = stats.t.interval(0.95, 2, loc=0, scale=statistics.stdev(accs) * 100 / 3**0.5)
    assert adam[3:8] == [f"{statistics.mean(accs) * 100:.2f}", f"{max(accs) * 100:.2f}",
                         f"{statistics.stdev(accs) * 100:.2f}", f"{(high - low) / 2:.2f}", "3"]  # ±CI95: half


def test_flags_best_and_environment(db):
    text = page_of(db)
    page = Page(text)
    rows = page.of_class("results")[0]["rows"]
    flags = {(row[0], row[1]): row[-1] for row in rows if len(row) > 1}
    assert flags[("MAS", "0.3")] == "2/3 seeds"
    assert flags[("MAS", "0.7")] == "2/3 seeds, 1 diverged"
    assert flags[("Adam", "")] == ""
    assert len(re.findall(r'<tr class="cell flagged"', text)) == 2
    assert re.search(r'<td class="num best">92\.00</td>', text)  # MAS 0.3's acc max: the best of mlp's column
    env = page.of_class("env")[0]["rows"]
    assert env[1] == ["13", "cuda:0 (NVIDIA <H200>)", ENVIRONMENT["git_commit"],
                      "masbench 0.1.0, python 3.11.7, torch 2.9.0"]  # 13 runs started; the pending one did not


def test_page_is_self_contained_and_deterministic(db):
    text = page_of(db)
    assert text == page_of(db), "one store, one page: no date, no random id"
    assert not re.search(r"https?://", text)
    page = Page(text)
    sources = [value for tag, name, value in page.attrs if name in ("src", "href", "xlink:href", "action")]
    assert all(value.startswith(("#", "data:")) for value in sources), sources
    assert {"script", "link", "iframe", "img", "object"}.isdisjoint(page.tags)
    # Curves for mlp and cnn, the λ plot for mlp (cnn has no MAS cell: a note says so), each inline SVG.
    assert page.tags.count("svg") == 3
    assert "no completed MAS runs for digits/cnn" in text
    ids = [value for _, name, value in page.attrs if name == "id"]
    assert len(ids) == len(set(ids)), "two figures share an id"
    references = {value[1:] for _, name, value in page.attrs
                  if name in ("href", "xlink:href") and value.startswith("#")}
    assert references and references <= set(ids)


def test_hostile_store_strings_are_text(sqlite_url):
    store = Store(sqlite_url)
    fill(store, benchmark=HOSTILE_BENCHMARK, dataset=HOSTILE_DATASET, rename={"adam": HOSTILE_NAME})
    store.close()
    text = page_of(sqlite_url)
    page = Page(text)
    assert {"script", "img"}.isdisjoint(page.tags)
    assert not any(name.startswith("on") for _, name, _ in page.attrs)
    shown = "".join(page.text)
    assert HOSTILE_DATASET in shown and HOSTILE_BENCHMARK in shown  # as text, unchanged
    assert page.tags.count("svg") == 3  # the figures too: "$x_{" in their titles is text, not mathtext
    titles = [value for tag, name, value in page.attrs if tag == "tr" and name == "title"]
    assert any(title.startswith(HOSTILE_NAME) for title in titles)
    assert [t["caption"] for t in page.of_class("results")] == [
        f"{HOSTILE_DATASET} (benchmark {HOSTILE_BENCHMARK}): {METRIC_TITLES['best']}, percent over seeds"]


def test_cli_writes_the_page_and_rejects_what_it_cannot_make(db, tmp_path):
    out = tmp_path / "report.html"
    result = runner.invoke(app, ["report", "--format", "html", "--output", str(out), "--db", db])
    assert result.exit_code == 0, result.output
    page = Page(out.read_text())
    assert len(page.of_class("results")) == 1 and "generated" in "".join(page.text)
    for args, message in ((["--format", "html", "--leaderboard"], "--format html makes the tables and plots"),
                          (["--format", "html", "--benchmark", "<nope>"], "no runs in sqlite:///"),
                          (["--format", "htm"],
                           "Invalid --format: 'htm' (valid: rich, csv, markdown, latex, json, html)")):
        bad = tmp_path / "bad.html"
        result = runner.invoke(app, ["report", *args, "--output", str(bad), "--db", db])
        assert result.exit_code == 1
        assert message in result.output and "Traceback" not in result.output
        assert not bad.exists(), "bad input wrote a file"


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def browse(binary: str, profile, *args: str) -> subprocess.CompletedProcess:
    # As root (containers, CI) Chromium refuses its sandbox; a fresh profile keeps parallel runs apart.
    sandbox = ["--no-sandbox"] if os.geteuid() == 0 else []
    return subprocess.run([binary, "--headless", "--disable-gpu", "--hide-scrollbars", *sandbox,
                           f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=180)


def test_chromium_renders_the_page(db, tmp_path):
    binary = chromium()
    if binary is None:
        why = "no Chromium here (chromium, chromium-browser or google-chrome on PATH)"
        if os.environ.get("MASBENCH_REQUIRE_BROWSER"):  # .ci/run: the page must be seen rendered there
            pytest.fail(f"{why}, and MASBENCH_REQUIRE_BROWSER is set: .ci/install-chromium could not install it")
        pytest.skip(f"{why}: .ci/run installs Debian's chromium")
    from PIL import Image

    path = tmp_path / "report.html"
    path.write_text(page_of(db))
    shot = tmp_path / "shot.png"
    done = browse(binary, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,2000", path.as_uri())
    assert shot.exists(), done.stderr[-2000:]
    with Image.open(shot) as image:
        assert image.format == "PNG" and image.size == (1280, 2000)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert len(colours) > 50, f"{len(colours)} colours: a blank page"
    dom = browse(binary, tmp_path / "profile", "--dump-dom", path.as_uri())
    rendered = Page(dom.stdout)
    results = rendered.of_class("results")
    assert len(results) == 1 and results[0]["rows"] == Page(path.read_text()).of_class("results")[0]["rows"]
    assert rendered.tags.count("svg") == 3 and rendered.tags.count("text") > 20  # the figures' text is text


def test_the_profile_is_drawn_for_a_target_and_left_out_without_one(db, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no ./benchmarks.yaml: the packaged one gives benchmark "b" no target
    without = Page(page_of(db))
    assert "performance profile" not in "".join(without.text) and without.tags.count("svg") == 3
    store = Store(db, writable=False, create=False)
    try:
        page = render_html(store, target=85)
    finally:
        store.close()
    parsed = Page(page)
    assert parsed.tags.count("svg") == 4
    text = "".join(parsed.text)
    assert "Benchmark b: performance profile" in text and "reaches 85% test accuracy" in text
    # The profile's legend names the configurations that plot --kind profile draws, as text in the SVG.
    assert "performance profile: 2 workload(s), target 85%" in text




def test_the_benchmarks_file_is_read_once_per_command(db, monkeypatch, tmp_path):
    """A benchmark with a target: one read of the file draws its profile (it was read twice per benchmark)."""
    from masbench.grid import benchmarks

    monkeypatch.chdir(tmp_path)
    (tmp_path / "benchmarks.yaml").write_text("benchmarks:\n  b:\n    dataset: digits\n    models: [mlp, cnn]\n"
                                              "    target: 85\n")
    reads = []
    real = benchmarks.read_targets
    monkeypatch.setattr(benchmarks, "read_targets", lambda *a, **k: reads.append(a) or real(*a, **k))
    assert "Benchmark b: performance profile" in "".join(Page(page_of(db)).text)
    assert len(reads) == 1
    for args in (["--format", "html"], ["--format", "csv"]):
        reads.clear()
        result = runner.invoke(app, ["report", *args, "--db", db])
        assert result.exit_code == 0, result.output
        assert len(reads) == 1, args
