"""Parameters, gradient streams and tiny training loops shared by the optimizer tests."""

from __future__ import annotations

import torch

PATHS = {
    "single": dict(foreach=False),
    "foreach": dict(foreach=True),
    "fused": dict(fused=True),
}


def make_params(dtype=torch.float32, seed=0):
    """A few tensors of different shapes, like a small network's."""
    g = torch.Generator().manual_seed(seed)
    shapes = [(7, 5), (5,), (3, 2, 4), (1,)]
    return [torch.nn.Parameter(torch.randn(s, generator=g, dtype=dtype)) for s in shapes]


def grad_stream(params, steps, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(p.shape, generator=g, dtype=p.dtype) for p in params] for _ in range(steps)]


def run(opt_factory, dtype=torch.float32, steps=25):
    params = make_params(dtype)
    opt = opt_factory(params)
    for grads in grad_stream(params, steps):
        for p, grad in zip(params, grads):
            p.grad = grad
        opt.step()
    return params, opt


def train_tiny(make_opt, steps=4, compiled_backend=None):
    """Train a two-layer network a few steps; ``compiled_backend`` compiles ``opt.step`` with it."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    opt = make_opt(model.parameters())
    step = opt.step if compiled_backend is None else torch.compile(opt.step, backend=compiled_backend)
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        opt.zero_grad()
        model(torch.randn(5, 4, generator=generator)).pow(2).mean().backward()
        step()
    return list(model.parameters()), opt
