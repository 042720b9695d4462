"""The engine as the unit runner calls it: ``prepare_unit`` and ``train_unit`` for K >= 1 cells.

A stand-in for the unified engine's ``prepare(specs, ...)`` and ``train(members, ...)`` (issue 19), written
over today's two engines: ``engine.prepare``/``engine.train`` for one cell and ``pack.train_pack`` for
several. It is the one place in ``sweep`` that touches them; at the merge it gives way to direct calls.
"""

from __future__ import annotations

import traceback
from collections.abc import Sequence

import torch

from masbench.engine import describe_device, prepare, resolve_device, train
from masbench.pack import MemberOutcome, PackMember, Unpackable, can_pack, train_pack
from masbench.spec import ExecOptions, RunSpec

Member = PackMember

__all__ = ["Member", "MemberOutcome", "Unpackable", "execution_config", "prepare_unit", "train_unit"]


def prepare_unit(specs: Sequence[RunSpec], options: ExecOptions, datasets: dict | None = None,
                 conv: str | None = None):
    """What training ``specs`` needs, built before anything is written: bad input raises ``MasbenchError``,
    cells that cannot share a pack raise ``Unpackable`` (one line: why)."""
    if len(specs) == 1:
        return prepare(specs[0], options, datasets)
    reason = can_pack(list(specs))
    if reason is None and options.distributed is not None:
        reason = "a DDP run is not packed"
    if reason is not None:
        raise Unpackable(reason)
    return None  # today's pack engine builds its pack itself


def train_unit(members: Sequence[Member], options: ExecOptions, prepared=None, datasets: dict | None = None,
               conv: str | None = None) -> list[MemberOutcome]:
    """Train the members in one pass; one ``MemberOutcome`` per member, in order.

    An ``Exception`` of one member (its callbacks, or its lone training) comes back in its outcome;
    ``BaseException``s propagate, and so does an exception of a whole pack.
    """
    if len(members) > 1:
        return train_pack(members, options, datasets=datasets, conv=conv)
    member = members[0]
    try:
        result = train(member.spec, options, list(member.callbacks), prepared=prepared, owner=member.owner)
    except Exception as error:  # the cell's own failure, handed back as a pack member's is
        return [MemberOutcome(member.spec, exception=error, traceback=traceback.format_exc())]
    return [MemberOutcome(member.spec, result=result)]


def execution_config(prepared, options: ExecOptions, size: int) -> tuple[dict, str]:
    """How the unit executes, as its runs' config records it (``packed: K`` for a pack), and its device, described."""
    if prepared is not None:
        execution = {"device": str(prepared.device), "amp_bf16": prepared.amp,
                     "channels_last": prepared.channels_last, "compile": options.compile}
        return execution, describe_device(prepared.device)
    device = resolve_device(options.device)
    amp = options.amp if options.amp is not None else device.type == "cuda" and torch.cuda.is_bf16_supported()
    return ({"device": str(device), "amp_bf16": amp, "channels_last": False, "compile": options.compile,
             "packed": size}, describe_device(device))
