"""The training engine: end to end on CPU, reproducibility, resumption, divergence."""

from __future__ import annotations

from dataclasses import replace

import pytest

from masbench.spec import RunSpec
from masbench.engine import ExecOptions
from masbench.engine import checkpoint_path, train_one
from reliability import StopAfter, Warnings, numbers





@pytest.fixture
def options(tmp_path):
    return ExecOptions(device="cpu", checkpoint_dir=tmp_path / "ckpt")


def test_digits_end_to_end(options):
    spec = RunSpec(dataset="digits", model="mlp", epochs=3, lr=3e-3, momentum=0.9, lambda_adam=0.3, lambda_sgd=0.7)
    result = train_one(spec, options)
    assert result.status == "completed" and result.device.startswith("cpu")
    assert [m.epoch for m in result.epochs] == [1, 2, 3]
    for m in result.epochs:
        assert 0 <= m.train_acc <= 1 and 0 <= m.test_acc <= 1
        assert m.lr == 3e-3 and (m.lambda_adam, m.lambda_sgd) == (0.3, 0.7)
        assert m.seconds > 0 and m.samples_per_second > 0
    assert result.epochs[-1].test_acc > 0.8  # 10 classes: chance is 0.1
    assert result.epochs[-1].train_loss < result.epochs[0].train_loss
    assert not checkpoint_path(spec, options).exists()  # removed once the run is complete


@pytest.mark.parametrize("compile_", [False, True])
def test_compile_wraps_the_model_once_when_asked(options, monkeypatch, compile_):
    """``--compile``: one torch.compile per member, whose result both trains and evaluates (no DDP here)."""
    import torch

    compiled = []
    monkeypatch.setattr(torch, "compile", lambda model: compiled.append(model) or model)
    result = train_one(RunSpec(dataset="digits", model="mlp", epochs=1), replace(options, compile=compile_))
    assert result.status == "completed"
    assert len(compiled) == (1 if compile_ else 0)
    assert all(isinstance(m, torch.nn.Module) for m in compiled)


def test_same_seed_same_metrics_other_seed_other_metrics(options, image_folder):
    spec = RunSpec(dataset=f"imagefolder:{image_folder}", model="cnn", epochs=2, batch_size=8, lr=1e-2)
    a, b = train_one(spec, options), train_one(spec, options)
    c = train_one(spec.model_copy(update={"seed": 1}), options)
    assert numbers(a) == numbers(b)
    assert numbers(a) != numbers(c)


@pytest.mark.parametrize(
    "values",
    [
        # Augmented images, momentum and a lambda schedule: every piece of state must survive the restart.
        dict(model="cnn", optimizer="mas", momentum=0.9, lambda_schedule="linear:0.8:0.2", lr=1e-2),
        dict(model="mlp", optimizer="sgd", momentum=0.9, nesterov=True, lr=1e-2),
        dict(model="mlp", optimizer="adamw", lr=1e-3),
    ],
)
def test_interrupted_run_resumes_and_ends_like_an_uninterrupted_one(values, image_folder, tmp_path):
    spec = RunSpec(dataset=f"imagefolder:{image_folder}", epochs=4, batch_size=8, **values)
    straight = train_one(spec, ExecOptions(device="cpu", checkpoint_dir=tmp_path / "a"))

    resumable = ExecOptions(device="cpu", checkpoint_dir=tmp_path / "b")
    with pytest.raises(StopAfter.Crash):
        train_one(spec, resumable, [StopAfter(2)])
    assert checkpoint_path(spec, resumable).exists()
    resumed = train_one(spec, resumable)
    assert resumed.resumed_from == 2
    assert numbers(resumed) == numbers(straight)


def test_lambda_schedule_is_applied_per_epoch(options):
    spec = RunSpec(dataset="digits", epochs=3, lambda_schedule="linear:0.9:0.3")
    result = train_one(spec, options)
    assert [m.lambda_adam for m in result.epochs] == pytest.approx([0.9, 0.7, 0.5])
    assert [m.lambda_sgd for m in result.epochs] == pytest.approx([0.1, 0.3, 0.5])


def test_baselines_report_their_endpoint_lambdas(options):
    result = train_one(RunSpec(dataset="digits", optimizer="sgd", epochs=1, lr=0.05), options)
    assert (result.epochs[0].lambda_adam, result.epochs[0].lambda_sgd) == (0.0, 1.0)


def test_a_nan_loss_ends_the_run_as_diverged(options):
    spec = RunSpec(dataset="digits", optimizer="sgd", lr=1e12, momentum=0.9, epochs=3)
    result = train_one(spec, options)
    assert result.status == "diverged"
    assert "non-finite training loss" in result.error
    last = result.epochs[-1]
    assert last.test_acc is None and last.test_loss is None
    assert not checkpoint_path(spec, options).exists()


def test_a_corrupt_checkpoint_restarts_the_run_with_a_warning(options):
    spec = RunSpec(dataset="digits", epochs=2)
    fresh = train_one(spec, replace(options, checkpoint_dir=options.checkpoint_dir / "fresh"))
    path = checkpoint_path(spec, options)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"PK\x03\x04 torn in half")
    warnings = Warnings()
    result = train_one(spec, options, [warnings])
    assert result.resumed_from == 0 and numbers(result) == numbers(fresh)
    assert len(warnings.messages) == 1 and "unusable" in warnings.messages[0]


def test_keep_checkpoint(options):
    spec = RunSpec(dataset="digits", epochs=1)
    train_one(spec, replace(options, keep_checkpoint=True))
    assert checkpoint_path(spec, options).exists()


def test_text_classification_end_to_end(options, csv_file, minilm_path):
    spec = RunSpec(dataset=f"csv:{csv_file}", model="bert", pretrained=minilm_path, epochs=2, batch_size=4,
                   lr=1e-4, momentum=0.9, lambda_adam=0.5, lambda_sgd=0.5, test_fraction=0.25)
    result = train_one(spec, options)
    assert result.status == "completed" and len(result.epochs) == 2
    assert all(m.test_acc is not None for m in result.epochs)
    assert result.epochs[-1].train_loss < result.epochs[0].train_loss
