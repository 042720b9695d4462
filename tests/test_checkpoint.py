"""Checkpoints against adversaries: another device, another store, torn and damaged files, a SIGKILL mid-write,
an interrupt inside torch.save, and a checkpoint that cannot be restored."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from masbench.engine import CHECKPOINT_FORMAT, CheckpointOwner, checkpoint_path, prepare, train_one
from masbench.fileio import _host
from masbench.spec import RunSpec
from masbench.engine import ExecOptions
from reliability import StopAfter, Warnings, numbers, rows

SPEC = RunSpec(dataset="digits", optimizer="mas", momentum=0.9, lr=3e-3, lambda_adam=0.3, lambda_sgd=0.7, epochs=3)


@pytest.fixture
def options(tmp_path):
    return ExecOptions(device="cpu", checkpoint_dir=tmp_path / "ckpt")


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """SPEC trained without interruption."""
    return numbers(train_one(SPEC, ExecOptions(device="cpu", checkpoint_dir=tmp_path_factory.mktemp("straight"))))


def crash_after(epoch: int, options: ExecOptions, owner: CheckpointOwner | None = None) -> Path:
    with pytest.raises(StopAfter.Crash):
        train_one(SPEC, options, [StopAfter(epoch)], owner=owner)
    path = checkpoint_path(SPEC, options, owner)
    assert path.exists()
    return path


def owner(run: int = 1) -> CheckpointOwner:
    return CheckpointOwner(str(uuid.uuid4()), run)


# --- A: a checkpoint written or read on an accelerator ------------------------------------------------


def test_a_checkpoint_is_not_mapped_to_the_training_device(options, straight, monkeypatch):
    """On a GPU, ``torch.load(map_location=<the GPU>)`` put the saved RNG states on the GPU, where the RNG
    setters refuse them, and the run silently started over. Here the CPU plays the accelerator: whatever
    is mapped to the run's training device lands on ``meta``, where no CPU RNG state can live."""
    crash_after(1, options)
    p = prepare([SPEC], options)
    accelerator = p.device
    real_load = torch.load

    def load_as_on_an_accelerator(f, map_location=None, **kwargs):
        state = real_load(f, map_location="cpu", **kwargs)
        if map_location is accelerator:
            state["rng"] = {k: [t.to("meta") for t in v] if isinstance(v, list) and k != "python" else
                            v.to("meta") if isinstance(v, torch.Tensor) else v for k, v in state["rng"].items()}
        return state

    monkeypatch.setattr(torch, "load", load_as_on_an_accelerator)
    warnings = Warnings()
    resumed = train_one(SPEC, options, [warnings], prepared=p)
    assert warnings.messages == []
    assert resumed.resumed_from == 1
    assert numbers(resumed) == straight


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_run_on_a_gpu_resumes_from_its_checkpoint(tmp_path):
    cuda = ExecOptions(device="cuda", checkpoint_dir=tmp_path / "ckpt", amp=False)
    straight_cuda = numbers(train_one(SPEC, replace(cuda, checkpoint_dir=tmp_path / "straight")))
    crash_after(1, cuda)
    warnings = Warnings()
    resumed = train_one(SPEC, cuda, [warnings])
    assert warnings.messages == [] and resumed.resumed_from == 1
    for got, expected in zip(numbers(resumed), straight_cuda, strict=True):
        assert got == pytest.approx(expected, rel=1e-6)


# --- B: another store's checkpoint ---------------------------------------------------------------------


def test_another_stores_checkpoint_is_left_alone_and_its_own_store_resumes_it(options, straight):
    a, b = owner(), owner()
    path_a = crash_after(1, options, a)
    assert checkpoint_path(SPEC, options, b) != path_a  # two stores never write the same file

    warnings = Warnings()
    fresh = train_one(SPEC, options, [warnings], owner=b)
    assert fresh.resumed_from == 0 and numbers(fresh) == straight
    assert len(warnings.messages) == 1
    assert "belongs to another store" in warnings.messages[0] and "fresh" in warnings.messages[0]
    assert path_a.exists()  # not ours to remove

    resumed = train_one(SPEC, options, owner=a)
    assert resumed.resumed_from == 1 and numbers(resumed) == straight


@pytest.mark.parametrize("same_store", [False, True], ids=["other store", "other run of this store"])
def test_a_checkpoint_recording_another_owner_is_not_resumed(same_store, options, straight):
    """Even at this owner's path (a copied file, a store whose runs were renumbered) the recorded owner decides."""
    theirs = owner(run=1)
    ours = CheckpointOwner(theirs.store, 2) if same_store else owner(run=1)
    path = crash_after(1, options, theirs)
    path.rename(checkpoint_path(SPEC, options, ours))

    warnings = Warnings()
    result = train_one(SPEC, options, [warnings], owner=ours)
    assert result.resumed_from == 0 and numbers(result) == straight
    expected = "belongs to run 1 of this store, not run 2" if same_store else "belongs to another store"
    assert len(warnings.messages) == 1 and expected in warnings.messages[0]


def test_a_checkpoint_without_an_owner_is_not_adopted_by_a_store(options, straight):
    """One from an older masbench (named by the key alone, no owner recorded) is noted and left alone."""
    legacy = crash_after(1, options)
    warnings = Warnings()
    result = train_one(SPEC, options, [warnings], owner=owner())
    assert result.resumed_from == 0 and numbers(result) == straight
    assert len(warnings.messages) == 1 and "records no store" in warnings.messages[0]
    assert legacy.exists()


def test_without_an_owner_the_checkpoint_is_named_by_the_key_alone(options, straight):
    path = crash_after(1, options)
    assert path.name == f"{SPEC.key}.pt"
    assert numbers(train_one(SPEC, options)) == straight


NUMBERS = "select epoch, train_loss, train_acc, test_loss, test_acc from epochs order by epoch"
CELL = ["--dataset", "digits", "--model", "mlp", "--optimizer", "mas", "--momentum", "0.9", "--lr", "0.003",
        "--epochs", "3", "--batch-size", "64"]


def masbench_run(*args: str, cwd: Path, fault: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("MASBENCH_FAULT", None)
    if fault:
        env["MASBENCH_FAULT"] = fault
    return subprocess.run([sys.executable, "-m", "masbench", "run", *CELL, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_a_crashed_runs_checkpoint_is_not_adopted_by_another_store(tmp_path):
    """A run killed in a.db, then the same cell in b.db with the same checkpoint folder: b.db gets a run of
    its own from epoch 1 and a one-line notice; a.db then resumes its own checkpoint."""
    a, b, clean = (f"sqlite:///{tmp_path / name}.db" for name in ("a", "b", "clean"))
    ckpt = ("--checkpoint-dir", str(tmp_path / "ckpt"))
    assert masbench_run("--db", clean, "--checkpoint-dir", str(tmp_path / "clean"), cwd=tmp_path).returncode == 0
    # A 2 s lease, so that a.db's cell can be taken over once the killed holder's lease has expired.
    killed = masbench_run("--db", a, *ckpt, "--claim-timeout", "2", cwd=tmp_path, fault="batch:30")  # in epoch 2
    killed_at = time.monotonic()
    assert killed.returncode == -signal.SIGKILL, killed.stderr

    other = masbench_run("--db", b, *ckpt, cwd=tmp_path)
    assert other.returncode == 0, other.stderr
    notices = [line for line in other.stderr.splitlines() if "belongs to another store" in line]
    assert len(notices) == 1 and "starting" in notices[0] and "fresh" in notices[0]
    assert "resuming" not in other.stderr
    assert rows(b, "select count(*), count(distinct epoch) from epochs") == [(3, 3)]
    assert rows(b, NUMBERS) == rows(clean, NUMBERS)

    time.sleep(max(0.0, killed_at + 3.0 - time.monotonic()))
    resumed = masbench_run("--db", a, *ckpt, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming at epoch 2" in resumed.stderr and "belongs to" not in resumed.stderr
    assert rows(a, "select count(*), count(distinct epoch) from epochs") == [(3, 3)]
    assert rows(a, NUMBERS) == rows(clean, NUMBERS)


# --- torn, damaged and foreign files -----------------------------------------------------------------


def _flip_a_weight_bit(data: bytes, path: Path) -> bytes:
    """One bit flipped inside the first tensor's bytes: torch.load alone reads such a file without a word."""
    with zipfile.ZipFile(path) as archive:
        info = next(i for i in archive.infolist() if "/data/" in i.filename)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    damaged = bytearray(data)
    damaged[start + 100] ^= 0x10
    return bytes(damaged)


DAMAGE = {
    "torn in half": lambda data, path: data[: len(data) // 2],
    "last bytes missing": lambda data, path: data[:-7],
    "empty": lambda data, path: b"",
    "not a zip file": lambda data, path: b"certainly not a checkpoint\n" * 20,
    "a weight's bit flipped": _flip_a_weight_bit,
}


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_a_torn_or_damaged_checkpoint_restarts_the_run_with_one_warning(damage, options, straight):
    path = crash_after(1, options)
    path.write_bytes(damage(path.read_bytes(), path))
    warnings = Warnings()
    result = train_one(SPEC, options, [warnings])
    assert result.resumed_from == 0 and numbers(result) == straight
    assert len(warnings.messages) == 1 and "is unusable" in warnings.messages[0]


@pytest.mark.parametrize(
    "content, expected",
    [
        ({"format": 99}, "is not a masbench checkpoint"),
        ([1, 2, 3], "is not a masbench checkpoint"),
        ({"format": CHECKPOINT_FORMAT, "key": "0" * 20}, "belongs to another run"),
    ],
)
def test_a_foreign_checkpoint_restarts_the_run_with_one_warning(content, expected, options, straight):
    path = checkpoint_path(SPEC, options)
    path.parent.mkdir(parents=True)
    torch.save(content, path)
    warnings = Warnings()
    result = train_one(SPEC, options, [warnings])
    assert result.resumed_from == 0 and numbers(result) == straight
    assert len(warnings.messages) == 1 and expected in warnings.messages[0]


def test_a_checkpoint_from_before_the_separate_seed_streams_starts_the_run_fresh_with_one_line(options, straight):
    """A format-1 checkpoint drew order and augmentation from one generator seeded with the cell seed:
    resumed, its later epochs would mix that seeding with this one's, and match neither."""
    path = crash_after(1, options)
    state = torch.load(path, weights_only=True)
    state["format"] = 1
    del state["rng"]["augment"]  # as format 1 wrote it: one generator, under "data"
    torch.save(state, path)
    warnings = Warnings()
    result = train_one(SPEC, options, [warnings])
    assert result.resumed_from == 0 and numbers(result) == straight
    assert len(warnings.messages) == 1, warnings.messages
    assert "separate seeds (format 1)" in warnings.messages[0] and "starting" in warnings.messages[0]


def test_a_checkpoint_that_cannot_be_restored_is_an_error_not_a_restart(options):
    """A restore that fails is a bug to see, not a reason to throw the epochs away without a word."""
    path = crash_after(1, options)
    state = torch.load(path, weights_only=True)
    state["model"] = {name: tensor[..., :1] for name, tensor in state["model"].items()}  # wrong shapes
    torch.save(state, path)
    with pytest.raises(RuntimeError, match="size mismatch"):
        train_one(SPEC, options, [Warnings()])


# --- C: temporary files of killed writes -------------------------------------------------------------


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _temporary(path: Path, host: str, pid: int) -> Path:
    tmp = path.parent / f".{path.name}.{host}.{pid}.x1y2z3.tmp"
    tmp.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_bytes(b"half a checkpoint")
    return tmp


@pytest.mark.parametrize("with_owner", [False, True], ids=["no owner", "claimed cell"])
def test_temporary_files_of_killed_writes_are_removed_and_no_live_writers(with_owner, options):
    who = owner() if with_owner else None
    spec = SPEC.model_copy(update={"epochs": 1})
    path = checkpoint_path(spec, options, who)
    dead = _temporary(path, _host(), _dead_pid())
    live = _temporary(path, _host(), os.getppid())  # a live process on this host: its write may be going on
    elsewhere = _temporary(path, "another-host", 12345)
    other_cell = _temporary(path.with_name("0123456789abcdef0123.pt"), _host(), _dead_pid())

    train_one(spec, replace(options, keep_checkpoint=True), owner=who)
    assert not dead.exists()
    # A claimed cell has one writer, so every other temporary file of its checkpoint is stale.
    assert live.exists() != with_owner and elsewhere.exists() != with_owner
    assert other_cell.exists()  # another checkpoint's files are never touched
    assert path.exists()


def test_a_write_killed_mid_checkpoint_leaves_no_temporary_file_after_the_rerun(tmp_path):
    """A real SIGKILL with the temporary file written and not yet renamed, then the run again."""
    ckpt = tmp_path / "ckpt"
    code = ("from masbench.engine import train_one; from masbench.engine import ExecOptions; from masbench.spec import RunSpec; "
            f"train_one(RunSpec(dataset='digits', epochs=2), ExecOptions(device='cpu', checkpoint_dir={str(ckpt)!r}))")
    env = dict(os.environ, MASBENCH_FAULT="checkpoint:2")
    killed = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert len(list(ckpt.glob(".*.tmp"))) == 1

    options = ExecOptions(device="cpu", checkpoint_dir=ckpt)
    result = train_one(RunSpec(dataset="digits", epochs=2), options)
    assert result.resumed_from == 1
    assert list(ckpt.iterdir()) == []


# --- D: an interrupt inside torch.save ---------------------------------------------------------------


class SignalMidWrite:
    """A file handle that sends this process ``signum`` from inside torch's zip writer, on the Nth save."""

    saves = 0

    def __init__(self, handle, signum: int) -> None:
        self.handle, self.signum, self.writes = handle, signum, 0

    def write(self, data):
        self.writes += 1
        if self.writes == 3:
            os.kill(os.getpid(), self.signum)
        return self.handle.write(data)

    def __getattr__(self, name):
        return getattr(self.handle, name)


def signal_during_save(monkeypatch, signum: int, on_save: int) -> None:
    real_save = torch.save
    count = {"saves": 0}

    def save(obj, f, *args, **kwargs):
        count["saves"] += 1
        if count["saves"] == on_save:
            f = SignalMidWrite(f, signum)
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)


class Terminated(Exception):
    pass


@pytest.mark.parametrize("signum, raised", [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, Terminated)],
                         ids=["SIGINT", "SIGTERM"])
def test_a_signal_inside_torch_save_comes_out_as_itself_and_the_checkpoint_is_whole(signum, raised, options,
                                                                                    straight, monkeypatch):
    def terminate(number, frame):
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    # Python's own SIGINT handler, whatever the test process inherited: a shell's background job starts with
    # SIGINT ignored, and an ignored signal stays ignored through the save (as it should).
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        signal_during_save(monkeypatch, signum, on_save=2)
        with pytest.raises(raised):
            train_one(SPEC, options)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handlers are back
        assert signal.getsignal(signal.SIGTERM) is terminate
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
    monkeypatch.undo()

    path = checkpoint_path(SPEC, options)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    warnings = Warnings()
    resumed = train_one(SPEC, options, [warnings])
    assert warnings.messages == []
    assert resumed.resumed_from == 2  # the write that was interrupted finished first
    assert numbers(resumed) == straight
