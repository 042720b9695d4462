"""Rich progress displays for runs (epochs and batches), written to stderr."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from masbench.engine import Callback, EpochMetrics, RunInfo
from masbench.environment import banner


def stderr_console() -> Console:
    # Long log lines stay whole (no wrapping at 80 columns in CI logs); names like mas[...] are not markup.
    return Console(stderr=True, soft_wrap=True, highlight=False)


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
            self.progress.stop()

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
        self.console.print(
            f"epoch {m.epoch}: train loss {m.train_loss:.4f} acc {m.train_acc:.2%} · test "
            f"{'-' if m.test_loss is None else f'{m.test_loss:.4f}'} acc {test} · {m.seconds:.1f}s "
            f"({m.samples_per_second:,.0f} samples/s)",
            markup=False,
        )

    def on_warning(self, message: str) -> None:
        self.console.print(f"warning: {message}", style="yellow", markup=False)
