"""Bugs found by attacking the merged mix, model and schedule features as a hostile user."""

from __future__ import annotations

import pytest

from masbench.errors import MasbenchError
from masbench.spec import make_spec


@pytest.mark.parametrize("lambdas", [dict(lambda_adam=0.3, lambda_sgd=0.7), dict(lambda_adam=0.3), dict(lambda_sgd=0.9)])
def test_lambdas_with_a_linear_schedule_are_refused_not_a_second_cell(lambdas):
    # A linear schedule sets the lambdas: with them the run trained as the schedule alone, in another cell,
    # and the report showed it as MAS at these lambdas.
    with pytest.raises(MasbenchError, match="the schedule sets the lambdas"):
        make_spec(lambda_schedule="linear:1:0", **lambdas)


def test_default_lambdas_with_a_linear_schedule_stay_the_one_cell():
    plain = make_spec(lambda_schedule="linear:1:0")
    assert make_spec(lambda_schedule="linear:1:0", lambda_adam=0.5, lambda_sgd=0.5).config_key == plain.config_key
    assert make_spec(lambda_adam=0.3, lambda_sgd=0.7).lambda_adam == 0.3  # constant keeps its lambdas


def _tiny_folder(root, save):
    import numpy as np
    from PIL import Image

    for split in ("train", "test"):
        for c, name in enumerate(("a", "b")):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(3):
                pixels = np.zeros((6, 6, 3), dtype=np.uint8)
                pixels[..., c] = 100 + 40 * i  # red or green by class; blue always 0
                save(Image.fromarray(pixels), folder / str(i))
    return root


@pytest.mark.parametrize("mode", ["I;16", "F"])
def test_a_tiff_of_more_than_8_bits_is_refused_not_clipped_to_one_colour(tmp_path, mode):
    import numpy as np
    from PIL import Image

    from masbench.data.images import load_imagefolder

    def save(image, path):
        grey = np.asarray(image.convert("L"))
        wide = grey.astype(np.uint16) * 257 if mode == "I;16" else grey.astype(np.float32) / 255
        Image.fromarray(wide).save(path.with_suffix(".tiff"))

    root = _tiny_folder(tmp_path / "wide", save)
    with pytest.raises(MasbenchError, match=f"pixels are {mode}.*8-bit"):
        load_imagefolder(str(root), tmp_path / "data")


def test_a_channel_of_one_value_trains_instead_of_dividing_by_zero(tmp_path):
    from masbench.data.images import load_imagefolder

    root = _tiny_folder(tmp_path / "flat", lambda image, path: image.save(path.with_suffix(".bmp")))
    dataset = load_imagefolder(str(root), tmp_path / "data")
    assert dataset.std[2] == 1.0 and dataset.std[0] > 0
    batch = next(iter(dataset.batches("train", 4, "cpu", None, False)))
    assert bool(batch.inputs.isfinite().all())


def test_report_output_naming_the_store_is_refused_and_the_store_kept(tmp_path, monkeypatch):
    import sqlite3

    from typer.testing import CliRunner

    from masbench.cli import app

    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    trained = runner.invoke(app, ["run", "--dataset", "digits", "--model", "mlp", "--epochs", "1",
                                  "--train-subset", "64", "--test-subset", "32", "--db", url])
    assert trained.exit_code == 0, trained.output
    for output, form in (("runs.db", "html"), ("./runs.db", "csv"), (str(tmp_path / "runs.db"), "json")):
        result = runner.invoke(app, ["report", "--format", form, "--output", output, "--db", url])
        assert result.exit_code == 1 and "is the store's database file" in result.stderr
    # still a database holding its run (its bytes may move: opening checkpoints SQLite's journal)
    assert sqlite3.connect(tmp_path / "runs.db").execute("select count(*) from runs").fetchone() == (1,)
    written = runner.invoke(app, ["report", "--format", "csv", "--output", "report.csv", "--db", url])
    assert written.exit_code == 0 and "mas[" in (tmp_path / "report.csv").read_text()
