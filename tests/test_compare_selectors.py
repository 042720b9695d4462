"""``compare`` selects any optimizer of the open axes: a torch built-in by name or by import path, and a mix
by its weights in any order; each side's numbers are its own cell's, checked against the stored epochs."""

from __future__ import annotations

import statistics

import pytest
from typer.testing import CliRunner

from masbench.cli import app
from masbench.report.compare import parse_selector
from masbench.spec import RunSpec
from masbench.store import Store
from masbench.sweep import run_values

runner = CliRunner()

# optimizer text -> {seed: per-epoch test accuracies}
RUNS = {
    "radam": {0: [0.70, 0.80], 1: [0.72, 0.78], 2: [0.69, 0.81]},
    "mix:adam=0.3,sgd=0.7": {0: [0.75, 0.85], 1: [0.74, 0.86], 2: [0.76, 0.84]},
    "mix:adam=0.7,sgd=0.3": {0: [0.60, 0.65], 1: [0.61, 0.66], 2: [0.59, 0.64]},
    "adam": {0: [0.50, 0.55], 1: [0.52, 0.56], 2: [0.51, 0.57]},
}


@pytest.fixture
def db(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = Store(url)
    for optimizer, seeds in RUNS.items():
        for seed, accs in seeds.items():
            spec = RunSpec(dataset="digits", model="mlp", optimizer=optimizer, lr=0.01, epochs=2, seed=seed)
            run = store.ensure_run(run_values(spec))
            store.claim(run.id, "w", stale_after=60)
            store.start(run.id, "w")
            for epoch, acc in enumerate(accs, start=1):
                store.record_epoch(run.id, "w", dict(epoch=epoch, train_loss=1.0, train_acc=acc, test_loss=1 - acc,
                                                     test_acc=acc, lr=0.01, lambda_adam=None, lambda_sgd=None,
                                                     seconds=1.0, samples_per_second=100.0))
            store.finish(run.id, "w", "completed")
    store.close()
    return url


def best_mean(optimizer: str) -> float:
    return statistics.mean(max(accs) * 100 for accs in RUNS[optimizer].values())


@pytest.mark.parametrize("mix_text", ["mix:adam=0.3,sgd=0.7", "mix:sgd=0.7,adam=0.3", "mix:sgd=0.70,adam=0.30"])
@pytest.mark.parametrize("radam_text", ["radam", "torch.optim.RAdam", "torch.optim:RAdam"])
def test_compare_selects_a_mix_by_its_weights_and_an_optimizer_by_name_or_path(db, mix_text, radam_text):
    result = runner.invoke(app, ["compare", mix_text, radam_text, "--db", db])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert f"{best_mean('mix:adam=0.3,sgd=0.7'):.2f}" in out and f"{best_mean('radam'):.2f}" in out
    # The other mix (and adam) are not pooled into either side.
    assert f"{best_mean('mix:adam=0.7,sgd=0.3'):.2f}" not in out and f"{best_mean('adam'):.2f}" not in out


@pytest.mark.parametrize("text, message", [
    ("mix:adam=-1", "weight '-1' of 'adam'"),
    ("mix", "Invalid configuration: 'mix'"),
    ("nope", "Invalid configuration: 'nope'"),
    ("torch.optim.Nope", "Invalid configuration: 'torch.optim.Nope'"),
    ("adam:3", "Invalid configuration: 'adam:3'"),
])
def test_a_bad_selector_is_one_line(db, text, message):
    result = runner.invoke(app, ["compare", text, "adam", "--db", db])
    assert result.exit_code == 1 and message in result.stderr and result.stderr.count("\n") == 1, result.output


def test_a_mix_selector_matches_no_other_mix():
    assert parse_selector("mix:sgd=0.7,adam=0.3") == parse_selector("mix:adam=0.3,sgd=0.7").__class__(
        "mix:sgd=0.7,adam=0.3", optimizer="mix", weights='{"adam": 0.3, "sgd": 0.7}')
    assert parse_selector("mix:adam=0.7,sgd=0.3").weights != parse_selector("mix:adam=0.3,sgd=0.7").weights
