"""Commands that train: ``toy``, ``run`` (one cell) and ``sweep`` (a grid of cells)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from masbench.cli.options import (
    AmpOpt,
    AmsgradOpt,
    BatchSizeOpt,
    BetasOpt,
    BiasCorrectionOpt,
    ChannelsLastOpt,
    CheckpointDirOpt,
    CompileOpt,
    DampeningOpt,
    DataDirOpt,
    DatasetOpt,
    DbOpt,
    DeviceOpt,
    EpochsOpt,
    EpsOpt,
    LambdaScheduleOpt,
    LrOpt,
    ModelOpt,
    MomentumOpt,
    NesterovOpt,
    PretrainedOpt,
    WeightDecayOpt,
    exec_options,
    given,
    int_list,
    parse_betas,
    split_list,
)
from masbench.cli.output import percent, stdout_console
from masbench.errors import MasbenchError


def _parse_point(text: str) -> tuple[float, float]:
    try:
        x, y = (float(part) for part in text.split(","))
    except ValueError:
        raise MasbenchError(f"Invalid --start: {text!r} (expected two numbers, X,Y, e.g. 3,1)") from None
    return x, y


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
    from masbench.spec import make_spec

    spec = make_spec(**given(
        dataset=dataset, model=model, optimizer=optimizer, lambda_adam=lambda_adam, lambda_sgd=lambda_sgd, lr=lr,
        momentum=momentum, weight_decay=weight_decay, betas=parse_betas(betas), eps=eps, amsgrad=amsgrad,
        nesterov=nesterov, dampening=dampening, bias_correction=bias_correction, lambda_schedule=lambda_schedule,
        batch_size=batch_size, epochs=epochs, seed=seed, pretrained=pretrained, max_length=max_length,
        text_column=text_column, label_column=label_column, test_file=test_file, test_fraction=test_fraction,
        train_subset=train_subset, test_subset=test_subset, benchmark=benchmark,
    ))
    options = exec_options(device, data_dir, amp, channels_last, compile, checkpoint_dir)
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
                   f"{percent(best)} over {len(epochs_done)} epochs; use {hint} to run it again")
        return
    if outcome.status == "failed":
        raise MasbenchError(f"run {outcome.run_id} failed: {outcome.message} (traceback stored in the runs table)")
    if outcome.status == "lost":
        raise MasbenchError(f"run {outcome.run_id} stopped: {outcome.message}")
    result = outcome.result
    best_epoch = max((m for m in result.epochs if m.test_acc is not None), key=lambda m: m.test_acc, default=None)
    seconds = sum(m.seconds for m in result.epochs)
    summary = (f"{result.status} {spec.describe()}: best test acc {percent(result.best_test_acc)}"
               + (f" (epoch {best_epoch.epoch})" if best_epoch else "")
               + f", final {percent(result.final_test_acc)}; {len(result.epochs)} epochs, {seconds:.1f}s training"
               + f" -> run {outcome.run_id} in {store.masked_url}")
    if result.status == "diverged":
        summary += f" ({result.error})"
    typer.echo(summary)


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
    from masbench.benchmarks import plan_sweep

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
    overrides = given(
        models=split_list(models, "--models"), lambdas=lambdas, baselines=[] if no_baselines else split_list(baselines, "--baselines"),
        seeds=seeds, seed_list=int_list(seed_list, "--seed-list"), epochs=epochs, lr=lr, momentum=momentum,
        weight_decay=weight_decay, betas=parse_betas(betas), eps=eps, amsgrad=amsgrad, nesterov=nesterov,
        dampening=dampening, bias_correction=bias_correction, batch_size=batch_size, pretrained=pretrained,
        max_length=max_length, train_subset=train_subset, test_subset=test_subset,
    )
    name, cells = plan_sweep(benchmark=benchmark, dataset=dataset, overrides=overrides, benchmarks_path=benchmarks)

    from rich.table import Table

    out = stdout_console()
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

    options = exec_options(device, data_dir, amp, channels_last, compile, checkpoint_dir)
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
