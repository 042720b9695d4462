"""``masbench sweep --pack``: packed cells, each claimed and recorded as its own run, as if it had run alone."""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from masbench.grid.benchmarks import Cell
from masbench.cli import app
from masbench.spec import RunSpec
from masbench.engine import ExecOptions, Unpackable
from masbench.store import Store
from masbench.sweep import pack_cells, run_unit, unpacked_notes
from reliability import Warnings, rows

runner = CliRunner()
REPO = Path(__file__).resolve().parent.parent
NUMBERS = ("train_loss", "train_acc", "test_loss", "test_acc", "lr", "lambda_adam", "lambda_sgd")

TINY = textwrap.dedent("""
    benchmarks:
      tiny:
        dataset: digits
        models: [mlp]
        lambdas: "0.3,0.7"
        baselines: [sgd]
        lr: 0.003
        momentum: 0.9
        batch_size: 128
        epochs: 3
        seeds: 2
""")


@pytest.fixture
def tiny(tmp_path) -> str:
    path = tmp_path / "bench.yaml"
    path.write_text(TINY)
    return str(path)


def sweep(db: str, *flags: str, where: Path | None = None):
    where = where or Path.cwd()
    result = runner.invoke(app, ["sweep", *flags, "--db", db, "--checkpoint-dir", str(where / "ckpt"),
                                 "--data-dir", str(where / "data")])
    assert result.exit_code == 0, result.output
    return result


def epochs(url: str) -> dict[str, list[tuple]]:
    """Each run's epochs (key -> rows of NUMBERS), timing left out."""
    out: dict[str, list[tuple]] = {}
    query = (f"select r.key, e.epoch, {', '.join('e.' + c for c in NUMBERS)} from runs r join epochs e "
             f"on e.run_id = r.id order by r.key, e.epoch")
    for key, *values in rows(url, query):
        out.setdefault(key, []).append(tuple(values))
    return out


def runs(url: str) -> dict[str, dict]:
    names = ("key", "config_key", "name", "status", "attempts", "finished_at", "config", "error")
    return {r[0]: dict(zip(names, r)) for r in rows(url, f"select {', '.join(names)} from runs")}


def execution(run: dict) -> dict:
    import json

    config = run["config"] if isinstance(run["config"], dict) else json.loads(run["config"])
    return config["execution"]


def report_csv(url: str) -> list[dict]:
    result = runner.invoke(app, ["report", "--table", "--format", "csv", "--db", url])
    assert result.exit_code == 0, result.output
    return list(csv.DictReader(io.StringIO(result.stdout)))


@pytest.fixture(scope="session")
def unpacked_quick(tmp_path_factory) -> str:
    """The quick suite swept unpacked, once for the session (its numbers do not depend on the store)."""
    where = tmp_path_factory.mktemp("unpacked")
    url = f"sqlite:///{where / 'store.db'}"
    sweep(url, "--benchmark", "quick", where=where)
    return url


def test_a_packed_quick_sweep_gives_the_unpacked_table(unpacked_quick, db_url):
    """The issue's check: first-epoch train loss to 1e-4 relative, avg acc per configuration within 1 point,
    and the same report rows and columns; each member an ordinary run, its execution saying it was packed."""
    sweep(db_url, "--benchmark", "quick", "--pack", "7")
    packed, alone = runs(db_url), runs(unpacked_quick)
    assert len(packed) == 14 and {r["status"] for r in packed.values()} == {"completed"}
    for key, run in packed.items():  # the same cells: identity columns equal, execution aside
        assert (run["config_key"], run["name"]) == (alone[key]["config_key"], alone[key]["name"])
        assert execution(run)["packed"] == 7 and "packed" not in execution(alone[key])
    ours, theirs = epochs(db_url), epochs(unpacked_quick)
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert [e[0] for e in ours[key]] == [1, 2, 3, 4, 5]
        a, b = ours[key][0][1], theirs[key][0][1]
        assert abs(a - b) <= 1e-4 * abs(b), (key, a, b)
    table, reference = report_csv(db_url), report_csv(unpacked_quick)
    assert len(table) == 7 and [list(r) for r in table] == [list(r) for r in reference]
    for row, ref in zip(table, reference):
        assert {k: v for k, v in row.items() if "acc" not in k} == {k: v for k, v in ref.items() if "acc" not in k}
        assert abs(float(row["avg_acc"]) - float(ref["avg_acc"])) <= 1.0, (row, ref)

    again = sweep(db_url, "--benchmark", "quick", "--pack", "7")  # a second sweep trains nothing
    assert "14 runs, 0 finished now; 14 completed" in again.stdout
    assert epochs(db_url) == ours and runs(db_url) == packed


def test_a_cell_completed_unpacked_is_not_trained_again_in_a_pack(tiny, sqlite_url):
    sweep(sqlite_url, "--benchmarks", tiny, "--benchmark", "tiny", "--lambdas", "0.3", "--no-baselines",
          "--seed-list", "0")
    before = runs(sqlite_url)
    [done] = before
    result = sweep(sqlite_url, "--benchmarks", tiny, "--benchmark", "tiny", "--pack", "6")
    assert "6 runs, 5 finished now; 6 completed" in result.stdout
    after = runs(sqlite_url)
    assert after[done] == before[done]
    assert sorted(execution(r).get("packed") for k, r in after.items() if k != done) == [5] * 5


def _fresh_subprocess_sweep(tiny: str, url: str, where: Path, *flags: str, fault: str | None = None):
    env = {k: v for k, v in os.environ.items() if k != "MASBENCH_FAULT"}
    env |= {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    if fault:
        env["MASBENCH_FAULT"] = fault
    where.mkdir(exist_ok=True)
    args = [sys.executable, "-m", "masbench", "sweep", "--benchmarks", tiny, "--benchmark", "tiny", "--pack", "6",
            "--db", url, "--checkpoint-dir", str(where / "ckpt"), "--data-dir", str(where / "data"), *flags]
    return subprocess.Popen(args, env=env, cwd=where, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_killed_packed_sweep_resumes_every_member_like_an_uninterrupted_one(tiny, db_url, tmp_path):
    """SIGKILL while the second member writes its epoch-2 checkpoint: every member's epoch 2 is in the store,
    one member's checkpoint is at epoch 2, the others' at 1. The rerun takes the claims over once their lease
    has passed, resumes each member from its own checkpoint, and ends with the uninterrupted sweep's numbers."""
    straight_url = f"sqlite:///{tmp_path / 'straight.db'}"
    straight = _fresh_subprocess_sweep(tiny, straight_url, tmp_path / "a")
    killed = _fresh_subprocess_sweep(tiny, db_url, tmp_path / "b", "--claim-timeout", "2", fault="checkpoint:8")
    assert killed.wait(timeout=600) == -signal.SIGKILL, killed.communicate()[1][-2000:]
    assert {len(e) for e in epochs(db_url).values()} == {2}
    assert {r["status"] for r in runs(db_url).values()} == {"running"}
    first_epochs = rows(db_url, "select run_id, seconds from epochs where epoch = 1 order by run_id")
    rerun = _fresh_subprocess_sweep(tiny, db_url, tmp_path / "b")
    assert rerun.wait(timeout=600) == 0, rerun.communicate()[1][-2000:]
    # Resumed, not restarted: epoch 1 came back from the checkpoints, its timing as first measured.
    assert rows(db_url, "select run_id, seconds from epochs where epoch = 1 order by run_id") == first_epochs
    assert straight.wait(timeout=600) == 0, straight.communicate()[1][-2000:]
    resumed = runs(db_url)
    assert {r["status"] for r in resumed.values()} == {"completed"}
    assert {r["attempts"] for r in resumed.values()} == {2}
    assert epochs(db_url) == epochs(straight_url)
    assert [p for p in (tmp_path / "b" / "ckpt").rglob("*") if p.is_file()] == []  # each removed once complete


def _has_an_epoch(url: str) -> bool:
    from sqlalchemy.exc import OperationalError

    try:
        return bool(epochs(url))
    except OperationalError:  # no tables yet
        return False


def test_sigterm_gives_every_members_claim_back_and_the_rerun_completes(tiny, sqlite_url, tmp_path):
    process = _fresh_subprocess_sweep(tiny, sqlite_url, tmp_path)
    deadline = time.monotonic() + 300
    while not _has_an_epoch(sqlite_url):  # the pack is past its first epoch: claimed, started, checkpointed
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1][-2000:]
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 128 + signal.SIGTERM, process.communicate()[1][-2000:]
    states = runs(sqlite_url)
    assert {r["status"] for r in states.values()} <= {"pending", "completed"}
    assert "pending" in {r["status"] for r in states.values()}
    assert rows(sqlite_url, "select count(*) from runs where worker is not null and status = 'running'") == [(0,)]
    sweep(sqlite_url, "--benchmarks", tiny, "--benchmark", "tiny", "--pack", "6", where=tmp_path)
    assert {r["status"] for r in runs(sqlite_url).values()} == {"completed"}


BASE = dict(dataset="digits", model="mlp", lr=3e-3, momentum=0.9, batch_size=128, epochs=2)


def test_a_diverging_member_is_recorded_diverged_and_the_others_completed(db_url, tmp_path):
    specs = [RunSpec(**BASE, optimizer="mas", seed=s) for s in range(3)]
    specs.append(RunSpec(**{**BASE, "lr": 1e12}, optimizer="sgd", seed=5))
    store = Store(db_url)
    options = ExecOptions(device="cpu", checkpoint_dir=tmp_path / "ckpt")
    outcomes = run_unit(specs, store, options)
    assert [o.status for o in outcomes] == ["completed"] * 3 + ["diverged"]
    stored = runs(db_url)
    assert [stored[s.key]["status"] for s in specs] == ["completed"] * 3 + ["diverged"]
    assert stored[specs[-1].key]["error"].startswith("non-finite training loss")
    store.close()


def test_a_pack_partly_held_by_another_worker_trains_the_rest(sqlite_url, tmp_path):
    from masbench.sweep import run_values

    specs = [RunSpec(**{**BASE, "epochs": 1}, optimizer="mas", seed=s) for s in range(3)]
    store = Store(sqlite_url)
    taken = store.ensure_run(run_values(specs[1]))
    assert store.claim(taken.id, "someone-else", stale_after=600)
    outcomes = run_unit(specs, store, ExecOptions(device="cpu", checkpoint_dir=tmp_path / "ckpt"))
    assert [o.status for o in outcomes] == ["completed", "busy", "completed"]
    stored = runs(sqlite_url)
    assert [execution(stored[specs[i].key])["packed"] for i in (0, 2)] == [2, 2]
    assert stored[specs[1].key]["status"] == "running" and epochs(sqlite_url).get(specs[1].key) is None
    store.close()


def test_a_model_the_fuser_refuses_runs_unpacked_with_one_line(sqlite_url, tmp_path, monkeypatch):
    import importlib

    def refuse(models, conv=None):
        raise Unpackable("layer 3 is a Frobnicator, which has no packed form")

    monkeypatch.setattr(importlib.import_module("masbench.engine.prepare"), "fuse", refuse)
    monkeypatch.setenv("MASBENCH_PACK_CONV", "grouped")  # the fuser runs for grouped convolutions alone
    specs = [RunSpec(**{**BASE, "epochs": 1}, optimizer="mas", seed=s) for s in range(4)]
    store, warnings, refused = Store(sqlite_url), Warnings(), {}
    options = ExecOptions(device="cpu", checkpoint_dir=tmp_path / "ckpt")
    for pack in (specs[:2], specs[2:]):
        outcomes = run_unit(pack, store, options, callbacks=[warnings], refused=refused)
        assert [o.status for o in outcomes] == ["completed", "completed"]
    assert warnings.messages == ["2 runs train unpacked: layer 3 is a Frobnicator, which has no packed form"]
    stored = runs(sqlite_url)
    assert all("packed" not in execution(stored[s.key]) for s in specs)
    # The engine refuses the model while it prepares the pack, before anything is claimed: one attempt each.
    assert {r["attempts"] for r in stored.values()} == {1}
    store.close()


def test_packs_follow_the_setting_the_device_and_what_can_share_a_pack():
    mlp = [Cell(RunSpec(**BASE, seed=s), pack="auto") for s in range(9)]
    cnn = [Cell(RunSpec(**{**BASE, "model": "resnet18"}, seed=s), pack="auto") for s in range(2)]
    bert = [Cell(RunSpec(dataset="csv:x.csv", model="bert", seed=s), pack=4) for s in range(2)]
    off = [Cell(RunSpec(**{**BASE, "epochs": 3}, seed=s)) for s in range(2)]
    cells = [*mlp, *cnn, *bert, *off]
    sizes = [len(p) for p in pack_cells(cells, "cpu")]
    assert sizes == [7, 2, 1, 1, 1, 1, 2]  # text models pack (the engine trains K of them as it trains one)
    assert [len(p) for p in pack_cells(cells, "cuda")] == [7, 2, 2, 2, 1, 1]
    notes = unpacked_notes(cells, "cpu")
    assert len(notes) == 1 and notes[0].startswith("2 run(s) train unpacked: --pack auto leaves model 'resnet18'")
    assert unpacked_notes(cells, "cuda") == []


@pytest.mark.parametrize("written, given, expected", [
    ("pack: 7", None, 7), ("pack: off", None, "off"), ("pack: auto", None, "auto"), ("", None, "off"),
    ("pack: 7", "off", "off"), ("pack: off", 3, 3),
])
def test_pack_in_the_benchmarks_file_and_the_command_line_over_it(written, given, expected, tmp_path):
    from masbench.grid.benchmarks import plan_sweep

    path = tmp_path / "b.yaml"
    path.write_text(f"benchmarks:\n  b:\n    lambdas: '0.5'\n    {written}\n")
    _, cells = plan_sweep(benchmark="b", benchmarks_path=path, overrides={"pack": given})
    assert {cell.pack for cell in cells} == {expected}


@pytest.mark.parametrize("dry_run", [False, True], ids=["sweep", "dry-run"])
def test_a_bad_conv_strategy_in_the_environment_is_one_line_and_writes_nothing(tiny, tmp_path, monkeypatch, dry_run):
    monkeypatch.setenv("MASBENCH_PACK_CONV", "fastest")
    db = tmp_path / "s.db"
    result = runner.invoke(app, ["sweep", "--benchmarks", tiny, "--benchmark", "tiny", "--pack", "4", "--db",
                                 f"sqlite:///{db}", "--checkpoint-dir", str(tmp_path / "ckpt"),
                                 *(["--dry-run"] if dry_run else [])])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: Invalid MASBENCH_PACK_CONV: 'fastest' (valid: auto, grouped, members)"], result.output
    assert not db.exists() and not (tmp_path / "ckpt").exists()


def test_cells_with_an_lr_schedule_and_a_validation_split_pack_and_give_their_unpacked_numbers(tmp_path):
    path = tmp_path / "bench.yaml"
    path.write_text(TINY.replace("epochs: 3", "epochs: 2\n    lr_schedule: cosine\n    val_fraction: 0.2"))
    urls = {}
    for label, flags in (("alone", ()), ("packed", ("--pack", "6"))):
        where = tmp_path / label
        where.mkdir()
        urls[label] = f"sqlite:///{where / 'store.db'}"
        sweep(urls[label], "--benchmarks", str(path), "--benchmark", "tiny", *flags, where=where)
    packed, alone = runs(urls["packed"]), runs(urls["alone"])
    assert len(packed) == 6 and {execution(r).get("packed") for r in packed.values()} == {6}
    assert all("packed" not in execution(r) for r in alone.values())
    assert epochs(urls["packed"]) == epochs(urls["alone"])
    val = "select r.key, e.epoch, e.val_loss, e.val_acc from runs r join epochs e on e.run_id = r.id order by 1, 2"
    assert rows(urls["packed"], val) == rows(urls["alone"], val)
    assert all(r[2] is not None for r in rows(urls["packed"], val))
    second = rows(urls["packed"], "select e.lr from epochs e where e.epoch = 2")
    assert len(second) == 6 and all(lr < 0.003 for (lr,) in second)  # the cosine schedule ran in the pack
