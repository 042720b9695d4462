"""Learning-rate schedules as a cell setting: the per-epoch lr a run records, against the formulas; resumption.

The expected lr of each kind is computed here from its closed form, independently of torch's schedulers
(which the engine uses): a scheduler stepped at the wrong time, built with the wrong arguments or not
restored from a checkpoint gives other numbers.
"""

from __future__ import annotations

import math

import pytest

from masbench.engine import checkpoint_path, train_one
from masbench.errors import MasbenchError
from masbench.optim import normalise_lr_schedule
from masbench.spec import make_spec
from masbench.engine import ExecOptions
from reliability import StopAfter, numbers

EPOCHS = 7


def expected_lr(text: str, base: float, epoch: int, epochs: int) -> float:
    """The lr of 0-based ``epoch``, from the documented closed forms."""
    kind, *parts = text.split(":")
    if kind == "constant":
        return base
    if kind == "step":
        return base * float(parts[1]) ** (epoch // int(parts[0]))
    if kind == "multistep":
        passed = sum(1 for m in parts[0].split(",") if int(m) <= epoch)
        return base * float(parts[1]) ** passed
    warmup = int(parts[0]) if parts else 0
    if kind == "linear-warmup" or epoch < warmup:
        return base * min(epoch + 1, warmup + 1) / (warmup + 1)
    return base * (1 + math.cos(math.pi * (epoch - warmup) / (epochs - warmup))) / 2  # cosine


SCHEDULES = ["constant", "step:2:0.5", "multistep:1,4:0.1", "cosine", "cosine:2", "linear-warmup:3"]


@pytest.fixture
def options(tmp_path):
    return ExecOptions(device="cpu", checkpoint_dir=tmp_path / "ckpt")


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("optimizer, lr", [("mas", 0.01), ("nadam", 0.002)])
def test_each_epoch_records_the_lr_of_its_schedule(schedule, optimizer, lr, options):
    spec = make_spec(dataset="digits", optimizer=optimizer, lr=lr, epochs=EPOCHS, lr_schedule=schedule,
                     train_subset=200, test_subset=100, batch_size=64)
    result = train_one(spec, options)
    assert result.status == "completed"
    recorded = [m.lr for m in result.epochs]
    assert recorded == pytest.approx([expected_lr(schedule, lr, e, EPOCHS) for e in range(EPOCHS)], rel=1e-12)
    if schedule != "constant":
        assert len(set(recorded)) > 1



@pytest.mark.parametrize(
    "values, stop",
    [
        (dict(optimizer="mas", lambda_schedule="linear:0.8:0.2", momentum=0.9, lr_schedule="cosine:2"), 2),
        (dict(optimizer="mas", lr_schedule="cosine:2"), 1),  # in the warm-up, before SequentialLR's switch
        (dict(optimizer="sgd", momentum=0.9, lr=0.05, lr_schedule="step:2:0.5"), 3),
        (dict(optimizer="radam", lr_schedule="multistep:1,3:0.5"), 3),
        (dict(optimizer="adamw", lr_schedule="linear-warmup:3"), 2),
    ],
)
def test_a_run_killed_after_an_epoch_resumes_with_the_lr_and_metrics_of_an_uninterrupted_one(values, stop, tmp_path):
    spec = make_spec(dataset="digits", epochs=5, train_subset=200, test_subset=100, batch_size=64, **values)
    straight = train_one(spec, ExecOptions(device="cpu", checkpoint_dir=tmp_path / "a"))

    resumable = ExecOptions(device="cpu", checkpoint_dir=tmp_path / "b")
    with pytest.raises(StopAfter.Crash):
        train_one(spec, resumable, [StopAfter(stop)])
    assert checkpoint_path(spec, resumable).exists()
    resumed = train_one(spec, resumable)
    assert resumed.resumed_from == stop

    assert numbers(resumed) == numbers(straight)
    assert [m.lr for m in resumed.epochs] == pytest.approx(
        [expected_lr(spec.lr_schedule, spec.lr, e, 5) for e in range(5)], rel=1e-12)


@pytest.mark.parametrize(
    "text, normal",
    [("step:30:0.10", "step:30:0.1"), ("step:30:1e-1", "step:30:0.1"), ("cosine:0", "cosine"), ("cosine:5", "cosine:5"),
     ("multistep:100,150:0.1", "multistep:100,150:0.1"), ("linear-warmup:05", "linear-warmup:5"),
     ("constant", "constant")],
)
def test_one_schedule_is_one_cell(text, normal):
    assert normalise_lr_schedule(text) == normal
    assert make_spec(lr_schedule=text, epochs=200).key == make_spec(lr_schedule=normal, epochs=200).key


def test_a_schedule_is_part_of_the_cell_and_its_name():
    constant, stepped = make_spec(optimizer="sgd"), make_spec(optimizer="sgd", lr_schedule="step:5:0.5")
    assert stepped.config_key != constant.config_key
    assert stepped.name == "sgd[lr=0.001,lr_schedule='step:5:0.5']"
    assert "lr_schedule" not in constant.canonical() and stepped.canonical()["lr_schedule"] == "step:5:0.5"


@pytest.mark.parametrize(
    "values, message",
    [
        (dict(lr_schedule="step:0:0.1"), "'0' is not an integer in [1, 100000]"),
        (dict(lr_schedule="step:5:0"), "GAMMA '0' is not a number in (0, 1]"),
        (dict(lr_schedule="step:5:1.5"), "GAMMA '1.5' is not a number in (0, 1]"),
        (dict(lr_schedule="step:5:nan"), "GAMMA 'nan'"),
        (dict(lr_schedule="step:5:inf"), "GAMMA 'inf'"),
        (dict(lr_schedule="step:5"), "Invalid lr schedule: 'step:5' (valid: constant, step:EVERY:GAMMA"),
        (dict(lr_schedule="multistep:150,100:0.1"), "milestones must increase"),
        (dict(lr_schedule="multistep::0.1"), "'' is not an integer"),
        (dict(lr_schedule="cosine:-1"), "'-1' is not an integer in [0, 100000]"),
        (dict(lr_schedule="cosine:10", epochs=10), "its 10 warm-up epochs leave none of the run's 10"),
        (dict(lr_schedule="linear-warmup:0"), "'0' is not an integer in [1, 100000]"),
        (dict(lr_schedule="linear-warmup:1e9"), "'1e9' is not an integer"),
        (dict(lr_schedule="exponential:0.9"), "Invalid lr schedule: 'exponential:0.9'"),
        (dict(lr_schedule="step:5:0.1\n"), "holds a control character"),
        (dict(lr_schedule="multistep:" + ",".join(map(str, range(1, 80))) + ":0.1"), "is 241 characters (at most 200)"),
    ],
)
def test_bad_schedules_are_one_line(values, message):
    with pytest.raises(MasbenchError) as error:
        make_spec(**values)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_cell_with_an_lr_schedule_packs():
    """The engine runs each member's own lr schedule: a cell with one packs with cells without."""
    from masbench.engine import can_pack

    plain, scheduled = make_spec(optimizer="sgd"), make_spec(optimizer="sgd", lr_schedule="cosine")
    assert can_pack([plain, make_spec(optimizer="adam")]) is None
    assert can_pack([plain, scheduled]) is None
