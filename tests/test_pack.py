"""Packed cells (masbench.engine with K members): the fused model, the packed optimizer and train, against unpacked runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from masbench.engine import (
    Callback,
    ExecOptions,
    Member,
    RunResult,
    Unpackable,
    can_pack,
    checkpoint_path,
    plan_packs,
    train,
    train_one,
)
from masbench.engine.checkpoint import Unfit
from masbench.engine.fuse import fuse
from masbench.engine.packed_optim import PackedOptimizer, member_views, step_groups
from masbench.fileio import load_torch_file
from masbench.optim import build_optimizer
from masbench.spec import RunSpec
from reliability import numbers


def assert_close_runs(packed, unpacked, rel=1e-4, acc_points=1.0):
    """The issue's criterion: first epoch's train loss to ``rel``, the final test accuracy within ``acc_points``."""
    assert packed.status == unpacked.status and len(packed.epochs) == len(unpacked.epochs)
    a, b = packed.epochs[0].train_loss, unpacked.epochs[0].train_loss
    assert abs(a - b) <= rel * abs(b), (a, b)
    if unpacked.final_test_acc is not None:
        assert abs(packed.final_test_acc - unpacked.final_test_acc) * 100 <= acc_points
    for p, u in zip(packed.epochs, unpacked.epochs):
        assert (p.epoch, p.lr, p.lambda_adam, p.lambda_sgd) == (u.epoch, u.lr, u.lambda_adam, u.lambda_sgd)


@pytest.fixture
def options(tmp_path):
    return ExecOptions(device="cpu", checkpoint_dir=tmp_path / "ckpt")


# --- the fused model -------------------------------------------------------------------------------------


def _members(name: str, k: int, shape):
    from masbench.models.resnet import cifar_resnet
    from masbench.models.small import MLP, SmallCNN

    build = {"mlp": lambda: MLP(shape, 10), "cnn": lambda: SmallCNN(shape, 10),
             "resnet18": lambda: cifar_resnet(18, shape, 10)}[name]
    models = []
    for seed in range(k):
        torch.manual_seed(seed)
        models.append(build())
    return models


@pytest.mark.parametrize("name, k, shape, conv", [
    ("mlp", 3, (1, 8, 8), "auto"), ("cnn", 3, (3, 32, 32), "members"), ("cnn", 3, (3, 32, 32), "grouped"),
    pytest.param("resnet18", 2, (3, 32, 32), "members", marks=pytest.mark.slow),
    pytest.param("resnet18", 2, (3, 32, 32), "grouped", marks=pytest.mark.slow),
])
def test_the_fused_model_computes_each_members_forward_backward_and_statistics(name, k, shape, conv):
    """In float64, where the order of summation cannot hide a wrong sum: outputs, gradients, running statistics."""
    models = [m.double() for m in _members(name, k, shape)]
    packed = fuse(models, conv)
    for i, model in enumerate(models):  # initial weights: the members' own, bit for bit
        assert all(torch.equal(a, b) for a, b in zip(packed.member_state_dict(i).values(), model.state_dict().values()))
    x = torch.randn(k, 4, *shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = torch.randint(0, 10, (k, 4), generator=torch.Generator().manual_seed(1))
    out = packed(x)
    assert out.shape == (k, 4, 10)
    F.cross_entropy(out.flatten(0, 1), y.flatten(), reduction="none").view(k, -1).mean(1).sum().backward()
    for i, model in enumerate(models):
        ref = model(x[i])
        assert torch.allclose(out[i], ref, rtol=1e-10, atol=1e-12)
        F.cross_entropy(ref, y[i]).backward()
        for (pname, p), q in zip(packed.module.named_parameters(), model.parameters()):
            assert torch.allclose(p.grad[i], q.grad, rtol=1e-8, atol=1e-12), pname
        state = packed.member_state_dict(i)
        for key, value in model.state_dict().items():  # BatchNorm's running statistics after the step
            assert torch.allclose(state[key].double(), value.double(), rtol=1e-10, atol=1e-12), key
    packed.eval()
    for model in models:
        model.eval()
    out = packed(x)
    assert all(torch.allclose(out[i], m(x[i]), rtol=1e-10, atol=1e-12) for i, m in enumerate(models))


@pytest.mark.parametrize("name, shape", [("mlp", (1, 8, 8)), ("cnn", (3, 32, 32))])
def test_the_fused_model_in_float32_agrees_to_rounding(name, shape):
    models = _members(name, 3, shape)
    x = torch.randn(3, 8, *shape, generator=torch.Generator().manual_seed(0))
    out = fuse(models)(x)
    assert all(torch.allclose(out[i], m(x[i]), rtol=1e-4, atol=1e-5) for i, m in enumerate(models))


@pytest.mark.parametrize("name, shape", [("cnn", (3, 16, 16)),
                                         pytest.param("resnet18", (3, 8, 8), marks=pytest.mark.slow)])
def test_the_conv_strategies_agree_and_on_a_cpu_members_runs_the_unpacked_kernels(name, shape):
    """Members' convolutions are the unpacked models' own calls: outputs, gradients and statistics bit for bit;
    the grouped convolution sums in another order, so it agrees to rounding."""
    models = _members(name, 3, shape)
    x = torch.randn(3, 6, *shape, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 10, (3, 6), generator=torch.Generator().manual_seed(1))
    runs = {}
    for conv in ("auto", "members", "grouped"):
        packed = fuse(models, conv)
        out = packed(x)
        assert packed.strategy(x.device) == ("grouped" if conv == "grouped" else "members")  # auto on a CPU
        torch.stack([F.cross_entropy(o, t) for o, t in zip(out.unbind(0), y.unbind(0))]).sum().backward()
        runs[conv] = (out, [p.grad for p in packed.parameters()], [packed.member_state_dict(i) for i in range(3)])
    for i, model in enumerate(models):
        ref = model(x[i])
        F.cross_entropy(ref, y[i]).backward()
        for conv, (out, grads, states) in runs.items():
            same = torch.equal if conv != "grouped" else _close_to_rounding
            assert same(out[i], ref), conv
            assert all(same(g[i], p.grad) for g, p in zip(grads, model.parameters())), conv
            assert all(same(states[i][n].float(), t.float()) for n, t in model.state_dict().items()), conv


def _close_to_rounding(a, b):
    """float32 rounding through a deep net: within 1e-3 of b's largest value (float64 checks the sums above)."""
    return torch.allclose(a, b, rtol=1e-3, atol=1e-3 * float(b.detach().abs().max()) + 1e-7)


def test_the_conv_strategy_is_cuda_grouped_else_members_unless_set(monkeypatch):
    from masbench.engine.fuse import conv_strategy

    assert [conv_strategy("auto", torch.device(d)) for d in ("cpu", "cuda", "mps")] == ["members", "grouped", "members"]
    assert conv_strategy("grouped", torch.device("cpu")) == "grouped"
    assert conv_strategy("members", torch.device("cuda")) == "members"
    models = _members("cnn", 2, (3, 8, 8))
    assert fuse(models).conv == "auto"
    assert fuse(_members("mlp", 2, (1, 8, 8)), "members").strategy(torch.device("cpu")) == "fused"  # no convolution
    monkeypatch.setenv("MASBENCH_PACK_CONV", "grouped")
    assert fuse(models).conv == "grouped" and fuse(models, "members").conv == "members"
    monkeypatch.setenv("MASBENCH_PACK_CONV", "fast")
    with pytest.raises(ValueError, match="Invalid MASBENCH_PACK_CONV: 'fast' .valid: auto, grouped, members"):
        fuse(models)
    with pytest.raises(ValueError, match="Invalid conv: 'one'"):
        fuse(models, "one")


def test_a_members_state_dict_goes_in_and_out_of_the_pack():
    models = _members("cnn", 3, (3, 16, 16))
    packed = fuse(models[:2])
    packed.load_member_state_dict(1, models[2].state_dict())
    x = torch.randn(2, 3, 3, 16, 16)
    packed.eval()
    models[2].eval()
    assert torch.allclose(packed(x)[1], models[2](x[1]), rtol=1e-4, atol=1e-5)
    assert all(torch.equal(a, b) for a, b in zip(packed.member_state_dict(1).values(),
                                                 models[2].state_dict().values()))
    wrong = {**models[2].state_dict(), "head.2.bias": torch.zeros(7)}
    with pytest.raises(ValueError, match="head.2.bias"):
        packed.load_member_state_dict(0, wrong)


@pytest.mark.parametrize("models, reason", [
    (lambda: [torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout())] * 2, "Dropout"),
    (lambda: [torch.nn.Sequential(torch.nn.Linear(4, 4)), torch.nn.Sequential(torch.nn.Linear(4, 5))], "differ"),
    (lambda: [torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding_mode="reflect", padding=1))] * 2, "reflect"),
    (lambda: [torch.nn.Sequential(torch.nn.BatchNorm2d(4, momentum=None))] * 2, "momentum=None"),
])
def test_a_model_without_a_packed_form_is_refused_with_a_reason(models, reason):
    with pytest.raises(Unpackable, match=reason):
        fuse(models())


BASE = dict(dataset="digits", model="mlp", lr=3e-3, momentum=0.9, batch_size=64, epochs=2)


@pytest.mark.parametrize("specs, reason", [
    ([RunSpec(**BASE), RunSpec(**BASE, seed=1, optimizer="adam")], None),
    ([RunSpec(**BASE), RunSpec(**{**BASE, "batch_size": 32})], "batch_size"),
    ([RunSpec(**BASE), RunSpec(**{**BASE, "model": "cnn"})], "model"),
    ([RunSpec(**BASE), RunSpec(**BASE, train_subset=100)], "data options"),
    ([RunSpec(**BASE), RunSpec(**BASE)], "twice"),
    # Validation splits, lr schedules and text models pack since one engine trains them all.
    ([RunSpec(**BASE, val_fraction=0.2), RunSpec(**BASE, seed=1, val_fraction=0.3)], None),
    ([RunSpec(**BASE, lr_schedule="cosine"), RunSpec(**BASE, seed=1)], None),
    ([RunSpec(dataset="csv:x.csv", model="bert"), RunSpec(dataset="csv:x.csv", model="bert", seed=1)], None),
])
def test_can_pack_names_what_the_cells_must_share(specs, reason):
    found = can_pack(specs)
    assert found is None if reason is None else reason in found


def test_plan_packs_groups_cells_that_can_share_a_pack_in_their_order():
    a = [RunSpec(**BASE, seed=s) for s in range(5)]
    b = [RunSpec(**{**BASE, "batch_size": 32}, seed=s) for s in range(2)]
    text = RunSpec(dataset="csv:x.csv", model="bert")
    packs = plan_packs([a[0], b[0], text, *a[1:], b[1]], 3)
    assert packs == [[a[0], a[1], a[2]], [a[3], a[4]], [b[0], b[1]], [text]]
    assert all(can_pack(p) is None for p in packs[:3])
    # An optimizer with no packed form trains alone, told at planning: it never takes MAS cells out with it.
    radam = RunSpec(**BASE, optimizer="radam", seed=9)
    assert "no packed form" in can_pack([a[0], radam])
    assert plan_packs([a[0], radam, a[1]], 3) == [[a[0], a[1]], [radam]]
    with pytest.raises(ValueError, match="pack size"):
        plan_packs(a, 0)


# --- the packed optimizer ----------------------------------------------------------------------------------

MIXED = [
    ("mas", dict(lr=0.01, lambda_adam=0.3, lambda_sgd=0.7, momentum=0.9)),
    ("mas", dict(lr=0.003, lambda_adam=0.0, lambda_sgd=1.0, weight_decay=1e-3, momentum=0.8, nesterov=True)),
    ("mas", dict(lr=0.02, lambda_adam=0.6, lambda_sgd=0.4, betas=(0.8, 0.95), dampening=0.2, momentum=0.5,
                 bias_correction="constant", amsgrad=True)),
    ("adam", dict(lr=0.002, betas=(0.8, 0.99), eps=1e-6)),
    ("adamw", dict(lr=0.001, weight_decay=0.05, amsgrad=True)),
    ("sgd", dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=1e-4)),
    ("sgd", dict(lr=0.1)),
]
SHAPES = [(5, 4), (5,), (3, 2, 3, 3)]
# Pairs alike but for the seed share one step call (masbench.engine.packed_optim.shared_step); each must still be its own.
TWINS = [MIXED[0], MIXED[0], MIXED[3], MIXED[3], MIXED[5], MIXED[5], MIXED[4]]


@pytest.mark.parametrize("members", [MIXED, TWINS], ids=["mixed", "twins"])
def test_the_packed_optimizer_equals_each_members_own_optimizer(members):
    """Mixed members, one of them frozen half way, one twin's lambda changed: parameters and state dicts
    against K separate optimizers."""
    k = len(members)
    g = torch.Generator().manual_seed(0)
    stacked = [torch.nn.Parameter(torch.randn(k, *s, generator=g)) for s in SHAPES]
    refs = [[torch.nn.Parameter(p[i].detach().clone()) for p in stacked] for i in range(k)]
    ref_opts = [build_optimizer(name, refs[i], **h) for i, (name, h) in enumerate(members)]
    opt = PackedOptimizer(stacked, [build_optimizer(name, member_views(stacked, i), **h)
                                    for i, (name, h) in enumerate(members)])
    if members is TWINS:
        assert step_groups(opt.members, range(k)) == [[0, 1], [2, 3], [4, 5], [6]]
    for step in range(6):
        grads = [torch.randn(k, *s, generator=g) for s in SHAPES]
        for p, grad in zip(stacked, grads):
            p.grad = grad.clone()
        active = [i for i in range(k) if not (step >= 3 and i == 3)]
        if step == 4:  # as a lambda schedule would: member 1 leaves its twin's param group
            for o in (opt.members[1], ref_opts[1]):
                o.param_groups[0].update(lambda_adam=0.5, lambda_sgd=0.5)
        opt.step(active)
        for i in active:
            for r, grad in zip(refs[i], grads):
                r.grad = grad[i].clone()
            ref_opts[i].step()
    for i in range(k):
        for p, r in zip(stacked, refs[i]):
            assert torch.equal(p[i], r)  # the member's own kernels: bit for bit
        ours, theirs = opt.members[i].state_dict(), ref_opts[i].state_dict()
        assert ours["param_groups"] == theirs["param_groups"]
        assert {j: set(e) for j, e in ours["state"].items()} == {j: set(e) for j, e in theirs["state"].items()}
        for j, entry in theirs["state"].items():
            for name, value in entry.items():
                assert torch.allclose(ours["state"][j][name].float(), value.float(), rtol=1e-5, atol=1e-7), (i, name)


# --- packs against unpacked runs ---------------------------------------------------------------------


def quick_grid(**values):
    """The quick suite's shape: MAS at its lambdas, Adam and SGD, on digits with the MLP."""
    base = {**BASE, **values}
    specs = [RunSpec(**base, optimizer="mas", lambda_adam=a, lambda_sgd=round(1 - a, 10), seed=s)
             for a, s in ((0.3, 0), (0.5, 1), (0.7, 0))]
    return specs + [RunSpec(**base, optimizer="adam", seed=1), RunSpec(**base, optimizer="sgd", seed=0),
                    RunSpec(**base, optimizer="adamw", seed=2, lambda_schedule="constant"),
                    RunSpec(**base, optimizer="mas", lambda_schedule="linear:0.8:0.2", seed=3)]


class Record(Callback):
    def __init__(self):
        self.epochs, self.starts, self.resumed, self.checkpoints = [], [], [], []

    def on_start(self, info):
        self.starts.append(info)

    def on_resume(self, history):
        self.resumed.append(list(history))

    def on_epoch(self, metrics):
        self.epochs.append(metrics)

    def on_checkpoint(self, epoch, path):
        self.checkpoints.append((epoch, path))


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("conv", ["members", "grouped"])
def test_a_packed_grid_gives_each_cell_its_unpacked_numbers(conv, options, one_thread):
    """Every number of every epoch, bit for bit: each member's own forward, and on one CPU thread the fused
    MLP's batched matmul too (it runs the unpacked matmul's kernel there; on more threads they split the sums
    differently)."""
    specs = quick_grid()
    unpacked = [train_one(s, replace(options, checkpoint_dir=options.checkpoint_dir / "u")) for s in specs]
    records = [Record() for _ in specs]
    outcomes = train([Member(s, [r]) for s, r in zip(specs, records)], options, conv=conv)
    for outcome, spec, alone, record in zip(outcomes, specs, unpacked, records):
        assert outcome.spec == spec and outcome.exception is None
        assert_close_runs(outcome.result, alone)
        assert numbers(outcome.result) == numbers(alone)
        assert record.epochs == outcome.result.epochs  # each member's callbacks got its own metrics
        info = record.starts[0]
        assert (info.spec, info.train_size, info.batches_per_epoch, info.start_epoch) == (spec, 1438, 23, 0)
        assert info.parameters == sum(p.numel() for p in torch.nn.Module.parameters(_members("mlp", 1, (1, 8, 8))[0]))
        assert [e for e, _ in record.checkpoints] == [1, 2]
        assert not checkpoint_path(spec, options).exists()  # removed once complete, as unpacked


def _equal(a, b) -> bool:
    """Tensors, dicts and lists equal bit for bit."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return a == b


def test_members_of_one_seed_share_their_batches_and_checkpoint_their_unpacked_state(options):
    """Cells of one seed draw the same batches, so one member draws them for the others; each member's
    checkpoint still holds its unpacked run's weights, optimizer state and RNG states, its order and
    augmentation generators' included (so that it resumes packed or unpacked alike)."""
    specs = quick_grid(epochs=2)
    assert len({s.seed for s in specs}) < len(specs)  # some members share a seed
    unpacked = replace(options, checkpoint_dir=options.checkpoint_dir / "u", keep_checkpoint=True)
    packed = replace(options, keep_checkpoint=True)
    for spec in specs:
        train_one(spec, unpacked)
    train([Member(s) for s in specs], packed)
    for spec in specs:
        alone, in_the_pack = (load_torch_file(checkpoint_path(spec, o)) for o in (unpacked, packed))
        for part in ("model", "optimizer", "schedule", "lr_schedule", "rng", "epoch"):
            assert _equal(alone[part], in_the_pack[part]), (spec.name, spec.seed, part)


IN_PLACE = """
import math
from torch import nn


class Doubles(nn.Module):
    def __init__(self, num_classes, input_shape):
        super().__init__()
        self.head = nn.Linear(math.prod(input_shape), num_classes)

    def forward(self, x):
        return self.head(x.mul_(2).flatten(1))


def doubles(num_classes, input_shape):
    return Doubles(num_classes, input_shape)
"""


def test_a_model_that_writes_into_its_shared_batch_fails_the_pack_rather_than_feed_the_others(options, tmp_path,
                                                                                                monkeypatch):
    """Members of one seed share their batches: a forward that doubles its input in place would hand the next
    member doubled inputs, numbers its unpacked run never sees. The pack stops with one line instead."""
    from masbench.models.external import external_entry

    (tmp_path / "in_place_models.py").write_text(IN_PLACE)
    monkeypatch.syspath_prepend(str(tmp_path))
    external_entry.cache_clear()
    try:
        specs = [RunSpec(model="in_place_models:doubles", optimizer=o, epochs=1, batch_size=64) for o in ("adam", "sgd")]
        with pytest.raises(RuntimeError, match=r"^model in_place_models:doubles writes into its input batch, which "
                                               r"the members of one seed share in a pack: train it unpacked"):
            train([Member(s) for s in specs], options)
        other_seed = [specs[0], specs[1].model_copy(update={"seed": 1})]  # no batch shared: each its own numbers
        alone = [train_one(s, replace(options, checkpoint_dir=options.checkpoint_dir / "u")) for s in other_seed]
        packed = train([Member(s) for s in other_seed], replace(options, checkpoint_dir=options.checkpoint_dir / "p"))
        assert [numbers(o.result) for o in packed] == [numbers(r) for r in alone]
    finally:
        external_entry.cache_clear()


def test_a_packed_cnn_grid_on_augmented_images_gives_each_cell_its_unpacked_numbers(image_folder, options):
    """With the members' own convolutions (a CPU's default), bit for bit; with the grouped one, to rounding."""
    base = dict(dataset=f"imagefolder:{image_folder}", model="cnn", batch_size=8, epochs=2, lr=1e-2, momentum=0.9)
    specs = [RunSpec(**base, optimizer="mas", lambda_adam=0.3, lambda_sgd=0.7, seed=0),
             RunSpec(**base, optimizer="mas", lambda_adam=0.3, lambda_sgd=0.7, seed=1),
             RunSpec(**base, optimizer="adam", seed=0), RunSpec(**base, optimizer="sgd", seed=2)]
    unpacked = [train_one(s, replace(options, checkpoint_dir=options.checkpoint_dir / "u")) for s in specs]
    members = train([Member(s) for s in specs], replace(options, checkpoint_dir=options.checkpoint_dir / "m"))
    grouped = train([Member(s) for s in specs], options, conv="grouped")
    for m, g, alone in zip(members, grouped, unpacked):
        assert numbers(m.result) == numbers(alone)
        assert_close_runs(g.result, alone)


def test_a_diverging_member_is_frozen_and_the_others_go_on_as_alone(options):
    specs = quick_grid(epochs=3)[:3] + [RunSpec(**{**BASE, "epochs": 3, "lr": 1e12}, optimizer="sgd", seed=5)]
    unpacked = [train_one(s, replace(options, checkpoint_dir=options.checkpoint_dir / "u")) for s in specs]
    assert unpacked[-1].status == "diverged"
    records = [Record() for _ in specs]
    outcomes = train([Member(s, [r]) for s, r in zip(specs, records)], options)
    for outcome, alone in zip(outcomes[:-1], unpacked[:-1]):
        assert_close_runs(outcome.result, alone)
    diverged, alone = outcomes[-1].result, unpacked[-1]
    assert diverged.status == "diverged" and diverged.error == alone.error
    assert repr(numbers(diverged)) == repr(numbers(alone))  # (nan != nan) its epoch, ended at the same batch
    assert diverged.epochs[-1].test_acc is None and len(records[-1].epochs) == len(alone.epochs)
    assert not checkpoint_path(specs[-1], options).exists()


class Crash(BaseException):
    """A crash in the middle of a pack (not an Exception: it is not the member's alone)."""


class CrashAt(Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_checkpoint(self, epoch, path):
        if epoch == self.epoch:
            raise Crash


def test_a_packed_members_checkpoint_resumes_in_an_unpacked_run_and_the_reverse(options):
    a, b = quick_grid(epochs=3)[:2]
    straight = [train_one(s, replace(options, checkpoint_dir=options.checkpoint_dir / "u")) for s in (a, b)]
    # The pack crashes right after member a's checkpoint of epoch 1 (b's is not written yet).
    in_the_pack = Record()
    with pytest.raises(Crash):
        train([Member(a, [in_the_pack, CrashAt(1)]), Member(b)], options)
    assert checkpoint_path(a, options).exists() and not checkpoint_path(b, options).exists()
    resumed = train_one(a, options)  # the unpacked engine takes over member a
    assert resumed.resumed_from == 1
    assert_close_runs(resumed, straight[0])  # its epoch 1 is the pack's: equal within the tolerance
    # Epoch 1 came from the pack's checkpoint, bit for bit (a pack of another size may round differently).
    assert numbers(resumed)[0] == numbers(RunResult("completed", in_the_pack.epochs, ""))[0]

    # The reverse: b's unpacked run crashes after epoch 2; a pack of b and a fresh a resumes b there.
    with pytest.raises(Crash):
        train_one(b, options, [CrashAt(2)])
    record = Record()
    outcomes = train([Member(a), Member(b, [record])], options)
    assert outcomes[1].result.resumed_from == 2 and outcomes[0].result.resumed_from == 0
    assert numbers(RunResult("completed", record.resumed[0], "")) == numbers(straight[1])[:2]
    assert numbers(outcomes[1].result)[:2] == numbers(straight[1])[:2]
    for outcome, alone in zip(outcomes, straight):
        assert_close_runs(outcome.result, alone)


def test_a_member_whose_callbacks_raise_is_set_aside_and_the_others_finish(options):
    class Broken(Callback):
        def on_epoch(self, metrics):
            raise RuntimeError("the store is gone")

    specs = quick_grid()[:3]
    outcomes = train([Member(specs[0]), Member(specs[1], [Broken()]), Member(specs[2])], options)
    assert outcomes[1].result is None and "the store is gone" in str(outcomes[1].exception)
    assert "RuntimeError" in outcomes[1].traceback
    assert [o.result.status for o in (outcomes[0], outcomes[2])] == ["completed", "completed"]
    assert not checkpoint_path(specs[1], options).exists()  # set aside before its first checkpoint


def test_a_checkpoint_that_does_not_fit_its_member_fails_that_member_alone(options):
    """A member's checkpoint edited by hand (a tensor of another shape) fails that member, naming the file; the
    other members resume from theirs and finish with their uninterrupted numbers."""
    specs = quick_grid(epochs=2)[:3]
    straight = [train_one(s, replace(options, checkpoint_dir=options.checkpoint_dir / "u")) for s in specs]
    with pytest.raises(Crash):  # every member's checkpoint of epoch 1 is written, then the pack stops
        train([Member(specs[0]), Member(specs[1]), Member(specs[2], [CrashAt(1)])], options)
    path = checkpoint_path(specs[1], options)
    state = torch.load(path, weights_only=True)
    name = next(iter(state["model"]))
    state["model"][name] = torch.zeros(3, 3)
    torch.save(state, path)
    outcomes = train([Member(s) for s in specs], options)
    assert outcomes[1].result is None and str(path) in str(outcomes[1].exception)
    assert "does not fit" in str(outcomes[1].exception) and "size mismatch" in str(outcomes[1].exception)
    for k in (0, 2):
        assert outcomes[k].result.status == "completed" and outcomes[k].result.resumed_from == 1
        assert_close_runs(outcomes[k].result, straight[k])
    with pytest.raises(Unfit, match="does not fit"):  # alone, the cell's run fails with why, as it failed before
        train_one(specs[1], options)


def test_cells_that_cannot_be_packed_raise_before_anything_is_written(options):
    with pytest.raises(Unpackable, match="batch_size"):
        train([Member(RunSpec(**BASE)), Member(RunSpec(**{**BASE, "batch_size": 32}))], options)
    assert not options.checkpoint_dir.exists()


@pytest.mark.slow
def test_a_pack_killed_mid_checkpoint_resumes_every_member_like_an_uninterrupted_pack(tmp_path, one_thread):
    """A real SIGKILL while member b writes its epoch-2 checkpoint: a is at epoch 2, b at 1. The rerun trains
    b's epoch 2 while a waits untouched, then both go on; every number equals the uninterrupted pack's (all on
    one thread, as the killed process runs: a member's matmuls split their sums by the thread count, as an
    unpacked run's do)."""
    specs = quick_grid(epochs=3)[:2]
    straight = train([Member(s) for s in specs], ExecOptions(device="cpu", checkpoint_dir=tmp_path / "a"))
    ckpt = tmp_path / "b"
    code = ("from masbench.engine import train, Member, ExecOptions; from masbench.spec import RunSpec; "
            f"specs = [RunSpec.model_validate_json(s) for s in {[s.model_dump_json() for s in specs]!r}]; "
            f"train([Member(s) for s in specs], ExecOptions(device='cpu', checkpoint_dir={str(ckpt)!r}))")
    env = dict(os.environ, MASBENCH_FAULT="checkpoint:4", OMP_NUM_THREADS="1")
    killed = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    records = [Record() for _ in specs]
    resumed = train([Member(s, [r]) for s, r in zip(specs, records)],
                         ExecOptions(device="cpu", checkpoint_dir=ckpt))
    assert [o.result.resumed_from for o in resumed] == [2, 1]
    assert [len(r.resumed[0]) for r in records] == [2, 1]
    for again, first in zip(resumed, straight):
        assert numbers(again.result) == numbers(first.result)
    assert list(ckpt.iterdir()) == []


def test_a_waiting_member_keeps_its_batchnorm_statistics_and_weights(image_folder, options):
    """A pack crashed after member a's checkpoint of epoch 1 and before b's: on the rerun b trains epoch 1
    while a waits; a's running statistics must not learn from the batches it sat out."""
    base = dict(dataset=f"imagefolder:{image_folder}", model="cnn", batch_size=8, epochs=3, lr=1e-2, momentum=0.9)
    specs = [RunSpec(**base, optimizer="mas", seed=0), RunSpec(**base, optimizer="adam", seed=1)]
    straight = train([Member(s) for s in specs], replace(options, checkpoint_dir=options.checkpoint_dir / "a"))
    with pytest.raises(Crash):
        train([Member(specs[0], [CrashAt(1)]), Member(specs[1])], options)
    resumed = train([Member(s) for s in specs], options)
    assert [o.result.resumed_from for o in resumed] == [1, 0]
    for again, first in zip(resumed, straight):
        assert numbers(again.result) == numbers(first.result)


def test_a_member_checkpointed_after_its_last_epoch_completes_without_training(options):
    done, fresh = quick_grid(epochs=1)[:2]
    alone = train_one(done, replace(options, keep_checkpoint=True))
    assert checkpoint_path(done, options).exists()
    record = Record()
    outcomes = train([Member(done, [record]), Member(fresh)], options)
    assert outcomes[0].result.status == "completed" and outcomes[0].result.resumed_from == 1
    assert numbers(outcomes[0].result) == numbers(alone) and record.epochs == []
    assert not checkpoint_path(done, options).exists() and outcomes[1].result.resumed_from == 0


# --- what a single run does, a pack does too --------------------------------------------------------------


def _final_weights(spec, options):
    """The model and optimizer state of ``spec``'s last checkpoint (kept: ``keep_checkpoint``)."""
    state = torch.load(checkpoint_path(spec, options), map_location="cpu", weights_only=False)
    return state["model"], state["optimizer"]["state"]


def _same_tensors(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_tensors(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(_same_tensors(x, y) for x, y in zip(a, b))
    return torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b


def assert_packed_equals_unpacked(specs, options, conv=None, datasets=None):
    """Each member of a pack of ``specs`` against its unpacked run: every epoch's numbers and the final
    weights and optimizer state, bit for bit."""
    alone_options = replace(options, checkpoint_dir=options.checkpoint_dir / "alone", keep_checkpoint=True)
    packed_options = replace(options, checkpoint_dir=options.checkpoint_dir / "packed", keep_checkpoint=True)
    unpacked = [train_one(s, alone_options, datasets=datasets) for s in specs]
    records = [Record() for _ in specs]
    outcomes = train([Member(s, [r]) for s, r in zip(specs, records)], packed_options, datasets=datasets, conv=conv)
    for spec, outcome, alone, record in zip(specs, outcomes, unpacked, records):
        assert outcome.exception is None and outcome.result.status == alone.status == "completed"
        assert numbers(outcome.result) == numbers(alone), spec.name
        assert record.epochs == outcome.result.epochs
        assert _same_tensors(_final_weights(spec, packed_options), _final_weights(spec, alone_options)), spec.name
    return outcomes, unpacked


@pytest.mark.parametrize("conv", ["members", "grouped"])
def test_a_pack_runs_each_members_own_lr_schedule(options, conv, one_thread):
    """Each member's own forward, and the fused model (grouped convolutions; the MLP's batched matmuls run
    the unpacked kernel on one thread): every number bit for bit."""
    base, sgd = {**BASE, "epochs": 3}, {**BASE, "epochs": 3, "lr": 0.05, "optimizer": "sgd"}
    specs = [RunSpec(**sgd, lr_schedule="cosine", seed=0), RunSpec(**sgd, lr_schedule="cosine", seed=1),
             RunSpec(**base, optimizer="mas", lr_schedule="step:1:0.5", lambda_schedule="linear:0.8:0.2", seed=2),
             RunSpec(**base, optimizer="adam", lr_schedule="linear-warmup:1", seed=3),
             RunSpec(**sgd, seed=4)]  # constant
    outcomes, _ = assert_packed_equals_unpacked(specs, options, conv=conv)
    lrs = [[m.lr for m in o.result.epochs] for o in outcomes]
    assert lrs[0] == lrs[1] and lrs[0][0] > lrs[0][1] > lrs[0][2]  # the schedules ran: their lr moved
    assert lrs[2] == [3e-3, 1.5e-3, 7.5e-4] and lrs[4] == [0.05] * 3


def test_a_pack_evaluates_each_members_own_validation_split(options):
    specs = [RunSpec(**BASE, val_fraction=0.25, seed=0), RunSpec(**BASE, val_fraction=0.25, seed=1),
             RunSpec(**BASE, val_fraction=0.1, seed=2, optimizer="adam"), RunSpec(**BASE, seed=3)]
    outcomes, _ = assert_packed_equals_unpacked(specs, options)
    assert all(m.val_acc is not None for o in outcomes[:3] for m in o.result.epochs)
    assert all(m.val_acc is None for m in outcomes[3].result.epochs)
    assert len({o.result.epochs[-1].val_loss for o in outcomes[:3]}) == 3  # three splits, three numbers


def test_a_pack_of_text_models_gives_each_its_unpacked_run_dropout_and_all(options, tmp_path, minilm_path):
    """BERT draws dropout masks from the process's RNG: each member draws its own run's, so that it runs
    exactly as if alone."""
    from conftest import write_csv

    data = write_csv(tmp_path / "reviews.csv", rows_per_label=6)
    base = dict(dataset=f"csv:{data}", model="bert", pretrained=minilm_path, max_length=16, batch_size=4,
                epochs=2, test_fraction=0.25)
    specs = [RunSpec(**base, optimizer="adam", lr=1e-4, seed=0), RunSpec(**base, optimizer="adam", lr=1e-4, seed=1),
             RunSpec(**base, optimizer="mas", lr=1e-4, momentum=0.9, seed=2)]
    assert_packed_equals_unpacked(specs, options)


def test_a_pack_trains_tabular_data(options):
    """Rows of features (a plugin's kind of data set), through the same data-set cache an unpacked run uses."""
    from masbench.data.tabular import TabularDataset
    from masbench.engine import data_cache_key

    g = torch.Generator().manual_seed(0)
    y = torch.arange(80) % 2
    x = torch.randn(80, 5, generator=g) + y[:, None] * 1.5
    table = TabularDataset.from_arrays("blobs", x[:60], y[:60], x[60:], y[60:], ["a", "b"])
    specs = [RunSpec(**{**BASE, "batch_size": 16}, seed=s, val_fraction=0.2 if s == 1 else None) for s in range(3)]
    keys = {data_cache_key(s, replace(options, checkpoint_dir=options.checkpoint_dir / d)) for s in specs
            for d in ("alone", "packed")}
    outcomes, _ = assert_packed_equals_unpacked(specs, options, datasets=dict.fromkeys(keys, table))
    assert outcomes[0].result.epochs[0].train_acc > 0.5  # learnt the table's two blobs


def test_grouped_convolutions_take_one_training_set(options):
    """Members with validation splits of their own train on other rows: asked for grouped convolutions, the
    engine says so before anything is written (``auto`` runs each member's own forward instead)."""
    specs = [RunSpec(**BASE, val_fraction=0.25, seed=s) for s in range(2)]
    with pytest.raises(Unpackable, match="validation splits of their own"):
        train([Member(s) for s in specs], options, conv="grouped")
    assert not options.checkpoint_dir.exists()


def test_a_ddp_run_is_not_packed(options):
    from types import SimpleNamespace

    ddp = replace(options, distributed=SimpleNamespace(rank=0, world_size=2, local_rank=0, is_main=True))
    with pytest.raises(Unpackable, match="a DDP run trains one cell"):
        train([Member(RunSpec(**BASE, seed=s)) for s in range(2)], ddp)
    assert not options.checkpoint_dir.exists()
