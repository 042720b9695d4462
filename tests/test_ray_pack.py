"""Packed cells on Ray (``--executor ray --pack N``): a task per pack, each member its own run, the local
unpacked sweep's table; a member completed beforehand not trained again; Ctrl-C gives every claim back.

The pack task (``_ray_pack``) and the driver's plan are plain functions, tested here without a cluster; the
sweeps on a real local Ray cluster are slow, so their grid is tiny (digits, MLP, few cells)."""

from __future__ import annotations

import os
import signal
import textwrap
import time
from pathlib import Path

import pytest

from masbench.grid.benchmarks import Cell
from masbench.engine import Callback
from masbench.spec import RunSpec
from masbench.engine import ExecOptions
from masbench.store import Store
from masbench.sweep import SweepSettings, run_values
from masbench.grid.packs import plan_units
from masbench.sweep.ray import _ray_unit, task_device_type
from reliability import finish, release, rows, sweep
from test_sweep_pack import epochs, execution, report_csv, runs
from test_sweep_pack import sweep as local_sweep

BENCHMARKS = textwrap.dedent("""
    benchmarks:
      tiny:
        dataset: digits
        models: [mlp]
        lambdas: "0.3,0.7"
        baselines: [sgd]
        lr: 0.003
        momentum: 0.9
        batch_size: 128
        epochs: 1
        seeds: 2
      held:
        dataset: digits
        models: [mlp]
        lambdas: "0.5"
        baselines: [sgd, adam]
        lr: 0.003
        batch_size: 32
        epochs: 2
        seeds: 1
""")

BASE = dict(dataset="digits", model="mlp", lr=3e-3, momentum=0.9, batch_size=128, epochs=1, optimizer="mas")


@pytest.fixture
def bench_file(tmp_path):
    path = tmp_path / "benchmarks.yaml"
    path.write_text(BENCHMARKS)
    return str(path)


@pytest.fixture
def ray_module():
    return pytest.importorskip("ray", reason="Ray is not installed (pip install 'masbench[ray]')")


def wait_for_hold(folder: Path, deadline_s: float = 300) -> int:
    """The pid of the process held at ``epoch.saved`` (``reliability.environment(hold=...)``): a pack is there
    once every member's epoch is stored and checkpointed."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if held := sorted(folder.glob("epoch.saved.*")):
            return int(held[0].suffix[1:])
        time.sleep(0.2)
    raise AssertionError("no pack got to the end of an epoch")


def _settings(tmp_path, **extra) -> SweepSettings:
    return SweepSettings(options=ExecOptions(device="cpu", checkpoint_dir=tmp_path / "ckpt"), poll=0.2, **extra)


def test_a_pack_task_waits_for_a_member_another_worker_holds_and_trains_it_once_let_go(sqlite_url, tmp_path):
    """The held member is left to its worker; when that worker's lease lapses, the task takes it over."""
    cells = [Cell(RunSpec(**BASE, seed=s), pack=3) for s in range(3)]
    store = Store(sqlite_url)
    taken = store.ensure_run(run_values(cells[1].spec))
    assert store.claim(taken.id, "someone-else", stale_after=2)  # that worker then dies: no heartbeat
    started = store.now()
    assert _ray_unit(cells, sqlite_url, _settings(tmp_path), started) == ["completed"] * 3
    stored = runs(sqlite_url)
    assert [execution(stored[c.spec.key]).get("packed") for c in cells] == [2, None, 2]
    assert [stored[c.spec.key]["attempts"] for c in cells] == [1, 2, 1]
    assert {len(e) for e in epochs(sqlite_url).values()} == {1} and len(epochs(sqlite_url)) == 3
    store.close()


class StopAtFirstEpoch(Callback):
    """Ctrl-C as it lands in a Ray task (``ray.cancel``): a KeyboardInterrupt in the middle of the pack."""

    def on_epoch(self, metrics):
        raise KeyboardInterrupt


def test_a_stopped_pack_task_gives_every_claim_back_and_fails_no_member(sqlite_url, tmp_path):
    cells = [Cell(RunSpec(**{**BASE, "epochs": 2}, seed=s), pack=3) for s in range(3)]
    store = Store(sqlite_url)
    with pytest.raises(KeyboardInterrupt):
        _ray_unit(cells, sqlite_url, _settings(tmp_path, callbacks=(StopAtFirstEpoch(),)), store.now())
    assert rows(sqlite_url, "select status, count(*) from runs group by status") == [("pending", 3)]
    assert rows(sqlite_url, "select count(*) from runs where worker is not null") == [(0,)]
    store.close()


def test_the_driver_plans_a_task_per_cell_unpacked_and_a_task_per_pack_of_unfinished_cells(sqlite_url, tmp_path):
    off = [Cell(RunSpec(**BASE, seed=s)) for s in range(4)]
    packed = [Cell(RunSpec(**BASE, seed=s), pack=3) for s in range(4)]
    store = Store(sqlite_url)
    _ray_unit(packed[:1] + packed[2:3], sqlite_url, _settings(tmp_path), store.now())  # seeds 0 and 2 completed
    assert [[c.spec.seed for c in unit] for unit in plan_units(off, store, "cpu", None)] == [[0], [1], [2], [3]]
    assert [[c.spec.seed for c in unit] for unit in plan_units(packed, store, "cpu", None)] == [[1, 3]]
    auto = [Cell(RunSpec(**{**BASE, "model": "resnet18"}, seed=s), pack="auto") for s in range(2)]
    assert [len(unit) for unit in plan_units(auto, store, "cpu", None)] == [1, 1]
    assert [len(unit) for unit in plan_units(auto, store, "cuda", None)] == [2]
    store.close()


@pytest.mark.parametrize("device, gpus, expected", [
    ("auto", 1, "cuda"), ("auto", 0, "cpu"), ("cpu", 4, "cpu"),
])
def test_packing_follows_the_device_the_tasks_train_on(device, gpus, expected):
    assert task_device_type(ExecOptions(device=device), gpus) == expected


@pytest.mark.parametrize("executor, device_type, noted", [
    ("ray", "cpu", True), ("ray", "cuda", False), ("local", None, True),
])
def test_the_driver_says_why_cells_train_unpacked_on_the_tasks_device(executor, device_type, noted, sqlite_url,
                                                                      monkeypatch):
    """On Ray the notes follow the device type run_sweep_ray reports for its tasks (the cluster's), not this
    machine's: --pack auto leaves a ResNet unpacked on CPU workers, not on GPU ones; a local sweep's follow this
    machine's (a CPU here). A stand-in for either executor: it registers the cells and reports them pending."""
    import masbench.sweep
    from masbench.cli import app
    from masbench.sweep import register, summarize
    from test_sweep_pack import runner

    def stand_in(cells, store, settings, *, address=None, on_start=None, datasets=None):
        register(cells, store)
        started = store.now()
        on_start() if device_type is None else on_start(device_type)
        return summarize(cells, store, started)

    monkeypatch.setattr(masbench.sweep, "run_sweep_ray" if executor == "ray" else "run_sweep", stand_in)
    result = runner.invoke(app, ["sweep", "--dataset", "digits", "--models", "mlp,resnet18", "--lambdas", "0.5",
                                 "--no-baselines", "--seeds", "2", "--executor", executor, "--pack", "auto",
                                 *(["--device", "cpu"] if executor == "local" else []), "--db", sqlite_url])
    assert result.exit_code == 0, result.output
    assert "4 runs, 0 finished now; 4 pending" in result.stdout
    note = f"2 run(s) train unpacked: --pack auto leaves model 'resnet18' unpacked on {device_type or 'cpu'}"
    assert (note in result.stderr) is noted and ("train unpacked" in result.stderr) is noted, result.stderr


@pytest.mark.slow
@pytest.mark.ray
def test_a_packed_ray_sweep_gives_the_local_unpacked_table(ray_module, bench_file, db_url, tmp_path):
    """A member completed beforehand (unpacked, locally) is not trained again; the other five train in packs
    of 3 and 2, each its own run; the table is the local unpacked sweep's; a rerun trains nothing."""
    reference = f"sqlite:///{tmp_path / 'reference.db'}"
    local_sweep(reference, "--benchmarks", bench_file, "--benchmark", "tiny", where=tmp_path / "ref")
    local_sweep(db_url, "--benchmarks", bench_file, "--benchmark", "tiny", "--lambdas", "0.3", "--no-baselines",
                "--seed-list", "0", where=tmp_path / "before")
    [done] = before = runs(db_url)

    out, err = finish(sweep(bench_file, db_url, tmp_path / "ray", "--executor", "ray", "--pack", "3",
                            benchmark="tiny"))
    assert "6 runs, 5 finished now; 6 completed" in out and "on Ray" in err and "unpacked" not in err
    packed, alone = runs(db_url), runs(reference)
    assert packed[done] == before[done]
    assert sorted(execution(r)["packed"] for k, r in packed.items() if k != done) == [2, 2, 3, 3, 3]
    assert all("packed" not in execution(r) for r in alone.values())
    assert {r["status"] for r in packed.values()} == {"completed"} and packed.keys() == alone.keys()
    ours, theirs = epochs(db_url), epochs(reference)
    for key in alone:  # the first epoch's train loss to 1e-4 relative, as the local packing tests hold it
        assert [e[0] for e in ours[key]] == [1]
        a, b = ours[key][0][1], theirs[key][0][1]
        assert abs(a - b) <= 1e-4 * abs(b), (key, a, b)
    table, expected = report_csv(db_url), report_csv(reference)
    assert len(table) == 3 and [list(r) for r in table] == [list(r) for r in expected]
    for row, ref in zip(table, expected):
        assert {k: v for k, v in row.items() if "acc" not in k} == {k: v for k, v in ref.items() if "acc" not in k}
        assert abs(float(row["avg_acc"]) - float(ref["avg_acc"])) <= 1.0, (row, ref)

    out, _ = finish(sweep(bench_file, db_url, tmp_path / "ray", "--executor", "ray", "--pack", "3",
                          benchmark="tiny"))
    assert "6 runs, 0 finished now; 6 completed" in out
    assert epochs(db_url) == ours and runs(db_url) == packed


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stop_mid_pack_gives_every_members_claim_back_and_fails_none(ray_module, bench_file, sqlite_url,
                                                                       tmp_path, signum):
    process = sweep(bench_file, sqlite_url, tmp_path, "--executor", "ray", "--pack", "3", benchmark="held",
                    hold=tmp_path / "held")
    wait_for_hold(tmp_path / "held")  # the pack after its first epoch, every member's stored and checkpointed
    # Ctrl-C reaches the terminal's whole process group, the local Ray instance's own processes too (they
    # ignore SIGINT); SIGTERM is sent to the sweep's process (to the whole group, it also ends those processes).
    os.killpg(process.pid, signum) if signum == signal.SIGINT else os.kill(process.pid, signum)
    try:  # held until the sweep has ended (see test_ray's Ctrl-C test): the driver's stop cancels the task
        out, err = process.communicate(timeout=300)
    finally:
        release(tmp_path / "held")
    assert process.returncode == 128 + signum, err
    assert "claims released" in err
    assert rows(sqlite_url, "select status, count(*) from runs group by status") == [("pending", 3)], err
    assert rows(sqlite_url, "select count(*) from runs where worker is not null") == [(0,)]
    assert {len(e) for e in epochs(sqlite_url).values()} == {1} and len(epochs(sqlite_url)) == 3
    first = rows(sqlite_url, "select run_id, seconds from epochs where epoch = 1 order by run_id")
    # The members resume from their checkpoints on the next sweep (run here, without Ray: the same claims).
    local_sweep(sqlite_url, "--benchmarks", bench_file, "--benchmark", "held", "--pack", "3", where=tmp_path)
    assert rows(sqlite_url, "select status, count(*) from runs group by status") == [("completed", 3)]
    assert rows(sqlite_url, "select run_id, seconds from epochs where epoch = 1 order by run_id") == first


@pytest.mark.slow
@pytest.mark.ray
def test_a_killed_ray_worker_has_its_pack_retried_and_every_member_resumed(ray_module, bench_file, sqlite_url,
                                                                            tmp_path):
    """Ray retries the killed pack's task; the retry waits out the dead worker's leases, then takes every
    member over as one pack and resumes it from epoch 1 (stored once, not trained again)."""
    process = sweep(bench_file, sqlite_url, tmp_path, "--executor", "ray", "--pack", "3", "--claim-timeout", "3",
                    benchmark="held", hold=tmp_path / "held")
    pid = wait_for_hold(tmp_path / "held")  # the Ray worker process running the pack, after its first epoch
    first = rows(sqlite_url, "select run_id, seconds from epochs where epoch = 1 order by run_id")
    assert len(first) == 3
    os.kill(pid, signal.SIGKILL)
    release(tmp_path / "held")
    out, err = finish(process)
    assert "3 runs, 3 finished now; 3 completed" in out
    stored = runs(sqlite_url)
    assert {r["attempts"] for r in stored.values()} == {2}
    assert {execution(r)["packed"] for r in stored.values()} == {3}
    assert rows(sqlite_url, "select run_id, seconds from epochs where epoch = 1 order by run_id") == first
    assert {len(e) for e in epochs(sqlite_url).values()} == {2} and len(epochs(sqlite_url)) == 3
