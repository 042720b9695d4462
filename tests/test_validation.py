"""The validation split (``--val-fraction``): its properties, the val metrics a run records, and ``--metric val``."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from masbench.cli import app
from masbench.data import load_dataset
from masbench.data.validation import val_indices, with_validation
from masbench.engine import prepare, train_one
from masbench.errors import MasbenchError
from masbench.spec import RunSpec, make_spec
from masbench.engine import ExecOptions
from masbench.store import Store
from masbench.sweep import run_values

runner = CliRunner()


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


# --- the split -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.05, 0.2, 0.5])
@pytest.mark.parametrize("seed", [0, 7])
def test_the_split_is_disjoint_complete_and_stratified(digits, fraction, seed):
    split = with_validation(digits, fraction, seed)
    labels = digits.train.labels
    assert len(split.train) + len(split.val) == len(digits.train)
    index = val_indices(labels, fraction, seed)
    keep = torch.tensor([i for i in range(len(labels)) if i not in set(index.tolist())])
    # Disjoint and together the training set: each example in exactly one split, in its original order.
    assert torch.equal(split.val.images, digits.train.images[index])
    assert torch.equal(split.train.images, digits.train.images[keep])
    assert torch.equal(split.train.labels, labels[keep])
    for label in labels.unique().tolist():  # stratified: each class gives round(fraction * n), half up
        n = int((labels == label).sum())
        assert int((split.val.labels == label).sum()) == int(fraction * n + 0.5)
    assert split.test is digits.test and len(digits.train) == len(labels)  # the loaded set is untouched
    assert digits.val is None


def test_the_split_follows_the_seed_and_nothing_else(digits):
    labels = digits.train.labels
    first = val_indices(labels, 0.2, seed=3)
    torch.manual_seed(12345)  # another global stream: the split must not read it ...
    before = torch.get_rng_state()
    again = val_indices(labels, 0.2, seed=3)
    assert torch.equal(first, again)
    assert torch.equal(before, torch.get_rng_state())  # ... nor advance it
    assert not torch.equal(first, val_indices(labels, 0.2, seed=4))


def test_the_split_is_the_same_in_another_process(digits):
    code = ("import json, torch; from masbench.data import load_dataset; "
            "from masbench.data.validation import val_indices; "
            "print(json.dumps(val_indices(load_dataset('digits').train.labels, 0.2, 5).tolist()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == val_indices(digits.train.labels, 0.2, 5).tolist()


def test_a_validation_split_leaves_the_weights_and_batch_order_streams_alone():
    plain = prepare([RunSpec(dataset="digits", seed=2)], ExecOptions(device="cpu")).members[0]
    held = prepare([RunSpec(dataset="digits", seed=2, val_fraction=0.3)], ExecOptions(device="cpu")).members[0]
    for a, b in zip(plain.model.parameters(), held.model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(plain.generator.get_state(), held.generator.get_state())
    assert plain.dataset.val is None and held.dataset.val is not None


@pytest.mark.parametrize("counts, fraction, message", [
    ([5, 1], 0.2, "class '1' has 1 training example(s), which leaves it none for validation"),
    ([5, 1], 0.5, "class '1' has 1 training example(s), which leaves it none for training"),
    ([8, 3], 0.1, "class '1' has 3 training example(s), which leaves it none for validation"),
])
def test_a_split_leaving_a_class_empty_is_refused(counts, fraction, message):
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    with pytest.raises(MasbenchError) as error:
        val_indices(labels, fraction, 0, ["0", "1"])
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("fraction", [0.0, -0.1, 0.51, 1.0, float("nan"), float("inf")])
def test_a_fraction_outside_the_range_is_refused(fraction):
    with pytest.raises(MasbenchError, match=r"Invalid val_fraction: .* \(must be in \(0, 0.5\]\)"):
        make_spec(dataset="digits", val_fraction=fraction)


def test_the_fraction_is_in_the_key_only_when_set():
    plain = make_spec(dataset="digits")
    assert "val_fraction" not in plain.canonical()
    keys = {make_spec(dataset="digits", val_fraction=f).config_key for f in (0.1, 0.2)}
    assert len(keys) == 2 and plain.config_key not in keys


# --- the engine and the store ---------------------------------------------------------------------------


def _independent_val(p, full, fraction, seed):
    """Loss and accuracy of ``p.model`` on the held-out examples, by hand: no engine, no batches()."""
    index = val_indices(full.train.labels, fraction, seed)
    kept = torch.ones(len(full.train), dtype=torch.bool)
    kept[index] = False
    # Normalised with the statistics of the rows left for training, not of the whole training split.
    pixels = full.train.images[kept].double().transpose(0, 1).reshape(full.train.images.shape[1], -1) / 255.0
    mean = pixels.mean(1).float().view(1, -1, 1, 1)
    std = pixels.std(1).float().view(1, -1, 1, 1)
    inputs = (full.train.images[index].float() / 255.0 - mean) / std
    labels = full.train.labels[index]
    p.model.eval()
    with torch.no_grad():
        logits = p.model(inputs).double()
    return F.cross_entropy(logits, labels).item(), (logits.argmax(1) == labels).double().mean().item()


def test_recorded_val_metrics_equal_an_independent_evaluation(digits, tmp_path):
    spec = make_spec(dataset="digits", model="mlp", epochs=2, lr=0.01, seed=1, val_fraction=0.25)
    p = prepare([spec], ExecOptions(device="cpu", checkpoint_dir=tmp_path))
    result = train_one(spec, p.options, prepared=p)
    last = result.epochs[-1]
    loss, acc = _independent_val(p.members[0], digits, 0.25, 1)
    assert last.val_acc == pytest.approx(acc, abs=1e-12)
    assert last.val_loss == pytest.approx(loss, rel=1e-5)
    assert all(m.val_acc is not None for m in result.epochs)


def test_a_run_stores_its_val_metrics_per_epoch(sqlite_url, tmp_path):
    args = ["run", "--dataset", "digits", "--model", "mlp", "--epochs", "2", "--lr", "0.01", "--seed", "1",
            "--val-fraction", "0.25", "--device", "cpu", "--db", sqlite_url]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    spec = make_spec(dataset="digits", model="mlp", epochs=2, lr=0.01, seed=1, val_fraction=0.25)
    again = train_one(spec, ExecOptions(device="cpu", checkpoint_dir=tmp_path / "again"))  # CPU: the same numbers
    rows = pd.read_sql("select epoch, val_loss, val_acc from epochs order by epoch", create_engine(sqlite_url))
    assert rows["val_acc"].tolist() == [m.val_acc for m in again.epochs]
    assert rows["val_loss"].tolist() == pytest.approx([m.val_loss for m in again.epochs], rel=1e-12)


def test_a_run_without_a_fraction_stores_no_val_metrics(sqlite_url):
    result = runner.invoke(app, ["run", "--dataset", "digits", "--epochs", "1", "--device", "cpu", "--db", sqlite_url])
    assert result.exit_code == 0, result.output
    rows = pd.read_sql("select val_loss, val_acc from epochs", create_engine(sqlite_url))
    assert len(rows) == 1 and rows.isna().all().all()


@pytest.mark.parametrize("args, message", [
    (["--val-fraction", "0.7"], "Invalid val_fraction: 0.7 (must be in (0, 0.5])"),
    (["--val-fraction", "0.001", "--train-subset", "50"], "leaves it none for validation"),
])
def test_bad_fractions_on_the_command_line_are_one_line_and_write_nothing(sqlite_url, tmp_path, args, message):
    result = runner.invoke(app, ["run", "--dataset", "digits", "--epochs", "1", "--device", "cpu",
                                 "--db", sqlite_url, *args])
    assert result.exit_code == 1, result.output
    assert message in result.stderr and result.stderr.count("\n") == 1
    if (tmp_path / "store.db").exists():  # refused before the run was registered
        assert pd.read_sql("select id from runs", create_engine(sqlite_url)).empty


# --- report --metric val ---------------------------------------------------------------------------------

# Per seed, per epoch: (test accuracy, validation accuracy). Ties in validation pick the earliest epoch; the
# validation choice differs from the best test epoch and from the last one.
VAL_RUNS = {
    ("adam", None): {0: [(0.70, 0.60), (0.80, 0.65), (0.75, 0.65)],
                     1: [(0.72, 0.70), (0.90, 0.60), (0.85, 0.69)],
                     2: [(0.60, 0.50), (0.66, 0.55), (0.70, 0.54)]},
    ("mas", 0.3): {0: [(0.81, 0.71), (0.79, 0.71), (0.95, 0.70)],
                   1: [(0.82, 0.60), (0.84, 0.72), (0.86, 0.72)]},
}


def _spec(optimizer, lam, seed, val_fraction=0.2):
    extra = dict(lambda_adam=lam, lambda_sgd=round(1 - lam, 10)) if optimizer == "mas" else {}
    return RunSpec(benchmark="v", dataset="digits", optimizer=optimizer, epochs=3, seed=seed,
                   val_fraction=val_fraction, **extra)


def _fill(url, runs=VAL_RUNS, val_fraction=0.2):
    store = Store(url)
    for (optimizer, lam), seeds in runs.items():
        for seed, epochs in seeds.items():
            run = store.ensure_run(run_values(_spec(optimizer, lam, seed, val_fraction)))
            store.claim(run.id, "w", stale_after=60)
            for i, (test, val) in enumerate(epochs, start=1):
                store.record_epoch(run.id, "w", dict(
                    epoch=i, train_loss=1.0, train_acc=0.5, test_loss=1 - test, test_acc=test, lr=0.001,
                    lambda_adam=None, lambda_sgd=None, seconds=1.0, samples_per_second=1.0,
                    val_loss=None if val_fraction is None else 1 - val,
                    val_acc=None if val_fraction is None else val))
            store.finish(run.id, "w", "completed")


def _expected_from_epochs_table(url):
    """avg and max (percent) per cell of the test accuracy at each run's earliest best-validation epoch,
    read from the epochs table with plain SQL and computed here in pandas."""
    query = text("select r.config_key, r.seed, e.epoch, e.test_acc, e.val_acc from epochs e "
                 "join runs r on r.id = e.run_id")
    with create_engine(url).connect() as connection:
        epochs = pd.DataFrame(connection.execute(query).mappings().all())
    picked = []
    for (cell, _), run in epochs.groupby(["config_key", "seed"]):
        best = run[run["val_acc"] == run["val_acc"].max()].sort_values("epoch").iloc[0]
        picked.append((cell, 100 * best["test_acc"]))
    frame = pd.DataFrame(picked, columns=["config_key", "acc"])
    return frame.groupby("config_key")["acc"].agg(["mean", "max"]).to_dict("index")


def test_report_metric_val_equals_the_epochs_table(db_url):
    _fill(db_url)
    result = runner.invoke(app, ["report", "--format", "csv", "--metric", "val", "--db", db_url])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    expected = _expected_from_epochs_table(db_url)
    assert {r["config_key"] for r in rows} == set(expected) and len(rows) == 2
    for row in rows:
        assert row["metric"] == "val"
        assert float(row["avg_acc"]) == pytest.approx(expected[row["config_key"]]["mean"], abs=1e-4)
        assert float(row["max_acc"]) == pytest.approx(expected[row["config_key"]]["max"], abs=1e-4)
    adam = next(r for r in rows if r["name"].startswith("adam"))
    # By hand from VAL_RUNS: epochs 2 (tie with 3), 1 and 2: the test set's best would be 80, 90, 70.
    assert float(adam["avg_acc"]) == pytest.approx((80 + 72 + 66) / 3, abs=1e-4)
    best = runner.invoke(app, ["report", "--format", "csv", "--db", db_url])
    best_adam = next(r for r in csv.DictReader(io.StringIO(best.stdout)) if r["name"].startswith("adam"))
    assert float(best_adam["avg_acc"]) == pytest.approx((80 + 90 + 70) / 3, abs=1e-4)


def test_titles_say_how_the_epoch_was_selected(sqlite_url):
    _fill(sqlite_url)
    val = runner.invoke(app, ["report", "--format", "markdown", "--metric", "val", "--db", sqlite_url])
    best = runner.invoke(app, ["report", "--format", "latex", "--db", sqlite_url])
    board = runner.invoke(app, ["report", "--leaderboard", "--metric", "val", "--db", sqlite_url])
    assert val.exit_code == best.exit_code == board.exit_code == 0, val.output + best.output + board.output
    assert "selected on validation" in val.stdout and "selected on the test set" not in val.stdout
    assert r"\caption{" in best.stdout and "selected on the test set" in best.stdout
    assert "selected on validation" in " ".join(board.stdout.split())


def test_metric_val_leaves_out_runs_without_validation_and_says_how_many(sqlite_url):
    _fill(sqlite_url)
    _fill(sqlite_url, {("sgd", None): {0: [(0.5, 0.5)]}}, val_fraction=None)
    sgd = _spec("sgd", None, 0, None)
    with_split = runner.invoke(app, ["report", "--format", "csv", "--db", sqlite_url])
    assert sgd.config_key in with_split.stdout  # the other metrics take it
    result = runner.invoke(app, ["report", "--format", "csv", "--metric", "val", "--db", sqlite_url])
    assert result.exit_code == 0, result.output
    assert sgd.config_key not in result.stdout
    assert result.stderr == "--metric val: left out 1 run(s) without a validation split (run with --val-fraction " \
                            "to have one)\n"
    compared = runner.invoke(app, ["compare", "adam", "sgd", "--metric", "val", "--db", sqlite_url])
    assert compared.exit_code == 1, compared.output  # sgd's only run has no split: nothing to compare adam with
    assert compared.stderr.splitlines() == [
        "--metric val: left out 1 run(s) without a validation split (run with --val-fraction to have one)",
        "Error: no data set and model in the store has all of adam, sgd (see masbench report --leaderboard)"]


def test_metric_val_on_runs_that_all_lack_a_split_is_one_line(sqlite_url):
    _fill(sqlite_url, {("sgd", None): {0: [(0.5, 0.5)], 1: [(0.6, 0.5)]}}, val_fraction=None)
    result = runner.invoke(app, ["report", "--metric", "val", "--db", sqlite_url])
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1
    assert "no runs with a validation split (2 run(s) without one: run them with --val-fraction)" in result.stderr


def test_compare_and_the_gate_take_metric_val(sqlite_url, tmp_path):
    _fill(sqlite_url)
    compared = runner.invoke(app, ["compare", "adam", "mas:0.3", "--metric", "val", "--db", sqlite_url])
    assert compared.exit_code == 0, compared.output
    assert "selected on validation" in " ".join(compared.stdout.split())
    baseline = tmp_path / "base.csv"
    saved = runner.invoke(app, ["report", "--format", "csv", "--metric", "val", "--output", str(baseline),
                                "--db", sqlite_url])
    assert saved.exit_code == 0, saved.output
    gate = runner.invoke(app, ["compare", "--baseline", str(baseline), "--metric", "val", "--db", sqlite_url])
    assert gate.exit_code == 0 and "no regression" in gate.stdout, gate.output
    wrong = runner.invoke(app, ["compare", "--baseline", str(baseline), "--db", sqlite_url])
    assert wrong.exit_code == 1 and "give --metric val" in wrong.stderr


# --- sweeps ----------------------------------------------------------------------------------------------

BENCHMARKS = """benchmarks:
  v:
    dataset: digits
    models: [mlp]
    lambdas: "0.5"
    baselines: []
    epochs: 1
    seeds: 1
    val_fraction: 0.2
"""


def test_a_sweep_takes_the_fraction_from_its_benchmark_and_a_flag_overrides_it(sqlite_url, tmp_path):
    (tmp_path / "benchmarks.yaml").write_text(BENCHMARKS)
    sweep = ["sweep", "--benchmark", "v", "--benchmarks", str(tmp_path / "benchmarks.yaml"), "--device", "cpu",
             "--db", sqlite_url]
    for extra in ([], ["--val-fraction", "0.3"]):
        result = runner.invoke(app, [*sweep, *extra])
        assert result.exit_code == 0, result.output
    engine = create_engine(sqlite_url)
    runs = pd.read_sql("select id, config from runs order by id", engine)
    fractions = [json.loads(c)["canonical"]["val_fraction"] for c in runs["config"]]
    assert fractions == [0.2, 0.3]
    epochs = pd.read_sql("select run_id, val_acc from epochs", engine)
    assert len(epochs) == 2 and epochs["val_acc"].notna().all()


def test_a_sweep_whose_split_would_empty_a_class_is_refused_before_any_run(sqlite_url, tmp_path):
    (tmp_path / "benchmarks.yaml").write_text(BENCHMARKS)
    result = runner.invoke(app, ["sweep", "--benchmark", "v", "--benchmarks", str(tmp_path / "benchmarks.yaml"),
                                 "--val-fraction", "0.01", "--train-subset", "30", "--device", "cpu",
                                 "--db", sqlite_url])
    assert result.exit_code == 1, result.output
    assert "leaves it none for validation" in result.stderr and result.stderr.count("\n") == 1
    if (tmp_path / "store.db").exists():
        assert pd.read_sql("select id from runs", create_engine(sqlite_url)).empty
