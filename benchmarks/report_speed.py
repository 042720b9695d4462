"""Time of ``masbench report --table`` on a Crowded-Valley-sized store: the whole command, and its parts.

Measured 2026-12-07 at 50,000 runs x 200 epochs on SQLite, on 2 CPUs at load average 13 to 17 (so in CPU
seconds, which a quiet machine's wall would be near): the whole command took 17.9 s of CPU (550 MB) before
and 11.3 s after this change (550 MB); its SQL 8.2 s before, 2.9 s after. The table is the same, byte for
byte (``--format csv``, metrics best and val). Left: printing 5,000 cells with rich (3.2 s), parsing 50,000
``config`` JSON texts (1.4 s), the one scan's aggregates (2.1 s); 8 problem counters as ``sum(case ...)`` in
the scan add about 5 s on SQLite (a partial index over the bad rows finds them in microseconds instead).

Fills a store with completed runs of ``--epochs`` epochs each (default 50,000 runs x 200 epochs = 10M epoch
rows, what ``masbench tune`` produces for a Crowded-Valley-sized study: 5,000 cells of 10 seeds, 2 models,
5 lambdas, 250 learning rates and 2 batch sizes, with validation accuracies), then times, side by side:

- the whole command, ``python -m masbench report --table --db URL`` in a subprocess (start-up included):
  wall seconds and the child's peak RSS (``os.wait4``);
- the same command with a stand-in for the row checks: 8 problem counters added to the one scan over
  epochs (accuracies in [0, 1] for 3 columns, finite losses for 2, seconds >= 0, epoch within the run's
  epochs, a completed run with no epochs), as ``masbench.store.checks`` adds them;
- in process: the SQL alone (execute and fetch), the DataFrame (``run_accuracies``), the cells
  (``cell_table``) and the render (``render_tables``);
- at up to 1M epoch rows, the naive way (every epoch loaded as an ORM object, Python loops over the rows).

Each is measured ``--rounds`` times (default 3); the medians are printed, with the load average.

The filled SQLite store is cached under ``/tmp/masbench-report-speed/`` keyed by the sizes (a rerun skips
the filling); PostgreSQL (``--backend postgresql``, on the server of ``MASBENCH_TEST_POSTGRES``) gets a
database of its own, ``masbench_speed_<runs>x<epochs>``, kept likewise (``--refill`` drops and refills both).

    python benchmarks/report_speed.py [--runs 50000] [--epochs 200] [--rounds 3] [--backend sqlite|postgresql|both]
"""

from __future__ import annotations

import argparse
import io
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from sqlalchemy import create_engine, func, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, selectinload

from masbench.report import cell_table, render_tables, run_accuracies
from masbench.spec import RunSpec
from masbench.store import Epoch, Run, Store
from masbench.store.store import utcnow
from masbench.sweep import run_values

CACHE = Path(tempfile.gettempdir()) / "masbench-report-speed"
EPOCH_FIELDS = ("run_id", "epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "lambda_adam",
                "lambda_sgd", "seconds", "samples_per_second", "val_loss", "val_acc")
LAMBDAS = (0.3, 0.4, 0.5, 0.6, 0.7)
SEEDS = 10  # per cell


def run_rows(n_runs: int, n_epochs: int) -> list[dict]:
    """``n_runs`` completed runs: cells of 10 seeds over models, lambdas, learning rates and batch sizes."""
    rows, specs = [], {}
    for i in range(n_runs):
        cell, seed = divmod(i, SEEDS)
        lam = LAMBDAS[cell % 5]
        model = ("resnet18", "resnet34")[cell // 5 % 2]
        batch_size = (64, 128)[cell // 10 % 2]
        lr = round(10 ** (-4 + 3 * (cell // 20 % 250) / 250), 6)
        key = (model, lam, lr, batch_size)
        base = specs.get(key)
        if base is None:
            base = specs[key] = RunSpec(benchmark="speed", dataset="cifar10", model=model, optimizer="mas",
                                        lambda_adam=lam, lambda_sgd=round(1 - lam, 10), lr=lr, epochs=n_epochs,
                                        batch_size=batch_size, seed=0)
        spec = base.model_copy(update={"seed": seed})
        rows.append(dict(run_values(spec), status="completed", created_at=utcnow(), attempts=1))
    return rows


def epoch_rows(run_ids, n_epochs: int):
    """Each run's epochs, in order, as tuples of ``EPOCH_FIELDS``."""
    rng = random.Random(0)
    for run_id in run_ids:
        for e in range(1, n_epochs + 1):
            test_acc, val_acc = rng.random(), rng.random()
            yield (run_id, e, 1.0, 0.5, 1.0, test_acc, 0.001, 0.5, 0.5, 1.0, 1000.0, 1.0, val_acc)


def fill_runs(store: Store, n_runs: int, n_epochs: int) -> list[int]:
    with store.session() as s:
        s.execute(insert(Run), run_rows(n_runs, n_epochs))
        return list(s.scalars(select(Run.id).order_by(Run.id)))


def sqlite_store(n_runs: int, n_epochs: int, refill: bool) -> tuple[str, float | None]:
    """The cached SQLite store of these sizes (filled first when absent): its URL and the filling's seconds."""
    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"store-{n_runs}x{n_epochs}.db"
    if path.exists() and not refill:
        return f"sqlite:///{path}", None
    start = time.perf_counter()
    partial = path.with_suffix(".filling")
    for stale in (path, partial, *(Path(f"{partial}{s}") for s in ("-wal", "-shm", "-journal"))):
        stale.unlink(missing_ok=True)
    store = Store(f"sqlite:///{partial}")
    ids = fill_runs(store, n_runs, n_epochs)
    store.close()
    import sqlite3

    connection = sqlite3.connect(partial, isolation_level=None)
    for pragma in ("journal_mode=DELETE", "synchronous=OFF", "cache_size=-500000", "temp_store=MEMORY"):
        connection.execute(f"PRAGMA {pragma}")
    connection.execute("BEGIN")
    connection.executemany(f"INSERT INTO epochs ({', '.join(EPOCH_FIELDS)}) VALUES "
                           f"({', '.join('?' * len(EPOCH_FIELDS))})", epoch_rows(ids, n_epochs))
    connection.execute("COMMIT")
    connection.execute("ANALYZE")
    connection.execute("PRAGMA journal_mode=WAL")  # as masbench leaves a store it wrote
    connection.close()
    partial.rename(path)  # only a store filled to the end is found by the next run
    return f"sqlite:///{path}", time.perf_counter() - start


def postgres_store(n_runs: int, n_epochs: int, refill: bool) -> tuple[str, float | None]:
    """A database of its own for these sizes on ``MASBENCH_TEST_POSTGRES``'s server, filled with COPY when
    absent or incomplete: its URL and the filling's seconds."""
    base = os.environ.get("MASBENCH_TEST_POSTGRES")
    if not base:
        sys.exit("--backend postgresql needs MASBENCH_TEST_POSTGRES (a postgresql+psycopg:// URL)")
    name = f"masbench_speed_{n_runs}x{n_epochs}"
    url = make_url(base).set(database=name).render_as_string(hide_password=False)
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        exists = connection.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first()
    if exists and not refill:
        probe = create_engine(url)
        with probe.connect() as connection:
            try:
                complete = connection.execute(text("SELECT value FROM meta WHERE key = 'speed_filled'")).scalar()
            except Exception:  # noqa: BLE001 - a half-made database of an interrupted fill: refill it
                complete = None
        probe.dispose()
        if complete == "yes":
            admin.dispose()
            return url, None
    start = time.perf_counter()
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    store = Store(url)
    ids = fill_runs(store, n_runs, n_epochs)
    raw = store.engine.raw_connection()
    try:
        with raw.driver_connection.cursor() as cursor:
            with cursor.copy(f"COPY epochs ({', '.join(EPOCH_FIELDS)}) FROM STDIN") as copy:
                chunk = io.StringIO()
                for i, row in enumerate(epoch_rows(ids, n_epochs), 1):
                    chunk.write("\t".join(map(repr, row)) + "\n")
                    if i % 200_000 == 0:
                        copy.write(chunk.getvalue())
                        chunk = io.StringIO()
                copy.write(chunk.getvalue())
            cursor.execute("INSERT INTO meta (key, value) VALUES ('speed_filled', 'yes')")
        raw.driver_connection.commit()
        with raw.driver_connection.cursor() as cursor:
            raw.driver_connection.autocommit = True
            cursor.execute("VACUUM ANALYZE")
    finally:
        raw.close()
    store.close()
    return url, time.perf_counter() - start


# The stand-in for the row checks: ~8 per-run problem counters, sum(case when <bad> then 1 else 0), in the one
# scan over epochs. Source text, so that the whole command runs it without importing this script (and torch).
STAND_IN = """
from sqlalchemy import case, func, select
from masbench.store import Epoch, Run, queries


def stand_in_counters():
    def bad(condition):
        return func.sum(case((condition, 1), else_=0))

    inf = float("inf")
    return [*(bad((c < 0) | (c > 1)).label(f"bad_{c.key}") for c in (Epoch.train_acc, Epoch.test_acc, Epoch.val_acc)),
            *(bad(c.in_([inf, -inf])).label(f"bad_{c.key}") for c in (Epoch.train_loss, Epoch.test_loss)),
            bad(Epoch.seconds < 0).label("bad_seconds"),
            bad(Epoch.epoch < 1).label("bad_epoch"),  # above the run's epochs: max(epoch) against runs.epochs
            bad(Epoch.test_acc.is_(None)).label("no_test_acc")]


aggregates = queries.epoch_aggregates
queries.epoch_aggregates = lambda *more: aggregates(*stand_in_counters(), *more)
"""

WITH_COUNTERS = STAND_IN + """
import sys
from masbench.cli import main

sys.argv = ["masbench", *sys.argv[1:]]
main()
"""


def whole_command(url: str, counters: bool) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + system) and peak RSS (MB) of ``masbench report --table --db url``
    run alone in a new process. On a busy machine the CPU seconds are near what the wall would be on a quiet
    one (the command is one thread; with PostgreSQL the server's work is left out of them)."""
    args = ["report", "--table", "--db", url]
    if counters:
        command = [sys.executable, "-c", WITH_COUNTERS, *args]
    else:
        command = [sys.executable, "-m", "masbench", *args]
    # Through /usr/bin/time: the RSS that wait4 reports for a child of this (large) process counts the pages
    # it shared with it before exec; a child of /usr/bin/time is measured alone.
    with tempfile.TemporaryDirectory() as cwd:  # cwd: no ./benchmarks.yaml of this folder's
        usage = Path(cwd) / "usage"
        start = time.perf_counter()
        done = subprocess.run(["/usr/bin/time", "-o", str(usage), "-f", "%U %S %M", *command], cwd=cwd,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "COLUMNS": "160"})
        wall = time.perf_counter() - start
        if done.returncode != 0:
            sys.exit(f"masbench report failed ({done.returncode}): {done.stderr.strip()}")
        user, system, peak_kb = usage.read_text().split()[-3:]
    return wall, float(user) + float(system), float(peak_kb) / 1024


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


def timed(times: dict, name: str, fn):
    """Run ``fn`` once, adding its wall and CPU seconds to ``times[name]``; its result."""
    start, cpu = time.perf_counter(), time.process_time()
    out = fn()
    times[name].append((time.perf_counter() - start, time.process_time() - cpu))
    return out


def parts(store: Store, times: dict) -> None:
    """One round of the in-process parts, each timed alone."""
    from masbench.store import queries

    def sql(query):
        with store.engine.connect() as connection:
            return connection.execute(query).all()

    timed(times, "SQL (execute + fetch)", lambda: sql(queries.run_accuracy_query()))
    scope: dict = {}
    exec(STAND_IN, scope)  # noqa: S102 - this script's own text: the stand-in counters
    try:
        timed(times, "  the same, with the stand-in counters", lambda: sql(queries.run_accuracy_query()))
    finally:
        queries.epoch_aggregates = scope["aggregates"]
    runs = timed(times, "run_accuracies (SQL + frame)", lambda: run_accuracies(store, metric="best"))
    cells = timed(times, "cell_table (pandas)", lambda: cell_table(runs))
    rendered = timed(times, "render_tables (rich tables)", lambda: render_tables(cells, "best", "rich"))

    def printed():
        from rich.console import Console

        with open(os.devnull, "w") as devnull:
            console = Console(file=devnull, soft_wrap=True, highlight=False, width=200)
            for table in rendered.rich:
                console.print(table)

    timed(times, "  printed (rich console)", printed)


def measure(backend: str, url: str, args) -> None:
    times: dict[str, list[tuple[float, float]]] = defaultdict(list)
    rss: dict[str, list[float]] = defaultdict(list)
    whole = "whole command: report --table"
    checked = "  with 8 stand-in counters"
    store = Store(url, read_only=True)
    loads = []
    for _ in range(args.rounds):
        loads.append(os.getloadavg()[0])
        for name, counters in ((whole, False), (checked, True)):
            wall, cpu, peak = whole_command(url, counters)
            times[name].append((wall, cpu))
            rss[name].append(peak)
        parts(store, times)
        if args.runs * args.epochs <= 1_000_000:
            timed(times, "naive ORM loops (in process)", lambda: naive_report(store))
    store.close()
    print(f"\n{backend}: {args.runs:,} runs x {args.epochs} epochs = {args.runs * args.epochs:,} epoch rows; "
          f"{args.rounds} rounds; load average at each round's start: {', '.join(f'{v:.2f}' for v in loads)} "
          f"({os.cpu_count()} CPUs). Medians; CPU: user + system seconds of this process or the command's")
    for name, values in times.items():
        walls, cpus = zip(*values)
        peak = f"   peak RSS {statistics.median(rss[name]):4.0f} MB" if name in rss else ""
        print(f"{name:38s} wall {statistics.median(walls):6.2f} s  CPU {statistics.median(cpus):6.2f} s   (walls: "
              f"{', '.join(f'{v:.2f}' for v in walls)}){peak}")
    wall, cpu = (statistics.median(v) for v in zip(*times[checked]))
    print(f"with the checks: wall {wall:.2f} s, CPU {cpu:.2f} s; the target is 4 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=50_000)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="sqlite")
    parser.add_argument("--refill", action="store_true", help="Fill the store again even when one is kept.")
    args = parser.parse_args()
    if args.runs < 1 or args.epochs < 1 or args.rounds < 1:
        parser.error("--runs, --epochs and --rounds must be at least 1")
    backends = ("sqlite", "postgresql") if args.backend == "both" else (args.backend,)
    for backend in backends:
        fill = sqlite_store if backend == "sqlite" else postgres_store
        url, filled = fill(args.runs, args.epochs, args.refill)
        start = time.perf_counter()
        Store(url, writable=False, create=False).close()  # a kept store of an older schema is upgraded here
        print(f"{backend} store {make_url(url).render_as_string(hide_password=True)}: "
              + (f"filled in {filled:.0f} s" if filled is not None else "kept from an earlier run")
              + f"; opened (and upgraded if older) in {time.perf_counter() - start:.1f} s", flush=True)
        measure(backend, url, args)


if __name__ == "__main__":
    main()
