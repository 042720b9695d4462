"""``masbench show RUN``: every field printed is the one written to the store; RUN by id or key prefix."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from masbench.cli import app
from masbench.spec import RunSpec
from masbench.store import Store
from masbench.sweep import run_values

runner = CliRunner()

EPOCHS = [  # (test_acc, seconds, val_acc)
    (0.5, 1.25, 0.52), (0.625, 2.5, 0.61), (0.75, 3.125, 0.73),
]


def fill(url, seeds=range(6)):
    store = Store(url)
    runs = []
    for seed in seeds:
        spec = RunSpec(benchmark="s", dataset="digits", model="mlp", optimizer="mas", lambda_adam=0.3,
                       lambda_sgd=0.7, lr=0.01, epochs=3, seed=seed)
        run = store.ensure_run(run_values(spec))
        assert store.claim(run.id, f"worker-{seed}", stale_after=60)
        store.start(run.id, f"worker-{seed}", host="node-7", device="cpu", git_commit="abc1234def",
                    versions={"torch": "9.9.9", "masbench": "0.1.0"})
        for epoch, (acc, seconds, val) in enumerate(EPOCHS, start=1):
            store.record_epoch(run.id, f"worker-{seed}", dict(
                epoch=epoch, train_loss=1 / epoch, train_acc=acc - 0.01, test_loss=1 - acc, test_acc=acc, lr=0.01,
                lambda_adam=0.3, lambda_sgd=0.7, seconds=seconds, samples_per_second=1000 / seconds))
        store.finish(run.id, f"worker-{seed}", "completed")
        runs.append(store.get_run(run.key))
    store.close()
    return runs


@pytest.fixture
def stored(db_url):
    """On SQLite and on PostgreSQL (when MASBENCH_TEST_POSTGRES is set)."""
    return db_url, fill(db_url)


def field(output, name):
    match = re.search(rf"^  {re.escape(name)}\s+(.*)$", output, re.M)
    assert match, f"{name} not in output:\n{output}"
    return match.group(1).strip()


def test_show_by_id_prints_what_the_store_holds(stored):
    url, runs = stored
    run = runs[2]
    result = runner.invoke(app, ["show", str(run.id), "--db", url])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert field(out, "key") == run.key and field(out, "config_key") == run.config_key
    assert field(out, "seed") == "2" and field(out, "status") == "completed"
    assert field(out, "worker") == "worker-2" and field(out, "attempts") == str(run.attempts) == "1"
    assert field(out, "host") == "node-7" and field(out, "device") == "cpu" and field(out, "git commit") == "abc1234def"
    assert field(out, "version torch") == "9.9.9"
    assert field(out, "epochs recorded") == "3 of 3"
    assert field(out, "lr") == "0.01"  # the canonical config
    rows = [line for line in out.splitlines() if re.match(r"│\s+\d+ │", line)]
    assert len(rows) == len(EPOCHS)
    for line, (epoch, (acc, seconds, _)) in zip(rows, enumerate(EPOCHS, start=1)):
        cells = [float(c) for c in line.strip("│").split("│")]
        assert cells[0] == epoch and cells[4] == acc and cells[-2] == seconds
        assert cells[-1] == pytest.approx(1000 / seconds, rel=1e-5)


def test_show_by_key_prefix_and_ambiguous_prefixes(stored):
    url, runs = stored
    run = runs[4]
    result = runner.invoke(app, ["show", f"key:{run.key[:12]}", "--db", url])
    assert result.exit_code == 0, result.output
    assert field(result.stdout, "id") == str(run.id)
    # The shortest prefix that two runs share, found here from the keys themselves.
    keys = sorted(r.key for r in runs)
    common = max((a[:n] for a, b in zip(keys, keys[1:]) for n in range(1, 20) if a[:n] == b[:n]), key=len, default="")
    if not common:  # no two keys share a first digit: the empty prefix is not valid input, so compare all runs
        pytest.skip("no two of these keys share a prefix")
    sharing = [r for r in runs if r.key.startswith(common)]
    result = runner.invoke(app, ["show", f"key:{common}", "--db", url])
    assert result.exit_code == 1
    assert "ambiguous" in result.output and len(result.output.strip().splitlines()) == 1
    for r in sharing:
        assert f"{r.id} (key {r.key}" in result.output


@pytest.mark.parametrize("text, message", [("zz", "Invalid RUN"), ("99999", "no run with id or key prefix"),
                                           ("key:", "Invalid RUN")])
def test_bad_runs_are_one_line(stored, text, message):
    url, _ = stored
    result = runner.invoke(app, ["show", text, "--db", url])
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output


def test_store_find_run_by_id_else_by_key_prefix_at_most_limit(stored):
    """``Store.find_run``: the run of an id when there is one, else the runs a key prefix names, by id, at most
    ``limit``; each as its row's columns (what ``show`` prints, without SQL of its own)."""
    url, runs = stored
    store = Store(url)
    try:
        first = runs[0]
        [by_id] = store.find_run(first.id, "ffffffffffffffffffff", 9)  # an id wins over a prefix
        assert (by_id["id"], by_id["key"], by_id["seed"], by_id["status"]) == (first.id, first.key, 0, "completed")
        assert set(by_id) >= {"config", "worker", "attempts", "lease_expires_at", "versions"}
        [by_key] = store.find_run(None, first.key[:12], 9)
        assert by_key == by_id
        assert [r["id"] for r in store.find_run(10**6, first.key, 9)] == [first.id]  # no such id: the prefix
        everyone = store.find_run(None, "", 9)
        assert [r["id"] for r in everyone] == sorted(r.id for r in runs)
        assert [r["id"] for r in store.find_run(None, "", 2)] == sorted(r.id for r in runs)[:2]
        assert store.find_run(None, "not-hex", 9) == []
    finally:
        store.close()
