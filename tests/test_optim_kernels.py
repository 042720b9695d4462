"""MAS's kernels at their edges: every floating dtype, eps = 0, torch.compile, and the
baselines that a sweep compares MAS with running on the same kernels."""

from __future__ import annotations

import pytest
import torch

from masbench.optim import MAS, build_optimizer, select_hyperparameters
from masbench.optim.functional import default_path
from optim_helpers import PATHS, grad_stream, make_params, run, train_tiny

# --- endpoints in every dtype ------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
@pytest.mark.parametrize("endpoint", ["adam", "sgd"])
@pytest.mark.parametrize("path", list(PATHS))
def test_endpoints_bitwise_in_every_dtype_with_weight_decay(path, endpoint, weight_decay, dtype):
    """In bfloat16 and float16 torch's fused kernels add the decay in float32: so must MAS.

    MAS keeps a momentum buffer at lambda_sgd = 0 too, so its SGD kernel runs beside
    Adam's there and must neither move p nor make Adam see another p.
    """
    flags = PATHS[path]
    if endpoint == "adam":
        mas_kwargs = dict(lambda_adam=1.0, lambda_sgd=0.0, momentum=0.9)
        torch_opt, kwargs = torch.optim.Adam, dict(lr=1e-2, weight_decay=weight_decay)
    else:
        mas_kwargs = dict(lambda_adam=0.0, lambda_sgd=1.0)
        torch_opt, kwargs = torch.optim.SGD, dict(lr=1e-2, momentum=0.9, weight_decay=weight_decay)
    ours, _ = run(lambda ps: MAS(ps, **{**kwargs, **mas_kwargs}, **flags), dtype, steps=8)
    theirs, _ = run(lambda ps: torch_opt(ps, **kwargs, **flags), dtype, steps=8)
    for a, b in zip(ours, theirs):
        assert a.dtype == dtype
        assert torch.equal(a, b), (a.double() - b.double()).abs().max()


def _zero_first_elements(params, steps):
    """A gradient stream whose first element is always zero: Adam's 0 / (sqrt(0) + eps) there."""
    stream = grad_stream(params, steps)
    for grads in stream:
        for grad in grads:
            grad.view(-1)[0] = 0.0
    return stream


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("path", list(PATHS))
def test_eps_zero_at_lambda_adam_zero_is_sgd_without_nan(path, momentum, dtype):
    """With eps = 0 the Adam direction is 0/0 = NaN where v = 0; at lambda_adam = 0 it must not reach p."""
    flags = PATHS[path]
    ours, theirs = make_params(dtype), make_params(dtype)
    mas = MAS(ours, lr=0.1, eps=0.0, momentum=momentum, lambda_adam=0.0, lambda_sgd=1.0, **flags)
    sgd = torch.optim.SGD(theirs, lr=0.1, momentum=momentum, **flags)
    for grads in _zero_first_elements(ours, 4):
        for a, b, grad in zip(ours, theirs, grads):
            a.grad, b.grad = grad.clone(), grad.clone()
        mas.step()
        sgd.step()
    for a, b in zip(ours, theirs):
        assert not a.isnan().any()
        assert torch.equal(a, b), (a.double() - b.double()).abs().max()


@pytest.mark.parametrize("path", list(PATHS))
def test_eps_zero_mixed_lambdas_without_zero_gradients_stay_finite(path):
    """Where torch's Adam stays finite with eps = 0 (no zero gradient), so does MAS, on every path."""
    kwargs = dict(lr=1e-2, eps=0.0, momentum=0.9, weight_decay=0.01, lambda_adam=0.4, lambda_sgd=0.6)
    ref, _ = run(lambda ps: MAS(ps, foreach=False, **kwargs), torch.float64, steps=6)
    fast, _ = run(lambda ps: MAS(ps, **kwargs, **PATHS[path]), torch.float64, steps=6)
    for a, b in zip(fast, ref):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-13)


# --- torch.compile ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", [None, *PATHS])
@pytest.mark.parametrize(
    "kwargs",
    [
        dict(lr=1e-2, momentum=0.9, weight_decay=0.01, amsgrad=True, lambda_adam=0.3, lambda_sgd=0.7),
        dict(lr=1e-2, momentum=0.9, nesterov=True, bias_correction="constant"),
        dict(lr=1e-2, eps=0.0, lambda_adam=0.0, lambda_sgd=1.0),
    ],
    ids=["mixed", "constant_bc", "sgd_eps0"],
)
def test_torch_compile_step_matches_eager(kwargs, path):
    from torch._dynamo.testing import CompileCounterWithBackend

    flags = {} if path is None else PATHS[path]
    torch._dynamo.reset()
    counter = CompileCounterWithBackend("aot_eager")
    compiled, compiled_opt = train_tiny(lambda ps: MAS(ps, **kwargs, **flags), compiled_backend=counter)
    eager, eager_opt = train_tiny(lambda ps: MAS(ps, **kwargs, **flags))
    if path in ("single", "foreach"):
        assert counter.frame_count >= 1 and counter.op_count > 0  # dynamo traced the update itself
    for a, b in zip(compiled, eager):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(compiled, eager):
        assert compiled_opt.state[a]["step"].item() == eager_opt.state[b]["step"].item() == 4


# --- the baselines run on MAS's kernels ------------------------------------------------------------


@pytest.mark.parametrize(
    "baseline, mas_kwargs",
    [
        ("adam", dict(lr=1e-2, lambda_adam=1.0, lambda_sgd=0.0)),
        ("adam", dict(lr=1e-2, weight_decay=0.01, amsgrad=True, lambda_adam=1.0, lambda_sgd=0.0)),
        ("sgd", dict(lr=0.1, momentum=0.9, lambda_adam=0.0, lambda_sgd=1.0)),
        ("sgd", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01, lambda_adam=0.0, lambda_sgd=1.0)),
    ],
)
def test_build_optimizer_baselines_equal_mas_endpoints_bitwise(baseline, mas_kwargs):
    """A sweep compares MAS with the baselines: with default arguments they must share kernels."""
    baseline_kwargs = select_hyperparameters(baseline, mas_kwargs)
    ours, _ = train_tiny(lambda ps: build_optimizer("mas", ps, **mas_kwargs), steps=6)
    theirs, _ = train_tiny(lambda ps: build_optimizer(baseline, ps, **baseline_kwargs), steps=6)
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b), (a - b).abs().max()


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_build_optimizer_baselines_take_mas_default_path_unless_told(name):
    params = make_params()
    fused, foreach = default_path(params)
    opt = build_optimizer(name, params, lr=0.1)
    assert (opt.param_groups[0]["fused"], opt.param_groups[0]["foreach"]) == (fused, foreach)

    told = build_optimizer(name, params, lr=0.1, foreach=False)
    assert not told.param_groups[0]["fused"] and told.param_groups[0]["foreach"] is False

    groups = build_optimizer(name, [{"params": params[:2]}, {"params": params[2:], "foreach": True}], lr=0.1)
    assert (groups.param_groups[0]["fused"], groups.param_groups[0]["foreach"]) == (fused, foreach)
    assert groups.param_groups[1]["foreach"] is True and not groups.param_groups[1]["fused"]
