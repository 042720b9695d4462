"""Horizontal fusion (HFTA, Wang et al., MLSys 2021): K models of one architecture run as one module.

``fuse(models)`` takes K freshly built members and returns a ``PackedModel`` whose every parameter
and buffer is the members' own, stacked along a leading member dimension of size K:

- ``Linear`` is a batched matmul over the member dimension (``baddbmm``): [K, B, in] -> [K, B, out];
- ``Conv2d`` runs by one of two strategies (``PackedModel.conv``):

  - ``"grouped"`` (HFTA's): one grouped convolution over the members' concatenated channels, images
    [B, K*C, H, W]; ``BatchNorm2d`` normalises K*C channels, so each member keeps its own statistics;
  - ``"members"``: each member's own ``F.conv2d``, ``F.batch_norm`` and ``F.linear`` on its contiguous
    slice of member-major images [K*B, C, H, W], the unpacked model's very kernels on the very same
    inputs: on a CPU, the unpacked model's numbers bit for bit.

  ``"auto"`` (the default) is grouped on CUDA and members elsewhere: on a CPU (oneDNN, AVX2, one
  thread) a grouped convolution of 7 members ran ~1.5x slower than the 7 convolutions it replaces
  (``benchmarks/pack_speed.py`` prints both). ``MASBENCH_PACK_CONV=grouped|members`` overrides
  ``"auto"`` for the packs built while it is set;
- ReLU, pooling and residual additions act elementwise or per image and channel, so they run
  unchanged in either layout.

Features are member-major [K, B, F]. The packed model takes [K, B, C, H, W] (each member's batch) and
returns logits [K, B, classes]; ``Flatten`` and ``Linear`` convert from the images' layout, and so does
``torch.flatten(x, 1)`` in a forward, since each member's values are one contiguous block in either.

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
    """``$MASBENCH_PACK_CONV`` (grouped or members), else ``"auto"``."""
    value = os.environ.get(CONV_ENV, "auto")
    if value not in CONV_STRATEGIES:
        raise ValueError(f"Invalid {CONV_ENV}: {value!r} (valid: {', '.join(CONV_STRATEGIES)})")
    return value


class _Layout:
    """How a pack's images are laid out in the current forward, shared by its packed layers.

    ``member_major``: [K*B, C, H, W], member k's images one contiguous block (the members strategy);
    otherwise channel-concatenated [B, K*C, H, W] (grouped). Set by ``PackedModel.forward``.
    """

    def __init__(self, size: int, convolutional: bool) -> None:
        self.size, self.member_major = size, False
        # In a convolutional model's members strategy, Linear layers too run each member's own F.linear: the
        # head is small, and a batched matmul reduces in another order than ``mm`` on more than one thread.
        self.convolutional = convolutional


def _member_images(x: Tensor, k: int) -> tuple[Tensor, ...]:
    """Each member's images [B, C, H, W] from [K, B, C, H, W] or member-major [K*B, C, H, W] (views; unbind's
    backward stacks the K gradients in one copy)."""
    if x.dim() == 4:
        x = x.view(k, x.shape[0] // k, *x.shape[1:])
    return x.unbind(0)


def _unbound(t: Tensor | None, k: int) -> Sequence[Tensor | None]:
    return t.unbind(0) if t is not None else (None,) * k


class PackedLinear(nn.Module):
    """K ``nn.Linear``: weight [K, out, in], bias [K, out]; [K, B, in] (or [B, K*in]) -> [K, B, out]."""

    def __init__(self, weight: Tensor, bias: Tensor | None, layout: _Layout) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(bias) if bias is not None else None
        self.layout = layout

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 2:  # ``torch.flatten(x, 1)`` of images: [K*B, in] member-major, [B, K*in] channel-concatenated
            k = self.weight.shape[0]
            x = x.view(k, -1, x.shape[1]) if self.layout.member_major else x.view(x.shape[0], k, -1).transpose(0, 1)
        if self.layout.member_major and self.layout.convolutional:
            return torch.stack([F.linear(xk, w, b) for xk, w, b in zip(x.unbind(0), self.weight.unbind(0),
                                                                        _unbound(self.bias, len(x)))])
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
    """K ``nn.Conv2d``, weight [K, out, in/groups, kh, kw]: each member's own convolution on its images
    (member-major layout), or one convolution with K times the groups (channel-concatenated)."""

    def __init__(self, weight: Tensor, bias: Tensor | None, stride, padding, dilation, groups: int,
                 layout: _Layout) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(bias) if bias is not None else None
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
        self.layout = layout

    def forward(self, x: Tensor) -> Tensor:
        k = self.weight.shape[0]
        if self.layout.member_major:
            return torch.cat([F.conv2d(xk, w, b, self.stride, self.padding, self.dilation, self.groups)
                              for xk, w, b in zip(_member_images(x, k), self.weight.unbind(0),
                                                  _unbound(self.bias, k))])
        weight = self.weight.view(k * self.weight.shape[1], *self.weight.shape[2:])
        bias = self.bias.view(-1) if self.bias is not None else None
        return F.conv2d(to_channels(x), weight, bias, self.stride, self.padding, self.dilation, k * self.groups)


class PackedBatchNorm2d(nn.Module):
    """K ``nn.BatchNorm2d`` over K*C channels: weight, bias, running_mean and running_var [K, C]."""

    def __init__(self, first: nn.BatchNorm2d, stacked: dict[str, Tensor | None], layout: _Layout) -> None:
        super().__init__()
        self.eps, self.momentum, self.layout = first.eps, first.momentum, layout
        self.weight = nn.Parameter(stacked["weight"]) if stacked["weight"] is not None else None
        self.bias = nn.Parameter(stacked["bias"]) if stacked["bias"] is not None else None
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            self.register_buffer(name, stacked[name])

    def forward(self, x: Tensor) -> Tensor:
        # nn.BatchNorm2d's forward, per member. Momentum is fixed (checked in ``fuse``), so the count is
        # kept only for the members' state dicts.
        if self.training and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
        use_batch = self.training or self.running_mean is None
        if self.layout.member_major:
            k = self.layout.size
            # Member k's running statistics go in as views of row k of the [K, C] buffers (updated in place).
            means = [self.running_mean[i] for i in range(k)] if self.running_mean is not None else [None] * k
            variances = [self.running_var[i] for i in range(k)] if self.running_var is not None else [None] * k
            return torch.cat([F.batch_norm(xk, mean, var, w, b, use_batch, self.momentum, self.eps)
                              for xk, mean, var, w, b in zip(_member_images(x, k), means, variances,
                                                             _unbound(self.weight, k), _unbound(self.bias, k))])

        def flat(t: Tensor | None) -> Tensor | None:
            return t.view(-1) if t is not None else None

        # The running statistics go in as views of the [K, C] buffers: batch_norm updates them in place.
        return F.batch_norm(to_channels(x), flat(self.running_mean), flat(self.running_var), flat(self.weight),
                            flat(self.bias), use_batch, self.momentum, self.eps)


class PackedFlatten(nn.Module):
    """``nn.Flatten()`` for each of ``size`` members: [K, B, ...], [K*B, C, H, W] or [B, K*C, H, W] -> [K, B, F]."""

    def __init__(self, size: int, layout: _Layout) -> None:
        super().__init__()
        self.size, self.layout = size, layout

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 4 and self.layout.member_major:
            return x.reshape(self.size, x.shape[0] // self.size, -1)
        if x.dim() == 4:  # channel-concatenated: each member's C*H*W values are one contiguous block
            return x.reshape(x.shape[0], self.size, -1).transpose(0, 1)
        return x.reshape(x.shape[0], x.shape[1], -1)


class PackedModel(nn.Module):
    """K members as one module; ``member_state_dict(k)`` and ``load_member_state_dict(k, sd)`` move one in and out.

    ``conv`` (auto, grouped or members; see the module's docstring) may be set between forwards.
    """

    def __init__(self, module: nn.Module, size: int, layout: _Layout, conv: str = "auto") -> None:
        super().__init__()
        if conv not in CONV_STRATEGIES:
            raise ValueError(f"Invalid conv: {conv!r} (valid: {', '.join(CONV_STRATEGIES)})")
        self.module, self.size, self.layout, self.conv = module, size, layout, conv

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[0] != self.size:
            raise ValueError(f"a pack of {self.size} members got inputs for {x.shape[0]} (shape {tuple(x.shape)})")
        self.layout.member_major = conv_strategy(self.conv, x.device) == "members"
        return self.module(x)

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


def _linear(modules: list[nn.Linear], name: str, layout: _Layout) -> nn.Module:
    return PackedLinear(_stack([m.weight for m in modules], name), _stack([m.bias for m in modules], name), layout)


def _conv(modules: list[nn.Conv2d], name: str, layout: _Layout) -> nn.Module:
    first = modules[0]
    if first.padding_mode != "zeros":
        raise Unpackable(f"{name} pads with {first.padding_mode!r}; packing supports zero padding only")
    return PackedConv2d(_stack([m.weight for m in modules], name), _stack([m.bias for m in modules], name),
                        first.stride, first.padding, first.dilation, first.groups, layout)


def _batch_norm(modules: list[nn.BatchNorm2d], name: str, layout: _Layout) -> nn.Module:
    first = modules[0]
    if first.momentum is None:
        raise Unpackable(f"{name} uses a cumulative average (momentum=None), which packing does not support")
    stacked = {n: _stack([getattr(m, n) for m in modules], name)
               for n in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}
    return PackedBatchNorm2d(first, stacked, layout)


# Modules with parameters or buffers: each gets its packed form.
_LEAVES = {nn.Linear: _linear, nn.Conv2d: _conv, nn.BatchNorm2d: _batch_norm}
# Stateless modules that act elementwise or per channel, in either layout (pooling: channel-concatenated only).
_STATELESS = (nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Identity)


def _containers() -> tuple[type, ...]:
    """Classes whose forward only calls submodules, adds, applies ReLU and ``torch.flatten(x, 1)``.

    Exact classes, not subclasses: a subclass may have a forward that reads shapes or mixes members.
    """
    from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

    from masbench.models.small import MLP, SmallCNN

    return nn.Sequential, MLP, SmallCNN, ResNet, BasicBlock, Bottleneck


def _fuse(modules: list[nn.Module], name: str, containers: tuple[type, ...], layout: _Layout) -> nn.Module:
    first = modules[0]
    kind = type(first)
    where = name or "the model"
    if any(type(m) is not kind for m in modules):
        raise Unpackable(f"the members differ at {where}: {sorted({type(m).__name__ for m in modules})}")
    if any(m.extra_repr() != first.extra_repr() for m in modules):
        raise Unpackable(f"the members differ at {where}: {first.extra_repr()} vs others")
    if kind in _LEAVES:
        return _LEAVES[kind](modules, where, layout)
    if kind is nn.Flatten and (first.start_dim, first.end_dim) == (1, -1):
        return PackedFlatten(len(modules), layout)
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
                                              containers, layout)
        for child, sub in first._modules.items()
    }
    for attr in ("_parameters", "_buffers"):
        packed.__dict__[attr] = {}
    return packed


def fuse(models: Sequence[nn.Module], conv: str | None = None) -> PackedModel:
    """One module running ``models`` (K >= 1 of one architecture, each with its own weights) side by side.

    ``conv``: the convolution strategy (auto, grouped or members); None reads ``$MASBENCH_PACK_CONV``.
    Raises ``Unpackable`` naming the first module that has no packed form or where the members differ.
    The members are left untouched; the pack holds copies of their tensors.
    """
    conv = default_conv() if conv is None else conv
    if not models:
        raise Unpackable("a pack needs at least one member")
    layout = _Layout(len(models), any(isinstance(m, nn.Conv2d) for m in models[0].modules()))
    packed = _fuse(list(models), "", _containers(), layout)
    return PackedModel(packed, len(models), layout, conv).train(models[0].training)
