"""Time of ``masbench report --table`` on a store of 100,000 epoch rows, beyond start-up.

Fills an SQLite store with 1,000 completed runs of 100 epochs (a paper-sized
study is about 200 runs of 200 epochs), then times, side by side, masbench's
report (one SQL aggregate per run, pandas for the rest, grouped by cell, then the
table rendered)
and the same table computed the naive way (every epoch loaded as an ORM object,
Python loops over the rows). Prints the medians and the ratio.

    python benchmarks/report_speed.py [--runs 1000] [--epochs 100] [--rounds 5]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from sqlalchemy import insert, select
from sqlalchemy.orm import Session, selectinload

from masbench.spec import RunSpec
from masbench.report import cell_table, render_tables, run_accuracies
from masbench.store import Epoch, Run, Store
from masbench.store.store import utcnow
from masbench.sweep import run_values


def fill(store: Store, n_runs: int, n_epochs: int) -> None:
    rng = random.Random(0)
    lambdas = [0.3, 0.4, 0.5, 0.6, 0.7]
    runs = []
    for i in range(n_runs):
        lam = lambdas[i % 5]
        spec = RunSpec(benchmark="speed", dataset="cifar10", model=["resnet18", "resnet34"][i // 5 % 2],
                       optimizer="mas", lambda_adam=lam, lambda_sgd=round(1 - lam, 10), lr=0.001, epochs=n_epochs,
                       seed=i // 10)
        runs.append(dict(run_values(spec), status="completed", created_at=utcnow(), attempts=1))
    with store.session() as s:
        s.execute(insert(Run), runs)
        ids = list(s.scalars(select(Run.id).order_by(Run.id)))
    rows = [dict(run_id=run_id, epoch=e, train_loss=1.0, train_acc=0.5, test_loss=1.0, test_acc=rng.random(), lr=0.001,
                 lambda_adam=0.5, lambda_sgd=0.5, seconds=1.0, samples_per_second=1000.0)
            for run_id in ids for e in range(1, n_epochs + 1)]
    with store.session() as s:
        s.execute(insert(Epoch), rows)


def masbench_report(store: Store) -> str:
    cells = cell_table(run_accuracies(store, metric="best"))
    rendered = render_tables(cells, "best", "markdown")
    return rendered.text


def naive_report(store: Store) -> str:
    """The same numbers with ORM objects and Python loops: what 'not from SQL plus pandas' costs."""
    with Session(store.engine) as s:
        runs = s.scalars(select(Run).options(selectinload(Run.epoch_rows))).all()
        groups = defaultdict(list)
        for run in runs:
            best = max(e.test_acc for e in run.epoch_rows)
            groups[(run.dataset, run.model, run.name, run.config_key)].append(100 * best)
        lines = []
        for key, values in sorted(groups.items()):
            std = statistics.stdev(values) if len(values) > 1 else float("nan")
            lines.append(f"{key} {statistics.mean(values):.2f} {max(values):.2f} {std:.2f} {len(values)}")
        return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    path = Path(tempfile.mkdtemp(prefix="masbench-report-speed-")) / "store.db"
    store = Store(f"sqlite:///{path}")
    start = time.perf_counter()
    fill(store, args.runs, args.epochs)
    filled = time.perf_counter() - start
    masbench_report(store)  # warm the imports and the page cache for both
    naive_report(store)

    times = {"masbench report (SQL + pandas)": [], "naive ORM loops": []}
    for _ in range(args.rounds):
        for name, fn in (("masbench report (SQL + pandas)", masbench_report), ("naive ORM loops", naive_report)):
            start = time.perf_counter()
            fn(store)
            times[name].append(time.perf_counter() - start)

    n_rows = args.runs * args.epochs
    print(f"store: {args.runs:,} runs x {args.epochs} epochs = {n_rows:,} epoch rows in SQLite (filled in {filled:.1f}s); "
          f"{args.rounds} rounds")
    for name, values in times.items():
        print(f"{name:32s} {statistics.median(values) * 1e3:9.1f} ms   "
              f"(rounds: {', '.join(f'{v * 1e3:.0f}' for v in values)})")
    ours, naive = (statistics.median(v) for v in times.values())
    print(f"naive / masbench: {naive / ours:.1f}x; masbench's report {'is' if ours < 1.0 else 'is NOT'} under a second")


if __name__ == "__main__":
    main()
