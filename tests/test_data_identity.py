"""Path-based data are part of a cell's identity, by content and not by location.

``csv:data.csv`` written in two folders that hold different files must be two cells (one
store, both trained, two report rows), the same file in two places one cell; relative paths
typed on the command line follow the working directory, those in a benchmarks file follow
the file; data changed between planning and loading are refused before anything is written.
"""

from __future__ import annotations

import csv
import io
import pickle
import shutil
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import shared_data, write_csv, write_image_folder
from masbench.grid.benchmarks import load_benchmarks, plan_sweep
from masbench.cli import app
from masbench.data.identity import MISSING, file_fingerprint, images_fingerprint
from masbench.errors import MasbenchError
from masbench.spec import make_spec
from masbench.engine import ExecOptions
from reliability import rows

REPO = Path(__file__).resolve().parent.parent
runner = CliRunner()


def report_rows(db: str, dataset: str) -> list[dict]:
    result = runner.invoke(app, ["report", "--table", "--format", "csv", "--db", db])
    assert result.exit_code == 0, result.output
    return [row for row in csv.DictReader(io.StringIO(result.stdout)) if row["dataset"] == dataset]


# --- end to end: one store, the same relative path in two folders ------------------------------------


def test_one_relative_csv_path_in_two_folders_is_two_cells(tmp_path, monkeypatch, db_url, minilm_path):
    args = ["run", "--dataset", "csv:data.csv", "--model", "bert", "--pretrained", minilm_path, "--optimizer", "adam",
            "--lr", "1e-4", "--epochs", "1", "--batch-size", "8", "--max-length", "16", "--db", db_url]
    for folder, rows_per_label in (("a", 8), ("b", 5)):
        (tmp_path / folder).mkdir()
        write_csv(tmp_path / folder / "data.csv", rows_per_label=rows_per_label)
        monkeypatch.chdir(tmp_path / folder)
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith("completed adam"), result.stdout  # trained, not "already completed"
    assert sorted(status for (status,) in rows(db_url, "select status from runs")) == ["completed", "completed"]
    table = report_rows(db_url, "csv:data.csv")
    assert len(table) == 2 and len({row["config_key"] for row in table}) == 2
    assert all("data_fingerprint=sha256:" in row["settings"] for row in table)  # what tells the two apart
    # The first folder's file copied elsewhere is the first cell: its run is found, not trained again.
    (tmp_path / "c").mkdir()
    shutil.copy(tmp_path / "a" / "data.csv", tmp_path / "c" / "data.csv")
    monkeypatch.chdir(tmp_path / "c")
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert again.stdout.startswith("already completed"), again.stdout
    assert rows(db_url, "select count(*) from runs") == [(2,)]


def test_an_image_folder_typed_with_a_benchmark_follows_the_working_directory(tmp_path, monkeypatch, sqlite_url):
    bench = tmp_path / "conf" / "bench.yaml"
    bench.parent.mkdir()
    bench.write_text("benchmarks:\n  tiny: {dataset: digits, models: [mlp], lambdas: '0.5', baselines: [],"
                     " epochs: 1, batch_size: 16, seeds: 1}\n")
    for folder, seed in (("a", 0), ("b", 1)):
        write_image_folder(tmp_path / folder / "imgs", per_class=(4, 2), seed=seed)
        monkeypatch.chdir(tmp_path / folder)
        result = runner.invoke(app, ["sweep", "--benchmark", "tiny", "--benchmarks", str(bench),
                                     "--dataset", "imagefolder:imgs", "--db", sqlite_url])
        assert result.exit_code == 0, result.output
        assert "1 finished now" in result.stdout, result.stdout
    table = report_rows(sqlite_url, "imagefolder:imgs")
    assert len(table) == 2 and len({row["config_key"] for row in table}) == 2


# --- where relative paths are relative to ----------------------------------------------------------


def test_paths_in_the_file_follow_the_file_and_typed_ones_the_working_directory(tmp_path, monkeypatch):
    conf, work = tmp_path / "conf", tmp_path / "work"
    write_image_folder(conf / "imgs", per_class=(2, 1), seed=0)
    write_image_folder(work / "imgs", per_class=(2, 1), seed=1)
    write_csv(conf / "train.csv")
    write_csv(work / "test.csv", rows_per_label=3)
    bench = conf / "bench.yaml"
    bench.write_text("benchmarks:\n"
                     "  images: {dataset: 'imagefolder:imgs', models: [mlp], lambdas: '0.5', baselines: []}\n"
                     "  text: {dataset: 'csv:train.csv', models: [bert], pretrained: x, lambdas: '0.5', baselines: []}\n")
    monkeypatch.chdir(work)

    _, [written] = plan_sweep(benchmark="images", benchmarks_path=bench)
    assert written.base_dir == str(conf)
    assert written.spec.data_fingerprint == images_fingerprint(str(conf / "imgs"))
    _, [typed] = plan_sweep(benchmark="images", dataset="imagefolder:imgs", benchmarks_path=bench)
    assert typed.base_dir == str(work)
    assert typed.spec.data_fingerprint == images_fingerprint(str(work / "imgs")) != written.spec.data_fingerprint
    # `run` with the same flags makes the same cell as the sweep.
    run_spec = make_spec(benchmark="images", dataset="imagefolder:imgs", model="mlp", lambda_adam=0.5, lambda_sgd=0.5)
    assert run_spec.key == typed.spec.key

    # The file's data set with a typed test file: the typed path is made absolute, the file's stays as written.
    _, [mixed] = plan_sweep(benchmark="text", overrides={"test_file": "test.csv"}, benchmarks_path=bench)
    assert mixed.base_dir == str(conf) and mixed.spec.dataset == "csv:train.csv"
    assert mixed.spec.test_file == str(work / "test.csv")
    expected = file_fingerprint(str(conf / "train.csv")) + "+" + file_fingerprint(str(work / "test.csv"))
    assert mixed.spec.data_fingerprint == expected


# --- the fingerprint: content, not location --------------------------------------------------------


def test_the_same_data_in_two_places_is_one_cell_and_other_data_another(tmp_path, monkeypatch):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        write_csv(tmp_path / folder / "data.csv")
    specs = {}
    for folder in ("a", "b"):
        monkeypatch.chdir(tmp_path / folder)
        specs[folder] = make_spec(dataset="csv:data.csv", model="bert", pretrained="x")
    assert specs["a"].config_key == specs["b"].config_key and specs["a"].key == specs["b"].key
    assert specs["a"].name == "mas[lambda_adam=0.5,lambda_sgd=0.5,lr=0.001]"  # the name does not change
    (tmp_path / "b" / "data.csv").write_text((tmp_path / "b" / "data.csv").read_text().replace("film", "flim"))
    other = make_spec(dataset="csv:data.csv", model="bert", pretrained="x")
    assert other.config_key != specs["a"].config_key
    # A test file is part of the data.
    write_csv(tmp_path / "b" / "t1.csv", rows_per_label=2)
    write_csv(tmp_path / "b" / "t2.csv", rows_per_label=3)
    with_tests = [make_spec(dataset="csv:data.csv", model="bert", pretrained="x", test_file=f"t{i}.csv").config_key
                  for i in (1, 2)]
    assert len(set(with_tests)) == 2 and other.config_key not in with_tests


def _images(root: Path) -> str:
    return images_fingerprint(str(root))


def test_an_image_folder_is_known_by_its_images(tmp_path):
    root = write_image_folder(tmp_path / "imgs", per_class=(2, 1))
    first = _images(root)
    assert first.startswith("images:")
    # The same tree in a zip archive, elsewhere, under another name: the same images.
    archive = tmp_path / "elsewhere" / "any-name.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as handle:
        for path in sorted(root.rglob("*.png")):
            handle.write(path, f"prefix/{path.relative_to(root).as_posix()}")
    assert _images(archive) == _images(archive.parent) == first
    # One image's bytes changed at the same size, an image renamed, an image moved to another class.
    image = root / "train" / "cat" / "000.png"
    data = image.read_bytes()
    image.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    changed = _images(root)
    image.rename(root / "train" / "cat" / "009.png")
    renamed = _images(root)
    (root / "train" / "cat" / "009.png").rename(root / "train" / "dog" / "009.png")
    moved = _images(root)
    assert len({first, changed, renamed, moved}) == 4


def test_missing_data_plan_a_cell_of_their_own(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    absent = make_spec(dataset="imagefolder:imgs", model="mlp")
    assert absent.data_fingerprint == MISSING
    write_image_folder(tmp_path / "imgs", per_class=(2, 1))
    present = make_spec(dataset="imagefolder:imgs", model="mlp")
    assert present.data_fingerprint.startswith("images:") and present.config_key != absent.config_key
    # A folder that is not an image folder plans too (its run fails when it loads), and is no real data either.
    (tmp_path / "empty").mkdir()
    assert make_spec(dataset="imagefolder:empty", model="mlp").data_fingerprint == MISSING
    # Named data sets carry no fingerprint: their keys are what they were.
    for values in (dict(dataset="digits"), dict(dataset="cifar10", model="resnet18"),
                   dict(dataset="agnews", model="bert")):
        spec = make_spec(**values)
        assert spec.data_fingerprint is None and "data_fingerprint" not in spec.canonical()


def test_the_fingerprint_is_set_by_validation_alone(tmp_path):
    write_csv(tmp_path / "data.csv")
    for key in ("data_fingerprint", "_data_fingerprint"):
        with pytest.raises(MasbenchError, match=f"unknown key '{key}'"):
            make_spec(dataset="csv:data.csv", model="bert", **{key: "sha256:0"})
    bench = tmp_path / "bench.yaml"
    bench.write_text("benchmarks:\n  x: {dataset: 'csv:data.csv', models: [bert], data_fingerprint: 'sha256:0'}\n")
    with pytest.raises(MasbenchError, match="unknown key 'data_fingerprint'"):
        load_benchmarks(bench)
    result = runner.invoke(app, ["run", "--dataset", "csv:data.csv", "--model", "bert", "--data-fingerprint", "x"])
    assert result.exit_code != 0 and "No such option" in result.output
    # A worker process gets the spec pickled: its key travels with it, nothing is recomputed there.
    spec = make_spec(dataset="csv:data.csv", model="bert")
    (tmp_path / "data.csv").write_text("text,label\nother,1\nrows,0\n")
    copy = pickle.loads(pickle.dumps(spec))
    assert copy.key == spec.key and copy.data_fingerprint == spec.data_fingerprint
    # Validation without the data's identity (a benchmarks file's check) makes a spec without a key.
    unidentified = make_spec({"identify_data": False}, dataset="csv:data.csv", model="bert")
    with pytest.raises(RuntimeError, match="without identifying its data"):
        unidentified.key


# --- data changed between planning and loading ------------------------------------------------------


def test_data_changed_after_planning_are_refused_before_anything_is_written(tmp_path, monkeypatch, sqlite_url):
    from masbench.store import Store
    from masbench.sweep import run_cell

    monkeypatch.chdir(tmp_path)
    root = write_image_folder(tmp_path / "imgs", per_class=(4, 2))
    spec = make_spec(dataset="imagefolder:imgs", model="mlp", epochs=1, batch_size=8)
    write_image_folder(root, classes=("cat",), per_class=(1, 0), seed=5)  # one image more
    missing = make_spec(dataset="imagefolder:later", model="mlp", epochs=1, batch_size=8)
    write_image_folder(tmp_path / "later", per_class=(2, 1))
    store = Store(sqlite_url)
    try:
        with pytest.raises(MasbenchError, match="changed since this run was planned") as changed:
            run_cell(spec, store, ExecOptions(device="cpu"))
        with pytest.raises(MasbenchError, match="was missing when this run was planned") as appeared:
            run_cell(missing, store, ExecOptions(device="cpu"))
    finally:
        store.close()
    assert "\n" not in str(changed.value) and "\n" not in str(appeared.value)
    assert rows(sqlite_url, "select count(*) from runs") == [(0,)]


def test_missing_data_fail_at_load_in_one_line(tmp_path):
    result = runner.invoke(app, ["run", "--dataset", "imagefolder:nowhere", "--model", "mlp",
                                 "--db", f"sqlite:///{tmp_path / 's.db'}"])
    assert result.exit_code == 1
    message = result.output.strip()
    assert "nowhere does not exist" in message and "\n" not in message and "Traceback" not in message


# --- the committed baselines join the cells that the benchmarks file plans -------------------------


@pytest.mark.parametrize("name", ["quick", "nightly"])
def test_the_committed_baselines_join_the_planned_cells(name, monkeypatch):
    if name == "nightly":
        shared_data("cifar10_jpg")
        shared_data("ag_news", "test.csv")
    monkeypatch.chdir(REPO.parent)  # the keys do not depend on the working directory
    _, cells = plan_sweep(benchmark=name, benchmarks_path=REPO / "benchmarks.yaml")
    planned = {cell.spec.config_key for cell in cells}
    with open(REPO / "benchmarks" / "baselines" / f"{name}.csv", newline="") as handle:
        baseline = {row["config_key"] for row in csv.DictReader(handle)}
    assert baseline and baseline <= planned


def _keep_times(path: Path, write) -> None:
    """Rewrite ``path`` through ``write`` and put its modification time back, as ``mv``, unzip or ``touch -r`` do."""
    stat = path.stat()
    write()
    import os

    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_mtime_ns == stat.st_mtime_ns


def test_images_changed_with_their_sizes_and_times_kept_are_decoded_again(tmp_path):
    """The decode cache is keyed on content: a swap that keeps every size and mtime must not be served stale."""
    import torch
    from torchvision.io import write_png

    from masbench.data import load_dataset

    root = tmp_path / "imgs"
    for split, count in (("train", 3), ("test", 1)):
        for c, name in enumerate(("cat", "dog")):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                image = torch.full((3, 6, 6), 40 + 150 * c, dtype=torch.uint8)
                image[0, 0, i] = 7  # each image its own, all of one size (no compression)
                write_png(image, str(root / split / name / f"{i:03d}.png"), compression_level=0)
    cat, dog = root / "train" / "cat" / "000.png", root / "train" / "dog" / "000.png"
    assert cat.stat().st_size == dog.stat().st_size
    before = load_dataset("imagefolder:imgs", tmp_path / "cache-dir", base_dir=tmp_path)
    cat_bytes, dog_bytes = cat.read_bytes(), dog.read_bytes()
    _keep_times(cat, lambda: cat.write_bytes(dog_bytes))
    _keep_times(dog, lambda: dog.write_bytes(cat_bytes))
    after = load_dataset("imagefolder:imgs", tmp_path / "cache-dir", base_dir=tmp_path)
    fresh = load_dataset("imagefolder:imgs", tmp_path / "fresh-dir", base_dir=tmp_path)
    assert torch.equal(after.train.images, fresh.train.images)
    assert not torch.equal(after.train.images, before.train.images)


def test_a_csv_changed_with_its_size_and_time_kept_is_tokenized_again(tmp_path, minilm_path):
    """The token cache is keyed on content: labels swapped in place (same size, same mtime) are read anew."""
    import torch

    from masbench.data import load_dataset

    path = write_csv(tmp_path / "data.csv", rows_per_label=4)
    options = dict(pretrained=minilm_path, max_length=16, text_column=None, label_column=None, test_file=None,
                   test_fraction=0.25)
    before = load_dataset("csv:data.csv", tmp_path / "cache-dir", base_dir=tmp_path, **options)
    text = path.read_text()
    swapped = text.replace(",good", ",TMP").replace(",bad", ",good").replace(",TMP", ",bad")
    assert len(swapped) == len(text) and swapped != text
    _keep_times(path, lambda: path.write_text(swapped))
    after = load_dataset("csv:data.csv", tmp_path / "cache-dir", base_dir=tmp_path, **options)
    fresh = load_dataset("csv:data.csv", tmp_path / "fresh-dir", base_dir=tmp_path, **options)
    for split in ("train", "test"):
        assert torch.equal(getattr(after, split).labels, getattr(fresh, split).labels)
    assert [before.classes[i] for i in before.train.labels] != [after.classes[i] for i in after.train.labels]
