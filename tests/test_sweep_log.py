"""A sweep whose stderr is no terminal (Slurm, CI, ``> log``) logs a line per epoch of each cell and one when a
cell's run ends, read from the store, whoever trained it (this process, a pack, worker processes); every sweep
ends with its results table or a pointer to ``masbench report``."""

from __future__ import annotations

import re
import sqlite3

import pytest
from typer.testing import CliRunner

from masbench.cli import app

runner = CliRunner()
EPOCH = re.compile(r"^(\S+) digits/mlp seed (\d+) epoch (\d+)/2: train loss [0-9.]+ acc [0-9.]+% · test [0-9.]+ acc "
                   r"([0-9.]+)% · [0-9.]+s \([0-9,]+ samples/s\)$")
END = re.compile(r"^(\S+) digits/mlp seed (\d+): completed after 2/2 epochs, best test acc ([0-9.]+)%$")


def sweep(tmp_path, *flags):
    db = tmp_path / "s.db"
    result = runner.invoke(app, ["sweep", "--dataset", "digits", "--models", "mlp", "--lambdas", "0.5", "--baselines",
                                 "adam", "--epochs", "2", "--seeds", "1", "--lr", "0.01", "--device", "cpu", "--db",
                                 f"sqlite:///{db}", "--checkpoint-dir", str(tmp_path / "ckpt"), *flags])
    assert result.exit_code == 0, result.output
    with sqlite3.connect(db) as connection:
        stored = connection.execute("select r.name, r.seed, e.epoch, e.test_acc from runs r join epochs e "
                                    "on e.run_id = r.id").fetchall()
    return result, stored


@pytest.mark.parametrize("flags", [[], ["--pack", "2"], pytest.param(["--workers", "2"], marks=pytest.mark.slow)],
                         ids=["plain", "packed", "workers"])  # workers: processes that import torch, ~40 s here
def test_each_epoch_and_each_end_is_one_whole_line(tmp_path, flags):
    result, stored = sweep(tmp_path, *flags)
    epochs, ends, other = {}, {}, []
    for line in result.stderr.splitlines():
        if m := EPOCH.match(line):
            key = (m[1], int(m[2]), int(m[3]))
            assert key not in epochs, line  # each epoch once
            epochs[key] = float(m[4])
        elif m := END.match(line):
            ends[(m[1], int(m[2]))] = float(m[3])
        else:
            other.append(line)
    # Every stored epoch logged once, with its test accuracy; every run's end, with its best.
    assert epochs == {(name, seed, epoch): pytest.approx(acc * 100, abs=0.006) for name, seed, epoch, acc in stored}
    best = {}
    for name, seed, _, acc in stored:
        best[(name, seed)] = max(best.get((name, seed), 0.0), acc * 100)
    assert ends == pytest.approx(best, abs=0.006) and len(ends) == 2
    assert all(line.startswith(("masbench ", "sweep ", "note", "packed", "warning")) or not line.strip()
               for line in other), other  # nothing else, nothing cut: the banner and the sweep's own lines
    table = result.stdout
    assert "sweep digits: 2 runs, 2 finished now; 2 completed" in table
    assert "±CI95" in table and re.search(r"Adam\s.*\s1\s", table) and re.search(r"MAS\s+│\s+0\.5", table), table
    if not flags:  # the same sweep again: nothing to run, nothing logged, the table all the same
        again, _ = sweep(tmp_path)
        assert not any(EPOCH.match(line) or END.match(line) for line in again.stderr.splitlines()), again.stderr
        assert "0 finished now" in again.stdout and "avg acc" in again.stdout


def test_too_many_cells_give_a_pointer_to_report(tmp_path, monkeypatch):
    from masbench.cli import sweeping

    monkeypatch.setattr(sweeping, "MAX_TABLE_CELLS", 1)
    result, _ = sweep(tmp_path)
    assert f"results of 2 cells: masbench report --db sqlite:///{tmp_path / 's.db'}" in result.stdout
    assert "avg acc" not in result.stdout
