"""The paper's toy problems, checked against hand-written gradient descent in plain floats."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from masbench.cli import app
from masbench.optim.toy import PROBLEMS, run_toy
from reference import ReferenceMAS


def quadratic_grad(w):
    w1, w2 = w
    g1 = g2 = 0.0
    for x, y in ((1.0, 2.0), (2.0, 4.0)):
        r = 2 * (w1 * w2 * x - y)
        g1 += r * w2 * x
        g2 += r * w1 * x
    return [g1, g2]


def quadratic_loss(w):
    return sum((w[0] * w[1] * x - y) ** 2 for x, y in ((1.0, 2.0), (2.0, 4.0)))


def rosenbrock_grad(w):
    x, y = w
    return [-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)]


def abs_grad(w):
    sign = lambda v: (v > 0) - (v < 0)  # noqa: E731 - torch's sign(0) is 0, as here
    return [sign(w[0]) / 10, sign(w[1])]


GRADS = {"quadratic": quadratic_grad, "rosenbrock": rosenbrock_grad, "abs": abs_grad}


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_sgd_and_mas_follow_hand_written_updates(name):
    problem = PROBLEMS[name]
    steps = 60
    results = {r.optimizer: r for r in run_toy(name, steps=steps, momentum=0.5)}

    w = list(problem.start)
    buf = None
    for _ in range(steps):
        g = GRADS[name](w)
        buf = g if buf is None else [0.5 * b + gi for b, gi in zip(buf, g)]
        w = [wi - problem.lr * bi for wi, bi in zip(w, buf)]
    assert results["sgd"].x == pytest.approx(w[0], rel=1e-9, abs=1e-12)
    assert results["sgd"].y == pytest.approx(w[1], rel=1e-9, abs=1e-12)

    reference = ReferenceMAS(2, lr=problem.lr, momentum=0.5)
    w = list(problem.start)
    for _ in range(steps):
        w = reference.step(w, GRADS[name](w))
    assert results["mas"].x == pytest.approx(w[0], rel=1e-9, abs=1e-12)
    assert results["mas"].y == pytest.approx(w[1], rel=1e-9, abs=1e-12)


def test_quadratic_reaches_its_minimum_valley():
    for result in run_toy("quadratic"):
        assert result.x * result.y == pytest.approx(2.0, abs=1e-3), result.optimizer
        assert result.loss == pytest.approx(quadratic_loss((result.x, result.y)), rel=1e-9, abs=1e-15)


def test_rosenbrock_mas_beats_adam_at_the_papers_settings():
    """The paper's Fig. 4: with lr 1e-4 Adam barely moves in 1000 steps, MAS reaches the valley."""
    results = {r.optimizer: r for r in run_toy("rosenbrock")}
    assert results["mas"].loss < 0.01 < results["sgd"].loss < results["adam"].loss
    assert math.dist((results["mas"].x, results["mas"].y), (1.0, 1.0)) < 0.1


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_steps_to_threshold_is_the_first_step_below_it(name):
    threshold = PROBLEMS[name].threshold
    for result in run_toy(name):
        assert len(result.losses) == PROBLEMS[name].steps + 1
        below = [i for i, loss in enumerate(result.losses) if loss < threshold]
        assert result.steps_to_threshold == (below[0] if below else None)


def test_overrides_take_effect():
    results = run_toy("abs", lr=0.05, steps=7, start=(-1.0, 0.5), threshold=10.0)
    for result in results:
        assert result.trajectory[0] == (-1.0, 0.5)
        assert len(result.trajectory) == 8
        assert result.steps_to_threshold == 0
    sgd = results[0]
    assert sgd.trajectory[1] == pytest.approx((-1.0 + 0.05 / 10, 0.5 - 0.05))


def test_bias_correction_constant_changes_mas_only():
    step = {r.optimizer: r for r in run_toy("quadratic", steps=20)}
    constant = {r.optimizer: r for r in run_toy("quadratic", steps=20, bias_correction="constant")}
    assert (step["sgd"].x, step["adam"].x) == (constant["sgd"].x, constant["adam"].x)
    assert step["mas"].x != constant["mas"].x


runner = CliRunner()


def test_cli_json_output():
    result = runner.invoke(app, ["toy", "quadratic", "--json", "--steps", "50"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [row["optimizer"] for row in rows] == ["sgd", "adam", "mas"]
    assert all(set(row) == {"optimizer", "x", "y", "loss", "steps_to_threshold"} for row in rows)
    expected = {r.optimizer: r.summary() for r in run_toy("quadratic", steps=50)}
    assert rows == [expected[name] for name in ("sgd", "adam", "mas")]


def test_cli_table_and_plot(tmp_path):
    out = tmp_path / "abs.png"
    result = runner.invoke(app, ["toy", "abs", "--steps", "30", "--plot", str(out)])
    assert result.exit_code == 0, result.output
    for name in ("SGD", "ADAM", "MAS", "steps to loss < 0.1"):
        assert name in result.stdout
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "args, message",
    [
        (["toy", "saddle"], "Unknown toy problem: 'saddle' (valid: quadratic, rosenbrock, abs)"),
        (["toy", "abs", "--start", "1"], "Invalid --start: '1'"),
        (["toy", "abs", "--lambda-adam", "-0.5"], "Invalid lambda_adam value: -0.5"),
        (["toy", "abs", "--bias-correction", "paper"], "Invalid bias_correction: 'paper'"),
        (["toy", "abs", "--steps", "0"], "Invalid steps: 0"),
        (["toy", "abs", "--lr", "abc"], "Invalid value for '--lr'"),
    ],
)
def test_cli_bad_input_is_one_line(args, message):
    result = runner.invoke(app, args)
    assert result.exit_code != 0
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert message in result.stderr


def test_cli_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.startswith("masbench 0.")
