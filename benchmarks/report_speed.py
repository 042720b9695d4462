"""Time of ``masbench report --table`` on a Crowded-Valley-sized store: the whole command, and its parts.

Fills a store with completed runs of ``--epochs`` epochs each (default 50,000 runs x 200 epochs = 10M epoch
rows, what ``masbench tune`` produces for a Crowded-Valley-sized study: 5,000 cells of 10 seeds, 2 models,
5 lambdas, 250 learning rates and 2 batch sizes, with validation accuracies), then times, side by side:

- the whole command, ``python -m masbench report --table --db URL`` in a subprocess (start-up, the checks
  and the printing included; stdout to /dev/null, as to a file): wall seconds, CPU seconds and peak RSS;
- in process: the report's SQL (execute and fetch: one row per run, from ``summaries``), and beside it the
  same numbers computed from every epoch row (``summaries.summary_select``, what a report read before schema
  7), then the DataFrame (``run_accuracies``), the cells (``cell_table``), the tables (``render_tables``) and
  their printing;
- the cost on the write path: seconds per epoch written through ``Store.record_epochs`` (a run's epochs one
  by one, as training writes them) on a store with the summaries' triggers and on one without them;
- at up to 1M epoch rows, the naive way (every epoch loaded as an ORM object, Python loops over the rows).

Each is measured ``--rounds`` times (default 3); the medians are printed, with the load average.

The filled SQLite store is cached under ``/tmp/masbench-report-speed/`` keyed by the sizes (a rerun skips
the filling; a store of an older schema is upgraded on first open, which builds its summaries); PostgreSQL
(``--backend postgresql``, on the server of ``MASBENCH_TEST_POSTGRES``) gets a database of its own,
``masbench_speed_<runs>x<epochs>``, kept likewise (``--refill`` drops and refills both).

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

from sqlalchemy import create_engine, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, selectinload

from masbench.report import cell_table, render_tables, run_accuracies
from masbench.spec import RunSpec
from masbench.store import Run, Store, summaries
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
    # 10M rows in one statement: without the row triggers, then every summary built at once (as an upgrade
    # builds them), instead of one recomputation per row.
    for trigger in summaries.TRIGGERS:
        connection.execute(f"DROP TRIGGER {trigger}")
    connection.executemany(f"INSERT INTO epochs ({', '.join(EPOCH_FIELDS)}) VALUES "
                           f"({', '.join('?' * len(EPOCH_FIELDS))})", epoch_rows(ids, n_epochs))
    connection.execute("COMMIT")
    connection.execute("ANALYZE")
    connection.execute("PRAGMA journal_mode=WAL")  # as masbench leaves a store it wrote
    connection.close()
    store = Store(f"sqlite:///{partial}")
    store.rebuild_summaries()
    store.close()
    partial.rename(path)  # only a store filled to the end is found by the next run
    return f"sqlite:///{path}", time.perf_counter() - start


def _fresh_database(url: str) -> None:
    """Drop and create the PostgreSQL database of ``url`` (on ``MASBENCH_TEST_POSTGRES``'s server)."""
    name = make_url(url).database
    admin = create_engine(os.environ["MASBENCH_TEST_POSTGRES"], isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()


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


def whole_command(url: str) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + system) and peak RSS (MB) of ``masbench report --table --db url``
    run alone in a new process. On a busy machine the CPU seconds are near what the wall would be on a quiet
    one (the command is one thread; with PostgreSQL the server's work is left out of them)."""
    command = [sys.executable, "-m", "masbench", "report", "--table", "--db", url]
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

    timed(times, "SQL (execute + fetch): summaries", lambda: sql(queries.run_accuracy_query()))
    timed(times, "  the same numbers from every epoch", lambda: sql(summaries.summary_select()))
    runs = timed(times, "run_accuracies (SQL + frame)", lambda: run_accuracies(store, metric="best"))
    cells = timed(times, "cell_table (pandas)", lambda: cell_table(runs))
    rendered = timed(times, "render_tables", lambda: render_tables(cells, "best", "rich"))

    def printed():
        from rich.console import Console

        with open(os.devnull, "w") as devnull:
            console = Console(file=devnull, soft_wrap=True, highlight=False, width=200)
            for table in rendered.rich:
                console.print(table)

    timed(times, "  printed (to a file)", printed)


def write_cost(url: str, times: dict, n_runs: int = 20, n_epochs: int = 200) -> None:
    """Seconds per epoch that ``Store.record_epochs`` takes, one epoch per call as training writes them, on a
    fresh store at ``url``, with the summaries' triggers and then without them (dropped)."""
    from masbench.sweep import run_values

    for label, triggers in (("write an epoch (with the triggers)", True), ("  without them", False)):
        store = Store(url)
        with store.engine.begin() as connection:
            connection.execute(text("DELETE FROM runs"))
            for trigger in summaries.TRIGGERS:
                if not triggers:
                    on = "" if store.is_sqlite else " ON epochs"
                    connection.execute(text(f"DROP TRIGGER IF EXISTS {trigger}{on}"))
        rows = run_rows(n_runs, n_epochs)
        with store.session() as s:
            s.execute(insert(Run), [dict(row, status="running", worker="w") for row in rows])
            ids = list(s.scalars(select(Run.id).order_by(Run.id)))
        epochs = list(epoch_rows(ids, n_epochs))
        fields = EPOCH_FIELDS[1:]
        start, cpu = time.perf_counter(), time.process_time()
        for row in epochs:
            store.record_epochs([(row[0], dict(zip(fields, row[1:])))], "w")
        n = len(epochs)
        times[label].append(((time.perf_counter() - start) / n, (time.process_time() - cpu) / n))
        store.close()


def measure(backend: str, url: str, write_url: str, args) -> None:
    times: dict[str, list[tuple[float, float]]] = defaultdict(list)
    rss: dict[str, list[float]] = defaultdict(list)
    whole = "whole command: report --table"
    store = Store(url, read_only=True)
    loads = []
    for _ in range(args.rounds):
        loads.append(os.getloadavg()[0])
        wall, cpu, peak = whole_command(url)
        times[whole].append((wall, cpu))
        rss[whole].append(peak)
        parts(store, times)
        if args.runs * args.epochs <= 1_000_000:
            timed(times, "naive ORM loops (in process)", lambda: naive_report(store))
        write_cost(write_url, times)
    store.close()
    print(f"\n{backend}: {args.runs:,} runs x {args.epochs} epochs = {args.runs * args.epochs:,} epoch rows; "
          f"{args.rounds} rounds; load average at each round's start: {', '.join(f'{v:.2f}' for v in loads)} "
          f"({os.cpu_count()} CPUs). Medians; CPU: user + system seconds of this process or the command's")
    for name, values in times.items():
        walls, cpus = zip(*values)
        unit, scale = ("ms", 1000) if name.startswith(("write", "  without")) else ("s", 1)
        peak = f"   peak RSS {statistics.median(rss[name]):4.0f} MB" if name in rss else ""
        print(f"{name:38s} wall {statistics.median(walls) * scale:6.2f} {unit:2s} CPU "
              f"{statistics.median(cpus) * scale:6.2f} {unit:2s} (walls: "
              f"{', '.join(f'{v * scale:.2f}' for v in walls)}){peak}")
    wall, cpu = (statistics.median(v) for v in zip(*times[whole]))
    print(f"the whole command, with the checks: wall {wall:.2f} s, CPU {cpu:.2f} s; the target is 4 s")


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
        with tempfile.TemporaryDirectory() as folder:
            write_url = (f"sqlite:///{folder}/write.db" if backend == "sqlite"
                         else make_url(url).set(database=f"{make_url(url).database}_write")
                         .render_as_string(hide_password=False))
            if backend == "postgresql":
                _fresh_database(write_url)
            measure(backend, url, write_url, args)


if __name__ == "__main__":
    main()
