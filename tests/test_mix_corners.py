"""A corner of a mix equals its single optimizer bit for bit, on every path: a zero weight never changes the path.

Each optimizer is built as a run builds it (``RunSpec`` -> ``build_optimizer``), so that ``mix:adam=1,sgd=0``
(whose zero weight the spec drops), a ``--mix`` simplex's corner, ``mas`` at lambda 1/0 and ``adam`` meet
on the same path: the default (what a run takes), foreach, fused, or the loop.
"""

from __future__ import annotations

import sqlite3

import pytest
import torch
from typer.testing import CliRunner

from masbench.cli import app
from masbench.grid.mix_weights import simplex
from masbench.optim import Mix, build_optimizer
from masbench.spec import RunSpec

PATHS = {"default": {}, "foreach": dict(foreach=True), "fused": dict(fused=True),
         "loop": dict(foreach=False, fused=False)}
DTYPES = [torch.float32, torch.float64, torch.bfloat16]
# (single optimizer, its mix corners, MAS at its lambdas when it is a MAS endpoint)
CORNERS = [
    ("adam", ["mix:adam=1,sgd=0", "mix:sgd=0,adam=1", "mix:adam=1,rmsprop=0,sgd=0"], dict(lambda_adam=1.0, lambda_sgd=0.0)),
    ("sgd", ["mix:sgd=1,adam=0", "mix:adam=0,sgd=1,adagrad=0"], dict(lambda_adam=0.0, lambda_sgd=1.0)),
    ("adamw", ["mix:adamw=1,sgd=0"], None),
    ("rmsprop", ["mix:rmsprop=1,adam=0"], None),
    ("adagrad", ["mix:adagrad=1,sgd=0"], None),
    ("nadam", ["mix:nadam=1,adam=0"], None),
    ("adamax", ["mix:adamax=1,sgd=0"], None),
]
NOT_FUSED = ("rmsprop", "nadam", "adamax")  # torch has no fused kernel for them: their loop is foreach=False


def _params(dtype):
    g = torch.Generator().manual_seed(0)
    return [torch.nn.Parameter(torch.randn(shape, generator=g, dtype=dtype)) for shape in [(64, 65), (513,), (3, 7, 11)]]


def _steps(make, dtype, steps=8):
    """The parameters after ``steps`` steps of ``make(params)`` on a fixed gradient stream."""
    params = _params(dtype)
    opt = make(params)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=g, dtype=dtype)
        opt.step()
    return params


def _as_run(optimizer: str, path: dict, **fields):
    spec = RunSpec(dataset="digits", model="mlp", optimizer=optimizer, **fields)
    return lambda params: build_optimizer(spec.optimizer, params, **{**spec.optimizer_hparams(), **path})


def _equal(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("single, mixes, mas", CORNERS, ids=[c[0] for c in CORNERS])
def test_a_corner_is_its_single_optimizer_on_every_path(single, mixes, mas, path, dtype):
    if single in NOT_FUSED and path == "fused":
        pytest.skip(f"torch's {single} has no fused path")
    options = dict(foreach=False) if single in NOT_FUSED and path == "loop" else PATHS[path]
    expected = _steps(_as_run(single, options), dtype)
    assert not _equal(expected, _params(dtype))  # it moved
    for mix in mixes:
        assert _equal(_steps(_as_run(mix, options), dtype), expected), mix
    if mas is not None:
        assert _equal(_steps(_as_run("mas", options, **mas), dtype), expected)


@pytest.mark.parametrize("path", list(PATHS))
def test_a_zero_weight_given_to_mix_itself_never_changes_the_path(path):
    """The Python API keeps zero weights (their state moves): Mix(adam=1, rmsprop=0) is still adam's path."""
    expected = _steps(_as_run("adam", PATHS[path]), torch.float32)
    for weights in ({"adam": 1.0, "rmsprop": 0.0}, {"adam": 1.0, "sgd": 0.0}, {"adam": 1.0}):
        assert _equal(_steps(lambda p: Mix(p, lr=1e-3, weights=weights, **PATHS[path]), torch.float32), expected)


def test_a_zero_weight_beside_a_corner_keeps_its_state_moving():
    params = _params(torch.float32)
    opt = Mix(params, lr=1e-3, adam=1.0, rmsprop=0.0)
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    assert opt.state[params[0]]["rmsprop"]["step"].item() == 1
    assert opt.state[params[0]]["adam"]["step"].item() == 1


@pytest.mark.parametrize("names", [["adam", "sgd"], ["adam", "sgd", "rmsprop"], ["sgd", "adamw"]])
def test_every_corner_of_a_simplex_is_its_single_optimizer(names):
    for point in simplex(names, 0.5):
        corner = [name for name, weight in point.items() if weight == 1.0]
        if not corner:
            continue
        expected = _steps(_as_run(corner[0], {}), torch.float32)
        got = _steps(_as_run("mix", {}, weights=point), torch.float32)
        assert _equal(got, expected), point


@pytest.mark.parametrize("single, corner, mas", [
    ("adam", "mix:adam=1,sgd=0", ["--lambda-adam", "1", "--lambda-sgd", "0"]),
    ("sgd", "mix:sgd=1,adam=0", ["--lambda-adam", "0", "--lambda-sgd", "1"]),
])
def test_a_corner_run_is_its_single_optimizer_end_to_end(tmp_path, single, corner, mas):
    """``masbench run`` on digits: the corner's train loss per epoch equals the single optimizer's and MAS's."""
    losses = []
    for n, args in enumerate([["--optimizer", single], ["--optimizer", corner], ["--optimizer", "mas", *mas]]):
        db = tmp_path / f"{n}.db"
        result = CliRunner().invoke(app, ["run", "--dataset", "digits", "--model", "mlp", "--epochs", "2", *args,
                                          "--db", f"sqlite:///{db}"])
        assert result.exit_code == 0, result.output
        losses.append(sqlite3.connect(db).execute("select train_loss, test_acc from epochs order by epoch").fetchall())
    assert losses[0] == losses[1] == losses[2], losses
