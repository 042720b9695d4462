"""Sweeps on a real local Ray cluster: every cell once, a killed Ray worker's cell retried, Ctrl-C, SQLite refused
on several nodes."""

from __future__ import annotations

import os
import signal
import textwrap

import pytest

from reliability import finish, release, rows, sweep, wait_for_running_cell

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'masbench[ray]')")
pytestmark = [pytest.mark.slow, pytest.mark.ray]

BENCHMARKS = textwrap.dedent("""
    benchmarks:
      small:
        dataset: digits
        models: [mlp]
        lambdas: "0.3,0.7"
        baselines: [adam, sgd]
        lr: 0.01
        momentum: 0.9
        batch_size: 128
        epochs: 2
        seeds: 2
      slow:
        dataset: digits
        models: [mlp]
        lambdas: "0.5"
        baselines: [sgd]
        lr: 0.003
        batch_size: 8
        epochs: 5
        seeds: 1
""")


@pytest.fixture(scope="module")
def bench_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("ray") / "benchmarks.yaml"
    path.write_text(BENCHMARKS)
    return path


def test_a_ray_sweep_runs_every_cell_once(bench_file, db_url, tmp_path):
    out, err = finish(sweep(bench_file, db_url, tmp_path, "--executor", "ray", benchmark="small"))
    assert "8 runs, 8 finished now; 8 completed" in out and "on Ray" in err
    assert rows(db_url, "select count(*), count(distinct key), sum(attempts) from runs where status = 'completed'") \
        == [(8, 8, 8)]
    assert rows(db_url, "select count(*), count(distinct run_id * 1000 + epoch) from epochs") == [(16, 16)]


def test_a_killed_ray_worker_has_its_cell_retried_and_completed(bench_file, db_url, tmp_path):
    process = sweep(bench_file, db_url, tmp_path, "--executor", "ray", "--claim-timeout", "3", benchmark="slow",
                    hold=tmp_path / "held")
    worker = wait_for_running_cell(db_url)
    os.kill(int(worker.split(":")[1]), signal.SIGKILL)  # the Ray worker process running the cell
    release(tmp_path / "held")
    out, err = finish(process)
    assert "2 completed" in out
    assert rows(db_url, "select count(*) from runs where attempts = 2 and status = 'completed'") == [(1,)]
    assert rows(db_url, "select count(*), count(distinct run_id * 1000 + epoch) from epochs") == [(10, 10)]


def test_ctrl_c_stops_cleanly_and_releases_the_claims(bench_file, sqlite_url, tmp_path):
    process = sweep(bench_file, sqlite_url, tmp_path, "--executor", "ray", benchmark="slow", hold=tmp_path / "held")
    wait_for_running_cell(sqlite_url)
    os.killpg(process.pid, signal.SIGINT)
    # Held until the sweep has ended: released at once, the task could finish its cell before the driver acted
    # on the signal (Ray's workers are not in the sweep's process group), and the sweep end as completed. The
    # driver's stop cancels the held task (a KeyboardInterrupt where it waits), which releases its claim.
    try:
        out, err = process.communicate(timeout=300)
    finally:
        release(tmp_path / "held")
    assert process.returncode == 130, err
    assert "claims released" in err
    assert rows(sqlite_url, "select count(*) from runs where status = 'running'") == [(0,)]
    # The interrupted cell resumes from its checkpoint on the next sweep.
    out, err = finish(sweep(bench_file, sqlite_url, tmp_path, "--executor", "ray", benchmark="slow"))
    assert rows(sqlite_url, "select status, count(*) from runs group by status") == [("completed", 2)]


def test_several_nodes_refuse_a_sqlite_store(bench_file, sqlite_url, tmp_path):
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    try:
        process = sweep(bench_file, sqlite_url, tmp_path, "--executor", "ray", "--ray-address", cluster.address,
                        benchmark="small")
        out, err = process.communicate(timeout=300)
        assert process.returncode == 1
        assert "the Ray cluster has 2 nodes, which cannot share the SQLite file" in err and "PostgreSQL" in err
        from test_hostile import tables_of

        assert tables_of(sqlite_url) == []  # refused after the store was opened: the new file is removed
    finally:
        cluster.shutdown()
