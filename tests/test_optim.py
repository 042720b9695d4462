"""MAS against its specification, against torch's SGD and Adam, and across its paths."""

from __future__ import annotations

import io

import pytest
import torch

from masbench.optim import MAS, LinearLambda, build_optimizer, select_hyperparameters
from masbench.optim.functional import default_path
from optim_helpers import PATHS, grad_stream, make_params, run
from reference import reference_mas

# --- endpoints: bit-identical to torch's optimizers --------------------------------------

SGD_CONFIGS = {
    "plain": dict(lr=0.1),
    "momentum": dict(lr=0.05, momentum=0.9),
    "dampening": dict(lr=0.05, momentum=0.9, dampening=0.3),
    "nesterov": dict(lr=0.05, momentum=0.95, nesterov=True),
    "weight_decay": dict(lr=0.05, momentum=0.9, weight_decay=1e-2),
    "nesterov_wd": dict(lr=0.01, momentum=0.8, nesterov=True, weight_decay=5e-3),
}

ADAM_CONFIGS = {
    "default": dict(lr=1e-3),
    "betas": dict(lr=3e-3, betas=(0.8, 0.99), eps=1e-6),
    "amsgrad": dict(lr=1e-2, amsgrad=True),
    "weight_decay": dict(lr=1e-3, weight_decay=1e-2),
    "amsgrad_wd": dict(lr=1e-3, amsgrad=True, weight_decay=1e-1),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("path", ["single", "foreach", "fused"])
@pytest.mark.parametrize("config", list(SGD_CONFIGS))
def test_lambda_adam_zero_is_torch_sgd_bitwise(config, path, dtype):
    kwargs = SGD_CONFIGS[config]
    flags = PATHS[path]
    ours, _ = run(lambda ps: MAS(ps, lambda_adam=0.0, lambda_sgd=1.0, **kwargs, **flags), dtype)
    theirs, _ = run(lambda ps: torch.optim.SGD(ps, **kwargs, **flags), dtype)
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b), (a - b).abs().max()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("path", ["single", "foreach", "fused"])
@pytest.mark.parametrize("config", list(ADAM_CONFIGS))
def test_lambda_adam_one_is_torch_adam_bitwise(config, path, dtype):
    kwargs = ADAM_CONFIGS[config]
    flags = PATHS[path]
    ours, _ = run(lambda ps: MAS(ps, lambda_adam=1.0, lambda_sgd=0.0, **kwargs, **flags), dtype)
    theirs, _ = run(lambda ps: torch.optim.Adam(ps, **kwargs, **flags), dtype)
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b), (a - b).abs().max()


# --- the specification, worked out in plain Python floats --------------------------------


SPEC_CASES = {
    "plain_step": dict(bias_correction="step"),
    "plain_constant": dict(bias_correction="constant"),
    "amsgrad_step": dict(amsgrad=True, bias_correction="step"),
    "amsgrad_constant": dict(amsgrad=True, bias_correction="constant"),
    "nesterov": dict(momentum=0.9, nesterov=True),
    "dampening": dict(momentum=0.95, dampening=0.4, bias_correction="constant"),
    "everything": dict(momentum=0.9, nesterov=True, amsgrad=True, weight_decay=0.05, lambda_adam=0.3, lambda_sgd=0.7),
    "unbalanced": dict(momentum=0.5, weight_decay=0.01, lambda_adam=0.8, lambda_sgd=0.6, betas=(0.5, 0.9)),
}


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("case", list(SPEC_CASES))
def test_matches_independent_float_computation(case, path):
    kwargs = dict(lr=0.05, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, momentum=0.0,
                  dampening=0.0, nesterov=False, lambda_adam=0.5, lambda_sgd=0.5, bias_correction="step")
    kwargs.update(SPEC_CASES[case])
    p0 = [0.5, -1.25, 2.0, 0.0]
    # Gradients that change sign and shrink, so that amsgrad's max and the momentum matter.
    grads = [[1.0, -0.5, 0.25, 2.0], [-2.0, 0.1, 0.3, -1.0], [0.5, 0.5, -0.7, 0.2], [0.05, -3.0, 0.01, 0.4],
             [-0.3, 0.2, 0.9, -0.05]]
    beta1, beta2 = kwargs.pop("betas")
    expected = reference_mas(p0, grads, beta1=beta1, beta2=beta2, **kwargs)

    p = torch.nn.Parameter(torch.tensor(p0, dtype=torch.float64))
    opt = MAS([p], betas=(beta1, beta2), **kwargs, **PATHS[path])
    for g in grads:
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
    torch.testing.assert_close(p.detach(), torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=1e-12)
    assert opt.state[p]["step"].item() == len(grads)


def test_reference_is_not_trivially_adam_or_sgd():
    """The mixed update differs from both endpoints, so the tests above can tell them apart."""
    common = dict(lr=0.05, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, amsgrad=False, momentum=0.0,
                  dampening=0.0, nesterov=False, bias_correction="step")
    grads = [[1.0, -2.0]] * 3
    mixed = reference_mas([0.0, 0.0], grads, lambda_adam=0.5, lambda_sgd=0.5, **common)
    adam = reference_mas([0.0, 0.0], grads, lambda_adam=1.0, lambda_sgd=0.0, **common)
    sgd = reference_mas([0.0, 0.0], grads, lambda_adam=0.0, lambda_sgd=1.0, **common)
    assert mixed != adam and mixed != sgd


# --- the paths agree with each other -----------------------------------------------------

MIXED_CONFIGS = {
    "default": dict(),
    "paper_cifar": dict(lr=1e-3, momentum=0.95, lambda_adam=0.3, lambda_sgd=0.7),
    "nesterov_amsgrad_wd": dict(lr=1e-2, momentum=0.9, nesterov=True, amsgrad=True, weight_decay=1e-3),
    "constant_bc_dampening": dict(lr=1e-3, momentum=0.9, dampening=0.5, bias_correction="constant"),
    # At an endpoint with weight decay the fused path lets each kernel add the decay:
    # the state of the part that does not move p must still see the p before the step.
    "adam_endpoint_wd": dict(lr=1e-2, momentum=0.9, weight_decay=0.1, lambda_adam=1.0, lambda_sgd=0.0),
    "sgd_endpoint_wd": dict(lr=1e-2, momentum=0.9, amsgrad=True, weight_decay=0.1, lambda_adam=0.0, lambda_sgd=1.0),
}


@pytest.mark.parametrize("dtype, rtol, atol", [(torch.float32, 1e-5, 1e-6), (torch.float64, 1e-12, 1e-13)])
@pytest.mark.parametrize("path", ["foreach", "fused"])
@pytest.mark.parametrize("config", list(MIXED_CONFIGS))
def test_fast_paths_equal_the_reference_loop(config, path, dtype, rtol, atol):
    kwargs = MIXED_CONFIGS[config]
    ref, ref_opt = run(lambda ps: MAS(ps, foreach=False, **kwargs), dtype)
    fast, fast_opt = run(lambda ps: MAS(ps, **PATHS[path], **kwargs), dtype)
    for a, b in zip(fast, ref):
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol)
    for pa, pb in zip(fast, ref):
        sa, sb = fast_opt.state[pa], ref_opt.state[pb]
        assert sorted(sa) == sorted(sb)
        for key in sa:
            torch.testing.assert_close(sa[key], sb[key], rtol=rtol, atol=atol)


def test_bfloat16_parameters_on_every_path():
    results = {}
    for path, flags in PATHS.items():
        params, _ = run(lambda ps: MAS(ps, lr=1e-2, momentum=0.9, **flags), torch.bfloat16, steps=5)
        results[path] = params
    for path in ("foreach", "fused"):
        for a, b in zip(results[path], results["single"]):
            assert a.dtype == torch.bfloat16
            torch.testing.assert_close(a.float(), b.float(), rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("path", list(PATHS))
def test_groups_with_different_lambdas_and_a_param_without_grad(path):
    def build(params):
        return MAS(
            [
                {"params": params[:2], "lambda_adam": 0.0, "lambda_sgd": 1.0, "momentum": 0.9},
                {"params": params[2:], "lambda_adam": 1.0, "lambda_sgd": 0.0, "lr": 1e-2},
            ],
            lr=0.1,
            **PATHS[path],
        )

    params = make_params(torch.float64)
    sgd_twin, adam_twin = make_params(torch.float64)[:2], make_params(torch.float64)[2:]
    opt = build(params)
    sgd = torch.optim.SGD(sgd_twin, lr=0.1, momentum=0.9)
    adam = torch.optim.Adam(adam_twin, lr=1e-2)
    for step, grads in enumerate(grad_stream(params, 6)):
        for p, twin, grad in zip(params, sgd_twin + adam_twin, grads):
            # The last parameter has no gradient on even steps: it is skipped, its step does not advance.
            skip = p is params[-1] and step % 2 == 0
            p.grad = None if skip else grad.clone()
            twin.grad = None if skip else grad.clone()
        opt.step()
        sgd.step()
        adam.step()
    for a, b in zip(params, sgd_twin + adam_twin):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    assert opt.state[params[-1]]["step"].item() == 3
    assert opt.state[params[0]]["step"].item() == 6


@pytest.mark.parametrize("path", list(PATHS))
def test_step_leaves_gradients_untouched(path):
    params = make_params()
    opt = MAS(params, momentum=0.9, nesterov=True, weight_decay=0.1, **PATHS[path])
    for grads in grad_stream(params, 3):
        for p, grad in zip(params, grads):
            p.grad = grad.clone()
        opt.step()
        for p, grad in zip(params, grads):
            assert torch.equal(p.grad, grad)

# --- state, closures, errors ---------------------------------------------------------------


@pytest.mark.parametrize("path", list(PATHS))
def test_state_dict_round_trip_continues_bit_identically(path):
    kwargs = dict(lr=1e-2, momentum=0.9, amsgrad=True, lambda_adam=0.4, lambda_sgd=0.6, **PATHS[path])
    params = make_params()
    stream = grad_stream(params, 12)
    twin = [torch.nn.Parameter(p.detach().clone()) for p in params]
    straight = MAS(params, **kwargs)
    for grads in stream:
        for p, grad in zip(params, grads):
            p.grad = grad
        straight.step()

    first = MAS(twin, **kwargs)
    for grads in stream[:5]:
        for p, grad in zip(twin, grads):
            p.grad = grad
        first.step()
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    resumed = MAS(twin, **kwargs)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    for grads in stream[5:]:
        for p, grad in zip(twin, grads):
            p.grad = grad
        resumed.step()
    for a, b in zip(params, twin):
        assert torch.equal(a, b)


def test_closure_is_called_and_its_loss_returned():
    w = torch.nn.Parameter(torch.tensor([3.0, -2.0]))
    opt = MAS([w], lr=0.1)
    calls = []

    def closure():
        opt.zero_grad()
        loss = (w**2).sum()
        loss.backward()
        calls.append(loss.item())
        return loss

    before = w.detach().clone()
    loss = opt.step(closure)
    assert calls == [13.0]
    assert loss.item() == 13.0
    assert (w.detach().abs() < before.abs()).all()


def test_sparse_gradients_are_rejected():
    emb = torch.nn.Embedding(10, 3, sparse=True)
    emb(torch.tensor([1, 2])).sum().backward()
    opt = MAS(emb.parameters())
    with pytest.raises(RuntimeError, match="sparse gradients"):
        opt.step()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(lr=-1e-3), "Invalid learning rate: -0.001"),
        (dict(eps=-1.0), "Invalid epsilon value: -1.0"),
        (dict(betas=(1.0, 0.999)), "Invalid beta parameter at index 0: 1.0"),
        (dict(betas=(0.9, -0.1)), "Invalid beta parameter at index 1: -0.1"),
        (dict(weight_decay=-0.1), "Invalid weight_decay value: -0.1"),
        (dict(momentum=-0.5), "Invalid momentum value: -0.5"),
        (dict(lambda_adam=-0.2), "Invalid lambda_adam value: -0.2"),
        (dict(lambda_sgd=-1.0), "Invalid lambda_sgd value: -1.0"),
        (dict(nesterov=True), "Nesterov momentum requires momentum > 0"),
        (dict(nesterov=True, momentum=0.9, dampening=0.1), "dampening=0.1"),
        (dict(bias_correction="paper"), "Invalid bias_correction: 'paper'"),
        (dict(fused=True, foreach=True), "fused=True and foreach=True"),
    ],
)
def test_invalid_hyperparameters_name_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        MAS([torch.nn.Parameter(torch.zeros(1))], **kwargs)


def test_invalid_values_in_a_later_param_group_are_rejected():
    opt = MAS([torch.nn.Parameter(torch.zeros(1))])
    with pytest.raises(ValueError, match="Invalid lambda_adam value: -1"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(1))], "lambda_adam": -1})


def test_default_path_on_cpu_is_fused():
    assert default_path(make_params()) == (True, False)


# --- mixed precision ---------------------------------------------------------------------------


def _train_small(scaler, steps=8, inject_inf_at=None):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    opt = MAS(model.parameters(), lr=1e-2, momentum=0.9)
    data = torch.randn(32, 6, generator=torch.Generator().manual_seed(3))
    target = torch.randint(0, 3, (32,), generator=torch.Generator().manual_seed(4))
    for step in range(steps):
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(model(data), target)
        if scaler is None:
            loss.backward()
            opt.step()
        else:
            scaler.scale(loss).backward()
            if step == inject_inf_at:
                next(model.parameters()).grad.fill_(float("inf"))
            scaler.step(opt)
            scaler.update()
    return model, opt


def test_autocast_and_grad_scaler():
    plain, _ = _train_small(None)
    scaled, _ = _train_small(torch.amp.GradScaler("cpu", init_scale=2.0**8))
    # Power-of-two scaling is exact, so unscaled gradients equal the plain ones.
    for a, b in zip(plain.parameters(), scaled.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_grad_scaler_skips_a_step_with_inf_gradients():
    _, opt = _train_small(torch.amp.GradScaler("cpu", init_scale=2.0**8), steps=3, inject_inf_at=1)
    steps = {state["step"].item() for state in opt.state.values()}
    assert steps == {2.0}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("path", [None, "foreach", "fused", "single"])
def test_cuda_matches_cpu_reference(path):
    flags = {} if path is None else PATHS[path]
    kwargs = dict(lr=1e-2, momentum=0.9, amsgrad=True, weight_decay=1e-3)
    cpu, _ = run(lambda ps: MAS(ps, foreach=False, **kwargs), torch.float64)
    params = [torch.nn.Parameter(p.detach().cuda()) for p in make_params(torch.float64)]
    opt = MAS(params, **kwargs, **flags)
    for grads in grad_stream(params, 25):
        for p, grad in zip(params, grads):
            p.grad = grad.cuda()
        opt.step()
    for a, b in zip(params, cpu):
        torch.testing.assert_close(a.cpu(), b, rtol=1e-10, atol=1e-12)


# --- registry and schedules ----------------------------------------------------------------


@pytest.mark.parametrize(
    "name, cls",
    [("mas", MAS), ("sgd", torch.optim.SGD), ("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)],
)
def test_build_optimizer(name, cls):
    opt = build_optimizer(name, [torch.nn.Parameter(torch.zeros(2))], lr=0.25)
    assert type(opt) is cls
    assert opt.param_groups[0]["lr"] == 0.25


def test_build_optimizer_errors():
    with pytest.raises(ValueError, match="Unknown optimizer: 'lion' \\(valid: mas, sgd, adam, adamw, radam, .*import path"):
        build_optimizer("lion", [torch.nn.Parameter(torch.zeros(1))])
    with pytest.raises(ValueError, match="Invalid hyperparameter\\(s\\) for optimizer 'adam': momentum"):
        build_optimizer("adam", [torch.nn.Parameter(torch.zeros(1))], momentum=0.9)


def test_select_hyperparameters_keeps_what_each_optimizer_takes():
    config = dict(lr=0.1, momentum=0.9, betas=(0.9, 0.99), lambda_adam=0.3, lambda_sgd=0.7, amsgrad=False)
    assert select_hyperparameters("sgd", config) == dict(lr=0.1, momentum=0.9)
    assert select_hyperparameters("adam", config) == dict(lr=0.1, betas=(0.9, 0.99), amsgrad=False)
    assert select_hyperparameters("mas", config) == config


def test_linear_lambda_schedule():
    opt = MAS([torch.nn.Parameter(torch.zeros(1))], lambda_adam=0.2, lambda_sgd=0.8)
    sched = LinearLambda(opt, start=0.7, end=0.3, epochs=4)
    seen = [sched.current()]
    for _ in range(5):
        sched.step()
        seen.append(sched.current())
    expected_adam = [0.7, 0.6, 0.5, 0.4, 0.3, 0.3]
    for (lam_a, lam_s), want in zip(seen, expected_adam):
        assert lam_a == pytest.approx(want)
        assert lam_s == pytest.approx(1 - want)

    state = sched.state_dict()
    fresh_opt = MAS([torch.nn.Parameter(torch.zeros(1))])
    fresh = LinearLambda(fresh_opt, start=0.7, end=0.3, epochs=4)
    fresh.load_state_dict(state)
    assert fresh.last_epoch == 5
    assert fresh.current() == pytest.approx((0.3, 0.7))


@pytest.mark.parametrize("kwargs, message", [
    (dict(start=1.5, end=0.0, epochs=3), "start: 1.5"),
    (dict(start=0.5, end=-0.1, epochs=3), "end: -0.1"),
    (dict(start=0.5, end=0.1, epochs=0), "epochs: 0"),
])
def test_linear_lambda_schedule_validation(kwargs, message):
    opt = MAS([torch.nn.Parameter(torch.zeros(1))])
    with pytest.raises(ValueError, match=message):
        LinearLambda(opt, **kwargs)


def test_lambda_schedule_needs_mas():
    with pytest.raises(ValueError, match="lambda_adam and lambda_sgd"):
        LinearLambda(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1), 0.5, 0.5, 2)
