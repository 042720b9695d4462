"""Stopping with real signals: SIGTERM and SIGINT to a sweep, to its process group, or to ``masbench run``;
a parent killed outright; an interrupt that surfaces as another exception. And a second sweep with a short
``--claim-timeout`` next to a running one.

Every stop must end the same way: the shell's exit code for the signal (130, 143), one line saying so and
no traceback, no worker process left, no cell ``failed`` or ``running``, every claim given back, and a
rerun that completes every cell with one row per (run, epoch).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from reliability import finish, rows, sweep, wait_for_running_cell

pytestmark = pytest.mark.slow

BENCHMARKS = textwrap.dedent("""
    benchmarks:
      stop:                       # 2 cells x 3 epochs: long enough to stop one part-way
        dataset: digits
        models: [mlp]
        lambdas: "0.5"
        baselines: [sgd]
        lr: 0.003
        batch_size: 16
        epochs: 3
        seeds: 1
      one:                        # 1 cell, for two sweeps side by side: long enough to be seen running on a loaded CI machine
        dataset: digits
        models: [mlp]
        lambdas: "0.5"
        baselines: []
        lr: 0.003
        batch_size: 16
        epochs: 10
        seeds: 1
""")


@pytest.fixture(scope="module")
def bench_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("signals") / "benchmarks.yaml"
    path.write_text(BENCHMARKS)
    return path


def workers_of(pid: int) -> list[int]:
    """The worker processes (multiprocessing spawn children) of the process ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid and "multiprocessing" in command and "resource_tracker" not in command:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """Running (a zombie, dead and not yet reaped, does not count)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_for_workers(pid: int, count: int, bound_s: float = 120) -> list[int]:
    deadline = time.monotonic() + bound_s
    while len(found := workers_of(pid)) < count:
        assert time.monotonic() < deadline, f"only {found} of {count} workers started"
        time.sleep(0.1)
    return found


def assert_stopped_cleanly(url: str, process: subprocess.Popen, err: str, code: int, pids: list[int]) -> None:
    assert process.returncode == code, err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if "interrupted" in line]
    assert len(lines) == 1 and err.rstrip().endswith(lines[0]), err
    assert not [pid for pid in pids if alive(pid)], "a worker outlived its sweep"
    assert rows(url, "select count(*) from runs where status in ('failed', 'running')") == [(0,)]
    assert rows(url, "select count(*) from runs where worker is not null and status = 'pending'") == [(0,)]


def assert_rerun_completes(bench_file: Path, url: str, workdir: Path, cells: int = 2, epochs: int = 3) -> None:
    out, err = finish(sweep(bench_file, url, workdir, "--workers", "2", benchmark="stop"))
    assert rows(url, "select status, count(*) from runs group by status") == [("completed", cells)]
    assert rows(url, "select count(*), count(distinct run_id * 1000 + epoch) from epochs") \
        == [(cells * epochs, cells * epochs)]


@pytest.mark.parametrize("signum, target", [(signal.SIGTERM, "parent"), (signal.SIGINT, "group"),
                                            (signal.SIGTERM, "group")])
def test_a_signal_stops_a_sweep_of_two_workers_cleanly(bench_file, db_url, tmp_path, signum, target):
    if db_url.startswith("postgresql") and (signum, target) != (signal.SIGTERM, "parent"):
        pytest.skip("the other stops are the same code on PostgreSQL; one of them runs there")
    process = sweep(bench_file, db_url, tmp_path, "--workers", "2", benchmark="stop")
    pids = wait_for_workers(process.pid, 2)
    wait_for_running_cell(db_url)
    if target == "parent":
        os.kill(process.pid, signum)
    else:
        os.killpg(process.pid, signum)
    out, err = process.communicate(timeout=300)
    assert_stopped_cleanly(db_url, process, err, 128 + signum, pids)
    assert_rerun_completes(bench_file, db_url, tmp_path)


def test_workers_stop_and_release_their_claims_when_the_parent_is_killed(bench_file, sqlite_url, tmp_path):
    process = sweep(bench_file, sqlite_url, tmp_path, "--workers", "2", benchmark="stop")
    pids = wait_for_workers(process.pid, 2)
    wait_for_running_cell(sqlite_url)
    os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=60)
    deadline = time.monotonic() + 120  # a bound for the orphans to notice, not a speed
    while [pid for pid in pids if alive(pid)]:
        assert time.monotonic() < deadline, "workers outlived their killed sweep"
        time.sleep(0.2)
    assert rows(sqlite_url, "select count(*) from runs where status in ('failed', 'running')") == [(0,)]
    assert_rerun_completes(bench_file, sqlite_url, tmp_path)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_masbench_run_with_one_line(sqlite_url, tmp_path, signum):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("MASBENCH_FAULT", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "masbench.cli", "run", "--dataset", "digits", "--model", "mlp", "--batch-size", "16",
         "--epochs", "3", "--lr", "0.003", "--db", sqlite_url],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    wait_for_running_cell(sqlite_url)
    os.kill(process.pid, signum)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, err
    last = err.rstrip().splitlines()[-1]
    assert last == (f"Error: interrupted by {signal.Signals(signum).name}: claims released; run the same command "
                    f"again to resume"), err
    assert "Traceback" not in err
    assert rows(sqlite_url, "select status, worker, attempts from runs") == [("pending", None, 1)]


def test_a_second_sweep_with_a_short_claim_timeout_leaves_a_running_cell_alone(bench_file, db_url, tmp_path):
    first = sweep(bench_file, db_url, tmp_path / "a", benchmark="one")  # the default 60 s lease, a beat every 10 s
    holder = wait_for_running_cell(db_url)
    second = sweep(bench_file, db_url, tmp_path / "b", "--claim-timeout", "1", benchmark="one")
    finish(first)
    finish(second)
    assert rows(db_url, "select status, attempts, worker from runs") == [("completed", 1, holder)]
    assert holder.split(":")[1] == str(first.pid)
