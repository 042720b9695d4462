"""The ``masbench`` command line: parse, call the Python API, map errors to exit codes.

Heavy imports (torch, pandas, ...) happen inside the commands so that ``--help``
stays instant.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from masbench import __version__
from masbench.errors import MasbenchError

# Typer >= 0.20 vendors click; older releases use click itself. Take the exceptions from whichever it uses.
click_exceptions = importlib.import_module(typer.BadParameter.__module__)


class OneLineErrors(TyperGroup):
    """Report bad input as one line on stderr with a non-zero exit, never a traceback.

    ``MASBENCH_DEBUG=1`` lets exceptions through, for bug reports.
    """

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra: Any) -> Any:
        try:
            rv = super().main(args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=False, **extra)
        except getattr(click_exceptions, "NoArgsIsHelpError", ()):
            # `masbench` alone: typer has printed the help already.
            rv = 0
        except click_exceptions.UsageError as error:
            hint = f" (see '{error.ctx.command_path} --help')" if error.ctx is not None else ""
            rv = _fail(f"{error.format_message()}{hint}", error.exit_code)
        except click_exceptions.ClickException as error:
            rv = _fail(error.format_message(), error.exit_code)
        except typer.Abort:
            rv = _fail("aborted", 130)
        except (MasbenchError, ValueError) as error:
            if os.environ.get("MASBENCH_DEBUG"):
                raise
            rv = _fail(str(error), 1)
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)


def _fail(message: str, code: int) -> int:
    typer.echo(f"Error: {' '.join(message.split())}", err=True)
    return code


app = typer.Typer(
    name="masbench",
    cls=OneLineErrors,
    help="Benchmark deep-learning optimizers around MAS (Mixing ADAM and SGD, arXiv 2011.08042).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"masbench {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Benchmark deep-learning optimizers around MAS (Mixing ADAM and SGD, arXiv 2011.08042)."""


def _parse_point(text: str) -> tuple[float, float]:
    try:
        x, y = (float(part) for part in text.split(","))
    except ValueError:
        raise MasbenchError(f"Invalid --start: {text!r} (expected two numbers, X,Y, e.g. 3,1)") from None
    return x, y


@app.command()
def toy(
    name: Annotated[str, typer.Argument(help="The problem: quadratic, rosenbrock or abs.")],
    lr: Annotated[float | None, typer.Option(help="Learning rate (default: the paper's for this problem).")] = None,
    steps: Annotated[int | None, typer.Option(help="Number of steps (default: the paper's for this problem).")] = None,
    start: Annotated[str | None, typer.Option(help="Start point X,Y (default: the paper's).")] = None,
    momentum: Annotated[float, typer.Option(help="Momentum of SGD and of MAS's SGD part.")] = 0.0,
    lambda_adam: Annotated[float, typer.Option(help="MAS's weight of the Adam part.")] = 0.5,
    lambda_sgd: Annotated[float, typer.Option(help="MAS's weight of the SGD part.")] = 0.5,
    bias_correction: Annotated[str, typer.Option(help="MAS's Adam bias correction: step or constant.")] = "step",
    threshold: Annotated[
        float | None, typer.Option(help="Count the steps until the loss falls below this (default per problem).")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the results as a JSON list.")] = False,
    plot: Annotated[str | None, typer.Option(help="Also draw the trajectories over the loss contours to this PNG/SVG file.")] = None,
) -> None:
    """Run SGD, Adam and MAS on one of the paper's toy problems (float64, full batch)."""
    from masbench.toy import get_problem, plot_toy, run_toy

    problem = get_problem(name)
    results = run_toy(
        name,
        lr=lr,
        steps=steps,
        start=None if start is None else _parse_point(start),
        momentum=momentum,
        lambda_adam=lambda_adam,
        lambda_sgd=lambda_sgd,
        bias_correction=bias_correction,
        threshold=threshold,
    )
    if plot:
        plot_toy(name, results, plot)
    if json_output:
        typer.echo(json.dumps([r.summary() for r in results], indent=2))
        return

    from rich.console import Console
    from rich.table import Table

    limit = problem.threshold if threshold is None else threshold
    table = Table(title=f"{name}: {problem.description}", caption=f"steps to loss < {limit:g}")
    for column in ("optimizer", "x", "y", "final loss", "steps to threshold"):
        table.add_column(column, justify="left" if column == "optimizer" else "right")
    for r in results:
        reached = "never" if r.steps_to_threshold is None else str(r.steps_to_threshold)
        table.add_row(r.optimizer.upper(), f"{r.x:.6g}", f"{r.y:.6g}", f"{r.loss:.4g}", reached)
    console = Console()
    console.print(table)
    if plot:
        console.print(f"plot written to {plot}")


# --- options shared by `run` and `sweep` -----------------------------------------------------------

DatasetOpt = Annotated[str | None, typer.Option(help="digits, cifar10, cifar100, cola, agnews, imagefolder:PATH or csv:PATH.")]
ModelOpt = Annotated[str | None, typer.Option(help="mlp, cnn, resnet18, resnet34 or bert.")]
LrOpt = Annotated[float | None, typer.Option(help="Learning rate (MAS: SGD's, and Adam's before bias correction).")]
MomentumOpt = Annotated[float | None, typer.Option(help="SGD momentum (also MAS's SGD part).")]
WeightDecayOpt = Annotated[float | None, typer.Option(help="Weight decay (default: the optimizer's own; AdamW 0.01).")]
BetasOpt = Annotated[str | None, typer.Option(help="Adam's betas, as B1,B2 (default 0.9,0.999).")]
EpsOpt = Annotated[float | None, typer.Option(help="Adam's epsilon (default 1e-8).")]
AmsgradOpt = Annotated[bool | None, typer.Option("--amsgrad/--no-amsgrad", help="AMSGrad for the Adam part.")]
NesterovOpt = Annotated[bool | None, typer.Option("--nesterov/--no-nesterov", help="Nesterov momentum.")]
DampeningOpt = Annotated[float | None, typer.Option(help="SGD dampening (default 0).")]
BiasCorrectionOpt = Annotated[str | None, typer.Option(help="MAS's bias correction: step (authors' code) or constant (paper).")]
LambdaScheduleOpt = Annotated[
    str | None, typer.Option(help="constant, or linear:START:END[:EPOCHS] for lambda_adam (lambda_sgd = 1 - it).")
]
BatchSizeOpt = Annotated[int | None, typer.Option(help="Batch size (default 128).")]
EpochsOpt = Annotated[int | None, typer.Option(help="Epochs (default 10).")]
DeviceOpt = Annotated[str, typer.Option(help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps.")]
DbOpt = Annotated[
    str | None, typer.Option(help="SQLAlchemy database URL (default: $MASBENCH_DB, else sqlite:///masbench.db).")
]
DataDirOpt = Annotated[
    str | None, typer.Option(help="Where data sets live (default: $MASBENCH_DATA, else ~/.cache/masbench/data).")
]
PretrainedOpt = Annotated[str | None, typer.Option(help="Pre-trained text model, hub name or local path (default bert-base-uncased).")]
AmpOpt = Annotated[bool | None, typer.Option("--amp/--no-amp", help="bf16 autocast (default: on with CUDA).")]
ChannelsLastOpt = Annotated[
    bool | None, typer.Option("--channels-last/--no-channels-last", help="channels_last images (default: on with CUDA).")
]
CompileOpt = Annotated[bool, typer.Option("--compile/--no-compile", help="torch.compile the model.")]
CheckpointDirOpt = Annotated[str, typer.Option(help="Where per-epoch checkpoints go.")]


def _parse_betas(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        b1, b2 = (float(part) for part in text.split(","))
    except ValueError:
        raise MasbenchError(f"Invalid --betas: {text!r} (expected two numbers, B1,B2, e.g. 0.9,0.999)") from None
    return b1, b2


def _given(**values: Any) -> dict[str, Any]:
    """The options given on the command line (the others are None)."""
    return {key: value for key, value in values.items() if value is not None}


def _exec_options(device, data_dir, amp, channels_last, compile, checkpoint_dir, keep_checkpoint=False):
    from pathlib import Path

    from masbench.config import ExecOptions

    return ExecOptions(device=device, data_dir=None if data_dir is None else Path(data_dir), amp=amp,
                       channels_last=channels_last, compile=compile, checkpoint_dir=Path(checkpoint_dir),
                       keep_checkpoint=keep_checkpoint)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


@app.command()
def run(
    dataset: DatasetOpt = None,
    model: ModelOpt = None,
    optimizer: Annotated[str | None, typer.Option(help="mas, sgd, adam or adamw.")] = None,
    lambda_adam: Annotated[float | None, typer.Option(help="MAS's weight of the Adam part (default 0.5).")] = None,
    lambda_sgd: Annotated[float | None, typer.Option(help="MAS's weight of the SGD part (default 0.5).")] = None,
    lr: LrOpt = None,
    momentum: MomentumOpt = None,
    weight_decay: WeightDecayOpt = None,
    betas: BetasOpt = None,
    eps: EpsOpt = None,
    amsgrad: AmsgradOpt = None,
    nesterov: NesterovOpt = None,
    dampening: DampeningOpt = None,
    bias_correction: BiasCorrectionOpt = None,
    lambda_schedule: LambdaScheduleOpt = None,
    batch_size: BatchSizeOpt = None,
    epochs: EpochsOpt = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (default 0).")] = None,
    device: DeviceOpt = "auto",
    db: DbOpt = None,
    data_dir: DataDirOpt = None,
    pretrained: PretrainedOpt = None,
    max_length: Annotated[int | None, typer.Option(help="Text: longest token sequence (default 128).")] = None,
    text_column: Annotated[str | None, typer.Option(help="csv: the text column, a name or a 0-based index.")] = None,
    label_column: Annotated[str | None, typer.Option(help="csv: the label column, a name or a 0-based index.")] = None,
    test_file: Annotated[str | None, typer.Option(help="csv: a file with the test split.")] = None,
    test_fraction: Annotated[float | None, typer.Option(help="csv without --test-file: held-out fraction (0.2).")] = None,
    train_subset: Annotated[int | None, typer.Option(help="Train on a fixed random subset of this size.")] = None,
    test_subset: Annotated[int | None, typer.Option(help="Test on a fixed random subset of this size.")] = None,
    benchmark: Annotated[str | None, typer.Option(help="Label the run as part of this benchmark.")] = None,
    amp: AmpOpt = None,
    channels_last: ChannelsLastOpt = None,
    compile: CompileOpt = False,
    checkpoint_dir: CheckpointDirOpt = ".masbench/checkpoints",
    force: Annotated[bool, typer.Option("--force", help="Run again even if the store has this run completed.")] = False,
    claim_timeout: Annotated[float, typer.Option(help="Seconds without a heartbeat after which a crashed run's claim is taken over.")] = 60.0,
) -> None:
    """Train one cell (optimizer x lambda x model x dataset x seed); every epoch goes to the store.

    Under torchrun (torchrun --nproc-per-node N -m masbench run ...) the cell trains with DistributedDataParallel.
    """
    from masbench.config import make_spec

    spec = make_spec(**_given(
        dataset=dataset, model=model, optimizer=optimizer, lambda_adam=lambda_adam, lambda_sgd=lambda_sgd, lr=lr,
        momentum=momentum, weight_decay=weight_decay, betas=_parse_betas(betas), eps=eps, amsgrad=amsgrad,
        nesterov=nesterov, dampening=dampening, bias_correction=bias_correction, lambda_schedule=lambda_schedule,
        batch_size=batch_size, epochs=epochs, seed=seed, pretrained=pretrained, max_length=max_length,
        text_column=text_column, label_column=label_column, test_file=test_file, test_fraction=test_fraction,
        train_subset=train_subset, test_subset=test_subset, benchmark=benchmark,
    ))
    options = _exec_options(device, data_dir, amp, channels_last, compile, checkpoint_dir)
    if claim_timeout <= 0:
        raise MasbenchError(f"Invalid --claim-timeout: {claim_timeout} (must be > 0)")

    from dataclasses import replace

    from masbench import distributed
    from masbench.progress import RunProgress
    from masbench.store import Store
    from masbench.sweep import run_cell

    # Under torchrun, one cell on several processes: rank 0 alone opens the store and reports.
    dist = distributed.from_environment()
    options = replace(options, distributed=dist)
    if dist is not None and not dist.is_main:
        try:
            run_cell(spec, None, options, force=force, stale_after=claim_timeout)
        finally:
            distributed.shutdown()
        return
    store = Store(db)
    try:
        with RunProgress(store_url=store.masked_url) as progress:
            outcome = run_cell(spec, store, options, callbacks=[progress], force=force, stale_after=claim_timeout,
                               heartbeat_every=min(10.0, claim_timeout / 4))
    finally:
        distributed.shutdown()

    if outcome.status in ("skipped", "busy"):
        previous = outcome.previous
        epochs_done = store.epochs_of(previous.id) if previous is not None else []
        best = max((e.test_acc for e in epochs_done if e.test_acc is not None), default=None)
        if outcome.status == "busy":
            raise MasbenchError(f"{spec.describe()} is being trained by another worker ({outcome.message}); wait for "
                                f"it, or if that worker crashed, run again once its claim is older than "
                                f"--claim-timeout ({claim_timeout:g} s)")
        hint = "--force" if previous.status == "completed" else "--force (or a sweep with --retry-failed)"
        typer.echo(f"already {previous.status}: {spec.describe()} (run {previous.id}): best test acc "
                   f"{_percent(best)} over {len(epochs_done)} epochs; use {hint} to run it again")
        return
    if outcome.status == "failed":
        raise MasbenchError(f"run {outcome.run_id} failed: {outcome.message} (traceback stored in the runs table)")
    if outcome.status == "lost":
        raise MasbenchError(f"run {outcome.run_id} stopped: {outcome.message}")
    result = outcome.result
    best_epoch = max((m for m in result.epochs if m.test_acc is not None), key=lambda m: m.test_acc, default=None)
    seconds = sum(m.seconds for m in result.epochs)
    summary = (f"{result.status} {spec.describe()}: best test acc {_percent(result.best_test_acc)}"
               + (f" (epoch {best_epoch.epoch})" if best_epoch else "")
               + f", final {_percent(result.final_test_acc)}; {len(result.epochs)} epochs, {seconds:.1f}s training"
               + f" -> run {outcome.run_id} in {store.masked_url}")
    if result.status == "diverged":
        summary += f" ({result.error})"
    typer.echo(summary)


def _split(text: str | None, what: str) -> list[str] | None:
    if text is None:
        return None
    items = [part.strip() for part in text.split(",") if part.strip()]
    if not items:
        raise MasbenchError(f"Invalid {what}: {text!r} (a comma-separated list)")
    return items


def _int_list(text: str | None, what: str) -> list[int] | None:
    items = _split(text, what)
    if items is None:
        return None
    try:
        return [int(item) for item in items]
    except ValueError:
        raise MasbenchError(f"Invalid {what}: {text!r} (comma-separated integers, e.g. 0,1,2)") from None


@app.command()
def sweep(
    benchmark: Annotated[str | None, typer.Option(help="A benchmark of the benchmarks file (quick, nightly, cifar10, ...).")] = None,
    benchmarks: Annotated[str | None, typer.Option(help="The benchmarks file (default ./benchmarks.yaml, else masbench's own).")] = None,
    dataset: Annotated[str | None, typer.Option(help="The data set; alone, it picks the benchmark of that name if there is one.")] = None,
    models: Annotated[str | None, typer.Option(help="Models, comma-separated: e.g. resnet18,resnet34.")] = None,
    lambdas: Annotated[str | None, typer.Option(help="lambda_adam values: 0.3..0.7 (step 0.1), 0.3..0.7:0.05, or 0.3,0.5,0.7; lambda_sgd = 1 - lambda_adam.")] = None,
    baselines: Annotated[str | None, typer.Option(help="Baselines, comma-separated: adam, sgd, adamw (default adam,sgd; plus adamw for text).")] = None,
    no_baselines: Annotated[bool, typer.Option("--no-baselines", help="Run MAS only.")] = False,
    seeds: Annotated[int | None, typer.Option(help="Seeds 0..N-1.")] = None,
    seed_list: Annotated[str | None, typer.Option(help="Explicit seeds, comma-separated: 0,1,2.")] = None,
    epochs: EpochsOpt = None,
    lr: LrOpt = None,
    momentum: MomentumOpt = None,
    weight_decay: WeightDecayOpt = None,
    betas: BetasOpt = None,
    eps: EpsOpt = None,
    amsgrad: AmsgradOpt = None,
    nesterov: NesterovOpt = None,
    dampening: DampeningOpt = None,
    bias_correction: BiasCorrectionOpt = None,
    batch_size: BatchSizeOpt = None,
    pretrained: PretrainedOpt = None,
    max_length: Annotated[int | None, typer.Option(help="Text: longest token sequence.")] = None,
    train_subset: Annotated[int | None, typer.Option(help="Train on a fixed random subset of this size.")] = None,
    test_subset: Annotated[int | None, typer.Option(help="Test on a fixed random subset of this size.")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (default: one per GPU when there are several, else 1).")] = None,
    executor: Annotated[str, typer.Option(help="local (worker processes on this machine) or ray (a task per cell on a Ray cluster).")] = "local",
    ray_address: Annotated[str | None, typer.Option(help="With --executor ray: auto or HOST:PORT of a running cluster (default: start a local one).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List the cells and which are done; run nothing.")] = False,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="Run failed and diverged cells again.")] = False,
    claim_timeout: Annotated[float, typer.Option(help="Seconds without a heartbeat after which a claimed cell is taken over.")] = 60.0,
    device: DeviceOpt = "auto",
    db: DbOpt = None,
    data_dir: DataDirOpt = None,
    amp: AmpOpt = None,
    channels_last: ChannelsLastOpt = None,
    compile: CompileOpt = False,
    checkpoint_dir: CheckpointDirOpt = ".masbench/checkpoints",
) -> None:
    """Run a grid of cells: idempotent (finished cells are skipped), resumable, with parallel workers."""
    from masbench.config import plan_sweep

    if no_baselines and baselines is not None:
        raise MasbenchError("give --baselines or --no-baselines, not both")
    if workers is not None and workers < 1:
        raise MasbenchError(f"Invalid --workers: {workers} (must be >= 1)")
    if executor not in ("local", "ray"):
        raise MasbenchError(f"Invalid --executor: {executor!r} (valid: local, ray)")
    if ray_address is not None and executor != "ray":
        raise MasbenchError("--ray-address goes with --executor ray")
    if executor == "ray" and workers is not None:
        raise MasbenchError("--workers is for --executor local; Ray runs as many cells at once as the cluster has GPUs or CPUs")
    if claim_timeout <= 0:
        raise MasbenchError(f"Invalid --claim-timeout: {claim_timeout} (must be > 0)")
    overrides = _given(
        models=_split(models, "--models"), lambdas=lambdas, baselines=[] if no_baselines else _split(baselines, "--baselines"),
        seeds=seeds, seed_list=_int_list(seed_list, "--seed-list"), epochs=epochs, lr=lr, momentum=momentum,
        weight_decay=weight_decay, betas=_parse_betas(betas), eps=eps, amsgrad=amsgrad, nesterov=nesterov,
        dampening=dampening, bias_correction=bias_correction, batch_size=batch_size, pretrained=pretrained,
        max_length=max_length, train_subset=train_subset, test_subset=test_subset,
    )
    name, cells = plan_sweep(benchmark=benchmark, dataset=dataset, overrides=overrides, benchmarks_path=benchmarks)

    from rich.table import Table

    out = _stdout_console()
    if dry_run:
        from masbench.sweep import dry_run as plan

        table = Table(title=f"sweep {name or dataset}: {len(cells)} cells")
        for column in ("#", "name", "dataset", "model", "seed", "status"):
            table.add_column(column, overflow="fold")
        listed = plan(cells, db)
        for i, (cell, status) in enumerate(listed, start=1):
            table.add_row(str(i), cell.spec.name, cell.spec.dataset, cell.spec.model, str(cell.spec.seed), status,
                          style="dim" if status == "completed" else None)
        out.print(table, markup=False)
        done = sum(1 for _, status in listed if status == "completed")
        out.print(f"{len(cells)} cells: {done} completed, {len(cells) - done} to run", markup=False)
        return

    from masbench.engine import describe_device, resolve_device
    from masbench.environment import banner
    from masbench.progress import SweepProgress, WarningLog, stderr_console
    from masbench.store import Store
    from masbench.sweep import SweepSettings, default_workers, run_sweep, run_sweep_ray

    options = _exec_options(device, data_dir, amp, channels_last, compile, checkpoint_dir)
    settings = SweepSettings(options=options, workers=1 if executor == "ray" else workers or default_workers(),
                             retry_failed=retry_failed,
                             stale_after=claim_timeout, heartbeat_every=min(10.0, claim_timeout / 4),
                             callbacks=(WarningLog(),))
    store = Store(db)
    console = stderr_console()
    progress = SweepProgress(store, [cell.spec.key for cell in cells], console)

    def started() -> None:
        console.print(banner(describe_device(resolve_device(options.device))), markup=False)
        how = "on Ray" if executor == "ray" else f"{settings.workers} worker(s)"
        console.print(f"sweep {name or dataset}: {len(cells)} cells, {how}, store {store.masked_url}", markup=False)
        progress.start()

    try:
        if executor == "ray":
            summary = run_sweep_ray(cells, store, settings, address=ray_address, on_start=started)
        else:
            summary = run_sweep(cells, store, settings, on_start=started)
    finally:
        if progress.progress.live.is_started:
            progress.stop()

    counts = {status: summary.count(status) for status in ("completed", "diverged", "failed", "pending", "running")}
    parts = [f"{n} {status}" for status, n in counts.items() if n]
    out.print(f"sweep {name or dataset}: {summary.total} cells, {summary.ran} finished now; " + ", ".join(parts),
              markup=False)
    for state in summary.failed:
        first = (state["error"] or "").splitlines()[0] if state["error"] else "no error recorded"
        out.print(f"  failed: {state['name']} {state['dataset']}/{state['model']} seed {state['seed']}: {first}",
                  markup=False)
    if summary.dead_workers:
        console.print(f"warning: {summary.dead_workers} worker process(es) died; the others took their cells over",
                      markup=False)
    if summary.interrupted:
        console.print("interrupted: claims released; run the same command again to resume", markup=False)
        raise typer.Exit(130)
    if summary.failed:
        raise typer.Exit(1)


# --- reports ---------------------------------------------------------------------------------------------

MetricOpt = Annotated[str, typer.Option(help="A run's accuracy: best (over its epochs) or final (its last epoch's).")]
FilterDataset = Annotated[str | None, typer.Option(help="Only this data set.")]
FilterModel = Annotated[str | None, typer.Option(help="Only this model.")]
FilterBenchmark = Annotated[str | None, typer.Option(help="Only runs of this benchmark.")]


def _stdout_console():
    """Rich output on stdout; when it is not a terminal (a pipe, a CI log), wide enough not to wrap tables."""
    from rich.console import Console

    return Console(soft_wrap=True, highlight=False, width=None if sys.stdout.isatty() else 200)


def _open_for_reading(db: str | None):
    from masbench.store import Store

    return Store(db, writable=False, create=False)


def _runs(store, metric, dataset, model, benchmark):
    from masbench.report import run_accuracies

    runs = run_accuracies(store, metric=metric, dataset=dataset, model=model, benchmark=benchmark)
    if runs.empty:
        filters = ", ".join(f"{k} {v!r}" for k, v in (("dataset", dataset), ("model", model),
                                                        ("benchmark", benchmark)) if v)
        raise MasbenchError(f"no runs in {store.masked_url}" + (f" for {filters}" if filters else ""))
    return runs


def _emit(rendered, output: str | None) -> None:
    from pathlib import Path

    from rich.console import Console

    if rendered.rich is not None:
        console = Console(record=True, width=160, file=open(os.devnull, "w")) if output else _stdout_console()
        for table in rendered.rich:
            console.print(table)
        text = console.export_text() if output else None
    else:
        text = rendered.text
        if not output:
            typer.echo(text, nl=not text.endswith("\n"))
    if output:
        try:
            Path(output).write_text(text)
        except OSError as error:
            raise MasbenchError(f"cannot write {output}: {error.strerror}") from None
        typer.echo(f"written to {output}", err=True)


@app.command()
def report(
    table: Annotated[bool, typer.Option("--table", help="The paper's tables: one per data set, grouped by model (default).")] = False,
    leaderboard: Annotated[bool, typer.Option("--leaderboard", help="Every cell ranked by avg acc within its data set and model.")] = False,
    metric: MetricOpt = "best",
    format: Annotated[str, typer.Option("--format", help="rich, csv, markdown, latex or json.")] = "rich",
    output: Annotated[str | None, typer.Option(help="Write to this file instead of the terminal.")] = None,
    dataset: FilterDataset = None,
    model: FilterModel = None,
    benchmark: FilterBenchmark = None,
    db: DbOpt = None,
) -> None:
    """The paper's tables (avg acc and acc max over seeds, best in bold), or a leaderboard."""
    from masbench import report as reporting

    if table and leaderboard:
        raise MasbenchError("give --table or --leaderboard, not both")
    if format not in reporting.FORMATS:
        raise MasbenchError(f"Invalid --format: {format!r} (valid: {', '.join(reporting.FORMATS)})")
    if metric not in reporting.METRICS:
        raise MasbenchError(f"Invalid --metric: {metric!r} (valid: {', '.join(reporting.METRICS)})")
    store = _open_for_reading(db)
    cells = reporting.cell_table(_runs(store, metric, dataset, model, benchmark))
    if leaderboard:
        rendered = reporting.render_leaderboard(reporting.leaderboard(cells), metric, format)
    else:
        rendered = reporting.render_tables(cells, metric, format)
    _emit(rendered, output)


@app.command()
def compare(
    configs: Annotated[list[str] | None, typer.Argument(help="Configurations: mas:0.3, mas:0.3:0.7, adam, sgd, adamw, run names or config keys; the first is the reference.")] = None,
    baseline: Annotated[str | None, typer.Option(help="Regression gate: a saved report --format csv to compare the store with.")] = None,
    tolerance: Annotated[float | None, typer.Option(help="Gate: the smallest drop in avg acc, in points, that counts (default 1); it must also be significant (one-sided t-test, alpha 0.01).")] = None,
    metric: MetricOpt = "best",
    dataset: FilterDataset = None,
    model: FilterModel = None,
    benchmark: FilterBenchmark = None,
    db: DbOpt = None,
) -> None:
    """Statistics between configurations (difference, 95% CI, t-test), or the CI regression gate."""
    from masbench import report as reporting

    if metric not in reporting.METRICS:
        raise MasbenchError(f"Invalid --metric: {metric!r} (valid: {', '.join(reporting.METRICS)})")
    if baseline is None and tolerance is not None:
        raise MasbenchError("--tolerance goes with --baseline FILE")
    if baseline is not None:
        if configs:
            raise MasbenchError("give configurations to compare, or --baseline FILE for the gate, not both")
        store = _open_for_reading(db)
        cells = reporting.cell_table(_runs(store, metric, dataset, model, benchmark))
        result = reporting.regression_gate(cells, baseline, metric=metric, benchmark=benchmark, dataset=dataset,
                                           model=model, tolerance=tolerance)
        for line in result.notes:
            typer.echo(f"note: {line}")
        for line in result.regressions:
            typer.echo(f"REGRESSION {line}")
        if result.regressions:
            typer.echo(f"{len(result.regressions)} of {result.checked} cells regressed against {baseline}")
            raise typer.Exit(1)
        typer.echo(f"no regression: {result.checked} cells within tolerance of {baseline}")
        return

    selectors = [reporting.parse_selector(text) for text in configs or []]
    if len(selectors) < 2:
        raise MasbenchError("compare needs two configurations or more (e.g. masbench compare adam mas:0.3), "
                            "or --baseline FILE")
    store = _open_for_reading(db)
    comparisons = reporting.compare(_runs(store, metric, dataset, model, benchmark), selectors)

    from rich.table import Table

    console = _stdout_console()
    for c in comparisons:
        where = f"{c.dataset}/{c.model}" + (f" (benchmark {c.benchmark})" if c.benchmark else "")
        table = Table(title=f"{where}: {metric} test accuracy, %", title_justify="left")
        for column in ("configuration", "seeds", "mean ± std", "diff vs ref [95% CI]", "p", "test"):
            table.add_column(column, overflow="fold")
        ref = c.reference
        table.add_row(f"{ref.label} (ref)", str(ref.n), f"{ref.mean:.2f} ± {ref.std:.2f}", "", "", "")
        for d in c.differences:
            o = d.other
            ci = f"{d.diff:+.2f}" if math.isnan(d.low) else f"{d.diff:+.2f} [{d.low:+.2f}, {d.high:+.2f}]"
            table.add_row(o.label, str(o.n), f"{o.mean:.2f} ± {o.std:.2f}", ci,
                          "" if math.isnan(d.p_value) else f"{d.p_value:.3g}", d.test or "")
        console.print(table, markup=False)
        for side in (ref, *(d.other for d in c.differences)):
            console.print(f"  {side.label} = {side.name}" + (f" ({side.settings})" if side.settings else "")
                          + f", config {side.config_key}", markup=False)
        for d in c.differences:
            console.print(f"  verdict: {d.verdict}", markup=False)


@app.command()
def plot(
    output: Annotated[str, typer.Option(help="The image file: .png, .svg or .pdf.")],
    kind: Annotated[str, typer.Option(help="curves (test accuracy and loss per epoch) or lambda (avg acc against λa).")] = "curves",
    metric: MetricOpt = "best",
    dataset: FilterDataset = None,
    model: FilterModel = None,
    benchmark: FilterBenchmark = None,
    db: DbOpt = None,
) -> None:
    """Plot one data set and model: learning curves with ± std bands (the paper's Fig. 7), or λ sensitivity."""
    from masbench import plots

    if kind not in ("curves", "lambda"):
        raise MasbenchError(f"Invalid --kind: {kind!r} (valid: curves, lambda)")
    store = _open_for_reading(db)
    runs = _runs(store, metric, dataset, model, benchmark)
    chosen_dataset = plots.choose(runs, "dataset", dataset, "dataset")
    chosen_model = plots.choose(runs[runs["dataset"] == chosen_dataset], "model", model, "model")
    if kind == "curves":
        epochs = store.epochs_frame(dataset=chosen_dataset, model=chosen_model, benchmark=benchmark)
        path = plots.plot_curves(epochs, output, dataset=chosen_dataset, model=chosen_model, runs=runs)
    else:
        path = plots.plot_lambda(runs, output, dataset=chosen_dataset, model=chosen_model, metric=metric)
    typer.echo(f"plot written to {path}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
