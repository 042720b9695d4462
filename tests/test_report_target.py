"""Time to target (``report --target``): each number checked against a plain computation from the epoch rows."""

from __future__ import annotations

import csv
import io
import json
import statistics

import pytest
from typer.testing import CliRunner

from masbench.cli import app
from masbench.spec import RunSpec
from masbench.store import Store
from masbench.sweep import run_values

runner = CliRunner()

# (optimizer, model) -> {seed: (status, [(test_acc, seconds) per epoch])}. 0.29 sits on a boundary: 0.29 * 100
# is 28.999999999999996, so a comparison in percent would miss a target of 29 that this run reaches.
RUNS = {
    ("adam", "mlp"): {0: ("completed", [(0.20, 1.5), (0.29, 2.25), (0.40, 3.0)]),
                      1: ("completed", [(0.10, 1.0), (0.25, 1.0), (0.31, 4.0)]),
                      2: ("completed", [(0.28, 0.5), (0.20, 0.5), (0.22, 0.5)])},  # never reaches 29
    ("sgd", "mlp"): {0: ("completed", [(0.30, 7.0), (0.50, 1.0)]),
                     # (a NaN accuracy here would fail the store's checks: the run would be left out)
                     1: ("completed", [(0.01, 2.0), (0.35, 2.5), (0.5, 1.0)]),
                     2: ("failed", [(0.90, 0.1)])},  # reached, but not a completed seed: not counted
    ("adam", "cnn"): {0: ("completed", [(0.05, 1.0), (0.06, 1.0)])},  # no seed reaches it
}


def spec(optimizer, model, seed):
    return RunSpec(benchmark="t", dataset="digits", model=model, optimizer=optimizer, lr=0.01, epochs=3, seed=seed)


def row(epoch, acc, seconds):
    return dict(epoch=epoch, train_loss=1.0, train_acc=0.5, test_loss=1.0, test_acc=acc, lr=0.01, lambda_adam=None,
                lambda_sgd=None, seconds=seconds, samples_per_second=10.0)


def fill(store, runs=RUNS, resume_after=1):
    """Each run's epochs as recorded; runs with more than ``resume_after`` epochs are resumed by another worker
    (the first gives its claim back, as on Ctrl-C), as a restarted sweep would."""
    for (optimizer, model), seeds in runs.items():
        for seed, (status, epochs) in seeds.items():
            run = store.ensure_run(run_values(spec(optimizer, model, seed)))
            worker = "first"
            store.claim(run.id, worker, stale_after=60)
            for epoch, (acc, seconds) in enumerate(epochs, start=1):
                if epoch == resume_after + 1:
                    store.release(run.id, worker)
                    worker = "second"
                    assert store.claim(run.id, worker, stale_after=60)
                store.record_epoch(run.id, worker, row(epoch, acc, seconds))
            store.finish(run.id, worker, status)


def expected(runs, target):
    """(reached, n, median epochs, median seconds) per (optimizer, model), by a plain loop over the table."""
    out = {}
    for key, seeds in runs.items():
        times = []
        n = 0
        for status, epochs in seeds.values():
            if status != "completed":
                continue
            n += 1
            total = 0.0
            for epoch, (acc, seconds) in enumerate(epochs, start=1):
                total += seconds
                if acc == acc and acc >= target / 100:
                    times.append((epoch, total))
                    break
        out[key] = (len(times), n, statistics.median(t[0] for t in times) if times else None,
                    statistics.median(t[1] for t in times) if times else None)
    return out


@pytest.fixture
def db(db_url):
    """The store on SQLite and on PostgreSQL (when MASBENCH_TEST_POSTGRES is set)."""
    store = Store(db_url)
    fill(store)
    store.close()
    return db_url


def _optimizer(name):
    return name.split("[")[0]


@pytest.mark.parametrize("target", [29, 30, 31, 50, 90])
def test_csv_time_to_target_matches_the_epoch_rows(db, target):
    result = runner.invoke(app, ["report", "--table", "--format", "csv", "--target", str(target), "--db", db])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    want = expected(RUNS, target)
    assert len(rows) == len(want)
    for r in rows:
        reached, n, epochs, seconds = want[(_optimizer(r["name"]), r["model"])]
        assert float(r["target"]) == target
        assert (int(r["reached"]), int(r["n"])) == (reached, n)
        assert (float(r["median_epochs"]) if r["median_epochs"] else None) == epochs
        assert (float(r["median_seconds"]) if r["median_seconds"] else None) == pytest.approx(seconds)


def test_the_boundary_and_the_exclusions_are_what_the_table_says(db):
    # Independent of ``expected``: by hand from RUNS. adam/mlp at 29: seeds 0 (epoch 2, 3.75 s) and 1 (epoch 3,
    # 6.0 s); seed 2 never. sgd/mlp at 30: seed 0 (epoch 1, 7.0 s), seed 1 (epoch 2, 4.5 s); seed 2 failed.
    result = runner.invoke(app, ["report", "--format", "json", "--target", "29", "--db", db])
    assert result.exit_code == 0, result.output
    cells = {(c["optimizer"], c["model"]): c for c in json.loads(result.stdout)}
    assert (cells[("adam", "mlp")]["reached"], cells[("adam", "mlp")]["n"]) == (2, 3)
    assert cells[("adam", "mlp")]["median_epochs"] == 2.5
    assert cells[("adam", "mlp")]["median_seconds"] == pytest.approx((3.75 + 6.0) / 2)
    assert (cells[("sgd", "mlp")]["reached"], cells[("sgd", "mlp")]["n"]) == (2, 2)
    assert cells[("sgd", "mlp")]["median_seconds"] == pytest.approx((7.0 + 4.5) / 2)
    assert (cells[("adam", "cnn")]["reached"], cells[("adam", "cnn")]["median_epochs"]) == (0, None)


@pytest.mark.parametrize("fmt", ["rich", "markdown", "latex", "html"])
def test_every_table_format_shows_reached_and_medians(db, fmt):
    result = runner.invoke(app, ["report", "--format", fmt, "--target", "29", "--db", db])
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert "2/3" in text and "2.5" in text and "4.9" in text  # adam/mlp: 2 of 3 seeds, 2.5 epochs, 4.875 s
    assert "0/1" in text  # adam/cnn: its only seed never reached it
    assert "training seconds (evaluation excluded)" in text


def test_without_a_target_the_table_is_unchanged(db):
    result = runner.invoke(app, ["report", "--format", "csv", "--db", db])
    assert result.exit_code == 0, result.output
    assert "median_seconds" not in result.stdout.splitlines()[0]


@pytest.mark.parametrize("args, message", [
    (["--target", "0"], "Invalid --target: 0.0"),
    (["--target", "101"], "in [1, 100]"),
    (["--target", "0.95"], "Invalid --target: 0.95 (a test accuracy in percent, in [1, 100]: did you mean 95?)"),
    (["--target", "0.855"], "did you mean 85.5?"),
    (["--target", "nan"], "Invalid --target"),
    (["--target", "50", "--leaderboard"], "--target goes with --table"),
])
def test_bad_targets_are_one_line(db, args, message):
    result = runner.invoke(app, ["report", *args, "--db", db])
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


def test_a_fraction_for_a_profile_target_is_refused_too(db, tmp_path):
    result = runner.invoke(app, ["plot", "--kind", "profile", "--target", "0.9", "--output", str(tmp_path / "p.png"),
                                 "--db", db])
    assert result.exit_code == 1 and "did you mean 90?" in result.output, result.output
    assert not (tmp_path / "p.png").exists()


def test_benchmark_target_key_applies_per_benchmark(db, tmp_path, monkeypatch):
    (tmp_path / "benchmarks.yaml").write_text(
        "benchmarks:\n  t:\n    dataset: digits\n    models: [mlp, cnn]\n    target: 30\n")
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["report", "--format", "csv", "--db", db])
    assert result.exit_code == 0, result.output
    want = expected(RUNS, 30)
    for r in csv.DictReader(io.StringIO(result.stdout)):
        assert float(r["target"]) == 30
        assert int(r["reached"]) == want[(_optimizer(r["name"]), r["model"])][0]


def test_a_bad_benchmark_target_is_one_line(tmp_path):
    from masbench.grid.benchmarks import load_benchmarks
    from masbench.errors import MasbenchError

    path = tmp_path / "b.yaml"
    path.write_text("benchmarks:\n  t:\n    dataset: digits\n    target: 120\n")
    with pytest.raises(MasbenchError, match="Invalid target: 120"):
        load_benchmarks(path, check_specs=False)


def test_a_benchmark_target_is_not_part_of_its_cells(tmp_path):
    from masbench.grid.benchmarks import plan_sweep

    cells = {}
    for target in ("", "    target: 80\n"):
        path = tmp_path / "b.yaml"
        path.write_text(f"benchmarks:\n  t:\n    dataset: digits\n    models: [mlp]\n    lambdas: '0.5'\n{target}")
        _, planned = plan_sweep(benchmark="t", benchmarks_path=path)
        cells[target] = sorted(cell.spec.key for cell in planned)
    assert cells[""] == cells["    target: 80\n"] and len(cells[""]) == 3


def test_a_target_for_another_benchmark_leaves_the_table_alone(db, tmp_path, monkeypatch):
    (tmp_path / "benchmarks.yaml").write_text("benchmarks:\n  other:\n    dataset: digits\n    target: 30\n")
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["report", "--format", "csv", "--db", db])
    assert result.exit_code == 0, result.output
    assert "median_seconds" not in result.stdout.splitlines()[0]
