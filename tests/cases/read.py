"""Reading runs no code; files (issue 21, items 1 and 6).

A results folder (the command's working directory) holds a ``benchmarks.yaml`` that names ``evil:Opt``, with an
``evil.py`` beside it that writes ``MARKER`` when imported: ``report`` (every form), ``plot --kind profile``,
``compare`` and ``show`` read its targets and import nothing. An unimportable path, a file that is not YAML or a
target that is no number neither run code nor stop a report: its targets are left out, with one warning line.
Reading commands create no database file, whatever the URL form; a command refused before training leaves no new
store (and adds no pending run to an old one); every path option tells "does not exist" from "is not a regular
file".
"""

from __future__ import annotations

import os
import sqlite3

from cases import Case, Env

EVIL = 'open("MARKER", "w").write("imported")\nimport torch\n\n\nclass Opt(torch.optim.SGD):\n    pass\n'


def _benchmarks(baselines: str, target: str = "80") -> callable:
    """A ``benchmarks.yaml`` for benchmark ``b`` (the filled store's) with ``baselines`` and ``target``, and evil.py."""

    def setup(env: Env) -> None:
        (env.dir / "evil.py").write_text(EVIL)
        (env.dir / "benchmarks.yaml").write_text(
            f"benchmarks:\n  b:\n    dataset: digits\n    models: [mlp, cnn]\n    baselines: [{baselines}]\n"
            f"    target: {target}\n")
    return setup


def _write(name: str, text: str) -> callable:
    def setup(env: Env) -> None:
        (env.dir / "evil.py").write_text(EVIL)
        (env.dir / name).write_text(text)
    return setup


def _fifo(name: str) -> callable:
    def setup(env: Env) -> None:
        os.mkfifo(env.dir / name)
    return setup


def _write_only(name: str) -> callable:
    def setup(env: Env) -> None:
        (env.dir / name).write_text("a file\n")
    return setup


def _a_wal_store(env: Env) -> None:
    """The filled store of the table's others, made as a run makes it (a WAL database), at ``env.dir/store.db``."""
    from report_fixtures import fill

    store = env.store()
    fill(store)
    store.close()
    connection = sqlite3.connect(env.dir / "store.db")
    assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    connection.close()
    assert sorted(p.name for p in env.dir.iterdir()) == ["store.db"]


def _nothing_imported(env: Env) -> None:
    assert not (env.dir / "MARKER").exists(), "evil.py was imported"


def _no_file(name: str) -> callable:
    def after(env: Env) -> None:
        assert not (env.dir / name).exists(), f"{name} was created"
        _nothing_imported(env)
    return after


def _besides_the_store(*names: str) -> callable:
    """After the command the folder holds ``names`` and the store's file (on SQLite), nothing else."""

    def after(env: Env) -> None:
        store = ("store.db",) if env.db.startswith("sqlite") else ()
        assert sorted(p.name for p in env.dir.iterdir()) == sorted((*names, *store))
    return after


def _only(*names: str) -> callable:
    """After the command the folder holds ``names`` and nothing else (no store, no checkpoints, no data)."""

    def after(env: Env) -> None:
        assert sorted(p.name for p in env.dir.iterdir()) == sorted(names), sorted(p.name for p in env.dir.iterdir())
    return after


# adam on mlp: its 3 seeds reach 80% at epochs 1, 1 and 2 (1 s an epoch): reached 3, median 1 epoch and 1.0 s.
ADAM_MLP_AT_80 = "b,digits,mlp,adam[lr=0.01]"
TARGET_ROW = ",80.0,3,1.0,1.0"
URI = "sqlite:///file:{dir}/new.db?mode=rwc&uri=true"

CASES = [
    # --- item 1: reading commands import nothing, and a broken benchmarks file stops none of them -------------
    Case("read-report-csv-takes-targets-without-importing-the-baselines",
         ("report", "--format", "csv", "--db", "{db}"), setup=_benchmarks("evil:Opt, nowhere.mod:Thing"),
         output=(TARGET_ROW,), after=_nothing_imported),
    Case("read-report-table-imports-nothing", ("report", "--table", "--db", "{db}"),
         setup=_benchmarks("evil:Opt"), output=("3/3",), after=_nothing_imported),
    Case("read-report-html-imports-nothing", ("report", "--format", "html", "--output", "{dir}/r.html", "--db", "{db}"),
         setup=_benchmarks("evil:Opt"), after=_nothing_imported),
    Case("read-plot-profile-imports-nothing", ("plot", "--kind", "profile", "--output", "{dir}/p.png", "--db", "{db}"),
         setup=_benchmarks("evil:Opt"), output=("plot written to",), after=_nothing_imported),
    Case("read-compare-an-import-path-imports-nothing", ("compare", "evil:Opt", "adam", "--db", "{db}"),
         setup=_benchmarks("evil:Opt"), error="no data set and model in the store has all of", after=_nothing_imported),
    Case("read-show-imports-nothing", ("show", "1", "--db", "{db}"), setup=_benchmarks("evil:Opt"),
         output=("config (canonical)",), after=_nothing_imported),
    Case("read-report-a-benchmarks-file-that-is-not-yaml-warns-once", ("report", "--format", "csv", "--db", "{db}"),
         setup=_write("benchmarks.yaml", "benchmarks: {b: [\n"), output=(ADAM_MLP_AT_80,), absent=("median_seconds",),
         stderr=("warning: benchmarks.yaml: YAML syntax error at line 2",), after=_nothing_imported),
    Case("read-report-a-target-that-is-no-number-warns", ("report", "--format", "csv", "--db", "{db}"),
         setup=_benchmarks("evil:Opt", "high"), absent=("median_seconds",),
         stderr=("benchmark 'b': target 'high' is not a test accuracy in percent",), after=_nothing_imported),
    Case("read-report-two-targets-for-one-cell-warn", ("report", "--format", "csv", "--db", "{db}"),
         setup=_write("benchmarks.yaml", "benchmarks:\n  b:\n    models: [mlp]\n    grids:\n      - {target: 80}\n"
                                         "      - {target: 90}\n"),
         absent=("median_seconds",), stderr=("gives digits/mlp two targets (80 and 90)",)),
    Case("read-python-m-masbench-does-not-import-from-the-working-directory",
         ("run", "--optimizer", "evil:Opt", "--dataset", "digits", "--epochs", "1", "--db", "sqlite:///new.db"),
         setup=_write("benchmarks.yaml", ""), stores=False, subprocess=True,
         error="Invalid optimizer 'evil:Opt': no module of that path can be imported (user code is imported from "
               "installed packages and PYTHONPATH, never from the working directory", after=_no_file("new.db")),
    # --- item 6: reading commands create no database file, whatever the URL --------------------------------
    Case("read-report-an-sqlite-uri-with-mode-rwc-creates-nothing", ("report", "--db", URI), stores=False,
         error="no database at", after=_no_file("new.db")),
    Case("read-compare-an-sqlite-uri-with-mode-rwc-creates-nothing", ("compare", "adam", "sgd", "--db", URI),
         stores=False, error="no database at", after=_no_file("new.db")),
    Case("read-show-an-sqlite-uri-creates-nothing", ("show", "1", "--db", "sqlite:///file:new.db?uri=true"),
         stores=False, error="no database at", after=_no_file("new.db")),
    Case("read-plot-a-relative-path-creates-nothing", ("plot", "--output", "p.png", "--db", "sqlite:///new.db"),
         stores=False, error="no database at", after=_only()),
    Case("read-report-a-missing-folder-is-said-and-not-made", ("report", "--db", "sqlite:///{dir}/no/new.db"),
         stores=False, error="folder", after=_only()),
    Case("read-report-a-uri-in-a-missing-folder-is-said", ("report", "--db", "sqlite:///file:no/new.db?uri=true"),
         stores=False, error="/no does not exist", after=_only()),
    # A reading command leaves the folder of an SQLite store (a WAL database) as it found it: no -wal or -shm files
    # left beside it, whether the URL is a path or an SQLite URI.
    *[Case(f"read-{args[0]}-{name}-leaves-no-log-files", (*args, "--db", url), stores=False, setup=_a_wal_store,
           output=(out,), after=_only("store.db"))
      for name, url in (("an-sqlite-uri-mode-ro", "sqlite:///file:{dir}/store.db?mode=ro&uri=true"),
                        ("an-sqlite-uri", "sqlite:///file:store.db?uri=true&cache=private"),
                        ("a-path", "sqlite:///{dir}/store.db"))
      for args, out in ((("runs", "--format", "csv"), "adam[lr=0.01],0,90.0"),
                        (("compare", "adam", "sgd"), "verdict: sgd is worse than adam by 14.33 points"))],
    # --- every path option: missing, or not a regular file ---------------------------------------------------
    Case("read-db-a-directory-is-not-a-regular-file", ("report", "--db", "sqlite:///{dir}"), stores=False,
         error="is not a regular file (it is a directory)"),
    Case("read-db-dev-null-is-a-character-device", ("compare", "adam", "sgd", "--db", "sqlite:////dev/null"),
         stores=False, error="database file /dev/null is not a regular file (it is a character device)"),
    Case("read-db-a-fifo-is-not-a-regular-file", ("show", "1", "--db", "sqlite:///{dir}/pipe.db"),
         setup=_fifo("pipe.db"), stores=False, error="pipe.db is not a regular file (it is a FIFO)"),
    Case("read-benchmarks-a-fifo-is-not-a-regular-file",
         ("sweep", "--benchmark", "quick", "--benchmarks", "{dir}/pipe.yaml", "--dry-run"), setup=_fifo("pipe.yaml"),
         stores=False, error="pipe.yaml is not a regular file (it is a FIFO)"),
    Case("read-benchmarks-a-directory-is-not-a-regular-file",
         ("sweep", "--benchmark", "quick", "--benchmarks", "{dir}", "--dry-run"), stores=False,
         error="is not a regular file (it is a directory)"),
    Case("read-benchmarks-a-missing-file-does-not-exist",
         ("sweep", "--benchmark", "quick", "--benchmarks", "{dir}/none.yaml", "--dry-run"), stores=False,
         error="none.yaml does not exist"),
    Case("read-baseline-a-directory-is-not-a-regular-file", ("compare", "--baseline", "{dir}", "--db", "{db}"),
         error="is not a regular file (it is a directory)"),
    Case("read-baseline-dev-null-is-a-character-device", ("compare", "--baseline", "/dev/null", "--db", "{db}"),
         error="baseline file /dev/null is not a regular file (it is a character device)"),
    Case("read-output-a-directory-is-not-a-regular-file",
         ("report", "--format", "csv", "--output", "{dir}", "--db", "{db}"),
         error="Invalid --output: "),
    Case("read-plot-output-a-fifo-is-not-a-regular-file", ("plot", "--output", "{dir}/p.png", "--db", "{db}"),
         setup=_fifo("p.png"), error="p.png is not a regular file (it is a FIFO)"),
    Case("read-export-tensorboard-a-fifo-is-not-a-folder", ("export", "tensorboard", "{dir}/pipe", "--db", "{db}"),
         setup=_fifo("pipe"), error="pipe is not a folder (it is a FIFO)", after=_besides_the_store("pipe")),
    Case("read-export-tensorboard-under-a-file-is-not-a-folder",
         ("export", "tensorboard", "{dir}/runs.txt/tb", "--db", "{db}"), setup=_write_only("runs.txt"),
         error="runs.txt is not a folder (it is a regular file)", after=_besides_the_store("runs.txt")),
    Case("read-checkpoint-dir-a-fifo-is-not-a-folder",
         ("run", "--dataset", "digits", "--epochs", "1", "--checkpoint-dir", "{dir}/pipe", "--db", "sqlite:///{dir}/n.db"),
         setup=_fifo("pipe"), stores=False, error="pipe is not a folder (it is a FIFO)", after=_only("pipe")),
    Case("read-csv-data-a-directory-is-not-a-regular-file",
         ("run", "--dataset", "csv:{dir}", "--model", "bert", "--pretrained", "{dir}", "--epochs", "1",
          "--db", "sqlite:///{dir}/n.db"), stores=False,
         error="is not a regular file (it is a directory)", after=_only()),
    # --- a command refused before training leaves no new store, and no pending run in an old one -------------
    Case("read-run-a-model-refused-for-its-data-leaves-no-store",
         ("run", "--model", "tv:resnet18", "--dataset", "digits", "--epochs", "1", "--device", "cpu",
          "--db", "sqlite:///{dir}/n.db"), stores=False,
         error="model 'tv:resnet18' takes 3-channel images (C, H, W); dataset 'digits' has input shape (1, 8, 8)",
         after=_only()),
    Case("read-sweep-a-model-refused-for-its-data-leaves-no-store",
         ("sweep", "--models", "tv:resnet18", "--dataset", "digits", "--lambdas", "0.5", "--seeds", "1", "--epochs",
          "1", "--device", "cpu", "--db", "sqlite:///{dir}/n.db"), stores=False,
         error="model 'tv:resnet18' takes 3-channel images", after=_only()),
    Case("read-tune-on-missing-data-leaves-no-store",
         ("tune", "--dataset", "cifar100", "--data-dir", "{dir}/nodata", "--db", "sqlite:///{dir}/n.db"), stores=False,
         error="cifar100 not found in", after=_no_file("n.db")),
    Case("read-sweep-a-model-refused-adds-no-pending-run",
         ("sweep", "--models", "tv:resnet18", "--dataset", "digits", "--lambdas", "0.5", "--seeds", "1", "--epochs",
          "1", "--device", "cpu", "--db", "{db}"),
         error="model 'tv:resnet18' takes 3-channel images",
         after=lambda env: _same_runs(env)),
]


def _same_runs(env: Env) -> None:
    from report_fixtures import RUNS

    assert env.sql("SELECT count(*) FROM runs") == [(sum(len(seeds) for seeds in RUNS.values()),)]
