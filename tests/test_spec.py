"""Run specs: validation, canonical keys and names."""

from __future__ import annotations

import pytest

from masbench.errors import MasbenchError
from masbench.spec import RunSpec, make_spec


@pytest.mark.parametrize(
    "a, b",
    [
        # The baselines ignore MAS's hyperparameters: they do not make a different cell.
        (dict(optimizer="sgd", momentum=0.9), dict(optimizer="sgd", momentum=0.9, lambda_adam=0.3, amsgrad=True)),
        (dict(optimizer="adam"), dict(optimizer="adam", momentum=0.95, nesterov=False, dampening=0.0)),
        # A default spelled out is the default.
        (dict(optimizer="adamw"), dict(optimizer="adamw", weight_decay=0.01)),
        (dict(optimizer="sgd"), dict(optimizer="sgd", weight_decay=0.0)),
        (dict(), dict(lambda_schedule="constant", betas=(0.9, 0.999))),
        # Text options do not touch image data sets.
        (dict(dataset="digits"), dict(dataset="digits", max_length=64, pretrained="x", text_column="t")),
    ],
)
def test_equivalent_specs_share_a_key(a, b):
    assert RunSpec(**a).key == RunSpec(**b).key


@pytest.mark.parametrize(
    "a, b",
    [
        (dict(), dict(lambda_adam=0.3, lambda_sgd=0.7)),
        (dict(), dict(seed=1)),
        (dict(), dict(benchmark="quick")),
        (dict(optimizer="adam"), dict(optimizer="adamw")),
        (dict(optimizer="adamw"), dict(optimizer="adamw", weight_decay=0.0)),
        (dict(), dict(bias_correction="constant")),
        (dict(), dict(train_subset=100)),
        (dict(), dict(lambda_schedule="linear:0.7:0.3")),
    ],
)
def test_different_cells_get_different_keys(a, b):
    assert RunSpec(**a).key != RunSpec(**b).key


@pytest.mark.parametrize(
    "values, name",
    [
        (dict(), "mas[lambda_adam=0.5,lambda_sgd=0.5,lr=0.001]"),
        (dict(lr=0.008, momentum=0.95, lambda_adam=0.3, lambda_sgd=0.7),
         "mas[lambda_adam=0.3,lambda_sgd=0.7,lr=0.008,momentum=0.95]"),
        (dict(lambda_schedule="linear:0.7:0.3"), "mas[lambda_schedule='linear:0.7:0.3',lr=0.001]"),
        (dict(optimizer="sgd", lr=0.001, momentum=0.95), "sgd[lr=0.001,momentum=0.95]"),
        (dict(optimizer="adam"), "adam[lr=0.001]"),
        (dict(optimizer="adamw", betas=(0.8, 0.99), lr=0.0002), "adamw[betas=0.8/0.99,lr=0.0002]"),
    ],
)
def test_names_are_deterministic_with_sorted_keys(values, name):
    assert RunSpec(**values).name == name


def test_lambdas_of_the_baselines_are_the_endpoints():
    assert RunSpec(optimizer="adam", lambda_adam=0.2).lambdas == (1.0, 0.0)
    assert RunSpec(optimizer="sgd").lambdas == (0.0, 1.0)
    assert RunSpec(lambda_adam=0.3, lambda_sgd=0.7).lambdas == (0.3, 0.7)


def test_optimizer_hparams_resolve_defaults_and_keep_only_accepted_keys():
    assert RunSpec(optimizer="adamw").optimizer_hparams() == dict(
        lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, amsgrad=False
    )
    sgd = RunSpec(optimizer="sgd", momentum=0.9, nesterov=True).optimizer_hparams()
    assert sgd == dict(lr=1e-3, momentum=0.9, dampening=0.0, weight_decay=0.0, nesterov=True)


@pytest.mark.parametrize(
    "values, message",
    [
        (dict(dataset="mnist"), "Unknown dataset: 'mnist' (valid: digits, cifar10"),
        (dict(model="vgg"), "Unknown model: 'vgg' (valid: mlp, cnn, resnet18, resnet34, bert, tv:NAME"),
        (dict(optimizer="lion"), "Unknown optimizer: 'lion' (valid: mas, sgd, adam, adamw, radam,"),
        (dict(model="bert"), "Invalid model 'bert' for dataset 'digits'"),
        (dict(dataset="cola", model="mlp"), "Invalid model 'mlp' for dataset 'cola'"),
        (dict(lr=-0.1), "Invalid lr: -0.1 (must be >= 0)"),
        (dict(lambda_adam=-0.3), "Invalid lambda_adam: -0.3 (must be >= 0)"),
        (dict(epochs=0), "Invalid epochs: 0 (must be >= 1)"),
        (dict(batch_size=-4), "Invalid batch_size: -4 (must be >= 1)"),
        (dict(betas=(0.9, 1.0)), "Invalid betas[1]: 1.0 (must be in [0, 1))"),
        (dict(nesterov=True), "Invalid nesterov: it needs momentum > 0"),
        (dict(bias_correction="paper"), "Invalid bias_correction: 'paper' (valid: step, constant)"),
        (dict(lambda_schedule="cosine"), "Invalid lambda schedule: 'cosine'"),
        (dict(optimizer="sgd", lambda_schedule="linear:1:0"), "only mas has lambdas"),
        (dict(test_fraction=1.5), "Invalid test_fraction: 1.5"),
        (dict(train_subset=0), "Invalid train_subset: 0 (must be >= 1)"),
        (dict(epochs="many"), "invalid epochs: 'many'"),
        (dict(learning_rate=0.1), "unknown key 'learning_rate'"),
    ],
)
def test_invalid_specs_give_one_line_naming_the_value(values, message):
    with pytest.raises(MasbenchError) as error:
        make_spec(**values)
    text = str(error.value)
    assert message in text
    assert "\n" not in text


def test_spec_is_frozen():
    spec = RunSpec()
    with pytest.raises(Exception):
        spec.lr = 0.5


@pytest.mark.parametrize("values", [
    dict(lr=-0.0), dict(momentum=-0.0), dict(weight_decay=-0.0), dict(dampening=-0.0), dict(eps=-0.0),
    dict(lambda_adam=-0.0, lambda_sgd=1.0), dict(lambda_adam=1.0, lambda_sgd=-0.0), dict(betas=(-0.0, 0.999)),
    dict(optimizer="sgd", momentum=-0.0), dict(optimizer="adamw", weight_decay=-0.0, lr=-0.0),
])
def test_negative_zero_is_the_cell_of_zero(values):
    """-0.0 == 0.0, but JSON writes "-0.0": without normalising, ``--lr -0.0`` would be a cell of its own."""
    import json
    import math

    def positive_zero(value):
        return tuple(map(positive_zero, value)) if isinstance(value, tuple) else 0.0 if value == 0.0 else value

    negative = make_spec(**values)
    positive = make_spec(**{k: positive_zero(v) for k, v in values.items()})
    assert (negative.key, negative.config_key, negative.name) == (positive.key, positive.config_key, positive.name)
    assert "-0.0" not in json.dumps(negative.canonical()) and "-0.0" not in negative.name
    signs = [math.copysign(1.0, v) for v in negative.model_dump().values() if isinstance(v, float)]
    assert -1.0 not in signs
