"""Horizontal fusion (HFTA, Wang et al., MLSys 2021): K models of one architecture run as one module.

``fuse(models)`` takes K freshly built members and returns a ``PackedModel`` whose every parameter
and buffer is the members' own, stacked along a leading member dimension of size K:

- ``Linear`` is a batched matmul over the member dimension (``baddbmm``): [K, B, in] -> [K, B, out];
- ``Conv2d`` is one grouped convolution over the members' concatenated channels: [B, K*C, H, W];
- ``BatchNorm2d`` normalises K*C channels, so each member keeps exactly its own running statistics;
- ReLU, pooling and residual additions act elementwise or per channel, so they run unchanged.

That is the ``"grouped"`` strategy of a convolutional model (``PackedModel.conv``). The other,
``"members"``, runs each member's own forward, one after another, on its slices of the stacked tensors
(``torch.func.functional_call`` of the architecture): the unpacked model's very calls on the very same
inputs, so its numbers bit for bit. Models without convolutions (the MLP) run fused under either.

The engine (``masbench.engine.prepare``) builds a fused model only for grouped convolutions: ``"auto"``
(the default; ``MASBENCH_PACK_CONV=grouped|members`` overrides it for the packs built while it is set) is
grouped on CUDA, and elsewhere each member runs its own model, unfused. On a CPU (oneDNN, AVX2) a grouped
convolution of 7 members ran ~1.5x slower than the 7 convolutions it replaces, and any layout of the K*B
images that one op takes (member-concatenated channels, or member-major [K*B, C, H, W] with per-member
convolutions and concatenations) costs copies and cache misses that one member's working set does not
(``benchmarks/pack_speed.py`` prints both strategies).

Two layouts of activations follow from this: member-major [K, B, F] for features and
channel-concatenated [B, K*C, H, W] for images. The packed model takes [K, B, C, H, W] (each member's
batch) and returns logits [K, B, classes]; ``Flatten`` and ``Linear`` convert between the layouts,
and so does ``torch.flatten(x, 1)`` in a forward, since each member's channels are one contiguous block.

Example:
    >>> import torch
    >>> from masbench.models.small import MLP
    >>> members = [MLP((1, 8, 8), 10) for _ in range(3)]
    >>> packed = fuse(members)
    >>> packed(torch.randn(3, 5, 1, 8, 8)).shape
    torch.Size([3, 5, 10])
"""

from __future__ import annotations

import copy
import os
import sys
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


CONV_STRATEGIES = ("auto", "grouped", "members")
CONV_ENV = "MASBENCH_PACK_CONV"


class Unpackable(Exception):
    """Cells or a model that cannot be packed; ``str(error)`` is the one-line reason."""


def conv_strategy(requested: str, device: torch.device) -> str:
    """The convolution strategy a pack runs on ``device``: ``requested``, or for ``"auto"`` grouped on CUDA only."""
    if requested != "auto":
        return requested
    return "grouped" if device.type == "cuda" else "members"


def default_conv() -> str:
    """``$MASBENCH_PACK_CONV`` (auto, grouped or members), else ``"auto"``."""
    value = os.environ.get(CONV_ENV, "auto")
    if value not in CONV_STRATEGIES:
        raise ValueError(f"Invalid {CONV_ENV}: {value!r} (valid: {', '.join(CONV_STRATEGIES)})")
    return value


class PackedLinear(nn.Module):
    """K ``nn.Linear``: weight [K, out, in], bias [K, out]; [K, B, in] (or [B, K*in]) -> [K, B, out]."""

    def __init__(self, weight: Tensor, bias: Tensor | None) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(bias) if bias is not None else None

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 2:  # [B, K*in]: ``torch.flatten(x, 1)`` of the channel-concatenated layout
            x = x.view(x.shape[0], self.weight.shape[0], -1).transpose(0, 1)
        if torch.is_autocast_enabled(x.device.type):
            return _batched_linear(x, self.weight, self.bias)  # autocast casts each op, backward included
        return _BatchedLinear.apply(x, self.weight, self.bias)


def _batched_linear(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    if bias is None:
        return torch.bmm(x, weight.transpose(1, 2))
    return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))


class _BatchedLinear(torch.autograd.Function):
    """``_batched_linear`` with a backward that computes the weight's gradient as [K, out, in] directly.

    Autograd's own backward of ``baddbmm`` gives it transposed, [K, in, out] seen through a transpose,
    which is then copied into the weight's layout: ~15% of the packed MLP's step on a CPU.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _batched_linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, weight = ctx.saved_tensors
        grad_x = torch.bmm(grad, weight) if ctx.needs_input_grad[0] else None
        grad_weight = torch.bmm(grad.transpose(1, 2), x) if ctx.needs_input_grad[1] else None
        grad_bias = grad.sum(1) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_weight, grad_bias


def to_channels(x: Tensor) -> Tensor:
    """[K, B, C, H, W] (the members' batches) -> [B, K*C, H, W]; other layouts pass through."""
    if x.dim() != 5:
        return x
    k, b, c, h, w = x.shape
    return x.transpose(0, 1).reshape(b, k * c, h, w)


class PackedConv2d(nn.Module):
    """K ``nn.Conv2d`` as one convolution with K times the groups; weight [K, out, in/groups, kh, kw]."""

    def __init__(self, weight: Tensor, bias: Tensor | None, stride, padding, dilation, groups: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(bias) if bias is not None else None
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups

    def forward(self, x: Tensor) -> Tensor:
        k = self.weight.shape[0]
        weight = self.weight.view(k * self.weight.shape[1], *self.weight.shape[2:])
        bias = self.bias.view(-1) if self.bias is not None else None
        return F.conv2d(to_channels(x), weight, bias, self.stride, self.padding, self.dilation, k * self.groups)


class PackedBatchNorm2d(nn.Module):
    """K ``nn.BatchNorm2d`` over K*C channels: weight, bias, running_mean and running_var [K, C]."""

    def __init__(self, first: nn.BatchNorm2d, stacked: dict[str, Tensor | None]) -> None:
        super().__init__()
        self.eps, self.momentum = first.eps, first.momentum
        self.weight = nn.Parameter(stacked["weight"]) if stacked["weight"] is not None else None
        self.bias = nn.Parameter(stacked["bias"]) if stacked["bias"] is not None else None
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            self.register_buffer(name, stacked[name])

    def forward(self, x: Tensor) -> Tensor:
        # nn.BatchNorm2d's forward, per member. Momentum is fixed (checked in ``fuse``), so the count is
        # kept only for the members' state dicts.
        if self.training and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)

        def flat(t: Tensor | None) -> Tensor | None:
            return t.view(-1) if t is not None else None

        # The running statistics go in as views of the [K, C] buffers: batch_norm updates them in place.
        return F.batch_norm(to_channels(x), flat(self.running_mean), flat(self.running_var), flat(self.weight),
                            flat(self.bias), self.training or self.running_mean is None, self.momentum, self.eps)


class PackedFlatten(nn.Module):
    """``nn.Flatten()`` for each of ``size`` members: [K, B, ...] or [B, K*C, H, W] -> [K, B, features]."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 4:  # channel-concatenated: each member's C*H*W values are one contiguous block
            return x.reshape(x.shape[0], self.size, -1).transpose(0, 1)
        return x.reshape(x.shape[0], x.shape[1], -1)


class PackedModel(nn.Module):
    """K members as one module; ``member_state_dict(k)`` and ``load_member_state_dict(k, sd)`` move one in and out.

    ``conv`` (auto, grouped or members; see the module's docstring) may be set between forwards; ``strategy(device)``
    says which one a forward on ``device`` runs.
    """

    def __init__(self, module: nn.Module, size: int, architecture: nn.Module | None = None, conv: str = "auto") -> None:
        super().__init__()
        if conv not in CONV_STRATEGIES:
            raise ValueError(f"Invalid conv: {conv!r} (valid: {', '.join(CONV_STRATEGIES)})")
        self.module, self.size, self.conv = module, size, conv
        # A member's architecture (its own tensors unused), for the members strategy; kept out of the module
        # tree so that it adds nothing to ``parameters()``, ``state_dict()`` or ``to()``.
        self.__dict__["architecture"] = architecture

    def strategy(self, device: torch.device) -> str:
        """What a forward on ``device`` runs: "grouped", "members", or "fused" for a model without convolutions."""
        return "fused" if self.architecture is None else conv_strategy(self.conv, device)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[0] != self.size:
            raise ValueError(f"a pack of {self.size} members got inputs for {x.shape[0]} (shape {tuple(x.shape)})")
        if self.strategy(x.device) == "members":
            return self._members_forward(x)
        return self.module(x)

    def _members_forward(self, x: Tensor) -> Tensor:
        """Each member's own forward on its slices (views: in-place updates of running statistics go through;
        ``unbind``'s backward stacks the K gradients of a parameter in one copy)."""
        from torch.func import functional_call

        tensors = [(name, t.unbind(0)) for name, t in (*self.module.named_parameters(),
                                                        *self.module.named_buffers())]
        self.architecture.train(self.training)
        return torch.stack([functional_call(self.architecture, {name: t[k] for name, t in tensors}, (x[k],))
                            for k in range(self.size)])

    def member_state_dict(self, k: int) -> dict[str, Tensor]:
        """Member ``k``'s ``state_dict``, as its own unpacked model would give it (copies, not views)."""
        return {name: t[k].clone() for name, t in self.module.state_dict().items()}

    @torch.no_grad()
    def load_member_state_dict(self, k: int, state: dict[str, Tensor]) -> None:
        """Put an ordinary (unpacked) state dict of this architecture into member ``k``; strict, as torch's."""
        own = self.module.state_dict()
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        if missing or unexpected:
            raise ValueError(f"member state dict does not fit the pack: missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]}")
        for name, tensor in own.items():
            if tuple(state[name].shape) != tuple(tensor.shape[1:]):
                raise ValueError(f"member state dict does not fit the pack: {name} is {tuple(state[name].shape)}, "
                                 f"the members' is {tuple(tensor.shape[1:])}")
            tensor[k].copy_(state[name])


def _stack(tensors: list[Tensor | None], name: str) -> Tensor | None:
    if all(t is None for t in tensors):
        return None
    if any(t is None for t in tensors) or len({tuple(t.shape) for t in tensors}) != 1:
        raise Unpackable(f"the members differ at {name}")
    return torch.stack([t.detach() for t in tensors])


def _linear(modules: list[nn.Linear], name: str) -> nn.Module:
    return PackedLinear(_stack([m.weight for m in modules], name), _stack([m.bias for m in modules], name))


def _conv(modules: list[nn.Conv2d], name: str) -> nn.Module:
    first = modules[0]
    if first.padding_mode != "zeros":
        raise Unpackable(f"{name} pads with {first.padding_mode!r}; packing supports zero padding only")
    return PackedConv2d(_stack([m.weight for m in modules], name), _stack([m.bias for m in modules], name),
                        first.stride, first.padding, first.dilation, first.groups)


def _batch_norm(modules: list[nn.BatchNorm2d], name: str) -> nn.Module:
    first = modules[0]
    if first.momentum is None:
        raise Unpackable(f"{name} uses a cumulative average (momentum=None), which packing does not support")
    stacked = {n: _stack([getattr(m, n) for m in modules], name)
               for n in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}
    return PackedBatchNorm2d(first, stacked)


# Modules with parameters or buffers: each gets its packed form.
_LEAVES = {nn.Linear: _linear, nn.Conv2d: _conv, nn.BatchNorm2d: _batch_norm}
# Stateless modules that act elementwise or per channel, in either layout (pooling: channel-concatenated only).
_STATELESS = (nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Identity)


def _containers() -> tuple[type, ...]:
    """Classes whose forward only calls submodules, adds, applies ReLU and ``torch.flatten(x, 1)``.

    Exact classes, not subclasses: a subclass may have a forward that reads shapes or mixes members.
    torchvision's ResNet classes only when torchvision is loaded already (a member built from them loaded
    it): fusing an MLP or CNN imported it (seconds, once per process), and failed where it is not installed.
    """
    from masbench.models.small import MLP, SmallCNN

    resnet = sys.modules.get("torchvision.models.resnet")
    found = (resnet.ResNet, resnet.BasicBlock, resnet.Bottleneck) if resnet is not None else ()
    return nn.Sequential, MLP, SmallCNN, *found


def _fuse(modules: list[nn.Module], name: str, containers: tuple[type, ...]) -> nn.Module:
    first = modules[0]
    kind = type(first)
    where = name or "the model"
    if any(type(m) is not kind for m in modules):
        raise Unpackable(f"the members differ at {where}: {sorted({type(m).__name__ for m in modules})}")
    if any(m.extra_repr() != first.extra_repr() for m in modules):
        raise Unpackable(f"the members differ at {where}: {first.extra_repr()} vs others")
    if kind in _LEAVES:
        return _LEAVES[kind](modules, where)
    if kind is nn.Flatten and (first.start_dim, first.end_dim) == (1, -1):
        return PackedFlatten(len(modules))
    if kind in _STATELESS:
        return copy.deepcopy(first)
    if kind not in containers:
        raise Unpackable(f"{where} is a {kind.__name__}, which has no packed form (packable: Linear, Conv2d, "
                         f"BatchNorm2d, ReLU, pooling, Flatten and masbench's mlp, cnn and ResNet models)")
    if list(first.named_parameters(recurse=False)) or list(first.named_buffers(recurse=False)):
        raise Unpackable(f"{where} ({kind.__name__}) holds tensors of its own, which have no packed form")
    packed = copy.copy(first)  # the container's settings and forward; its children are replaced below
    packed.__dict__["_modules"] = {
        child: None if sub is None else _fuse([m._modules[child] for m in modules], f"{name}.{child}".lstrip("."),
                                              containers)
        for child, sub in first._modules.items()
    }
    for attr in ("_parameters", "_buffers"):
        packed.__dict__[attr] = {}
    return packed


def fuse(models: Sequence[nn.Module], conv: str | None = None) -> PackedModel:
    """One module running ``models`` (K >= 1 of one architecture, each with its own weights) side by side.

    ``conv``: a convolutional model's strategy (auto, grouped or members); None reads ``$MASBENCH_PACK_CONV``.
    Raises ``Unpackable`` naming the first module that has no packed form or where the members differ.
    The members are left untouched; the pack holds copies of their tensors.
    """
    conv = default_conv() if conv is None else conv
    if not models:
        raise Unpackable("a pack needs at least one member")
    containers = _containers()
    packed = _fuse(list(models), "", containers)
    convolutional = any(isinstance(m, nn.Conv2d) for m in models[0].modules())
    architecture = copy.deepcopy(models[0]) if convolutional else None
    return PackedModel(packed, len(models), architecture, conv).train(models[0].training)
