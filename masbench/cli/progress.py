"""Rich progress displays for runs (epochs and batches), written to stderr."""

from __future__ import annotations

import logging
from types import SimpleNamespace

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from masbench.engine import Callback, EpochMetrics, RunInfo
from masbench.engine.environment import banner

log = logging.getLogger(__name__)


def stderr_console() -> Console:
    # Long log lines stay whole (no wrapping at 80 columns in CI logs); names like mas[...] are not markup.
    return Console(stderr=True, soft_wrap=True, highlight=False)


def stop_quietly(progress: Progress) -> None:
    """Stop a transient display without the blank line rich's ``Progress.stop`` adds when stderr is no terminal.

    That line would come before a stop's one-line message, and between a log's lines.
    """
    progress.live.stop()


def epoch_text(m) -> str:
    """An epoch's losses, accuracies and seconds, as ``run`` and a sweep's log print them; ``m``: an
    ``EpochMetrics`` or a stored epoch (the same fields; a diverged epoch's NaN or missing values as ``-``)."""
    def loss(value) -> str:
        return "-" if value is None or value != value else f"{value:.4f}"

    def acc(value) -> str:
        return "-" if value is None or value != value else f"{value:.2%}"

    val = "" if m.val_acc is None else f"val {loss(m.val_loss)} acc {acc(m.val_acc)} · "
    speed = "" if m.samples_per_second is None else f" ({m.samples_per_second:,.0f} samples/s)"
    return (f"train loss {loss(m.train_loss)} acc {acc(m.train_acc)} · test {loss(m.test_loss)} acc "
            f"{acc(m.test_acc)} · {val}{m.seconds or 0:.1f}s{speed}")


class RunProgress(Callback):
    """Two bars, epochs and the current epoch's batches, and a line per finished epoch."""

    def __init__(self, console: Console | None = None, store_url: str | None = None) -> None:
        self.console = console or stderr_console()
        self.store_url = store_url
        self.progress = Progress(
            TextColumn("{task.description:>8}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[note]}"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=self.console, transient=True,
        )
        self.epochs = self.batches = None

    def __enter__(self) -> RunProgress:
        return self

    def __exit__(self, *exc) -> None:
        if self.epochs is not None:
            stop_quietly(self.progress)

    def on_start(self, info: RunInfo) -> None:
        # The log begins with the code version, the libraries and the hardware, once the run is sure to start.
        self.console.print(banner(info.device), markup=False)
        where = f" · store {self.store_url}" if self.store_url else ""
        self.console.print(f"run {info.spec.describe()} · key {info.spec.key}{where} · {info.parameters:,} parameters, "
                           f"{info.train_size:,} train / {info.test_size:,} test examples", markup=False)
        self.progress.start()
        self.epochs = self.progress.add_task("epochs", total=info.spec.epochs, completed=info.start_epoch, note="")
        self.batches = self.progress.add_task("batches", total=info.batches_per_epoch, note="")
        if info.start_epoch:
            self.console.print(f"resuming at epoch {info.start_epoch + 1} from its checkpoint", markup=False)

    def on_batch(self, epoch: int, batch: int, batches: int) -> None:
        self.progress.update(self.batches, completed=batch, total=batches)

    def on_epoch(self, m: EpochMetrics) -> None:
        test = "-" if m.test_acc is None else f"{m.test_acc:.2%}"
        note = f"test acc {test}"
        self.progress.update(self.epochs, completed=m.epoch, note=note)
        self.progress.update(self.batches, completed=0)
        self.console.print(f"epoch {m.epoch}: {epoch_text(m)}", markup=False)

    def on_warning(self, message: str) -> None:
        self.console.print(f"warning: {message}", style="yellow", markup=False)


class WarningLog(Callback):
    """A sweep worker's warnings (an unusable checkpoint, ...), one line each on stderr."""

    def on_warning(self, message: str) -> None:
        import sys

        print(f"warning: {message}", file=sys.stderr, flush=True)


class SweepProgress:
    """An overall bar (cells finished of all, with ETA) and a line per running cell, read from the store.

    It polls the database from a thread, so it shows the same whether the cells run in this process,
    in worker processes, or in another sweep against the same database.

    With ``log`` (stderr is no terminal: Slurm, CI, ``> log``, where a live display shows nothing), it
    prints instead a line per epoch of each cell, read from the store's epochs (``log_epochs``), and a line
    when a cell's run ends: the same lines whichever process or pack trained the cell, each printed whole by
    this one thread.
    """

    def __init__(self, store, keys: list[str], console: Console | None = None, every: float = 1.0,
                 log: bool = False) -> None:
        import threading

        self.store, self.keys, self.every, self.log = store, keys, every, log
        self.printed: dict[str, int] = {}  # key -> the last epoch logged
        self.ended: set[str] = set()  # keys whose end is logged, or that had ended before the sweep
        self.console = console or stderr_console()
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[note]}"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=self.console, transient=True,
        )
        self.total = self.progress.add_task("runs", total=len(keys), note="")
        self.running: dict[str, object] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sweep-progress", daemon=True)

    def start(self) -> None:
        from masbench.store.leases import FINAL

        if self.log:  # what the store held before: not this sweep's to log
            for key, state in self.store.cell_states(self.keys).items():
                self.printed[key] = state["last_epoch"] or 0
                if state["status"] in FINAL:
                    self.ended.add(key)
        self.progress.start()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.refresh()
        stop_quietly(self.progress)

    def _loop(self) -> None:
        from sqlalchemy.exc import OperationalError

        from masbench.text.shown import one_line

        while not self._stop.wait(self.every):
            try:
                self.refresh()
            # A busy or unreachable database: the next poll shows it. Anything else is a bug, and ends the
            # display with its traceback rather than freezing it without a word. Logged at INFO: a locked
            # SQLite store is common under many workers and would spam the live display.
            except OperationalError as error:
                log.info("sweep progress: reading the store failed, retrying at the next poll (%s)",
                         one_line(str(error)))

    def refresh(self) -> None:
        from masbench.store.leases import FINAL

        states = self.store.cell_states(self.keys)
        if self.log:
            self.log_epochs(states)
        done = sum(1 for s in states.values() if s["status"] in FINAL)
        failed = sum(1 for s in states.values() if s["status"] in ("failed", "diverged"))
        self.progress.update(self.total, completed=done, note=f"{failed} failed/diverged" if failed else "")
        live = {key: s for key, s in states.items() if s["status"] == "running"}
        for key in list(self.running):
            if key not in live:
                self.progress.remove_task(self.running.pop(key))
        for key, s in live.items():
            label = f"  {cell_label(s)}"
            if key not in self.running:
                self.running[key] = self.progress.add_task(label, total=s["epochs"], note="")
            self.progress.update(self.running[key], completed=s["last_epoch"] or 0,
                                 note=f"epoch {s['last_epoch'] or 0}/{s['epochs']}")

    def log_epochs(self, states: dict[str, dict]) -> None:
        """A line per epoch stored since the last poll, then one per cell that has ended since."""
        from masbench.store.leases import FINAL

        behind = {key: self.printed.get(key, 0) for key, state in states.items()
                  if (state["last_epoch"] or 0) > self.printed.get(key, 0)}
        for row in self.store.epochs_after(behind) if behind else ():
            state = states[row["key"]]
            self.console.print(f"{cell_label(state)} epoch {row['epoch']}/{state['epochs']}: "
                               f"{epoch_text(SimpleNamespace(**row))}", markup=False)
            self.printed[row["key"]] = max(self.printed.get(row["key"], 0), row["epoch"])
        for key, state in states.items():
            if state["status"] not in FINAL:
                self.ended.discard(key)  # claimed again (--retry-failed): its new end is logged
            elif key not in self.ended:
                self.ended.add(key)
                best = "-" if state["best"] is None or state["best"] != state["best"] else f"{state['best']:.2%}"
                error = (state["error"] or "").splitlines()[0] if state["status"] == "failed" and state["error"] \
                    else ""
                self.console.print(f"{cell_label(state)}: {state['status']} after {state['last_epoch'] or 0}/"
                                   f"{state['epochs']} epochs, best test acc {best}" + (f" ({error})" if error else ""),
                                   markup=False)


def cell_label(state: dict) -> str:
    """A sweep's cell in its lines: run name, data set (its last path part) and model, seed."""
    return f"{state['name']} {state['dataset'].rsplit('/', 1)[-1]}/{state['model']} seed {state['seed']}"
