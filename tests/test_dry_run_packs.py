"""``sweep --dry-run`` shows how ``--pack`` would train the cells: the packs, their members, and the cells
that would train alone with why. Planned by the sweep's own ``pack_cells``: what is shown is what runs."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from masbench.grid.benchmarks import Cell
from masbench.cli import app
from masbench.spec import RunSpec
from masbench.grid.packs import pack_lines

runner = CliRunner()
# adam (#1), radam (#2: no packed form), then MAS at lambda_adam 0.3 .. 0.7 (#3 .. #7): one seed, digits, mlp.
SWEEP = ["sweep", "--dataset", "digits", "--lambdas", "0.3..0.7", "--baselines", "adam,radam", "--dry-run"]


def dry_run(tmp_path, *flags: str) -> list[str]:
    result = runner.invoke(app, [*SWEEP, *flags, "--db", f"sqlite:///{tmp_path / 'none.db'}"])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "none.db").exists()  # a dry run writes nothing
    lines = result.output.splitlines()
    return lines[lines.index("7 runs: 0 completed, 7 to run") + 1:]  # what follows the table and its count


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--pack", "3"], ["packing on cpu: 7 run(s) to train, 6 in 2 pack(s), 1 alone",
                           "  pack 1: 3 runs (digits, mlp, batch 128, 10 epochs): #1, #3, #4",
                           "  pack 2: 3 runs (digits, mlp, batch 128, 10 epochs): #5, #6, #7",
                           "  alone: #2: not packed: optimizer 'radam' has no packed form (packable: mas, sgd, adam, "
                           "adamw)"]),
        (["--pack", "5", "--device", "cpu"], [
            "packing on cpu: 7 run(s) to train, 5 in 1 pack(s), 2 alone",
            "  pack 1: 5 runs (digits, mlp, batch 128, 10 epochs): #1, #3, #4, #5, #6",
            "  alone: #2: not packed: optimizer 'radam' has no packed form (packable: mas, sgd, adam, adamw)",
            "  alone: #7: left over from packs of 5"]),
        (["--pack", "auto", "--models", "resnet18", "--device", "cpu"], [
            "packing on cpu: 7 run(s) to train, 0 in 0 pack(s), 7 alone",
            "  alone: #1, #2, #3, #4, #5, #6, #7: --pack auto leaves model 'resnet18' unpacked on cpu (it packs the "
            "MLP and the CNN, and ResNets on CUDA only)"]),
        (["--pack", "off"], []),
        ([], []),
    ],
    ids=["pack-3", "pack-5-left-over", "auto-resnet-on-cpu", "off", "default"],
)
def test_a_dry_run_shows_the_packs_and_who_trains_alone(flags, expected, tmp_path):
    assert dry_run(tmp_path, *flags) == expected


def test_a_dry_run_plans_packs_for_the_named_device_even_where_it_is_absent(tmp_path):
    # --pack auto packs the CNN on CUDA: the plan for a GPU machine, made on any machine
    lines = dry_run(tmp_path, "--pack", "auto", "--models", "cnn", "--device", "cuda")
    assert lines[0] == "packing on cuda: 7 run(s) to train, 6 in 1 pack(s), 1 alone"
    assert lines[1] == "  pack 1: 6 runs (digits, cnn, batch 128, 10 epochs): #1, #3, #4, #5, #6, #7"


def _cells(pack, seeds=range(4), **values) -> list[Cell]:
    return [Cell(RunSpec(dataset="digits", model="mlp", epochs=2, seed=s, **values), pack=pack) for s in seeds]


def test_only_cells_to_run_are_packed_and_failed_ones_with_retry_failed():
    cells = _cells(2)
    listed = list(zip(cells, ["completed", "failed", "new", "running"]))
    assert pack_lines(listed, "cpu") == ["packing on cpu: 2 run(s) to train, 2 in 1 pack(s), 0 alone",
                                         "  pack 1: 2 runs (digits, mlp, batch 128, 2 epochs): #3, #4"]
    assert pack_lines(listed, "cpu", retry_failed=True)[1:] == [
        "  pack 1: 2 runs (digits, mlp, batch 128, 2 epochs): #2, #3", "  alone: #4: left over from packs of 2"]


def test_a_cell_with_no_partner_says_so_and_an_off_grid_says_it_is_off():
    cells = _cells(4, seeds=[0]) + _cells(4, seeds=[0], batch_size=64) + _cells("off", seeds=[1])
    assert pack_lines([(cell, "new") for cell in cells], "cpu") == [
        "packing on cpu: 3 run(s) to train, 0 in 0 pack(s), 3 alone",
        "  alone: #1, #2: no other cell to run shares its data, model, batch size and epochs",
        "  alone: #3: its grid's pack is off"]
