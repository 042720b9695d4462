"""One colour per optimizer in every figure, stable from one report to the next; plots split by benchmark."""

from __future__ import annotations

import re

import pytest
from report_fixtures import fill
from typer.testing import CliRunner

from masbench.cli import app
from masbench.report.plots import FIXED_COLOURS, Palette
from masbench.store import Store

runner = CliRunner()


def strokes(svg: str, gid_prefix: str) -> dict[str, str]:
    """gid -> the stroke colour of the first path drawn in the SVG group of that id."""
    out = {}
    for match in re.finditer(r'<g id="(' + re.escape(gid_prefix) + r'[^"]*)">(.*?)</g>', svg, re.S):
        stroke = re.search(r"stroke:\s*(#[0-9a-f]{6})", match.group(2))
        if stroke:
            out[match.group(1)] = stroke.group(1)
    return out


@pytest.fixture
def db(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    fill(Store(url))
    return url


def keys_by_optimizer(db: str) -> dict[str, list[str]]:
    from masbench.report import run_accuracies

    runs = run_accuracies(Store(db, writable=False, create=False))
    runs = runs[runs["model"] == "mlp"]
    return {o: sorted(set(runs[runs["optimizer"] == o]["config_key"])) for o in set(runs["optimizer"])}


def test_an_optimizer_has_one_colour_in_the_curves_and_the_lambda_plot(db, tmp_path):
    for kind in ("curves", "lambda"):
        result = runner.invoke(app, ["plot", "--kind", kind, "--model", "mlp", "--db", db,
                                     "--output", str(tmp_path / f"{kind}.svg")])
        assert result.exit_code == 0, result.output
    curves = strokes((tmp_path / "curves.svg").read_text(), "curve-")
    baselines = strokes((tmp_path / "lambda.svg").read_text(), "baseline-")
    keys = keys_by_optimizer(db)
    for optimizer in ("adam", "sgd"):
        (key,) = keys[optimizer]
        assert curves[f"curve-{key}"] == baselines[f"baseline-{key}"] == FIXED_COLOURS[optimizer]
    # MAS's cells are reds, apart from every baseline's colour, darker at the larger lambda_adam.
    mas = [curves[f"curve-{key}"] for key in keys["mas"]]
    assert len(set(mas)) == 2 and not set(mas) & set(FIXED_COLOURS.values())


def test_the_palette_is_stable_and_tells_third_party_optimizers_apart():
    names = [f"pkg{i}.optim:Opt{i}" for i in range(12)]
    palette = Palette(names)
    looks = [(palette.style(n)["color"], str(palette.style(n)["linestyle"])) for n in names]
    assert len(set(looks)) == len(names)  # no two alike within a figure
    assert all(look[0] not in FIXED_COLOURS.values() for look in looks)
    # The same names look the same in any order (another process agrees too: sha256, not hash()), and a name
    # alone in a figure keeps the look its name draws.
    shuffled = Palette(list(reversed(names)))
    assert all(shuffled.style(n) == palette.style(n) for n in names)
    alone = [Palette([n]).style(n) for n in names]
    assert sum(a == palette.style(n) for a, n in zip(alone, names)) >= 9
    assert Palette().style("adam") == {"color": FIXED_COLOURS["adam"], "linestyle": "-"}


def test_a_plot_of_two_benchmarks_draws_a_figure_for_each(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = Store(url)
    fill(store)
    fill(store, {("adam", None, "mlp"): {0: [0.5, 0.6, 0.7]}}, stored=lambda v: {**v, "benchmark": "other",
                                                                                  "key": "k" + v["key"][1:]})
    result = runner.invoke(app, ["plot", "--kind", "curves", "--model", "mlp", "--db", url,
                                 "--output", str(tmp_path / "fig.svg")])
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in tmp_path.glob("fig*.svg"))
    assert written == ["fig-b.svg", "fig-other.svg"], written
    assert result.stdout.count("plot written to") == 2
    other = strokes((tmp_path / "fig-other.svg").read_text(), "curve-")
    assert len(other) == 1  # only the other benchmark's one cell
    assert len(strokes((tmp_path / "fig-b.svg").read_text(), "curve-")) == 4
