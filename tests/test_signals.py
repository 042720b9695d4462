"""Stopping with real signals: SIGTERM and SIGINT to a sweep, to its process group, or to ``masbench run``;
to workers still starting up (held where they import torch), or to one of them; to a sweep whose cells are
all done; a parent killed outright; an interrupt that surfaces as another exception. And a second sweep
with a short ``--claim-timeout`` next to a running one.

Every stop must end the same way: the shell's exit code for the signal (130, 143), one line saying so and
no traceback, no worker process left, no cell ``failed`` or ``running``, every claim given back, and a
rerun that completes every cell with one row per (run, epoch).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from reliability import environment, finish, release, rows, sweep, wait_for_running_cell

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


SWEEP_STOPPED = "interrupted: claims released; run the same command again to resume"


PROGRESS = re.compile(r" seed \d+ epoch \d+/\d+: | seed \d+: \w+ after \d+/\d+ epochs")


def after_start(err: str) -> list[str]:
    """Stderr's lines after the two a sweep prints as it starts (the versions and hardware, then its plan), less
    the progress lines it prints off a terminal (one per epoch of each run, one as a run ends)."""
    lines = err.splitlines()
    assert len(lines) >= 2 and lines[0].startswith("masbench ") and lines[1].startswith("sweep "), err
    return [line for line in lines[2:] if not PROGRESS.search(line)]


def assert_stopped_cleanly(url: str, process: subprocess.Popen, err: str, code: int, pids: list[int]) -> None:
    assert process.returncode == code, err
    assert after_start(err) == [SWEEP_STOPPED], err  # one line: no traceback, no blank line before it
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
    process = sweep(bench_file, db_url, tmp_path, "--workers", "2", benchmark="stop", hold=tmp_path / "held")
    pids = wait_for_workers(process.pid, 2)
    wait_for_running_cell(db_url)
    if target == "parent":
        os.kill(process.pid, signum)
    else:
        os.killpg(process.pid, signum)
    release(tmp_path / "held")
    out, err = process.communicate(timeout=300)
    assert_stopped_cleanly(db_url, process, err, 128 + signum, pids)
    assert_rerun_completes(bench_file, db_url, tmp_path)


def test_workers_stop_and_release_their_claims_when_the_parent_is_killed(bench_file, sqlite_url, tmp_path):
    process = sweep(bench_file, sqlite_url, tmp_path, "--workers", "2", benchmark="stop", hold=tmp_path / "held")
    pids = wait_for_workers(process.pid, 2)
    wait_for_running_cell(sqlite_url)
    os.kill(process.pid, signal.SIGKILL)
    release(tmp_path / "held")
    process.communicate(timeout=60)
    deadline = time.monotonic() + 120  # a bound for the orphans to notice, not a speed
    while [pid for pid in pids if alive(pid)]:
        assert time.monotonic() < deadline, "workers outlived their killed sweep"
        time.sleep(0.2)
    assert rows(sqlite_url, "select count(*) from runs where status in ('failed', 'running')") == [(0,)]
    assert_rerun_completes(bench_file, sqlite_url, tmp_path)


# Put on the sweep's PYTHONPATH, this holds each spawned worker (only those: "spawn_main" is in their command
# line) where multiprocessing's bootstrap first imports torch, before any masbench code of the worker has run,
# until the test creates DIR/go: a signal sent meanwhile lands in the bootstrap for certain.
HOLD_AT_TORCH = textwrap.dedent("""
    import os
    import sys
    import time
    from pathlib import Path

    FOLDER = os.environ.get("MASBENCH_TEST_HOLD_AT_TORCH")


    class HoldAtTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch":
                sys.meta_path.remove(self)
                Path(FOLDER, f"worker.{os.getpid()}").touch()
                deadline = time.monotonic() + 300
                while not Path(FOLDER, "go").exists() and time.monotonic() < deadline:
                    time.sleep(0.05)
            return None


    if FOLDER and "spawn_main" in " ".join(sys.orig_argv):
        sys.meta_path.insert(0, HoldAtTorch())
""")


@pytest.fixture
def held_at_torch(tmp_path, monkeypatch) -> Path:
    """The folder where held workers announce themselves (``worker.PID``) and wait for ``go``."""
    hook, folder = tmp_path / "hook", tmp_path / "held"
    hook.mkdir()
    folder.mkdir()
    (hook / "sitecustomize.py").write_text(HOLD_AT_TORCH)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("MASBENCH_TEST_HOLD_AT_TORCH", str(folder))
    return folder


def wait_for_files(folder: Path, pattern: str, count: int, bound_s: float = 300) -> list[Path]:
    deadline = time.monotonic() + bound_s  # a bound for a loaded machine, not a speed
    while len(found := sorted(folder.glob(pattern))) < count:
        assert time.monotonic() < deadline, f"only {found} of {count} {pattern} in {folder}"
        time.sleep(0.05)
    return found


def test_ctrl_c_while_the_workers_import_torch_stops_with_one_line(bench_file, db_url, tmp_path, held_at_torch):
    """A terminal's Ctrl-C (SIGINT to the whole group) while the workers are still starting up."""
    process = sweep(bench_file, db_url, tmp_path, "--workers", "2", benchmark="stop")
    held = wait_for_files(held_at_torch, "worker.*", 2)
    pids = [int(path.suffix[1:]) for path in held]
    os.killpg(process.pid, signal.SIGINT)
    (held_at_torch / "go").touch()
    out, err = process.communicate(timeout=300)
    assert_stopped_cleanly(db_url, process, err, 130, pids)
    assert rows(db_url, "select status, worker, count(*) from runs group by status, worker") == [("pending", None, 2)]


def test_sigterm_to_one_starting_worker_stops_it_and_the_other_finishes_the_sweep(bench_file, sqlite_url, tmp_path,
                                                                                 held_at_torch):
    """A worker told to stop stops cleanly (it does not die of the signal); the sweep itself goes on."""
    process = sweep(bench_file, sqlite_url, tmp_path, "--workers", "2", benchmark="stop")
    held = wait_for_files(held_at_torch, "worker.*", 2)
    os.kill(int(held[0].suffix[1:]), signal.SIGTERM)
    (held_at_torch / "go").touch()
    out, err = finish(process)
    assert after_start(err) == [], err  # no traceback, and no "worker process(es) died"
    assert "2 finished now; 2 completed" in out
    assert rows(sqlite_url, "select count(*), count(distinct run_id * 1000 + epoch) from epochs") == [(6, 6)]


def test_ctrl_c_once_every_cell_is_done_lets_the_sweep_finish(bench_file, sqlite_url, tmp_path, monkeypatch):
    """Finishing wins: a stop that lands after the last cell finished changes nothing, so nothing says it did."""
    held = tmp_path / "held"
    held.mkdir()
    monkeypatch.setenv("MASBENCH_HOLD", f"sweep.finished:{held}")
    process = sweep(bench_file, sqlite_url, tmp_path, "--workers", "2", benchmark="stop")
    wait_for_files(held, "sweep.finished.*", 1)
    os.killpg(process.pid, signal.SIGINT)
    (held / "go").touch()
    out, err = finish(process)
    assert after_start(err) == [], err
    assert out.splitlines()[0] == "sweep stop: 2 runs, 2 finished now; 2 completed"  # then its results table
    assert rows(sqlite_url, "select status, count(*) from runs group by status") == [("completed", 2)]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_masbench_run_with_one_line(sqlite_url, tmp_path, signum):
    process = subprocess.Popen(
        [sys.executable, "-m", "masbench.cli", "run", "--dataset", "digits", "--model", "mlp", "--batch-size", "16",
         "--epochs", "3", "--lr", "0.003", "--db", sqlite_url],
        cwd=tmp_path, env=environment(hold=tmp_path / "held"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True)
    wait_for_running_cell(sqlite_url)
    os.kill(process.pid, signum)
    release(tmp_path / "held")
    out, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, err
    last = err.rstrip().splitlines()[-1]
    assert last == (f"Error: interrupted by {signal.Signals(signum).name}: claims released; run the same command "
                    f"again to resume"), err
    assert "Traceback" not in err and "" not in err.splitlines(), err
    assert rows(sqlite_url, "select status, worker, attempts from runs") == [("pending", None, 1)]


def test_a_second_sweep_with_a_short_claim_timeout_leaves_a_running_cell_alone(bench_file, db_url, tmp_path):
    first = sweep(bench_file, db_url, tmp_path / "a", benchmark="one",  # the default 60 s lease, a beat every 10 s
                  hold=tmp_path / "held")
    holder = wait_for_running_cell(db_url)
    second = sweep(bench_file, db_url, tmp_path / "b", "--claim-timeout", "1", benchmark="one")
    release(tmp_path / "held")
    finish(first)
    finish(second)
    assert rows(db_url, "select status, attempts, worker from runs") == [("completed", 1, holder)]
    assert holder.split(":")[1] == str(first.pid)


@pytest.mark.parametrize("command", ["sweep", "report"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_before_the_command_holds_anything_is_one_line(tmp_path, command, signum):
    """Parsing, planning, opening the store: a stop there was a silent death (SIGTERM) or click's blank line."""
    held = tmp_path / "held"
    held.mkdir()
    env = dict(environment(), MASBENCH_HOLD=f"cli.started:{held}")
    db = tmp_path / "s.db"
    args = {"sweep": ["sweep", "--dataset", "digits", "--lambdas", "0.5", "--epochs", "1"], "report": ["report"]}[command]
    process = subprocess.Popen([sys.executable, "-m", "masbench.cli", *args, "--db", f"sqlite:///{db}"], cwd=tmp_path,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    wait_for_files(held, "cli.started.*", 1)
    os.kill(process.pid, signum)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, err
    name = signal.Signals(signum).name
    assert err == f"Error: interrupted by {name}: no run was held; run the same command again\n", err
    assert out == "" and not db.exists()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_a_deferred_write_reaches_the_layer_above_once_the_write_is_done(signum):
    """The three layers of ``masbench.signals`` nest: ``deferred`` (a checkpoint's write) holds the signal,
    then hands it to ``ending_the_command``'s handler, which raises ``Signalled``; every handler comes back."""
    from masbench import signals

    before = {s: signal.getsignal(s) for s in signals.SIGNALS}
    done = []
    with pytest.raises(signals.Signalled) as raised:
        with signals.ending_the_command():
            with signals.deferred():
                os.kill(os.getpid(), signum)
                time.sleep(0.05)  # the handler runs between two bytecodes: the deferring one only records it
                done.append("written")
    assert done == ["written"]
    assert (raised.value.signum, raised.value.exit_code, signals.name(signum)) == (
        signum, 128 + signum, signal.Signals(signum).name)
    assert {s: signal.getsignal(s) for s in signals.SIGNALS} == before
