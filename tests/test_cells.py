"""Cell identity: every report, comparison, gate and plot groups runs by config_key, never by run name.

The 0.1 store in fixtures/ holds the quick suite at --epochs 2 and at --epochs 3: the same run names, two
cells each. 0.1's report pooled them as 7 rows of n = 4.
"""

from __future__ import annotations

import csv
import io
import shutil
import sqlite3
import statistics
from pathlib import Path

import pytest
from typer.testing import CliRunner

from masbench.cli import app
from masbench.store import Store

runner = CliRunner()
FIXTURE = Path(__file__).parent / "fixtures" / "store_v1.sqlite"


@pytest.fixture
def v1(tmp_path):
    path = tmp_path / "v1.db"
    shutil.copy(FIXTURE, path)
    Store(f"sqlite:///{path}")  # opening it migrates it to the current schema
    return path


def independent_cells(path: Path, metric: str = "best") -> dict[tuple[str, int], list[float]]:
    """(run name, planned epochs) -> accuracies in percent, straight from the epochs table with sqlite3."""
    pick = "max(e.test_acc)" if metric == "best" else \
        "(select test_acc from epochs l where l.run_id = r.id order by l.epoch desc limit 1)"
    with sqlite3.connect(path) as connection:
        rows = connection.execute(
            f"select r.name, r.epochs, {pick} from runs r join epochs e on e.run_id = r.id "
            f"where r.status = 'completed' group by r.id").fetchall()
    cells: dict[tuple[str, int], list[float]] = {}
    for name, epochs, acc in rows:
        cells.setdefault((name, epochs), []).append(100 * acc)
    return cells


def epochs_of_cells(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as connection:
        return dict(connection.execute("select distinct config_key, epochs from runs").fetchall())


def check_rows_against_epochs(path: Path, metric: str, rows: list[dict]) -> None:
    expected = independent_cells(path, metric)
    epochs = epochs_of_cells(path)
    assert len(rows) == len(expected) == 14
    for row in rows:
        values = expected[(row["name"], epochs[row["config_key"]])]
        assert int(row["n"]) == len(values) == 2
        assert float(row["avg_acc"]) == pytest.approx(statistics.mean(values), abs=1e-4)
        assert float(row["std_acc"]) == pytest.approx(statistics.stdev(values), abs=1e-4)
        assert float(row["max_acc"]) == pytest.approx(max(values), abs=1e-4)
        assert row["settings"] == f"epochs={epochs[row['config_key']]}"


@pytest.mark.parametrize("metric", ["best", "final"])
def test_a_migrated_01_store_reports_14_cells_of_2_seeds(v1, metric):
    result = runner.invoke(app, ["report", "--table", "--format", "csv", "--metric", metric, "--db", f"sqlite:///{v1}"])
    assert result.exit_code == 0, result.output
    check_rows_against_epochs(v1, metric, list(csv.DictReader(io.StringIO(result.stdout))))


@pytest.mark.parametrize("fmt, shown", [
    ("markdown", ["| MAS (epochs=2) | 0.3 | 0.7 |", "| MAS (epochs=3) | 0.3 | 0.7 |", "| Adam (epochs=2) |"]),
    ("latex", [r"MAS (epochs=2) & 0.3 & 0.7", r"SGD (epochs=3) & "]),
    ("rich", ["MAS (epochs=2)", "Adam (epochs=3)"]),
])
def test_tables_show_the_settings_that_tell_two_cells_of_one_name_apart(v1, fmt, shown):
    result = runner.invoke(app, ["report", "--format", fmt, "--db", f"sqlite:///{v1}"])
    assert result.exit_code == 0, result.output
    for text in shown:
        assert text in result.stdout
    assert result.stdout.count("epochs=2") == result.stdout.count("epochs=3") == 7


def test_json_and_leaderboard_carry_the_cell(v1):
    records = __import__("json").loads(runner.invoke(app, ["report", "--format", "json", "--db",
                                                           f"sqlite:///{v1}"]).stdout)
    assert len(records) == 14 and len({r["config_key"] for r in records}) == 14
    assert all(r["n"] == 2 and r["seeds"] == [0, 1] for r in records)
    board = runner.invoke(app, ["report", "--leaderboard", "--format", "csv", "--db", f"sqlite:///{v1}"])
    rows = list(csv.DictReader(io.StringIO(board.stdout)))
    assert len(rows) == 14 and sorted(r["rank"] for r in rows) == sorted(str(i) for i in range(1, 15))
    rich = runner.invoke(app, ["report", "--leaderboard", "--db", f"sqlite:///{v1}"])
    assert "adam[lr=0.003] (epochs=2)" in rich.stdout and "adam[lr=0.003] (epochs=3)" in rich.stdout


def test_fresh_sweeps_at_two_epoch_counts_stay_apart(tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    for epochs in ("2", "3"):
        swept = runner.invoke(app, ["sweep", "--benchmark", "quick", "--epochs", epochs, "--seeds", "2", "--db", url,
                                    "--checkpoint-dir", str(tmp_path / "ckpt")])
        assert swept.exit_code == 0, swept.output
    result = runner.invoke(app, ["report", "--table", "--format", "csv", "--db", url])
    assert result.exit_code == 0, result.output
    check_rows_against_epochs(tmp_path / "fresh.db", "best", list(csv.DictReader(io.StringIO(result.stdout))))


def test_compare_refuses_a_selector_that_matches_two_cells_and_takes_a_config_key(v1):
    url = f"sqlite:///{v1}"
    ambiguous = runner.invoke(app, ["compare", "adam", "sgd", "--db", url])
    assert ambiguous.exit_code == 1 and ambiguous.stderr.count("\n") == 1
    assert "'adam' is ambiguous in digits/mlp (benchmark quick)" in ambiguous.stderr
    assert "adam[lr=0.003] (epochs=2) (config" in ambiguous.stderr
    keys = {(name, epochs): key for key, (name, epochs) in
            ((k, v) for k, v in _names_by_key(v1).items())}
    adam, sgd = keys[("adam[lr=0.003]", 3)], keys[("sgd[lr=0.003,momentum=0.9]", 3)]
    result = runner.invoke(app, ["compare", adam[:10], sgd[:10], "--db", url])
    assert result.exit_code == 0, result.output
    values = independent_cells(v1)
    a, s = values[("adam[lr=0.003]", 3)], values[("sgd[lr=0.003,momentum=0.9]", 3)]
    assert f"{statistics.mean(s) - statistics.mean(a):+.2f}" in result.stdout and "paired t-test" in result.stdout
    assert f"config {adam}" in result.stdout and "(epochs=3)" in result.stdout


def _names_by_key(path: Path) -> dict[str, tuple[str, int]]:
    with sqlite3.connect(path) as connection:
        return {k: (n, e) for k, n, e in connection.execute("select distinct config_key, name, epochs from runs")}


def _duplicate_seed(path: Path) -> None:
    """A second completed run of one cell with seed 0 (another key): what compare once overwrote silently."""
    with sqlite3.connect(path) as connection:
        columns = [c[1] for c in connection.execute("pragma table_info(runs)") if c[1] != "id"]
        source = connection.execute("select id from runs where name = 'adam[lr=0.003]' and epochs = 3 "
                                    "and seed = 0").fetchone()[0]
        connection.execute(f"insert into runs ({', '.join(columns)}) select "
                           f"{', '.join('key || ' + repr('-copy') if c == 'key' else c for c in columns)} "
                           f"from runs where id = ?", (source,))
        copy = connection.execute("select max(id) from runs").fetchone()[0]
        connection.execute("insert into epochs (run_id, epoch, train_loss, train_acc, test_loss, test_acc, lr, "
                           "lambda_adam, lambda_sgd, seconds, samples_per_second) select ?, epoch, train_loss, "
                           "train_acc, test_loss, test_acc / 2, lr, lambda_adam, lambda_sgd, seconds, "
                           "samples_per_second from epochs where run_id = ?", (copy, source))


@pytest.mark.parametrize("args", [["report"], ["compare", "adam", "sgd", "--dataset", "digits"]])
def test_a_seed_twice_in_one_cell_is_an_error_never_an_overwrite(v1, args):
    _duplicate_seed(v1)
    result = runner.invoke(app, [*args, "--db", f"sqlite:///{v1}"])
    assert result.exit_code == 1, result.output
    assert "cell adam[lr=0.003] on digits/mlp" in result.stderr and "has seed 0 in several completed runs" in result.stderr
    assert result.stderr.count("\n") == 1


def test_the_gate_joins_on_the_cell(v1, tmp_path):
    url = f"sqlite:///{v1}"
    baseline = tmp_path / "base.csv"
    assert runner.invoke(app, ["report", "--format", "csv", "--output", str(baseline), "--db", url]).exit_code == 0
    with sqlite3.connect(v1) as connection:  # the MAS cells of 3 epochs only, 5 points lower on every seed
        connection.execute("update epochs set test_acc = test_acc - 0.05 where run_id in "
                           "(select id from runs where optimizer = 'mas' and epochs = 3)")
    gate = runner.invoke(app, ["compare", "--baseline", str(baseline), "--db", url])
    assert gate.exit_code == 1, gate.output
    lines = [line for line in gate.stdout.splitlines() if line.startswith("REGRESSION")]
    assert len(lines) == 5 and all("mas[" in line and "(epochs=3)" in line and "(-5.00 points" in line
                                   for line in lines)
    assert "5 of 14 cells regressed" in gate.stdout


def test_curves_and_lambda_plots_draw_one_line_per_cell(v1, tmp_path):
    from masbench.report import plots
    from masbench.report import cell_table, run_accuracies

    runs = run_accuracies(Store(f"sqlite:///{v1}", writable=False))
    labels = plots.curve_labels(cell_table(runs))
    assert len(set(labels.values())) == 14 and "Adam (epochs=2)" in labels.values()
    for kind in ("curves", "lambda"):
        out = tmp_path / f"{kind}.png"
        result = runner.invoke(app, ["plot", "--kind", kind, "--output", str(out), "--db", f"sqlite:///{v1}"])
        assert result.exit_code == 0, result.output
        assert out.read_bytes().startswith(b"\x89PNG")
