"""Does the regression gate have teeth? A planted regression, per grid of a benchmark, against its baseline.

Runs the benchmark twice into temporary stores: honestly, and with MAS's step
weakened (each update scaled by ``--scale``, through a patch of ``MAS.step`` in
the worker processes), then gates both against the committed baseline. Prints,
per grid (data set and model): the honest rerun's verdict, the planted run's
verdict (which cells it names: it must name only MAS cells, all of them), and
the gate's allowed drop in points (max over the grid's cells) for each run,
plus the allowed drop Welch's test would give a rerun whose seeds do not pair
(the baseline's std on both sides: the cross-platform worst case).

    python benchmarks/gate_check.py [--benchmark nightly] [--benchmarks FILE] [--scale 0.2] [--workers 2] [--seeds N]
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def weaken_mas(scale: float) -> None:
    """Patch ``MAS.step`` in this process: every parameter moves ``scale`` times as far as MAS says."""
    import torch

    from masbench.optim.mas import MAS

    original = MAS.step

    def weakened(self, closure=None):
        params = [p for group in self.param_groups for p in group["params"]]
        before = [p.detach().clone() for p in params]
        loss = original(self, closure)
        with torch.no_grad():
            for p, b in zip(params, before):
                p.copy_(b + scale * (p - b))
        return loss

    MAS.step = weakened


def _planted_worker(cells, url: str, settings, started, index: int, scale: float) -> None:
    import torch

    from masbench.store import Store
    from masbench.sweep import work_through

    torch.set_num_threads(1)
    weaken_mas(scale)
    work_through(cells, Store(url), settings, started=started, offset=index * len(cells) // settings.workers)


def sweep(cells, url: str, workers: int, checkpoints: Path, scale: float | None) -> float:
    """Run ``cells`` into the store at ``url``: honestly (``scale`` None) or with MAS weakened; seconds taken."""
    from masbench.engine import ExecOptions
    from masbench.store import Store
    from masbench.store.store import utcnow
    from masbench.sweep import SweepSettings, preflight, register, run_sweep

    settings = SweepSettings(options=ExecOptions(device="cpu", checkpoint_dir=checkpoints), workers=workers)
    start = time.perf_counter()
    store = Store(url)
    if scale is None:
        run_sweep(cells, store, settings)
    else:
        preflight(cells, settings.options)
        register(cells, store)
        context = multiprocessing.get_context("spawn")
        started = utcnow()
        processes = [context.Process(target=_planted_worker, args=(cells, url, settings, started, i, scale))
                     for i in range(workers)]
        for process in processes:
            process.start()
        for process in processes:
            process.join()
    return time.perf_counter() - start


def gate(url: str, baseline: Path, benchmark: str):
    from masbench.report import cell_table, read_baseline, regression_gate, run_accuracies
    from masbench.store import Store

    metric = read_baseline(baseline).metric
    cells = cell_table(run_accuracies(Store(url, writable=False, create=False), metric=metric, benchmark=benchmark))
    return regression_gate(cells, baseline, metric=metric, benchmark=benchmark), cells


def welch_tolerance(std: float, n: int, alpha: float, floor: float) -> float:
    """The allowed drop of Welch's test when both sides have n seeds and the baseline's std."""
    from scipy import stats

    if n < 2 or not math.isfinite(std):
        return floor
    return max(floor, float(stats.t.ppf(1 - alpha, 2 * n - 2)) * std * math.sqrt(2 / n))


def table(baseline: Path, honest, planted, mas_keys: set[str]) -> list[str]:
    from masbench.report import ALPHA, FLOOR, read_baseline

    base = read_baseline(baseline).cells
    lines = ["| grid | cells | honest rerun | allowed drop, honest (pts) | planted regression | "
             "allowed drop, planted (pts) | Welch, unpaired (pts) |", "| --- | ---: | --- | ---: | --- | ---: | ---: |"]
    for (dataset, model), rows in base.groupby(["dataset", "model"], sort=False):
        keys = set(rows["config_key"])
        h = [r for r in honest.rows if r.config_key in keys]
        p = [r for r in planted.rows if r.config_key in keys]
        named = {r.config_key for r in p if r.regressed}
        mas = keys & mas_keys
        verdict = ("FAILS, names only MAS cells (all of them)" if named == mas and mas else
                   f"names {len(named & mas)}/{len(mas)} MAS and {len(named - mas)} other cells")
        welch = max(welch_tolerance(s, n, ALPHA, FLOOR) for s, n in zip(rows["std_acc"], rows["n"]))
        lines.append(f"| {dataset}/{model} | {len(keys)} | "
                     f"{'passes' if not any(r.regressed for r in h) else 'FAILS'} | "
                     f"{max(r.allowed for r in h):.2f} | {verdict} | {max(r.allowed for r in p):.2f} | {welch:.2f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmark", default="nightly")
    parser.add_argument("--benchmarks", type=Path, default=REPO / "benchmarks.yaml",
                        help="the benchmarks file (default: the repository's; a scratch one to try settings)")
    parser.add_argument("--baseline", type=Path, help="default: benchmarks/baselines/BENCHMARK.csv")
    parser.add_argument("--scale", type=float, default=0.2, help="MAS's updates are scaled by this in the planted run")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seeds", type=int, help="override the benchmark's seed count (as the baseline was made)")
    parser.add_argument("--honest-db", help="an honest store of the benchmark already made (skips the honest rerun; "
                                            "e.g. the one the baseline came from)")
    args = parser.parse_args()

    from masbench.grid.benchmarks import plan_sweep

    baseline = args.baseline or REPO / "benchmarks" / "baselines" / f"{args.benchmark}.csv"
    _, cells = plan_sweep(benchmark=args.benchmark, benchmarks_path=args.benchmarks,
                          overrides={"seeds": args.seeds})
    folder = Path(tempfile.mkdtemp(prefix="masbench-gate-check-"))
    urls = {kind: f"sqlite:///{folder / kind}.db" for kind in ("honest", "planted")}
    runs = (("honest", None), ("planted", args.scale))
    if args.honest_db:
        urls["honest"], runs = args.honest_db, runs[1:]
    for kind, scale in runs:
        seconds = sweep(cells, urls[kind], args.workers, folder / f"checkpoints-{kind}", scale)
        print(f"{kind} sweep of {len(cells)} cells: {seconds:.0f} s", flush=True)
    honest, _ = gate(urls["honest"], baseline, args.benchmark)
    planted, planted_cells = gate(urls["planted"], baseline, args.benchmark)
    mas_keys = set(planted_cells.loc[planted_cells["optimizer"] == "mas", "config_key"])
    print(f"\nbenchmark {args.benchmark}, baseline {baseline.relative_to(REPO) if baseline.is_relative_to(REPO) else baseline}, "
          f"MAS updates scaled by {args.scale:g} in the planted run\n")
    print("\n".join(table(baseline, honest, planted, mas_keys)))
    for line in planted.regressions:
        print(f"  planted: {line}")
    for line in honest.regressions:
        print(f"  honest:  {line}")


if __name__ == "__main__":
    main()
