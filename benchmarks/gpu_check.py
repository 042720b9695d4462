"""One check for the day a GPU is lent: everything that only a CUDA device can show, in one table.

No GPU has run it yet (issue 12); on a CPU it runs the same code at tiny sizes as a smoke test.

    python benchmarks/gpu_check.py [--smoke] [--only tests,resume,throughput,optimizer,packed] [--budget-s 480]

Sections, each measured side by side in this one run:

- ``tests``: the GPU-only tests (``pytest -m gpu``), with their passed/failed/skipped counts;
- ``resume``: ``masbench run`` on digits/mlp on the device, SIGKILLed once epoch 1 is stored and checkpointed,
  then rerun: it must resume (its log says so and the store counts a second attempt) and end with the metrics
  of an uninterrupted run;
- ``throughput``: CIFAR ResNet18 (batch 512, 32x32 random images, MAS) training images/s in fp32, in bf16
  autocast with channels_last, and with ``torch.compile`` on top (warm-up and compilation not timed);
- ``optimizer``: one MAS step on ResNet18's parameters on each path (fused, foreach, loop) against torch's
  ``Adam(fused=True)``, and which path MAS's default should be on this device;
- ``packed``: 7 ResNet18s fused into one (``masbench.engine.fuse``) against one ResNet18, in images/s.

Every section runs in its own ``try``: a failure is one row of the table and the others still run. Without CUDA
(or with ``--smoke``) the sizes are tiny and ``torch.compile`` uses the ``aot_eager`` backend (inductor's C++
build takes longer on a CPU than the whole smoke run may). Exit status 1 if any row failed. The ``s`` column is
the seconds spent since the previous row (a section measured in one go counts on its first row).
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]  # this checkout's masbench, installed or not

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from optim_step import resnet18_tensors, time_steps  # noqa: E402

from masbench.engine.environment import git_commit  # noqa: E402
from masbench.models.resnet import cifar_resnet  # noqa: E402
from masbench.optim import MAS  # noqa: E402
from masbench.optim.functional import default_path  # noqa: E402
from masbench.text.shown import one_line  # noqa: E402


@dataclass(frozen=True)
class Sizes:
    batch: int
    warmup: int
    steps: int
    members: int
    opt_rounds: int
    opt_steps: int
    epochs: int  # of the killed and resumed digits run
    compile_backend: str
    subprocess_timeout_s: float
    advise: bool  # whether the step times are enough to advise on MAS's default path


FULL = Sizes(batch=512, warmup=5, steps=20, members=7, opt_rounds=5, opt_steps=10, epochs=15,
             compile_backend="inductor", subprocess_timeout_s=180, advise=True)
SMOKE = Sizes(batch=4, warmup=1, steps=2, members=2, opt_rounds=1, opt_steps=2, epochs=3,
              compile_backend="aot_eager", subprocess_timeout_s=120, advise=False)


@dataclass
class Row:
    check: str
    result: str
    status: str  # ok, FAIL or skipped
    seconds: float = 0.0


def environment_line(device: torch.device, smoke: bool) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    commit = git_commit()
    cudnn = f" · cuDNN {torch.backends.cudnn.version()}" if device.type == "cuda" else ""
    return (f"torch {torch.__version__} · built for CUDA {torch.version.cuda or 'none'}{cudnn} · {name} · masbench "
            f"{commit[:12] if commit else 'installed'} · {'smoke (tiny sizes)' if smoke else 'full sizes'}")


def child_env() -> dict[str, str]:
    """The environment for the subprocesses: this checkout first on the path, output unbuffered."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop("MASBENCH_FAULT", None)
    return env


def cell_line(text: object, limit: int = 300) -> str:
    """``text`` as one line of a table cell: ``|`` would end the cell."""
    return one_line(text, limit).replace("|", "/")


# --- 1. the GPU-only tests -----------------------------------------------------------------------


def check_tests(sizes: Sizes, device: torch.device) -> Iterator[Row]:
    import importlib.util

    if importlib.util.find_spec("pytest") is None:  # the test extra is not installed
        yield Row("CUDA tests (pytest -m gpu)", "pytest is not installed: pip install -e '.[test]'",
                  "FAIL" if device.type == "cuda" else "skipped")
        return
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", "tests"],
                          cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=sizes.subprocess_timeout_s)
    lines = done.stdout.strip().splitlines()
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", lines[-1])} \
        if lines else {}
    summary = ", ".join(f"{counts.get(k, 0)} {k}" for k in ("passed", "failed", "skipped"))
    errors = counts.get("error", 0) + counts.get("errors", 0)
    if done.returncode != 0 or errors:
        yield Row("CUDA tests (pytest -m gpu)", f"{summary}, {errors} errors, rc {done.returncode}: "
                  f"{cell_line(lines[-1] if lines else done.stderr)}", "FAIL")
    elif device.type == "cuda" and counts.get("skipped", 0):
        yield Row("CUDA tests (pytest -m gpu)", f"{summary}: GPU tests skipped on a CUDA machine", "FAIL")
    else:
        yield Row("CUDA tests (pytest -m gpu)", summary, "ok" if counts.get("passed") else "skipped")


# --- 2. kill and resume on the device ------------------------------------------------------------


def run_command(device: torch.device, sizes: Sizes, db: Path, checkpoints: Path) -> list[str]:
    return [sys.executable, "-m", "masbench.cli", "run", "--dataset", "digits", "--model", "mlp", "--batch-size",
            "16", "--lr", "0.003", "--epochs", str(sizes.epochs), "--device", device.type, "--db", f"sqlite:///{db}",
            "--checkpoint-dir", str(checkpoints), "--claim-timeout", "1"]


def stored(db: Path, sql: str) -> list[tuple]:
    with closing(sqlite3.connect(db)) as connection:
        return connection.execute(sql).fetchall()


def epoch_numbers(db: Path) -> list[tuple]:
    return stored(db, "select epoch, train_loss, train_acc, test_loss, test_acc from epochs order by epoch")


def kill_after_first_checkpoint(command: list[str], db: Path, checkpoints: Path, cwd: Path, bound_s: float) -> int:
    """Start ``command``, SIGKILL it once the store holds an epoch and its checkpoint is in place; the epochs stored.

    The run holds there (``masbench.faults``' ``epoch.saved`` point) until it is killed: a small run on a fast
    device, or a loaded machine, would otherwise finish between two looks at the store.
    """
    log, held = cwd / "killed.log", cwd / "held"  # a file, not a pipe nobody reads while it runs
    held.mkdir(exist_ok=True)
    with log.open("w") as handle:
        process = subprocess.Popen(command, cwd=cwd, env={**child_env(), "MASBENCH_HOLD": f"epoch.saved:{held}"},
                                   stdout=subprocess.DEVNULL, stderr=handle, start_new_session=True)
    deadline = time.monotonic() + bound_s
    try:
        while time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.02)
            if any(held.glob("epoch.saved.*")):  # an epoch stored and checkpointed; the next not begun
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
                return stored(db, "select count(*) from epochs")[0][0]
        raise RuntimeError(f"the run was never killed (rc {process.poll()}; it ended, or stored no checkpoint in "
                           f"{bound_s:.0f} s): {cell_line(log.read_text()[-500:])}")
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def check_resume(sizes: Sizes, device: torch.device) -> Iterator[Row]:
    with tempfile.TemporaryDirectory(prefix="masbench-gpu-check-") as name:
        yield resume_row(sizes, device, Path(name))


def resume_row(sizes: Sizes, device: torch.device, work: Path) -> Row:
    timeout = sizes.subprocess_timeout_s
    straight_db, db, checkpoints = work / "straight.db", work / "killed.db", work / "ckpt"
    done = subprocess.run(run_command(device, sizes, straight_db, work / "straight-ckpt"), cwd=work, env=child_env(),
                          capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"the uninterrupted run failed (rc {done.returncode}): {cell_line(done.stderr[-500:])}")
    command = run_command(device, sizes, db, checkpoints)
    killed_at = kill_after_first_checkpoint(command, db, checkpoints, work, timeout)
    time.sleep(1.5)  # the killed worker's 1 s lease lapses, so the rerun may take the cell over
    rerun = subprocess.run(command, cwd=work, env=child_env(), capture_output=True, text=True, timeout=timeout)
    if rerun.returncode != 0:
        raise RuntimeError(f"the rerun failed (rc {rerun.returncode}): {cell_line(rerun.stderr[-500:])}")
    resumed = re.search(r"resuming at epoch (\d+) from its checkpoint", rerun.stderr)
    status_attempts = stored(db, "select status, attempts from runs")
    got, expected = epoch_numbers(db), epoch_numbers(straight_db)
    diff = max((abs(a - b) / max(abs(b), 1e-12) for g, e in zip(got, expected) for a, b in zip(g[1:], e[1:])
                if a is not None and b is not None), default=float("inf"))
    where = f"killed with {killed_at} epoch(s) stored"
    if resumed is None or int(resumed.group(1)) < 2:
        last = rerun.stderr.strip().splitlines()[-1:] or [""]
        return Row("kill-and-resume", f"{where}; the rerun did not resume (no resume line; its last line: "
                   f"{cell_line(last[0], 120)})", "FAIL")
    if status_attempts != [("completed", 2)]:
        return Row("kill-and-resume", f"{where}; store says {status_attempts}, expected [('completed', 2)]", "FAIL")
    if len(got) != sizes.epochs or len(expected) != sizes.epochs or diff > 1e-6:
        return Row("kill-and-resume", f"{where}, resumed at epoch {resumed.group(1)}; its {len(got)} epochs differ "
                   f"from the uninterrupted run's {len(expected)} (max relative difference {diff:.2e})", "FAIL")
    return Row("kill-and-resume", f"digits/mlp on {device.type}, {where}, resumed at epoch {resumed.group(1)}, "
               f"attempts 2; all {sizes.epochs} epochs equal an uninterrupted run's (max rel. diff {diff:.1e})", "ok")


# --- 3. ResNet18 training throughput -----------------------------------------------------------


def elapsed(fn: Callable[[], None], steps: int, device: torch.device) -> float:
    """Seconds for ``steps`` calls of ``fn``: CUDA events on a GPU, the wall clock elsewhere."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(steps):
            fn()
        end.record()
        torch.cuda.synchronize(device)
        return start.elapsed_time(end) / 1e3
    begin = time.perf_counter()
    for _ in range(steps):
        fn()
    return time.perf_counter() - begin


def images_per_second(model: torch.nn.Module, inputs: torch.Tensor, labels: torch.Tensor, sizes: Sizes,
                      amp: bool, compile_backend: str | None = None) -> tuple[float, float]:
    """Training images/s of ``model`` with MAS (its default path), and the seconds of warm-up (compilation)."""
    device = inputs.device
    optimizer = MAS(model.parameters(), lr=1e-3, momentum=0.9)
    forward = torch.compile(model, backend=compile_backend) if compile_backend else model

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = forward(inputs)
        # [B, classes] or a packed [K, B, classes]: one mean over every member's examples.
        loss = F.cross_entropy(logits.float().flatten(0, -2), labels.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    warm = elapsed(step, sizes.warmup, device)
    return labels.numel() * sizes.steps / elapsed(step, sizes.steps, device), warm


def resnet18(device: torch.device, channels_last: bool) -> torch.nn.Module:
    model = cifar_resnet(18, (3, 32, 32), 10)
    return model.to(device, memory_format=torch.channels_last) if channels_last else model.to(device)


def random_images(device: torch.device, *shape: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator(device=device).manual_seed(0)
    images = torch.randn(*shape, 3, 32, 32, generator=generator, device=device)
    return images, torch.randint(0, 10, shape, generator=generator, device=device)


def check_throughput(sizes: Sizes, device: torch.device) -> Iterator[Row]:
    images, labels = random_images(device, sizes.batch)
    fp32, _ = images_per_second(resnet18(device, False), images, labels, sizes, amp=False)
    yield Row("ResNet18 fp32", f"{fp32:,.0f} images/s (batch {sizes.batch})", "ok")
    last = images.contiguous(memory_format=torch.channels_last)
    bf16, _ = images_per_second(resnet18(device, True), last, labels, sizes, amp=True)
    yield Row("ResNet18 bf16 + channels_last", f"{bf16:,.0f} images/s, {bf16 / fp32:.2f}x fp32", "ok")
    compiled, warm = images_per_second(resnet18(device, True), last, labels, sizes, amp=True,
                                       compile_backend=sizes.compile_backend)
    yield Row("ResNet18 bf16 + channels_last + torch.compile",
              f"{compiled:,.0f} images/s, {compiled / bf16:.2f}x bf16 eager ({sizes.compile_backend}; "
              f"compilation and warm-up {warm:.0f} s, not timed)", "ok")


# --- 4. MAS's paths against torch's fused Adam -----------------------------------------------------


MAS_PATHS = {"fused": "MAS(fused=True)", "foreach": "MAS(foreach=True)", "loop": "MAS(foreach=False)"}


def check_optimizer(sizes: Sizes, device: torch.device) -> Iterator[Row]:
    base, grads = resnet18_tensors(device)
    names = [*MAS_PATHS.values(), "Adam(fused=True)"]
    medians = {name: statistics.median(t) for name, t in
               time_steps(names, base, grads, device, sizes.opt_rounds, sizes.opt_steps).items()}
    adam = medians["Adam(fused=True)"]
    for name in names:
        yield Row(f"step: {name}", f"{medians[name] * 1e3:.2f} ms, {medians[name] / adam:.2f}x Adam(fused=True)",
                  "ok")
    fused, foreach = default_path(base)
    default = "fused" if fused else "foreach" if foreach else "loop"
    fastest = min(MAS_PATHS, key=lambda path: medians[MAS_PATHS[path]])
    gain = medians[MAS_PATHS[default]] / medians[MAS_PATHS[fastest]]
    # Below 5% the order is within a noisy machine's spread: no reason to change the default.
    if not sizes.advise:
        advice = "no advice from smoke sizes"
    elif fastest == default or gain < 1.05:
        advice = f"keep {default}"
    else:
        advice = f"change default_path (masbench/optim/functional.py) to {fastest} on {device.type}"
    yield Row(f"MAS default path on {device.type}", f"now {default}; fastest {fastest} "
              f"({gain:.2f}x faster than {default}): {advice}", "ok")


# --- 5. packed members against one model ---------------------------------------------------------


def check_packed(sizes: Sizes, device: torch.device) -> Iterator[Row]:
    check = f"packed ResNet18 ({sizes.members} members) vs unpacked"
    try:
        from masbench.engine.fuse import fuse
    except ModuleNotFoundError as error:
        if error.name != "masbench.engine.fuse":
            raise  # masbench.engine.fuse is there but something it needs is not: a failure, not a skip
        yield Row(check, "skipped: masbench.engine.fuse not available", "skipped")
        return
    amp = True  # the engine's default on CUDA, for both
    images, labels = random_images(device, sizes.batch)
    single, _ = images_per_second(resnet18(device, True), images.contiguous(memory_format=torch.channels_last),
                                  labels, sizes, amp)
    fused = fuse([cifar_resnet(18, (3, 32, 32), 10) for _ in range(sizes.members)]).to(device)
    images, labels = random_images(device, sizes.members, sizes.batch)
    packed, _ = images_per_second(fused, images, labels, sizes, amp)
    yield Row(check, f"{packed:,.0f} vs {single:,.0f} images/s: {packed / single:.2f}x (bf16, batch {sizes.batch} "
              f"per member)", "ok")


# --- the table -----------------------------------------------------------------------------------


SECTIONS = {"tests": check_tests, "resume": check_resume, "throughput": check_throughput,
            "optimizer": check_optimizer, "packed": check_packed}


def run_sections(sections, sizes: Sizes, device: torch.device, budget_s: float) -> list[Row]:
    """Every section's rows; a section that raises adds one FAIL row and the next one runs."""
    rows: list[Row] = []
    begin = time.monotonic()
    for name, section in sections.items():
        if time.monotonic() - begin > budget_s:
            rows.append(Row(name, f"skipped: the {budget_s:.0f} s budget was spent", "skipped"))
            continue
        last = time.monotonic()
        try:
            for row in section(sizes, device):
                row.seconds, last = time.monotonic() - last, time.monotonic()
                rows.append(row)
                print(f"[gpu_check] {row.check}: {row.result} ({row.status})", file=sys.stderr, flush=True)
        # On purpose broad: whatever a section meets (CUDA errors, OOM, a timeout) is its row, and the rest run.
        except Exception as error:  # noqa: BLE001
            rows.append(Row(name, f"error: {type(error).__name__}: {cell_line(error)}", "FAIL",
                            time.monotonic() - last))
            print(f"[gpu_check] {name} failed: {rows[-1].result}", file=sys.stderr, flush=True)
        finally:
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return rows


def table(rows: list[Row]) -> str:
    lines = ["| check | result | status | s |", "| --- | --- | --- | ---: |"]
    lines += [f"| {r.check} | {r.result} | {r.status} | {r.seconds:.1f} |" for r in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (the default without CUDA)")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections: {', '.join(SECTIONS)}")
    parser.add_argument("--budget-s", type=float, default=480.0, help="start no section after this many seconds")
    args = parser.parse_args()
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in SECTIONS]
    if unknown or not chosen:
        print(f"Invalid --only: {args.only!r} (valid: comma-separated names from {', '.join(SECTIONS)})",
              file=sys.stderr)
        return 2
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    smoke = args.smoke or device.type != "cuda"
    print(environment_line(device, smoke), flush=True)
    rows = run_sections({name: SECTIONS[name] for name in chosen}, SMOKE if smoke else FULL, device, args.budget_s)
    print(table(rows), flush=True)
    return 1 if any(row.status == "FAIL" for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
