"""``masbench run``: end to end through the CLI, idempotence, and bad input."""

from __future__ import annotations

import sqlite3

import pytest
from typer.testing import CliRunner

from conftest import write_csv
from masbench.cli import app

runner = CliRunner()


def rows(db, query):
    return sqlite3.connect(db).execute(query).fetchall()


def test_run_writes_one_epoch_row_per_epoch(tmp_path):
    args = ["run", "--dataset", "digits", "--model", "mlp", "--optimizer", "mas", "--epochs", "3"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("completed mas[lambda_adam=0.5,lambda_sgd=0.5,lr=0.001] on digits/mlp seed 0")
    assert "masbench 0.1.0" in result.stderr and "torch" in result.stderr  # the log starts with versions
    db = tmp_path / "masbench.db"
    assert rows(db, "select epoch from epochs order by epoch") == [(1,), (2,), (3,)]
    status, device, versions = rows(db, "select status, device, versions from runs")[0]
    assert status == "completed" and device.startswith("cpu") and '"torch"' in versions

    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert again.stdout.startswith("already completed:") and "--force" in again.stdout
    assert rows(db, "select count(*) from epochs") == [(3,)]

    forced = runner.invoke(app, [*args, "--force"])
    assert forced.exit_code == 0, forced.output
    assert rows(db, "select count(*), max(epoch) from epochs") == [(3, 3)]
    assert rows(db, "select attempts from runs") == [(2,)]


def test_run_on_an_image_folder_and_a_csv(image_folder, csv_file, minilm_path, tmp_path):
    db = f"sqlite:///{tmp_path / 'x.db'}"
    images = runner.invoke(app, ["run", "--dataset", f"imagefolder:{image_folder}", "--model", "cnn", "--epochs", "1",
                                 "--batch-size", "8", "--db", db])
    assert images.exit_code == 0, images.output
    text = runner.invoke(app, ["run", "--dataset", f"csv:{csv_file}", "--model", "bert", "--pretrained", minilm_path,
                               "--epochs", "1", "--batch-size", "8", "--optimizer", "adamw", "--lr", "1e-4",
                               "--db", db])
    assert text.exit_code == 0, text.output
    assert rows(tmp_path / "x.db", "select optimizer, status from runs order by id") == [
        ("mas", "completed"), ("adamw", "completed")]


def _truncated_png_folder(root):
    from conftest import write_image_folder

    write_image_folder(root)
    (root / "train" / "dog" / "001.png").write_bytes((root / "train" / "dog" / "002.png").read_bytes()[:40])
    return f"imagefolder:{root}"


@pytest.mark.parametrize(
    "make_args, message",
    [
        (lambda p: ["--dataset", "mnist"], "Unknown dataset: 'mnist' (valid:"),
        (lambda p: ["--model", "vgg"], "Unknown model: 'vgg' (valid:"),
        (lambda p: ["--optimizer", "lion"], "Unknown optimizer: 'lion' (valid:"),
        (lambda p: ["--lambda-adam", "-0.5"], "Invalid lambda_adam: -0.5 (must be >= 0)"),
        (lambda p: ["--epochs", "0"], "Invalid epochs: 0 (must be >= 1)"),
        (lambda p: ["--batch-size", "0"], "Invalid batch_size: 0 (must be >= 1)"),
        (lambda p: ["--lr", "-1"], "Invalid lr: -1.0 (must be >= 0)"),
        (lambda p: ["--lr", "fast"], "Invalid value for '--lr'"),
        (lambda p: ["--nesterov"], "Invalid nesterov: it needs momentum > 0"),
        (lambda p: ["--device", "tpu"], "Invalid device: 'tpu'"),
        (lambda p: ["--db", "nosuch://x"], "unknown database kind 'nosuch'"),
        (lambda p: ["--dataset", "cifar10", "--model", "resnet18", "--data-dir", str(p)], "cifar10 not found in"),
        (lambda p: ["--dataset", _truncated_png_folder(p / "img"), "--model", "cnn"], "cannot decode image"),
        (lambda p: ["--dataset", f"csv:{_truncated_csv(p)}", "--model", "bert"], "cut.csv: line 3 lacks a value"),
    ],
)
def test_bad_input_gives_one_line_and_writes_nothing(tmp_path, make_args, message, minilm_path):
    args = ["run", *make_args(tmp_path)]
    if "--epochs" not in args:
        args += ["--epochs", "1"]
    if "bert" in args:
        args += ["--pretrained", minilm_path]
    result = runner.invoke(app, args)
    assert result.exit_code != 0
    assert message in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    db = tmp_path / "masbench.db"
    assert not db.exists() or rows(db, "select count(*) from runs") == [(0,)]


def _truncated_csv(folder):
    path = write_csv(folder / "cut.csv")
    text = path.read_text()
    path.write_text(text[: text.index("\n", text.index("\n") + 1) + 1] + "half a line without its label")
    return path


@pytest.mark.parametrize("command", [["run", "--dataset", "digits", "--epochs", "1"],
                                     ["sweep", "--dataset", "digits", "--lambdas", "0.5", "--epochs", "1"]],
                         ids=["run", "sweep"])
@pytest.mark.parametrize("value, named", [("taken", "taken"), ("taken/ckpt", "taken/ckpt: taken")],
                         ids=["itself", "a-folder-on-its-way"])
def test_a_checkpoint_dir_that_is_a_file_is_refused_before_anything_is_written(tmp_path, command, value, named):
    """Found up front, not when the first epoch's checkpoint is written: one line, no store, the file unchanged."""
    (tmp_path / "taken").write_text("not a directory")
    result = runner.invoke(app, [*command, "--checkpoint-dir", value])
    assert result.exit_code == 1, result.output
    assert result.stderr == f"Error: Invalid --checkpoint-dir: {named} is not a folder (it is a regular file)\n"
    assert result.stdout == ""
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]  # no store, no .masbench, no data
    assert (tmp_path / "taken").read_text() == "not a directory"


@pytest.mark.parametrize("command", [["run", "--model", "mlp"], ["sweep", "--models", "mlp", "--lambdas", "0.5"]],
                         ids=["run", "sweep"])
@pytest.mark.parametrize("flags, message", [
    (["--dataset", "cifar100"], "Error: cifar100 not found in "),
    (["--dataset", "digits", "--device", "tpu"], "Error: Invalid device: 'tpu' (valid: "),
    (["--dataset", "digits", "--val-fraction", "0.001"], "Error: Invalid val_fraction 0.001: class '0' has "),
], ids=["missing-data", "bad-device", "empty-validation-class"])
def test_a_refusal_after_parsing_creates_no_store(tmp_path, command, flags, message):
    """The store is opened once the data and the device are checked: a refusal leaves no empty SQLite file."""
    result = runner.invoke(app, [*command, *flags, "--epochs", "1", "--db", f"sqlite:///{tmp_path / 'x.db'}"])
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1, result.stderr
    assert not (tmp_path / "x.db").exists()
