"""``masbench tune``: every optimizer of a grid gets the same budget of trials, chosen on validation, rerun on
fresh seeds.

The grid is the sweep's (the same axes and settings flags, ``masbench.cli.options``); its trials are cells
that the sweep's executor runs (``masbench.cli.sweeping.run_sweep``: claimed, resumed, packed, local workers or
Ray); the plan and the choice are ``masbench.tune``'s.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

import typer

from masbench.cli.options import (
    AmpOpt,
    AmsgradOpt,
    BaselinesOpt,
    BatchSizeOpt,
    BenchmarkOpt,
    BenchmarksOpt,
    BetasOpt,
    BiasCorrectionOpt,
    ChannelsLastOpt,
    CheckpointDirOpt,
    ClaimTimeoutOpt,
    CompileOpt,
    DampeningOpt,
    DataDirOpt,
    DbOpt,
    DeviceOpt,
    EpochsOpt,
    EpsOpt,
    ExecutorOpt,
    GridDatasetOpt,
    GridOptimizerArgsOpt,
    LabelColumnOpt,
    LambdasOpt,
    LambdaSchedulesOpt,
    LrScheduleOpt,
    MaxLengthOpt,
    MixOpt,
    MixStepOpt,
    ModelsOpt,
    NesterovOpt,
    NoBaselinesOpt,
    PackOpt,
    PretrainedOpt,
    RayAddressOpt,
    RetryFailedOpt,
    TestFileOpt,
    TestFractionOpt,
    TestSubsetOpt,
    TextColumnOpt,
    TrainSubsetOpt,
    WeightDecayOpt,
    WorkersOpt,
    exec_options,
    given,
    lease,
    pack_option,
    spec_values,
    split_baselines,
    split_list,
)
from masbench.cli.output import percent, stdout_console
from masbench.cli.sweeping import run_sweep
from masbench.cli.train import check_sweep_flags
from masbench.text.numbers import integer, number
from masbench.errors import MasbenchError

# The sweep's shared settings that a tune takes as flags: not lr nor momentum (searched), nor the seeds and
# val_fraction (the tune's own).
TUNE_RUN_FIELDS = ("lr_schedule", "dampening", "nesterov", "weight_decay", "betas", "eps", "amsgrad",
                   "bias_correction", "batch_size", "epochs", "pretrained", "max_length", "text_column", "label_column",
                   "test_file", "test_fraction", "train_subset", "test_subset")


def tune(
    ctx: typer.Context,
    benchmark: BenchmarkOpt = None,
    benchmarks: BenchmarksOpt = None,
    dataset: GridDatasetOpt = None,
    budget: Annotated[int, typer.Option(parser=integer, help="Search trials per optimizer, the same for every one.")] = 8,
    final_seeds: Annotated[int, typer.Option(parser=integer, help="Rerun each optimizer's chosen trial on this many seeds (1..K, disjoint from the tuning seed 0), for its test accuracy; 0: none.")] = 3,
    sampler: Annotated[str, typer.Option(help="quasirandom (scrambled Sobol points, known up front) or tpe (Optuna's).")] = "quasirandom",
    prune: Annotated[bool, typer.Option("--prune", help="Stop poor trials early (successive halving over epochs, Optuna's pruner); the budget is then --budget x epochs per optimizer, and the epochs pruning saves buy more trials.")] = False,
    pruner: Annotated[str | None, typer.Option(help="With --prune: halving (the default: asynchronous successive halving, rungs at 1, 3, 9.. epochs) or hyperband.")] = None,
    search: Annotated[list[str] | None, typer.Option("--search", help="OPTIMIZER:PARAM=KIND:LOW:HIGH, repeatable: one parameter of one optimizer's search space (KIND log, uniform or int; or choice:0.9:0.99), e.g. sgd:lr=log:1e-3:1; over the benchmark's search: and the defaults (--show-space).")] = None,
    show_space: Annotated[bool, typer.Option("--show-space", help="Print each optimizer's search space and exit.")] = False,
    val_fraction: Annotated[float, typer.Option(parser=number, help="The validation split held out of train (0 < F <= 0.5): trials are chosen on it.")] = 0.1,
    seed: Annotated[int, typer.Option(parser=integer, help="The tuning seed: the search trials' runs and the sampler's; final runs take the next K seeds.")] = 0,
    models: ModelsOpt = None,
    lambdas: LambdasOpt = None,
    baselines: BaselinesOpt = None,
    optimizer_args: GridOptimizerArgsOpt = None,
    lambda_schedule: LambdaSchedulesOpt = None,
    no_baselines: NoBaselinesOpt = False,
    mix: MixOpt = None,
    mix_step: MixStepOpt = None,
    epochs: EpochsOpt = None,
    lr_schedule: LrScheduleOpt = None,
    weight_decay: WeightDecayOpt = None,
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
    pack: PackOpt = None,
    workers: WorkersOpt = None,
    executor: ExecutorOpt = "local",
    ray_address: RayAddressOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List the search trials and which are done; run nothing.")] = False,
    retry_failed: RetryFailedOpt = False,
    claim_timeout: ClaimTimeoutOpt = 60.0,
    device: DeviceOpt = "auto",
    db: DbOpt = None,
    data_dir: DataDirOpt = None,
    amp: AmpOpt = None,
    channels_last: ChannelsLastOpt = None,
    compile: CompileOpt = False,
    checkpoint_dir: CheckpointDirOpt = ".masbench/checkpoints",
) -> None:
    """Tune every optimizer of a grid on the same budget, choose on validation, report the chosen on fresh seeds.

    Each optimizer (each baseline, MAS with lambda_adam searched unless --lambdas holds it, each mix) gets
    --budget trials from its search space; the trial with the best validation accuracy is chosen and rerun on
    --final-seeds seeds. Like a sweep: a rerun trains nothing, and several processes share the trials.
    """
    from masbench.grid.search import parse_search
    from masbench.tune.plan import TuneSettings, plan_tune

    check_sweep_flags(no_baselines, baselines, workers, executor, ray_address)
    if pruner is not None and not prune:
        raise MasbenchError(f"--pruner {pruner} goes with --prune")
    stale_after, heartbeat_every = lease(claim_timeout)
    settings = TuneSettings(budget=budget, sampler=sampler, seed=seed, final_seeds=final_seeds,
                            val_fraction=val_fraction, prune=prune, pruner=pruner or "halving")
    if sampler == "tpe" or prune:  # before anything is written
        from masbench.tune.studies import require_optuna

        require_optuna("--sampler tpe" if sampler == "tpe" else "--prune")
    overrides = given(
        models=split_list(models, "--models"), lambdas=lambdas,
        baselines=[] if no_baselines else split_baselines(baselines),
        mix=split_list(mix, "--mix"), mix_step=mix_step, pack=pack_option(pack),
        lambda_schedule=split_list(lambda_schedule, "--lambda-schedule"),
        optimizer_args=_optimizer_args(optimizer_args),
    ) | spec_values(ctx.params, TUNE_RUN_FIELDS)
    planned = plan_tune(benchmark=benchmark, dataset=dataset, overrides=overrides, benchmarks_path=benchmarks,
                        settings=settings, search=parse_search(search), hold_lambdas=lambdas is not None)
    if show_space:
        _print_spaces(planned)
        return
    if dry_run:
        _print_trials(planned, db)
        return

    from masbench.cli.progress import WarningLog
    from masbench.store import Store
    from masbench.sweep import SweepSettings, default_workers

    sweep_settings = SweepSettings(options=exec_options(ctx.params),
                                   workers=1 if executor == "ray" else workers or default_workers(),
                                   retry_failed=retry_failed, stale_after=stale_after,
                                   heartbeat_every=heartbeat_every, callbacks=(WarningLog(),))
    store = Store(db)
    try:
        with store.unless_used():  # a tune refused before any trial trained (missing data) leaves no new store
            tune_id = store.ensure_tune(planned.key, planned.name, planned.record)
            failed = run_tune(planned, store, tune_id, lambda title, cells, callbacks=(): run_sweep(
                title, cells, db, replace(sweep_settings, callbacks=sweep_settings.callbacks + tuple(callbacks)),
                executor, ray_address, fail=False, results=False),
                per_round=sweep_settings.workers * _pack_size(planned))
        _print_result(planned, store.trials_frame(tune_id))
    finally:
        store.close()
    if failed:
        raise typer.Exit(1)


def run_tune(planned, store, tune_id: int, run_cells, per_round: int = 1) -> bool:
    """Record and run the search trials, choose per optimizer on validation, record and run the final trials;
    whether a cell failed. ``run_cells(title, cells, callbacks=())`` runs cells as a sweep does and returns its
    summary. TPE, and pruning, run the search in rounds (``masbench.tune.optimize``): ``per_round`` new TPE
    trials per optimizer each round (the workers times the pack size); quasirandom points under pruning start
    as many as the budget allows."""
    from masbench.report.choice import choose

    settings = planned.settings
    if settings.sampler == "tpe" or settings.prune:
        from itertools import count

        from masbench.tune.optimize import optimize, searches_of

        rounds = count(1)

        def run_round(cells, callbacks):
            return run_cells(f"tune {planned.name} (search, round {next(rounds)})", cells, callbacks)

        outcome = optimize(searches_of(planned), store, tune_id, planned.key, run_round, sampler=settings.sampler,
                           budget=settings.budget, prune=settings.pruner if settings.prune else None,
                           seed=settings.seed, per_round=settings.budget if settings.sampler == "quasirandom"
                           else per_round)
        failed = any(summary.failed for summary in outcome.summaries)
    else:
        store.record_trials(tune_id, [trial.row() for trial in planned.search])
        failed = bool(run_cells(f"tune {planned.name} (search)", [trial.cell for trial in planned.search]).failed)
    chosen = choose(store.trials_frame(tune_id))
    finals = planned.final_trials({label: choice.params for label, choice in chosen.items()})
    if finals:
        store.record_trials(tune_id, [trial.row() for trial in finals])
        failed |= bool(run_cells(f"tune {planned.name} (final)", [trial.cell for trial in finals]).failed)
    return failed


def _pack_size(planned) -> int:
    """The members per pack that ``--pack N`` (or a benchmark's ``pack: N``) asks for; 1 otherwise: a TPE round
    asks that many trials per optimizer and worker, so that its trials can pack together."""
    sizes = [entry.pack for entry in planned.entries if isinstance(entry.pack, int) and not isinstance(entry.pack, bool)]
    return max(sizes, default=1)


def _optimizer_args(items):
    from masbench.cli.axes import parse_optimizer_assignments

    return parse_optimizer_assignments(items)


def _print_spaces(planned) -> None:
    from masbench.tune.space import space_text

    out = stdout_console()
    out.print(f"tune {planned.name}: search spaces ({planned.settings.budget} trials each)", markup=False)
    width = max(len(entry.label) for entry in planned.entries)
    for entry in planned.entries:
        out.print(f"  {entry.label:<{width}}  {space_text(entry.space)}", markup=False)


def _params_text(params) -> str:
    """``lr=0.01 momentum=0.9``: lr first, then the others in their order."""
    ordered = sorted(params.items(), key=lambda item: item[0] != "lr")
    return " ".join(f"{name}={value:g}" if isinstance(value, float) else f"{name}={value}" for name, value in ordered)


def _print_trials(planned, db) -> None:
    """``--dry-run``: the search trials and their state in the store; nothing is written."""
    from rich.table import Table

    from masbench.sweep import dry_run

    out = stdout_console()
    settings = planned.settings
    if settings.sampler == "tpe":  # no trial is known before the study asks for it
        budget = f"{settings.budget} x epochs each" if settings.prune else f"{settings.budget} trials each"
        out.print(f"tune {planned.name}: {len(planned.entries)} optimizer(s), {budget}; TPE asks its trials as the "
                  f"tune goes, then {settings.final_seeds} final seed(s) each", markup=False)
        return
    listed = dry_run([trial.cell for trial in planned.search], db)
    table = Table(title=f"tune {planned.name}: {len(planned.entries)} optimizer(s) x {planned.settings.budget} "
                        f"trials, then {planned.settings.final_seeds} final seed(s) each")
    for column in ("optimizer", "trial", "hyperparameters", "status"):
        table.add_column(column, overflow="fold")
    for trial, (_, status) in zip(planned.search, listed):
        table.add_row(trial.label, str(trial.number), _params_text(trial.params), status,
                      style="dim" if status == "completed" else None)
    out.print(table, markup=False)
    done = sum(1 for _, status in listed if status == "completed")
    out.print(f"{len(listed)} search trials: {done} completed, {len(listed) - done} to run", markup=False)
    if settings.prune:
        out.print("with --prune, these are the first trials: the epochs that pruning saves buy more", markup=False)


def _print_result(planned, frame) -> None:
    """Per optimizer: trials done, the chosen hyperparameters (lr first) and validation accuracy, and the
    final seeds' mean test accuracy (each at its run's best validation epoch)."""
    from masbench.report.choice import choose, final_scores

    out = stdout_console()
    chosen, finals = choose(frame), final_scores(frame)
    search = frame[frame["phase"] == "search"]
    settings = planned.settings
    budget = (f"{settings.budget} trials' epochs per optimizer, pruned by {settings.pruner}" if settings.prune
              else f"{settings.budget} trials per optimizer")
    out.print(f"tune {planned.name}: {budget} ({settings.sampler}, seed {settings.seed}), "
              f"chosen on validation ({settings.val_fraction:g} of train), final seeds "
              f"{_seeds_text(settings.final_seed_values)}", markup=False)
    for entry in planned.entries:
        trials = search[search["optimizer"] == entry.label]
        done = int((trials["status"] == "completed").sum())
        line = f"  {entry.label}: {done}/{len(trials)} trials completed"
        if settings.prune:  # the budget is in epochs: what pruning stopped, and the epochs spent of it
            budget = settings.budget * entry.spec({}, settings.seed).epochs
            line += (f", {int((trials['status'] == 'pruned').sum())} pruned, "
                     f"{int(trials['epochs'].fillna(0).sum())}/{budget} epochs")
        choice = chosen.get(entry.label)
        if choice is None:
            out.print(line + "; none to choose", markup=False)
            continue
        line += f"; chosen trial {choice.number}: {_params_text(choice.params)}, val acc {percent(choice.val_acc)}"
        final = finals.get(entry.label)
        if final is not None:
            line += f"; final test acc {percent(final.mean)} (mean of {len(final.test_accs)}/{final.planned} seeds)"
        out.print(line, markup=False)


def _seeds_text(seeds: list[int]) -> str:
    if not seeds:
        return "none"
    return str(seeds[0]) if len(seeds) == 1 else f"{seeds[0]}..{seeds[-1]}"
