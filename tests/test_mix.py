"""Mix: MAS's product form over N components, and the linear form for any other optimizer."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch

from masbench.optim import MAS, Mix
from tests.optim_helpers import grad_stream, make_params, run

DTYPES = [torch.float32, torch.bfloat16]
MAS_CONFIGS = [
    dict(lambda_adam=0.5, lambda_sgd=0.5),
    dict(lambda_adam=0.3, lambda_sgd=0.7, momentum=0.9, weight_decay=1e-2),
    dict(lambda_adam=0.8, lambda_sgd=0.2, momentum=0.9, nesterov=True, amsgrad=True, lr=0.05),
    dict(lambda_adam=0.0, lambda_sgd=1.0, momentum=0.5, dampening=0.1),
    dict(lambda_adam=0.6, lambda_sgd=0.4, bias_correction="constant", betas=(0.8, 0.99), eps=1e-6),
]


def _as_mix(config: dict) -> dict:
    config = dict(config)
    return dict(adam=config.pop("lambda_adam"), sgd=config.pop("lambda_sgd"), **config)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("config", MAS_CONFIGS)
def test_adam_sgd_mix_is_mas_bitwise(config, dtype):
    expected, mas_opt = run(lambda p: MAS(p, foreach=False, fused=False, **config), dtype)
    got, _ = run(lambda p: Mix(p, foreach=False, fused=False, **_as_mix(config)), dtype)
    for e, g in zip(expected, got):
        assert torch.equal(e, g)
    assert not torch.equal(expected[0], make_params(dtype)[0])  # the runs moved


@pytest.mark.parametrize("path", [dict(foreach=True), dict(fused=True), dict()])
@pytest.mark.parametrize("config", MAS_CONFIGS[:3])
def test_adam_sgd_mix_is_mas_bitwise_on_every_path(config, path):
    """On MAS's fast paths (and its default, fused on CPU) too, where the loop would round otherwise."""
    expected, _ = run(lambda p: MAS(p, **path, **config))
    got, _ = run(lambda p: Mix(p, **path, **_as_mix(config)))
    loop, _ = run(lambda p: Mix(p, foreach=False, fused=False, **_as_mix(config)))
    assert all(torch.equal(e, g) for e, g in zip(expected, got))
    torch.testing.assert_close(loop, got)  # the paths agree to rounding


def test_fast_path_and_loop_share_one_state_layout():
    """A checkpoint taken on the fused path resumes on the loop (same state keys), close to rounding."""
    fused, _ = run(lambda p: Mix(p, fused=True, adam=0.4, sgd=0.6, momentum=0.9), steps=10)
    params = make_params()
    opt = Mix(params, fused=True, adam=0.4, sgd=0.6, momentum=0.9)
    stream = grad_stream(params, 10)
    for grads in stream[:5]:
        for p, g in zip(params, grads):
            p.grad = g
        opt.step()
    loop = Mix(params, foreach=False, fused=False, adam=0.4, sgd=0.6, momentum=0.9)
    loop.load_state_dict(opt.state_dict())
    loop.param_groups[0]["fused"] = False  # the saved group said fused; this run continues on the loop
    for grads in stream[5:]:
        for p, g in zip(params, grads):
            p.grad = g
        loop.step()
    torch.testing.assert_close(params, fused)


def test_order_of_the_weights_does_not_change_the_numbers():
    a, _ = run(lambda p: Mix(p, weights={"sgd": 0.2, "rmsprop": 0.3, "adam": 0.5}))
    b, _ = run(lambda p: Mix(p, weights={"adam": 0.5, "sgd": 0.2, "rmsprop": 0.3}))
    assert all(torch.equal(x, y) for x, y in zip(a, b))


# A single component of weight 1 against torch's single-tensor optimizer (Lion against its reference below).
SINGLE = [
    ("sgd", torch.optim.SGD, dict(momentum=0.9, nesterov=True, weight_decay=1e-3)),
    ("adam", torch.optim.Adam, dict(weight_decay=1e-2, amsgrad=True)),
    ("adamw", torch.optim.AdamW, dict(weight_decay=0.1)),
    ("adamax", torch.optim.Adamax, dict(weight_decay=1e-2)),
    ("nadam", torch.optim.NAdam, dict(weight_decay=1e-2)),
    ("nadam", torch.optim.NAdam, dict(weight_decay=1e-2, decoupled_weight_decay=True)),
    ("rmsprop", torch.optim.RMSprop, dict(momentum=0.9, centered=True, weight_decay=1e-3)),
    ("rmsprop", torch.optim.RMSprop, dict()),
    ("adagrad", torch.optim.Adagrad, dict(lr_decay=1e-2, initial_accumulator_value=0.1)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind, cls, settings", SINGLE)
def test_single_component_is_torch_optimizer(kind, cls, settings, dtype):
    expected, _ = run(lambda p: cls(p, lr=1e-2, foreach=False, **settings), dtype)
    got, _ = run(lambda p: Mix(p, lr=1e-2, weights={kind: 1.0}, components={kind: settings}), dtype)
    for e, g in zip(expected, got):
        torch.testing.assert_close(g, e, rtol=0, atol=0)


def _lion_reference(params, lr, betas, wd, steps):
    """Lion (Chen et al. 2023) in float64 from its pseudo-code."""
    state = [torch.zeros_like(p, dtype=torch.float64) for p in params]
    out = [p.detach().double().clone() for p in params]
    for grads in grad_stream(params, steps):
        for p, m, g in zip(out, state, grads):
            g = g.double()
            update = (betas[0] * m + (1 - betas[0]) * g).sign()
            p.mul_(1 - lr * wd).sub_(lr * update)
            m.mul_(betas[1]).add_((1 - betas[1]) * g)
    return out


def test_lion_component_follows_the_paper():
    settings = dict(betas=(0.9, 0.99), weight_decay=0.1)
    got, _ = run(lambda p: Mix(p, lr=1e-3, lion=1.0, components={"lion": settings}), steps=25)
    expected = _lion_reference(make_params(), 1e-3, (0.9, 0.99), 0.1, 25)
    for e, g in zip(expected, got):
        torch.testing.assert_close(g.double(), e, rtol=1e-6, atol=1e-6)


def test_three_components_follow_the_product_form():
    """One step from zero state, by hand: p - (sum w_i eta_i)(sum w_i d_i), with each d_i at step 1."""
    w = dict(adam=0.2, sgd=0.5, rmsprop=0.3)
    params = make_params(torch.float64)
    start = [p.detach().clone() for p in params]
    opt = Mix(params, lr=0.1, weights=w)
    grads = grad_stream(params, 1)[0]
    for p, g in zip(params, grads):
        p.grad = g
    opt.step()
    eta = w["adam"] * 0.1 / (1 - 0.9) + w["sgd"] * 0.1 + w["rmsprop"] * 0.1
    for p, p0, g in zip(params, start, grads):
        d_adam = (0.1 * g) / ((0.001 * g * g).sqrt() / math.sqrt(0.001) + 1e-8)
        d_rms = g / ((0.01 * g * g).sqrt() + 1e-8)
        expected = p0 - eta * (w["adam"] * d_adam + w["sgd"] * g + w["rmsprop"] * d_rms)
        torch.testing.assert_close(p.detach(), expected, rtol=1e-12, atol=1e-12)


def test_linear_form_is_the_weighted_sum_of_moves():
    """Adadelta and Rprop (no product form): p + sum_j w_j Delta_j, each Delta_j from the torch optimizer alone."""
    w = dict(adadelta=0.4, rprop=0.6)
    params = make_params()
    opt = Mix(params, lr=0.5, weights=w)
    copies = {name: [p.detach().clone().requires_grad_() for p in params] for name in w}
    alone = dict(adadelta=torch.optim.Adadelta(copies["adadelta"], lr=0.5),
                 rprop=torch.optim.Rprop(copies["rprop"], lr=0.5))
    for grads in grad_stream(params, 5):
        before = [p.detach().clone() for p in params]
        for name, opt_alone in alone.items():
            for c, p, g in zip(copies[name], before, grads):
                c.data.copy_(p)
                c.grad = g
            opt_alone.step()
        for p, g in zip(params, grads):
            p.grad = g
        opt.step()
        for i, p in enumerate(params):
            move = (copies["adadelta"][i] - before[i]).mul_(0.4)
            move.add_((copies["rprop"][i] - before[i]).mul_(0.6))
            assert torch.equal(p.detach(), before[i] + move)


def test_linear_and_product_forms_together():
    """The linear move adds to the product form's update, both from the same p_{t-1}."""
    params = make_params()
    p0 = [p.detach().clone() for p in params]
    opt = Mix(params, lr=0.1, adam=0.5, adadelta=0.5)
    product_only = [p.detach().clone().requires_grad_() for p in params]
    adam_half = Mix(product_only, lr=0.1, adam=0.5)
    shadow = [p.detach().clone().requires_grad_() for p in params]
    adadelta = torch.optim.Adadelta(shadow, lr=0.1)
    grads = grad_stream(params, 1)[0]
    for group in (params, product_only, shadow):
        for p, g in zip(group, grads):
            p.grad = g
    opt.step(), adam_half.step(), adadelta.step()
    for p, q, s, start in zip(params, product_only, shadow, p0):
        assert torch.equal(p.detach(), q.detach() + (s.detach() - start).mul_(0.5))


@pytest.mark.parametrize("weights, message", [
    (dict(adam=-0.1, sgd=1.0), "Invalid weight for mix component adam: -0.1"),
    (dict(adam=float("nan"), sgd=1.0), "Invalid weight for mix component adam: nan"),
    (dict(adam=float("inf")), "must be a finite number"),
    (dict(adam=0.0, sgd=0.0), "all zero"),
    ({}, "no components"),
    (dict(adam="0.5"), "Invalid weight for mix component adam"),
    (dict(adam=0.5, nosuch=0.5), "Unknown optimizer: 'nosuch'"),
    (dict(adam=0.5, mix=0.5), "Invalid mix component mix"),
    ({"adam": 0.5, "torch.optim.Adam": 0.5}, "named twice"),
])
def test_bad_weights_are_refused(weights, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        Mix(make_params(), weights=weights)


@pytest.mark.parametrize("kwargs, message", [
    (dict(components={"sgd": {"alpha": 0.9}}), "Invalid setting 'alpha' for mix component sgd"),
    (dict(components={"rmsprop": {"momentum": 0.9}}), "settings for rmsprop, which has no weight"),
    (dict(components={"adam": {"betas": (0.9, 1.0)}}), "Invalid betas for mix component adam"),
    (dict(nesterov=True), "Nesterov momentum requires momentum > 0"),
    (dict(lr=-1.0), "Invalid learning rate: -1.0"),
    (dict(eps=-1.0), "Invalid eps value: -1.0"),
])
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Mix(make_params(), adam=0.5, sgd=0.5, **kwargs)


def test_shared_settings_reach_every_component_that_takes_them():
    opt = Mix(make_params(), eps=1e-5, momentum=0.9, adam=0.3, sgd=0.3, rmsprop=0.2, lion=0.2,
              components={"rmsprop": {"momentum": 0.5}})
    parts = opt.param_groups[0]["components"]
    assert parts["adam"]["eps"] == parts["rmsprop"]["eps"] == 1e-5
    assert parts["sgd"]["momentum"] == 0.9 and parts["rmsprop"]["momentum"] == 0.5  # its own wins
    assert "eps" not in parts["lion"] and parts["lion"]["betas"] == (0.9, 0.99)


def _train_and_resume(make, dtype, split=7, steps=14):
    """(uninterrupted, resumed): the resumed run saves at ``split`` and continues in a fresh optimizer."""
    straight, _ = run(make, dtype, steps=steps)
    params = make_params(dtype)
    opt = make(params)
    stream = grad_stream(params, steps)
    for grads in stream[:split]:
        for p, g in zip(params, grads):
            p.grad = g
        opt.step()
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    resumed = [p.detach().clone().requires_grad_() for p in params]
    fresh = make(resumed)
    buffer.seek(0)
    fresh.load_state_dict(torch.load(buffer, weights_only=False))
    for grads in stream[split:]:
        for p, g in zip(resumed, grads):
            p.grad = g
        fresh.step()
    return straight, resumed


@pytest.mark.parametrize("dtype", DTYPES)
def test_checkpoint_round_trip_continues_bit_identically(dtype):
    def make(p):
        return Mix(p, lr=1e-2, adam=0.3, sgd=0.2, nadam=0.2, rmsprop=0.1, adadelta=0.2,
                   components={"sgd": {"momentum": 0.9}, "rmsprop": {"momentum": 0.5}})

    straight, resumed = _train_and_resume(make, dtype)
    for a, b in zip(straight, resumed):
        assert torch.equal(a, b)
    # And on MAS's fused path, which a mix of adam and sgd takes by default on CPU.
    straight, resumed = _train_and_resume(lambda p: Mix(p, adam=0.3, sgd=0.7, momentum=0.9, amsgrad=True), dtype)
    for a, b in zip(straight, resumed):
        assert torch.equal(a, b)


def test_state_dict_keeps_steps_and_mu_product_float32():
    params = make_params(torch.bfloat16)
    opt = Mix(params, nadam=1.0)
    for p, g in zip(params, grad_stream(params, 1)[0]):
        p.grad = g
    opt.step()
    fresh = Mix([p.detach().clone() for p in params], nadam=1.0)
    fresh.load_state_dict(copy.deepcopy(opt.state_dict()))
    state = next(iter(fresh.state.values()))["nadam"]
    assert state["mu_product"].dtype == state["step"].dtype == torch.float32
    assert state["exp_avg"].dtype == torch.bfloat16


def test_loading_a_state_with_other_linear_components_is_refused():
    opt = Mix(make_params(), adam=0.5, adadelta=0.5)
    with pytest.raises(ValueError, match="linear components"):
        Mix(make_params(), adam=0.5, rprop=0.5).load_state_dict(opt.state_dict())


def test_param_without_grad_and_zero_weight_keep_their_state_moving():
    params = make_params()
    opt = Mix(params, adam=0.0, sgd=1.0, components={"sgd": {"momentum": 0.9}})
    frozen = params[1].detach().clone()
    for grads in grad_stream(params, 3):
        for i, (p, g) in enumerate(zip(params, grads)):
            p.grad = None if i == 1 else g
        opt.step()
    assert torch.equal(params[1].detach(), frozen) and params[1] not in opt.state
    assert opt.state[params[0]]["adam"]["step"].item() == 3  # zero weight: its moments still follow


def test_an_lr_schedule_reaches_every_component_but_those_with_their_own_lr():
    params = make_params()
    opt = Mix(params, lr=0.5, adam=0.5, adadelta=0.5)
    own = make_params()
    opt_own = Mix(own, lr=0.5, adam=0.5, adadelta=0.5, components={"adadelta": {"lr": 0.5}})
    for o in (opt, opt_own):
        o.param_groups[0]["lr"] = 0.0  # what an lr scheduler does
    before, before_own = [p.detach().clone() for p in params], [p.detach().clone() for p in own]
    for group, o in ((params, opt), (own, opt_own)):
        for p, g in zip(group, grad_stream(group, 1)[0]):
            p.grad = g
        o.step()
    assert all(torch.equal(p, b) for p, b in zip(params, before))  # lr 0: neither part moves
    assert not any(torch.equal(p, b) for p, b in zip(own, before_own))  # adadelta kept its own lr


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_mas_and_the_cpu_loop():
    def on_cuda(make):
        params = [p.detach().cuda().requires_grad_() for p in make_params()]
        opt = make(params)
        for grads in grad_stream(make_params(), 10):
            for p, g in zip(params, grads):
                p.grad = g.cuda()
            opt.step()
        return [p.detach().cpu() for p in params]

    mas = on_cuda(lambda p: MAS(p, lambda_adam=0.3, lambda_sgd=0.7, momentum=0.9))
    mix = on_cuda(lambda p: Mix(p, adam=0.3, sgd=0.7, momentum=0.9))
    assert all(torch.equal(a, b) for a, b in zip(mas, mix))
    three = on_cuda(lambda p: Mix(p, adam=0.3, sgd=0.5, rmsprop=0.2, adadelta=0.1))
    cpu, _ = run(lambda p: Mix(p, adam=0.3, sgd=0.5, rmsprop=0.2, adadelta=0.1), steps=10)
    torch.testing.assert_close(three, [p.detach() for p in cpu])


# --- torch.compile ------------------------------------------------------------------------------------------


EVERY_KIND = dict(adam=0.3, sgd=0.2, adamw=0.1, adamax=0.1, nadam=0.1, rmsprop=0.1, adagrad=0.05, lion=0.05,
                  weight_decay=0.01, components={"rmsprop": {"centered": True, "momentum": 0.5},
                                                 "adagrad": {"lr_decay": 0.01}})


@pytest.mark.parametrize("config, compiles", [
    (dict(adam=0.5, sgd=0.5), 1),  # MAS's default path on CPU: fused, outside the graph as MAS's
    (dict(adam=0.5, sgd=0.5, foreach=True), 1),
    (dict(adam=0.5, sgd=0.5, foreach=False), 1),
    (EVERY_KIND, 1),
    # torch wraps every optimizer's step in one function (its profiler hook): entered by Mix's step with grad
    # on, and by the linear component's, inside it, with grad off. Two code paths, each compiled once.
    (dict(adam=0.5, sgd=0.3, adadelta=0.2), 2),
    # SGD's momentum buffer is the first gradient, made at step 1: one more compile at step 2, as MAS and
    # torch.optim.SGD under torch.compile, and none after.
    (dict(adam=0.6, sgd=0.4, momentum=0.9, foreach=False), 2),
    (dict(adam=0.6, sgd=0.4, momentum=0.9), 2),
], ids=["fused", "foreach", "loop", "every_kind", "linear", "loop_momentum", "fused_momentum"])
def test_compiled_step_compiles_once_and_matches_eager(config, compiles, capfd):
    """``torch.compile(Mix(...).step)``: each frame compiles ``compiles`` times at most over 8 steps (a
    state made while tracing, or a step count read with ``.item()``, recompiled it per parameter and per
    step until dynamo's limit, with 10-56 lines on stderr), and it moves the parameters as the eager step."""
    from tests.optim_helpers import train_tiny

    torch._dynamo.reset()
    with torch._dynamo.config.patch(recompile_limit=compiles, fail_on_recompile_limit_hit=True):
        compiled, _ = train_tiny(lambda ps: Mix(ps, lr=1e-2, **config), steps=8, compiled_backend="eager")
    torch._dynamo.reset()
    eager, _ = train_tiny(lambda ps: Mix(ps, lr=1e-2, **config), steps=8)
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-6)
    assert "recompile" not in capfd.readouterr().err
