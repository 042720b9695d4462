"""Options and parsing helpers shared by the commands."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from masbench.errors import MasbenchError

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


def parse_betas(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        b1, b2 = (float(part) for part in text.split(","))
    except ValueError:
        raise MasbenchError(f"Invalid --betas: {text!r} (expected two numbers, B1,B2, e.g. 0.9,0.999)") from None
    return b1, b2


def given(**values: Any) -> dict[str, Any]:
    """The options given on the command line (the others are None)."""
    return {key: value for key, value in values.items() if value is not None}


def exec_options(device, data_dir, amp, channels_last, compile, checkpoint_dir, keep_checkpoint=False):
    from pathlib import Path

    from masbench.spec import ExecOptions

    return ExecOptions(device=device, data_dir=None if data_dir is None else Path(data_dir), amp=amp,
                       channels_last=channels_last, compile=compile, checkpoint_dir=Path(checkpoint_dir),
                       keep_checkpoint=keep_checkpoint)


def split_list(text: str | None, what: str) -> list[str] | None:
    if text is None:
        return None
    items = [part.strip() for part in text.split(",") if part.strip()]
    if not items:
        raise MasbenchError(f"Invalid {what}: {text!r} (a comma-separated list)")
    return items


def int_list(text: str | None, what: str) -> list[int] | None:
    items = split_list(text, what)
    if items is None:
        return None
    try:
        return [int(item) for item in items]
    except ValueError:
        raise MasbenchError(f"Invalid {what}: {text!r} (comma-separated integers, e.g. 0,1,2)") from None
