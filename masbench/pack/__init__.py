"""Packed cells: many cells of a grid trained in one pass, each with its own numbers (issue 12).

- ``fuse``: K models of one architecture as one module (HFTA: batched matmuls, grouped convolutions on
  CUDA and the members' own on a CPU, BatchNorm per member), every tensor with a leading member dimension;
- ``optim``: the members' optimizers stepping the stacked parameters;
- ``engine``: ``train_pack(cells, options)`` and ``can_pack(specs)``;
- ``members``: what a caller passes per cell (``PackMember``) and gets back (``MemberOutcome``).

A set of cells or a model that cannot be packed raises ``Unpackable`` with a one-line reason.
(``fuse`` is not re-exported: the name would shadow its module, ``masbench.pack.fuse``.)
"""

from masbench.pack.engine import SHARED_FIELDS, can_pack, pack_key, plan_packs, train_pack
from masbench.pack.fuse import PackedModel, Unpackable
from masbench.pack.members import MemberOutcome, PackMember
from masbench.pack.optim import PackedOptimizer, member_views

__all__ = [
    "SHARED_FIELDS", "MemberOutcome", "PackMember", "PackedModel", "PackedOptimizer", "Unpackable", "can_pack",
    "member_views", "pack_key", "plan_packs", "train_pack",
]
