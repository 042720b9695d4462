"""The options that ``run`` and ``sweep`` share, and the one builder that turns them into spec values.

Every ``RunSpec`` field has one option type here, used by every command that takes
it, so a flag has the same name, help and parsing wherever it appears. Spec options
default to ``None``, "not given": the spec's default (``run``) or the benchmarks
file's value (``sweep``) applies then, and a flag given explicitly overrides both.
``spec_values`` is the one place that turns the given flags into ``RunSpec`` field
values; ``exec_options`` and ``lease`` do the same for how a run is executed.

Heavy modules are imported inside the functions: ``masbench --help`` imports this.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Annotated, Any

import typer

from masbench.errors import MasbenchError
from masbench.text.numbers import integer, is_digits, number
from masbench.text.shown import one_line, shown


# --- spec options: one per RunSpec field --------------------------------------------------------

DatasetOpt = Annotated[str | None, typer.Option(
    help="digits, cifar10, cifar100, cola, agnews, imagefolder:PATH, csv:PATH, or a plugin's (masbench list datasets).")]
ModelOpt = Annotated[str | None, typer.Option(
    help="mlp, cnn, resnet18, resnet34, bert, tv:NAME (torchvision's), package.module:function(num_classes, "
         "input_shape), or a plugin's (masbench list models).")]
OptimizerOpt = Annotated[str | None, typer.Option(
    help="mas, sgd, adam, adamw, radam, nadam, adamax, rmsprop, adagrad, adadelta, asgd, rprop, a mix "
         "mix:adam=0.3,sgd=0.5,rmsprop=0.2, or an import path "
         "package.module:Class of a torch.optim.Optimizer (e.g. torch.optim.RAdam).")]
OptimizerArgsOpt = Annotated[list[str] | None, typer.Option(
    "--optimizer-arg", help="KEY=VALUE, repeatable: a keyword of the optimizer that no other option sets, typed by "
                            "its signature (e.g. decoupled_weight_decay=true, betas=0.9,0.99).")]
LambdaAdamOpt = Annotated[float | None, typer.Option(parser=number, help="MAS's weight of the Adam part (default 0.5).")]
LambdaSgdOpt = Annotated[float | None, typer.Option(parser=number, help="MAS's weight of the SGD part (default 0.5).")]


def one_number(value: Any) -> float:
    """``run``'s ``--lr``, ``--momentum``, ``--weight-decay``: one number (an axis or values per optimizer are a
    sweep's, ``masbench.grid.settings``)."""
    if isinstance(value, str) and ("," in value or "=" in value):
        raise ValueError(f"{shown(value)}: run trains one run, with one number (an axis, 1e-3,3e-3, or values "
                         f"per optimizer, adam=1e-3,sgd=0.1, are for sweep)")
    return number(value)


LR_HELP = "Learning rate (MAS: SGD's, and Adam's before bias correction)"
MOMENTUM_HELP = "SGD momentum (also MAS's SGD part)"
WEIGHT_DECAY_HELP = "Weight decay (default: the optimizer's own; AdamW 0.01)"
# run's None is RunSpec's default, the same for every optimizer (a benchmark's values per optimizer are a sweep's).
LrOpt = Annotated[float | None, typer.Option(parser=one_number, help=f"{LR_HELP} (default 0.001, every optimizer).")]
MomentumOpt = Annotated[float | None, typer.Option(parser=one_number,
                                                   help=f"{MOMENTUM_HELP} (default 0, every optimizer).")]
WeightDecayOpt = Annotated[float | None, typer.Option(parser=one_number, help=f"{WEIGHT_DECAY_HELP}.")]
# A sweep's: a number, an axis or a value per optimizer (masbench.grid.settings; parsed by setting_option).
SETTING_HELP = (": a number, an axis (A,B: every optimizer at every value), or a value per optimizer "
                "(adam=1e-3,sgd=0.1,mas=3e-3; others=V for the rest; an optimizer not named keeps the benchmark's).")
PER_OPTIMIZER = " Default: the benchmark's, per optimizer (see the benchmarks file)."
LrSettingOpt = Annotated[str | None, typer.Option("--lr", help=LR_HELP + SETTING_HELP + PER_OPTIMIZER)]
MomentumSettingOpt = Annotated[str | None, typer.Option("--momentum", help=MOMENTUM_HELP + SETTING_HELP + PER_OPTIMIZER)]
WeightDecaySettingOpt = Annotated[str | None, typer.Option("--weight-decay", help=WEIGHT_DECAY_HELP + SETTING_HELP)]
BetasOpt = Annotated[str | None, typer.Option(help="Adam's betas, as B1,B2 (default 0.9,0.999).")]
EpsOpt = Annotated[float | None, typer.Option(parser=number, help="Adam's epsilon (default 1e-8).")]
AmsgradOpt = Annotated[bool | None, typer.Option("--amsgrad/--no-amsgrad", help="AMSGrad for the Adam part.")]
NesterovOpt = Annotated[bool | None, typer.Option("--nesterov/--no-nesterov", help="Nesterov momentum.")]
DampeningOpt = Annotated[float | None, typer.Option(parser=number, help="SGD dampening (default 0).")]
BiasCorrectionOpt = Annotated[str | None, typer.Option(help="MAS's bias correction: step (authors' code) or constant (paper).")]
LambdaScheduleOpt = Annotated[
    str | None, typer.Option(help="constant, or linear:START:END[:EPOCHS] for lambda_adam (lambda_sgd = 1 - it).")
]
LrScheduleOpt = Annotated[str | None, typer.Option(
    help="constant, step:EVERY:GAMMA, multistep:M1,M2:GAMMA, cosine[:WARMUP] or linear-warmup:N (per epoch).")]
BatchSizeOpt = Annotated[int | None, typer.Option(parser=integer, help="Batch size (default 128).")]
EpochsOpt = Annotated[int | None, typer.Option(parser=integer, help="Epochs (default 10).")]
SeedOpt = Annotated[int | None, typer.Option(parser=integer, help="Random seed (default 0).")]
PretrainedOpt = Annotated[str | None, typer.Option(
    help="Pre-trained text model, hub name or local path (default bert-base-uncased); for tv:NAME, torchvision's "
         "weights (DEFAULT, IMAGENET1K_V1, ...).")]
MaxLengthOpt = Annotated[int | None, typer.Option(parser=integer, help="Text: longest token sequence (default 128).")]
TextColumnOpt = Annotated[str | None, typer.Option(help="csv: the text column, a name or a 0-based index.")]
LabelColumnOpt = Annotated[str | None, typer.Option(help="csv: the label column, a name or a 0-based index.")]
TestFileOpt = Annotated[str | None, typer.Option(help="csv: a file with the test split.")]
TestFractionOpt = Annotated[float | None, typer.Option(parser=number, help="csv without --test-file: held-out fraction (0.2).")]
TrainSubsetOpt = Annotated[int | None, typer.Option(parser=integer, help="Train on a fixed random subset of this size.")]
TestSubsetOpt = Annotated[int | None, typer.Option(parser=integer, help="Test on a fixed random subset of this size.")]
ValFractionOpt = Annotated[float | None, typer.Option(
    parser=number,
    help="Hold out this fraction (0 < F <= 0.5) of the training set, stratified and seeded by the run's seed, "
         "and record validation loss and accuracy per epoch (for report --metric val).")]

# --- execution options: how a run is executed, never part of its key ---------------------------

DeviceOpt = Annotated[str, typer.Option(help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps.")]
DbOpt = Annotated[
    str | None, typer.Option(help="SQLAlchemy database URL (default: $MASBENCH_DB, else sqlite:///masbench.db).")
]
DataDirOpt = Annotated[
    str | None, typer.Option(help="Where data sets live (default: $MASBENCH_DATA, else ~/.cache/masbench/data).")
]
AmpOpt = Annotated[bool | None, typer.Option("--amp/--no-amp", help="bf16 autocast (default: on with CUDA).")]
ChannelsLastOpt = Annotated[
    bool | None, typer.Option("--channels-last/--no-channels-last", help="channels_last images (default: on with CUDA).")
]
CompileOpt = Annotated[bool, typer.Option("--compile/--no-compile", help="torch.compile the model.")]
CheckpointDirOpt = Annotated[str, typer.Option(help="Where per-epoch checkpoints go.")]
ClaimTimeoutOpt = Annotated[
    float, typer.Option(parser=number, help="This worker's lease, in seconds: if it stops renewing its claim for that "
                        "long (by the database server's clock), another worker may take the run over.")
]


# --- a grid's axes (sweep, tune) ----------------------------------------------------------------

BenchmarkOpt = Annotated[str | None, typer.Option(help="A benchmark of the benchmarks file (quick, nightly, cifar10, ...).")]
BenchmarksOpt = Annotated[str | None, typer.Option(help="The benchmarks file (default ./benchmarks.yaml, else masbench's own).")]
GridDatasetOpt = Annotated[str | None, typer.Option(help="The data set; alone, it picks the benchmark of that name if there is one.")]
ModelsOpt = Annotated[str | None, typer.Option(help="Models, comma-separated: e.g. resnet18,resnet34.")]
LambdasOpt = Annotated[str | None, typer.Option(help="lambda_adam values: 0.3..0.7 (step 0.1), 0.3..0.7:0.05, or 0.3,0.5,0.7; lambda_sgd = 1 - lambda_adam.")]
BaselinesOpt = Annotated[str | None, typer.Option(help="Baselines, comma-separated: what --optimizer takes but mas, e.g. adam,sgd,radam,torch.optim.NAdam (default adam,sgd; plus adamw for text).")]
GridOptimizerArgsOpt = Annotated[list[str] | None, typer.Option("--optimizer-arg", help="OPTIMIZER:KEY=VALUE, repeatable: an argument of one of the baselines, e.g. radam:decoupled_weight_decay=true.")]
LambdaSchedulesOpt = Annotated[str | None, typer.Option(help="MAS's lambda schedules, comma-separated: constant (the --lambdas grid, the default) and linear:START:END[:EPOCHS] (one MAS cell each), e.g. constant,linear:1:0:100.")]
NoBaselinesOpt = Annotated[bool, typer.Option("--no-baselines", help="Run MAS only.")]
MixOpt = Annotated[str | None, typer.Option(help="Mixes over the simplex of these optimizers, comma-separated (e.g. adam,sgd,rmsprop): one cell per weights that are multiples of --mix-step and sum to 1.")]
MixStepOpt = Annotated[str | None, typer.Option(help="The step of the --mix grid, a number that divides 1: 0.25, 0.1, ...")]


# --- how a grid's cells run (sweep, tune) -----------------------------------------------------------

PackOpt = Annotated[str | None, typer.Option(help="Train runs in packs of N (>= 2) that share data, model, batch size and epochs, each recorded as its own run; auto (the MLP and the small CNN everywhere, the ResNets on CUDA), or off (default; the benchmark's pack: applies unless given).")]
WorkersOpt = Annotated[int | None, typer.Option(parser=integer, help="Worker processes (default: one per GPU when there are several, else 1).")]
ExecutorOpt = Annotated[str, typer.Option(help="local (worker processes on this machine) or ray (a task per run on a Ray cluster).")]
RayAddressOpt = Annotated[str | None, typer.Option(help="With --executor ray: auto or HOST:PORT of a running cluster (default: start a local one).")]
RetryFailedOpt = Annotated[bool, typer.Option("--retry-failed", help="Train failed and diverged runs again.")]


def spec_values(params: Mapping[str, Any], fields: Iterable[str]) -> dict[str, Any]:
    """The ``RunSpec`` field values among a command's ``params`` (``ctx.params``) that were given.

    ``fields`` are the fields the command's target takes: every ``RunSpec`` field for ``run``,
    ``benchmarks.RUN_FIELDS`` (those a grid applies to all its cells) for ``sweep``. Options not
    given (``None``) are left out, so that the spec's or the benchmarks file's values apply.

    >>> spec_values({"lr": 0.01, "betas": "0.8,0.99", "epochs": None, "device": "cpu"}, ["lr", "betas", "epochs"])
    {'lr': 0.01, 'betas': (0.8, 0.99)}
    """
    wanted = set(fields)
    values = {name: value for name, value in params.items() if name in wanted and value is not None}
    if "betas" in values:
        values["betas"] = parse_betas(values["betas"])
    if "optimizer_args" in values:
        from masbench.cli.axes import parse_assignments

        values["optimizer_args"] = parse_assignments(values["optimizer_args"], "--optimizer-arg")
    return values


def exec_options(params: Mapping[str, Any], keep_checkpoint: bool = False):
    """The ``ExecOptions`` of a command's ``params`` (``ctx.params``)."""
    from pathlib import Path

    from masbench.engine import ExecOptions

    from masbench.text.paths import check_new_folder

    data_dir = params["data_dir"]
    return ExecOptions(device=params["device"],
                       data_dir=None if data_dir is None else check_new_folder(data_dir, "Invalid --data-dir:"),
                       amp=params["amp"], channels_last=params["channels_last"], compile=params["compile"],
                       checkpoint_dir=checkpoint_dir(params["checkpoint_dir"]), keep_checkpoint=keep_checkpoint)


def checkpoint_dir(text: str):
    """``--checkpoint-dir``: a directory, or a path where one can be made; refused up front when it, or a folder
    on its way, is not a folder (it would be found only when the first epoch's checkpoint is written)."""
    from masbench.text.paths import check_new_folder

    return check_new_folder(text, "Invalid --checkpoint-dir:")


def lease(claim_timeout: float) -> tuple[float, float]:
    """``(stale_after, heartbeat_every)`` for ``--claim-timeout``: a few heartbeats per timeout, at least one per 10 s."""
    if claim_timeout <= 0:
        raise MasbenchError(f"Invalid --claim-timeout: {claim_timeout} (must be > 0)")
    return claim_timeout, min(10.0, claim_timeout / 4)


def setting_options(params: Mapping[str, Any]) -> dict[str, Any]:
    """A sweep's ``--lr``, ``--momentum`` and ``--weight-decay`` that were given, parsed (``parse_setting``)."""
    from masbench.grid.settings import PER_OPTIMIZER, flag_of, parse_setting

    try:
        return {what: parse_setting(params[what], flag_of(what)) for what in PER_OPTIMIZER
                if params.get(what) is not None}
    except ValueError as error:
        raise MasbenchError(one_line(str(error))) from None


def pack_option(text: str | None) -> int | str | None:
    """``--pack``: members per pack (N >= 2), auto or off; None when not given (the benchmark's applies)."""
    if text is None:
        return None
    from masbench.grid.grids import parse_pack

    try:
        return parse_pack(text, "--pack")
    except ValueError as error:
        raise MasbenchError(str(error)) from None


def parse_betas(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        b1, b2 = (number(part) for part in text.split(","))
    except ValueError:
        raise MasbenchError(f"Invalid --betas: {shown(text)} (expected two numbers, B1,B2, e.g. 0.9,0.999)") from None
    return b1, b2


def given(**values: Any) -> dict[str, Any]:
    """The options given on the command line (the others are None)."""
    return {key: value for key, value in values.items() if value is not None}


def split_baselines(text: str | None) -> list[str] | None:
    """``--baselines``: as ``split_list``, with each mix whole (``adam,mix:adam=0.5,sgd=0.5`` is two baselines)."""
    from masbench.grid.mix_weights import join_mix_items

    items = split_list(text, "--baselines", unique=False)
    if items is None:
        return None
    items = join_mix_items(items)
    twice = next((item for i, item in enumerate(items) if item in items[:i]), None)
    if twice is not None:
        raise MasbenchError(f"Invalid --baselines: {shown(text)} gives {shown(twice)} twice (give each once)")
    return items


def split_list(text: str | None, what: str, unique: bool = True) -> list[str] | None:
    """The items of a comma-separated list, spaces around them dropped; an empty item or one given twice is refused.

    ``--seed-list 0,0`` or ``--models mlp,,cnn`` is a typo more often than a wish: said, not silently mended.
    """
    if text is None:
        return None
    items = [part.strip() for part in text.split(",")]
    if not any(items):
        raise MasbenchError(f"Invalid {what}: {shown(text)} (a comma-separated list)")
    if "" in items:
        raise MasbenchError(f"Invalid {what}: {shown(text)} has an empty item (a comma-separated list, e.g. a,b)")
    twice = next((item for i, item in enumerate(items) if item in items[:i]), None) if unique else None
    if twice is not None:
        raise MasbenchError(f"Invalid {what}: {shown(text)} gives {shown(twice)} twice (give each once)")
    return items


def int_list(text: str | None, what: str) -> list[int] | None:
    """The non-negative integers of a comma-separated list, in digits 0-9 without a sign: ``int()`` would take
    ``١,٢``, ``1_000`` and ``+1`` too."""
    items = split_list(text, what)
    if items is None:
        return None
    bad = next((item for item in items if not is_digits(item)), None)  # no sign: 0,+1 is 0,1 spelt again
    if bad is not None:
        raise MasbenchError(f"Invalid {what}: {shown(text)} ({shown(bad)} is not an integer in digits 0-9 without "
                            f"a sign; comma-separated non-negative integers, e.g. 0,1,2)")
    values = [int(item) for item in items]
    twice = next((v for i, v in enumerate(values) if v in values[:i]), None)
    if twice is not None:  # 1 and 01 are one seed
        raise MasbenchError(f"Invalid {what}: {shown(text)} gives {twice} twice (give each once)")
    return values
