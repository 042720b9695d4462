"""One cell on two processes: torchrun with DistributedDataParallel on the CPU (gloo)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from reliability import rows

pytestmark = pytest.mark.slow

NUMBERS = "select epoch, train_loss, train_acc, test_loss, test_acc from epochs order by epoch"


def masbench_run(*args, tmp_path, processes=2, fault=None, threads=1):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MASBENCH_DIST_BACKEND="gloo")
    env.pop("MASBENCH_FAULT", None)
    if fault:
        env["MASBENCH_FAULT"] = fault
    command = [sys.executable, "-m", "masbench", "run", *args]
    if processes > 1:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                   str(processes), "-m", "masbench", "run", *args]
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


CELL = ["--dataset", "digits", "--model", "mlp", "--optimizer", "mas", "--momentum", "0.9", "--lr", "0.003",
        "--epochs", "3", "--batch-size", "64"]


def test_two_processes_train_one_cell_recorded_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'ddp.db'}"
    ddp = masbench_run(*CELL, "--db", url, "--checkpoint-dir", str(tmp_path / "ckpt"), tmp_path=tmp_path)
    assert ddp.returncode == 0, ddp.stderr
    assert ddp.stdout.count("completed mas[") == 1  # rank 0 alone reports
    assert rows(url, "select count(*), min(status), max(attempts) from runs") == [(1, "completed", 1)]
    assert rows(url, "select count(*), count(distinct epoch) from epochs") == [(3, 3)]

    # The global batch is split between the ranks and the gradients averaged: the numbers are those of
    # one process on the whole batch, to float rounding.
    single_url = f"sqlite:///{tmp_path / 'single.db'}"
    single = masbench_run(*CELL, "--db", single_url, "--checkpoint-dir", str(tmp_path / "ckpt1"), tmp_path=tmp_path,
                          processes=1)
    assert single.returncode == 0, single.stderr
    for a, b in zip(rows(url, NUMBERS), rows(single_url, NUMBERS)):
        assert a[0] == b[0]
        assert a[1:] == pytest.approx(b[1:], rel=1e-5, abs=1e-6)


def test_an_interrupted_ddp_run_resumes_to_the_same_metrics(tmp_path):
    clean_url = f"sqlite:///{tmp_path / 'clean.db'}"
    clean = masbench_run(*CELL, "--db", clean_url, "--checkpoint-dir", str(tmp_path / "c1"), tmp_path=tmp_path)
    assert clean.returncode == 0, clean.stderr

    url = f"sqlite:///{tmp_path / 'ddp.db'}"
    args = [*CELL, "--db", url, "--checkpoint-dir", str(tmp_path / "c2"), "--claim-timeout", "1"]
    killed = masbench_run(*args, tmp_path=tmp_path, fault="batch:30")  # in epoch 2, on both ranks
    assert killed.returncode != 0
    assert rows(url, "select status from runs") == [("running",)]
    first_epoch = rows(url, "select epoch, seconds from epochs where epoch = 1")

    resumed = masbench_run(*args, tmp_path=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming at epoch 2" in resumed.stderr
    assert rows(url, "select status, attempts from runs") == [("completed", 2)]
    assert rows(url, "select epoch, seconds from epochs where epoch = 1") == first_epoch  # not trained again
    assert rows(url, NUMBERS) == rows(clean_url, NUMBERS)


# 31 examples a batch (16 and 15 a rank), a last training batch of 1 example (125 = 4 x 31 + 1) and, with
# evaluation's batches of 256, a last test batch of 1 example (257).
ODD = ["--dataset", "digits", "--model", "mlp", "--optimizer", "mas", "--momentum", "0.9", "--lr", "0.003",
       "--epochs", "2", "--batch-size", "31", "--train-subset", "125", "--test-subset", "257"]


def test_uneven_shares_and_tiny_last_batches_give_the_single_process_numbers(tmp_path):
    """Every example counts once, and with the weight it has in one process: the gradient of a step is the
    global batch's mean however the batch divides, nothing is dropped from training or from evaluation."""
    url = f"sqlite:///{tmp_path / 'ddp.db'}"
    ddp = masbench_run(*ODD, "--db", url, "--checkpoint-dir", str(tmp_path / "ckpt"), tmp_path=tmp_path)
    assert ddp.returncode == 0, ddp.stderr
    single_url = f"sqlite:///{tmp_path / 'single.db'}"
    single = masbench_run(*ODD, "--db", single_url, "--checkpoint-dir", str(tmp_path / "ckpt1"), tmp_path=tmp_path,
                          processes=1)
    assert single.returncode == 0, single.stderr

    ddp_rows, single_rows = rows(url, NUMBERS), rows(single_url, NUMBERS)
    assert [r[0] for r in ddp_rows] == [r[0] for r in single_rows] == [1, 2]
    for (_, *losses_a, ), (_, *losses_b) in zip(ddp_rows, single_rows):
        train_loss, train_acc, test_loss, test_acc = losses_a
        assert (train_loss, test_loss) == pytest.approx((losses_b[0], losses_b[2]), rel=1e-5, abs=1e-6)
        assert (train_acc, test_acc) == (losses_b[1], losses_b[3])  # the same counts over the same totals
        # Counted over all 125 and 257 examples (not 124 or 256): the accuracies are whole numbers of them.
        assert train_acc * 125 == pytest.approx(round(train_acc * 125), abs=1e-9)
        assert test_acc * 257 == pytest.approx(round(test_acc * 257), abs=1e-9)


def test_two_processes_record_the_validation_split_of_one(tmp_path):
    """Each rank holds out the same split (seeded by the run) and evaluates its share: one process's numbers."""
    query = "select epoch, val_loss, val_acc, test_acc from epochs order by epoch"
    cell = [*CELL, "--epochs", "1", "--val-fraction", "0.2"]  # the last --epochs given counts
    found = []
    for processes in (2, 1):
        url = f"sqlite:///{tmp_path / f'p{processes}.db'}"
        result = masbench_run(*cell, "--db", url, "--checkpoint-dir", str(tmp_path / f"c{processes}"),
                              tmp_path=tmp_path, processes=processes)
        assert result.returncode == 0, result.stderr
        found.append(rows(url, query))
    ddp, single = found
    assert len(ddp) == 1 and ddp[0][2] is not None
    assert ddp[0] == pytest.approx(single[0], rel=1e-5, abs=1e-6)
