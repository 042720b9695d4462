"""``--optimizer mix:...``: parsing, cell identity and names, the store's weights, the report's column."""

from __future__ import annotations

import json
import re
import sqlite3

import pytest
from typer.testing import CliRunner

from masbench.cli import app
from masbench.errors import MasbenchError
from masbench.grid.mix_weights import parse_step, simplex
from masbench.optim.mix_kinds import KINDS
from masbench.spec import PRODUCT_KINDS, make_spec, mix_text, parse_mix

runner = CliRunner()


def test_product_kinds_are_listed_torch_free_in_the_same_order():
    assert PRODUCT_KINDS == KINDS


@pytest.mark.parametrize("text, message", [
    ("mix:", "no components"),
    ("mix:adam", "'adam' is not NAME=WEIGHT"),
    ("mix:adam=0.5,", "'' is not NAME=WEIGHT"),
    ("mix:adam=0.5,adam=0.5", "component 'adam' is given twice"),
    ("mix:adam=0.5,bogus=0.5", "unknown component 'bogus' (valid: adam, sgd,"),
    ("mix:adam=x", "weight 'x' of 'adam'"),
    ("mix:adam=-0.5,sgd=1", "weight '-0.5' of 'adam'"),
    ("mix:adam=nan", "weight 'nan' of 'adam'"),
    ("mix:adam=inf", "weight 'inf' of 'adam'"),
    ("mix:adam=0,sgd=0", "every weight is zero"),
    ("mix:mas=1", "component mas cannot be mixed"),
])
def test_bad_mix_text_is_one_line_naming_it(text, message):
    with pytest.raises(ValueError) as error:
        parse_mix(text)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_mix_text_round_trips_in_one_order():
    weights = parse_mix("mix: sgd = 0.5 , rmsprop=0.2,adam=0.30")
    assert weights == {"sgd": 0.5, "rmsprop": 0.2, "adam": 0.3}
    assert mix_text(weights) == "mix:adam=0.3,sgd=0.5,rmsprop=0.2"


def test_written_differently_is_one_cell():
    a = make_spec(optimizer="mix:adam=0.3,sgd=0.7")
    b = make_spec(optimizer="mix:sgd=0.70,torch.optim.Adam=0.3")
    c = make_spec(optimizer="mix", weights={"sgd": 0.7, "adam": 0.3})
    assert a.key == b.key == c.key and a.name == b.name == c.name == "mix:adam=0.3,sgd=0.7[lr=0.001]"
    assert a.canonical()["weights"] == {"adam": 0.3, "sgd": 0.7}
    other = make_spec(optimizer="mix:adam=0.4,sgd=0.6")
    assert other.config_key != a.config_key
    assert make_spec(optimizer="mas").config_key != a.config_key


def test_spec_settings_reach_the_components_and_show_in_the_name():
    spec = make_spec(optimizer="mix:adam=0.3,sgd=0.5,rmsprop=0.2", momentum=0.9, lr=0.01)
    assert spec.name == "mix:adam=0.3,sgd=0.5,rmsprop=0.2[lr=0.01,momentum=0.9]"
    from masbench.optim import build_optimizer
    import torch

    opt = build_optimizer("mix", [torch.zeros(2, requires_grad=True)], **spec.optimizer_hparams())
    parts = opt.param_groups[0]["components"]
    assert parts["sgd"]["momentum"] == parts["rmsprop"]["momentum"] == 0.9
    assert parts["adam"]["weight_decay"] == 0.0  # weight_decay unset: each component's own default


@pytest.mark.parametrize("kind", ["adagrad", "rmsprop", "adadelta", "adamax", "nadam", "radam"])
def test_a_mix_of_one_optimizer_at_weight_1_from_a_spec_is_that_optimizer(kind):
    """The spec's eps and betas, left at masbench's defaults, do not override a component's own (Adagrad's eps
    1e-10, Adadelta's 1e-6): a run of mix:K=1 is a run of K. A hostile tester found Adagrad 2.5 points off."""
    import torch

    from masbench.optim import build_optimizer

    for scale in (1.0, 1e-5):  # large and small gradients: eps matters against one or the other
        torch.manual_seed(0)
        start, data = torch.randn(5, 3), torch.randn(8, 5) * scale
        finals = []
        for optimizer in (f"mix:{kind}=1", kind):
            spec = make_spec(optimizer=optimizer, lr=0.01)
            weight = start.clone().requires_grad_(True)
            opt = build_optimizer(spec.optimizer, [weight], **spec.optimizer_hparams())
            for _ in range(5):
                opt.zero_grad()
                (data @ weight).tanh().square().sum().backward()
                opt.step()
            finals.append(weight.detach())
        assert torch.equal(finals[0], finals[1]), (scale, (finals[0] - finals[1]).abs().max())


def test_eps_and_betas_given_reach_every_component_that_takes_them():
    import torch

    from masbench.optim import build_optimizer

    spec = make_spec(optimizer="mix:adagrad=0.5,adam=0.5", eps=1e-6, lr=0.01)
    opt = build_optimizer("mix", [torch.zeros(2, requires_grad=True)], **spec.optimizer_hparams())
    parts = opt.param_groups[0]["components"]
    assert parts["adagrad"]["eps"] == parts["adam"]["eps"] == 1e-6
    default = make_spec(optimizer="mix:adagrad=0.5,adam=0.5", lr=0.01)
    opt = build_optimizer("mix", [torch.zeros(2, requires_grad=True)], **default.optimizer_hparams())
    parts = opt.param_groups[0]["components"]
    assert (parts["adagrad"]["eps"], parts["adam"]["eps"], parts["adam"]["betas"]) == (1e-10, 1e-8, (0.9, 0.999))


@pytest.mark.parametrize("values, message", [
    (dict(optimizer="mix"), "give its weights"),
    (dict(optimizer="adam", weights={"adam": 1.0}), "only mix has weights"),
    (dict(optimizer="mix:adam=1", weights={"adam": 1.0}), "weights are given twice"),
    (dict(optimizer="mix:adam=1,torch.optim.Adam=1"), "names adam, given twice"),
    (dict(optimizer="mix:adam=1,nosuch.module:Opt=1"), "Invalid mix component 'nosuch.module:Opt'"),
    (dict(optimizer="mix:adam=1", lambda_schedule="linear:1:0"), "only mas has lambdas"),
    (dict(optimizer="mix", weights=[0.5, 0.5]), "invalid weights: \\[0.5, 0.5\\]"),
    (dict(optimizer="mix", weights={"adam": "0.5"}), "weight '0.5' of 'adam' is not a number"),
    (dict(optimizer="mix", weights={"adam": True}), "weight True of 'adam' is not a number"),
])
def test_bad_mix_specs_are_refused(values, message):
    with pytest.raises(MasbenchError, match=message):
        make_spec(**values)


def test_simplex_is_exact_and_complete():
    points = simplex(["adam", "sgd", "rmsprop"], "0.1")
    assert len(points) == 66  # C(10 + 2, 2)
    assert all(sum(p.values()) == pytest.approx(1.0) for p in points)
    values = {v for p in points for v in p.values()}
    assert values == {round(i / 10, 1) for i in range(11)}  # 0.3, never 0.30000000000000004
    assert {repr(v) for v in values} == {f"{i / 10:.1f}" for i in range(11)}
    assert len({tuple(p.values()) for p in points}) == 66


@pytest.mark.parametrize("step", ["0.3", "0", "-0.5", "1.5", "x", "nan"])
def test_bad_simplex_steps_are_refused(step):
    with pytest.raises(ValueError, match="Invalid mix step"):
        parse_step(step)


@pytest.mark.parametrize("step", ["1e-28", "1e-300", "1e-999999999", "0.000001"])
def test_too_fine_simplex_steps_are_one_line_not_a_decimal_error(step):
    with pytest.raises(ValueError, match=r"Invalid mix step: .* makes more than 100,000 mixes"):
        parse_step(step)


def test_a_step_must_divide_one_exactly_beyond_decimal_precision():
    with pytest.raises(ValueError, match="divides 1"):
        parse_step("0." + "3" * 29)  # 1/step rounds to 3 in Decimal's 28 digits
    assert parse_step("0.00001") == parse_step("1e-5")


def _epochs(db):
    return sqlite3.connect(db).execute(
        "select r.name, e.epoch, e.train_loss, e.train_acc, e.test_loss, e.test_acc from epochs e "
        "join runs r on r.id = e.run_id order by e.epoch, r.id").fetchall()


def test_mix_of_adam_and_sgd_trains_as_mas_and_stores_its_weights(tmp_path):
    db = tmp_path / "m.db"
    common = ["run", "--dataset", "digits", "--model", "mlp", "--epochs", "2", "--train-subset", "256",
              "--momentum", "0.9", "--db", f"sqlite:///{db}"]
    mix = runner.invoke(app, [*common, "--optimizer", "mix:adam=0.5,sgd=0.5"])
    assert mix.exit_code == 0, mix.output
    mas = runner.invoke(app, [*common, "--optimizer", "mas", "--lambda-adam", "0.5", "--lambda-sgd", "0.5"])
    assert mas.exit_code == 0, mas.output
    rows = _epochs(db)
    assert len(rows) == 4
    for (name_a, *metrics_a), (name_b, *metrics_b) in (rows[0:2], rows[2:4]):
        assert name_a.startswith("mix:") and name_b.startswith("mas[") and metrics_a == metrics_b
    stored = sqlite3.connect(db).execute("select optimizer, weights from runs order by id").fetchall()
    assert stored[0][0] == "mix" and json.loads(stored[0][1]) == {"adam": 0.5, "sgd": 0.5}
    assert stored[1] == ("mas", None)

    csv = runner.invoke(app, ["report", "--format", "csv", "--db", f"sqlite:///{db}"])
    assert csv.exit_code == 0, csv.output
    header, *lines = csv.stdout.strip().splitlines()
    assert "weights" in header.split(",")
    assert any('"{""adam"": 0.5, ""sgd"": 0.5}"' in line for line in lines)
    records = json.loads(runner.invoke(app, ["report", "--format", "json", "--db", f"sqlite:///{db}"]).stdout)
    assert sorted(str(r["weights"]) for r in records) == ["None", "{'adam': 0.5, 'sgd': 0.5}"]


@pytest.mark.parametrize("optimizer, message", [
    ("mix:adam=0.5,adam=0.5", "component 'adam' is given twice"),
    ("mix:adam=0.5,bogus=0.5", "unknown component 'bogus'"),
    ("mix:adam=abc", "weight 'abc' of 'adam'"),
    ("mix", "give its weights"),
])
def test_bad_mix_on_the_command_line_is_one_line_and_writes_nothing(tmp_path, optimizer, message):
    db = tmp_path / "bad.db"
    result = runner.invoke(app, ["run", "--dataset", "digits", "--optimizer", optimizer, "--db", f"sqlite:///{db}"])
    assert result.exit_code == 1 and message in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert not db.exists()


def test_a_mix_cell_resumes_from_its_checkpoint_with_the_numbers_of_a_straight_run(tmp_path):
    """Through the engine: crash after epoch 1, train again, same epochs as a run never stopped."""
    from masbench.engine import train_one
    from masbench.engine import ExecOptions
    from reliability import StopAfter

    spec = make_spec(optimizer="mix:adam=0.3,sgd=0.4,nadam=0.2,adadelta=0.1", momentum=0.9, lr=3e-3, epochs=2,
                     train_subset=128)

    def numbers(result):
        return [{k: v for k, v in m.as_dict().items() if k not in ("seconds", "samples_per_second")}
                for m in result.epochs]

    straight = numbers(train_one(spec, ExecOptions(device="cpu", checkpoint_dir=tmp_path / "a")))
    options = ExecOptions(device="cpu", checkpoint_dir=tmp_path / "b")
    with pytest.raises(StopAfter.Crash):
        train_one(spec, options, [StopAfter(1)])
    resumed = train_one(spec, options)
    assert resumed.resumed_from == 1 and numbers(resumed) == straight


def test_both_stores_hold_the_weights_as_json_and_null_for_other_optimizers(db_url):
    from sqlalchemy import create_engine, text

    for optimizer in ("mix:adam=0.25,sgd=0.5,rmsprop=0.25", "adam"):
        result = runner.invoke(app, ["run", "--dataset", "digits", "--optimizer", optimizer, "--epochs", "1",
                                     "--train-subset", "64", "--test-subset", "64", "--db", db_url])
        assert result.exit_code == 0, result.output
    engine = create_engine(db_url)
    with engine.connect() as connection:
        stored = connection.execute(text("select optimizer, weights, weights is null from runs order by id")).all()
    engine.dispose()
    weights = stored[0][1] if isinstance(stored[0][1], dict) else json.loads(stored[0][1])
    assert stored[0][0] == "mix" and weights == {"adam": 0.25, "sgd": 0.5, "rmsprop": 0.25}
    assert stored[1][0] == "adam" and stored[1][1] is None and stored[1][2] in (True, 1)


@pytest.mark.parametrize("same", ["mix:adam=0.3,sgd=0.7,rmsprop=0", "mix:rmsprop=0.0,sgd=0.7,adam=0.3"])
def test_a_component_of_weight_0_is_not_part_of_the_cell(same):
    assert make_spec(optimizer=same).key == make_spec(optimizer="mix:adam=0.3,sgd=0.7").key


@pytest.mark.parametrize("weight", ["1_0", "\uff10.3", "+1", "1e-400", "0x1"])
def test_a_weight_is_written_in_ascii_digits_and_never_vanishes(weight):
    with pytest.raises(ValueError, match=re.escape(f"weight '{weight}' of 'adam'")):
        parse_mix(f"mix:adam={weight},sgd=1")  # noqa: PT011
