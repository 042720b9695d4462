"""Image data for the benchmarks: the real CIFAR-10 JPEG copy when ../shared/data has it, else generated JPEGs."""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path

import torch

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "cifar10_jpg"


def image_folder(per_class_train: int | None = None, per_class_test: int | None = None) -> tuple[Path, str]:
    """An ImageFolder root with train/ and test/, and a line saying what it holds."""
    root = Path(tempfile.gettempdir()) / "masbench-bench-images"
    if SHARED.exists():
        target = root / f"cifar10-{per_class_train}-{per_class_test}"
        if not (target / "test").exists():
            for split, limit in (("train", per_class_train), ("test", per_class_test)):
                with zipfile.ZipFile(SHARED / f"cifar10_{split}_jpg.zip") as archive:
                    counts: dict[str, int] = {}
                    for name in archive.namelist():
                        parts = name.split("/")
                        if len(parts) == 3 and parts[2].endswith(".jpg"):
                            if limit is None or counts.get(parts[1], 0) < limit:
                                counts[parts[1]] = counts.get(parts[1], 0) + 1
                                archive.extract(name, target)
        return target, f"real CIFAR-10 JPEGs from {SHARED} ({per_class_train or 5000}/{per_class_test or 1000} per class)"

    from torchvision.io import encode_jpeg

    train, test = per_class_train or 500, per_class_test or 100
    target = root / f"synthetic-{train}-{test}"
    if not (target / "test").exists():
        g = torch.Generator().manual_seed(0)
        for split, count in (("train", train), ("test", test)):
            for c in range(10):
                folder = target / split / f"class{c}"
                folder.mkdir(parents=True, exist_ok=True)
                for i in range(count):
                    image = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8, generator=g)
                    (folder / f"{i:04d}.jpg").write_bytes(encode_jpeg(image, quality=75).numpy().tobytes())
    return target, f"generated 32x32 JPEGs ({train}/{test} per class; ../shared/data is absent)"
