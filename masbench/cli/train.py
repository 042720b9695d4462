"""Commands that train: ``run`` (one cell) and ``sweep`` (a grid of cells).

``run`` and ``sweep`` take the same spec and execution options (``masbench.cli.options``)
and turn them into spec values with the same builder, ``spec_values``: a flag means
the same in both, and a sweep's cell is the run that ``run`` would train with its flags. How a sweep
shows its plan, runs its rounds and sums them up is ``masbench.cli.sweeping``.
"""

from __future__ import annotations

from typing import Annotated

import typer

from masbench.cli.options import (
    BenchmarkOpt,
    BenchmarksOpt,
    GridDatasetOpt,
    ModelsOpt,
    LambdasOpt,
    BaselinesOpt,
    GridOptimizerArgsOpt,
    LambdaSchedulesOpt,
    NoBaselinesOpt,
    MixOpt,
    MixStepOpt,
    AmpOpt,
    AmsgradOpt,
    BatchSizeOpt,
    BetasOpt,
    BiasCorrectionOpt,
    ChannelsLastOpt,
    CheckpointDirOpt,
    ClaimTimeoutOpt,
    CompileOpt,
    DampeningOpt,
    DataDirOpt,
    DatasetOpt,
    DbOpt,
    DeviceOpt,
    EpochsOpt,
    EpsOpt,
    ExecutorOpt,
    LabelColumnOpt,
    LambdaAdamOpt,
    LambdaScheduleOpt,
    LambdaSgdOpt,
    LrOpt,
    LrScheduleOpt,
    LrSettingOpt,
    MaxLengthOpt,
    ModelOpt,
    MomentumOpt,
    MomentumSettingOpt,
    NesterovOpt,
    OptimizerArgsOpt,
    OptimizerOpt,
    PackOpt,
    PretrainedOpt,
    RayAddressOpt,
    RetryFailedOpt,
    SeedOpt,
    TestFileOpt,
    TestFractionOpt,
    TestSubsetOpt,
    TextColumnOpt,
    TrainSubsetOpt,
    ValFractionOpt,
    WeightDecayOpt,
    WeightDecaySettingOpt,
    WorkersOpt,
    exec_options,
    given,
    int_list,
    lease,
    pack_option,
    spec_values,
    setting_options,
    split_baselines,
    split_list,
)
from masbench.cli.output import percent
from masbench.cli.sweeping import print_plan, run_sweep
from masbench.errors import MasbenchError
from masbench.text.numbers import integer, number

# --- run -------------------------------------------------------------------------------------------


def run(
    ctx: typer.Context,
    dataset: DatasetOpt = None,
    model: ModelOpt = None,
    optimizer: OptimizerOpt = None,
    optimizer_args: OptimizerArgsOpt = None,
    lambda_adam: LambdaAdamOpt = None,
    lambda_sgd: LambdaSgdOpt = None,
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
    lr_schedule: LrScheduleOpt = None,
    batch_size: BatchSizeOpt = None,
    epochs: EpochsOpt = None,
    seed: SeedOpt = None,
    device: DeviceOpt = "auto",
    db: DbOpt = None,
    data_dir: DataDirOpt = None,
    pretrained: PretrainedOpt = None,
    max_length: MaxLengthOpt = None,
    text_column: TextColumnOpt = None,
    label_column: LabelColumnOpt = None,
    test_file: TestFileOpt = None,
    test_fraction: TestFractionOpt = None,
    train_subset: TrainSubsetOpt = None,
    test_subset: TestSubsetOpt = None,
    val_fraction: ValFractionOpt = None,
    benchmark: Annotated[str | None, typer.Option(help="Label the run as part of this benchmark.")] = None,
    amp: AmpOpt = None,
    channels_last: ChannelsLastOpt = None,
    compile: CompileOpt = False,
    checkpoint_dir: CheckpointDirOpt = ".masbench/checkpoints",
    force: Annotated[bool, typer.Option("--force", help="Run again even if the store has this run completed.")] = False,
    claim_timeout: ClaimTimeoutOpt = 60.0,
) -> None:
    """Train one run (one seed of a cell: optimizer and settings x model x data set); every epoch goes to the store.

    Under torchrun (torchrun --nproc-per-node N -m masbench run ...) the run trains with DistributedDataParallel.
    """
    from masbench.cli.axes import check_settings_reach
    from masbench.spec import RunSpec, make_spec

    # The options reach the spec by name through ctx.params: an option declared above cannot be left out.
    values = spec_values(ctx.params, RunSpec.model_fields)
    spec = make_spec(**values)
    check_settings_reach(spec, values)
    options = exec_options(ctx.params)
    stale_after, heartbeat_every = lease(claim_timeout)
    store, outcome = _train_cell(spec, options, db, force, stale_after, heartbeat_every)
    if store is not None:
        _report_run(spec, store, outcome)


def _train_cell(spec, options, db, force: bool, stale_after: float, heartbeat_every: float):
    """Train ``spec``; under torchrun every rank trains and rank 0 alone opens the store: ``(None, None)`` elsewhere."""
    from dataclasses import replace

    from masbench.cli.progress import RunProgress
    from masbench.engine import distributed
    from masbench.grid.benchmarks import Cell
    from masbench.signals import stop_on_signals
    from masbench.store import Store
    from masbench.sweep import preflight, run_cell

    dist = distributed.from_environment()
    options = replace(options, distributed=dist)
    if dist is not None and not dist.is_main:
        try:
            run_cell(spec, None, options, force=force, stale_after=stale_after)
        finally:
            distributed.shutdown()
        return None, None
    try:
        # Missing data, a bad device: refused before the store is opened, which creates a new one's file.
        datasets = preflight([Cell(spec)], options)
        store = Store(db)
        with store.unless_used(), stop_on_signals(), RunProgress(store_url=store.masked_url) as progress:
            outcome = run_cell(spec, store, options, callbacks=[progress], force=force, stale_after=stale_after,
                               heartbeat_every=heartbeat_every, datasets=datasets)
    finally:
        distributed.shutdown()
    return store, outcome


def _report_run(spec, store, outcome) -> None:
    """One line on stdout for a run trained or skipped; a MasbenchError (exit 1) for one that failed or is busy."""
    if outcome.status in ("skipped", "busy"):
        previous = outcome.previous
        epochs_done = store.epochs_of(previous.id) if previous is not None else []
        best = max((e.test_acc for e in epochs_done if e.test_acc is not None), default=None)
        if outcome.status == "busy":
            raise MasbenchError(f"{spec.describe()} is being trained by another worker ({outcome.message}); wait for "
                                f"it, or if that worker crashed, run again once its lease has expired (its --claim-timeout, "
                                f"by the database server's clock)")
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


# --- sweep -----------------------------------------------------------------------------------------


def sweep(
    ctx: typer.Context,
    benchmark: BenchmarkOpt = None,
    benchmarks: BenchmarksOpt = None,
    dataset: GridDatasetOpt = None,
    models: ModelsOpt = None,
    lambdas: LambdasOpt = None,
    baselines: BaselinesOpt = None,
    optimizer_args: GridOptimizerArgsOpt = None,
    lambda_schedule: LambdaSchedulesOpt = None,
    no_baselines: NoBaselinesOpt = False,
    mix: MixOpt = None,
    mix_step: MixStepOpt = None,
    seeds: Annotated[int | None, typer.Option(parser=integer, help="Seeds 0..N-1.")] = None,
    seed_list: Annotated[str | None, typer.Option(help="Explicit seeds, comma-separated: 0,1,2.")] = None,
    until_ci: Annotated[float | None, typer.Option(parser=number, help="Adaptive seeds: add seeds to each cell, in rounds, until the half-width of the 95% confidence interval of its mean best test accuracy (the report's ±CI95: mean ± this) is at most this many points (the initial seeds, at least 2, come first).")] = None,
    max_seeds: Annotated[int | None, typer.Option(parser=integer, help="With --until-ci: at most this many seeds per cell (default 10); the cap on runs (--max-cells) counts them all.")] = None,
    epochs: EpochsOpt = None,
    lr: LrSettingOpt = None,
    lr_schedule: LrScheduleOpt = None,
    momentum: MomentumSettingOpt = None,
    weight_decay: WeightDecaySettingOpt = None,
    betas: BetasOpt = None,
    eps: EpsOpt = None,
    amsgrad: AmsgradOpt = None,
    nesterov: NesterovOpt = None,
    dampening: DampeningOpt = None,
    bias_correction: BiasCorrectionOpt = None,
    batch_size: BatchSizeOpt = None,
    pretrained: PretrainedOpt = None,
    max_length: MaxLengthOpt = None,
    text_column: TextColumnOpt = None,
    label_column: LabelColumnOpt = None,
    test_file: TestFileOpt = None,
    test_fraction: TestFractionOpt = None,
    train_subset: TrainSubsetOpt = None,
    test_subset: TestSubsetOpt = None,
    val_fraction: ValFractionOpt = None,
    pack: PackOpt = None,
    workers: WorkersOpt = None,
    executor: ExecutorOpt = "local",
    ray_address: RayAddressOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List the runs and which are done; train nothing.")] = False,
    retry_failed: RetryFailedOpt = False,
    max_cells: Annotated[int, typer.Option(parser=integer, help="Refuse a grid of more runs than this (at most 100,000), counted before any is built.")] = 10_000,
    claim_timeout: ClaimTimeoutOpt = 60.0,
    device: DeviceOpt = "auto",
    db: DbOpt = None,
    data_dir: DataDirOpt = None,
    amp: AmpOpt = None,
    channels_last: ChannelsLastOpt = None,
    compile: CompileOpt = False,
    checkpoint_dir: CheckpointDirOpt = ".masbench/checkpoints",
) -> None:
    """Run a grid of cells over seeds: idempotent (finished runs are skipped), resumable, with parallel workers.

    The axes: --models, --baselines (any optimizer, mix:adam=0.3,sgd=0.7 too), --lambdas, --lambda-schedule,
    --mix with --mix-step, the seeds, and --lr, --momentum, --weight-decay given as lists (1e-3,3e-3); those three
    also take a value per optimizer (adam=1e-3,sgd=0.1); other flags: every cell.
    """
    from masbench.grid.benchmarks import plan_sweep
    from masbench.cli.axes import parse_optimizer_assignments
    from masbench.grid.grids import RUN_FIELDS
    from masbench.grid.settings import PER_OPTIMIZER

    check_sweep_flags(no_baselines, baselines, workers, executor, ray_address)
    stale_after, heartbeat_every = lease(claim_timeout)
    # The grid's axes and how its cells train, then the spec values every cell takes: the same builder as `run`'s
    # (lr, momentum and weight_decay may be axes or values per optimizer: setting_options).
    shared = [name for name in RUN_FIELDS if name not in PER_OPTIMIZER]
    overrides = given(
        models=split_list(models, "--models"), lambdas=lambdas,
        baselines=[] if no_baselines else split_baselines(baselines),
        mix=split_list(mix, "--mix"), mix_step=mix_step,
        seeds=seeds, seed_list=int_list(seed_list, "--seed-list"), pack=pack_option(pack),
        until_ci=until_ci, max_seeds=max_seeds,
        lambda_schedule=split_list(lambda_schedule, "--lambda-schedule"),
        optimizer_args=parse_optimizer_assignments(optimizer_args),
    ) | spec_values(ctx.params, shared) | setting_options(ctx.params)
    name, cells = plan_sweep(benchmark=benchmark, dataset=dataset, overrides=overrides, benchmarks_path=benchmarks,
                             max_cells=max_cells)
    title = name or dataset
    _check_pack_conv(cells)
    if dry_run:
        print_plan(title, cells, db, device, retry_failed)
        return

    from masbench.cli.progress import WarningLog
    from masbench.sweep import SweepSettings, default_workers

    settings = SweepSettings(options=exec_options(ctx.params),
                             workers=1 if executor == "ray" else workers or default_workers(),
                             retry_failed=retry_failed, stale_after=stale_after, heartbeat_every=heartbeat_every,
                             callbacks=(WarningLog(),))
    run_sweep(title, cells, db, settings, executor, ray_address)


def _check_pack_conv(cells) -> None:
    """A bad ``$MASBENCH_PACK_CONV`` is one line before anything is planned, printed or written."""
    import os

    if os.environ.get("MASBENCH_PACK_CONV") is None or all(cell.pack == "off" for cell in cells):
        return
    from masbench.engine.fuse import default_conv

    try:
        default_conv()
    except ValueError as error:
        raise MasbenchError(str(error)) from None


def check_sweep_flags(no_baselines: bool, baselines: str | None, workers: int | None, executor: str,
                    ray_address: str | None) -> None:
    if no_baselines and baselines is not None:
        raise MasbenchError("give --baselines or --no-baselines, not both")
    if workers is not None and workers < 1:
        raise MasbenchError(f"Invalid --workers: {workers} (must be >= 1)")
    if executor not in ("local", "ray"):
        raise MasbenchError(f"Invalid --executor: {executor!r} (valid: local, ray)")
    if ray_address is not None and executor != "ray":
        raise MasbenchError("--ray-address goes with --executor ray")
    if executor == "ray" and workers is not None:
        raise MasbenchError("--workers is for --executor local; Ray trains as many runs at once as the cluster has GPUs or CPUs")
