"""``imagefolder:PATH``: any torchvision ImageFolder layout with ``train/`` and ``test/`` below PATH.

The images are decoded once (torchvision.io, no PIL) into one uint8 tensor per
split and cached under ``DATA_DIR/cache``, keyed on the files' names, sizes and
modification times, so that the next run starts in a fraction of a second.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import torch

from masbench.data.base import ImageDataset, ImageSplit, channel_stats
from masbench.errors import MasbenchError
from masbench.fileio import cached_payload

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def _listing(split_dir: Path) -> list[tuple[str, str]]:
    """(class, file) pairs in ImageFolder order: classes sorted, files sorted within a class."""
    if not split_dir.is_dir():
        raise MasbenchError(f"image folder {split_dir} does not exist: expected {split_dir}/<class>/<image> files")
    items = []
    for entry in sorted(os.scandir(split_dir), key=lambda e: e.name):
        if entry.is_dir():
            files = sorted(f.name for f in os.scandir(entry.path) if f.name.lower().endswith(EXTENSIONS))
            items += [(entry.name, os.path.join(entry.path, f)) for f in files]
    if not items:
        raise MasbenchError(f"image folder {split_dir} holds no images: expected {split_dir}/<class>/<image> files")
    return items


def _decode_rgb(path: str) -> torch.Tensor:
    """uint8 (3, H, W): torchvision's decoders (libjpeg/libpng, no PIL), else Pillow where torchvision dropped them."""
    try:
        from torchvision.io import ImageReadMode, decode_image, read_file
    except ImportError:
        import numpy as np
        from PIL import Image

        with Image.open(path) as image:
            return torch.from_numpy(np.asarray(image.convert("RGB"))).permute(2, 0, 1).contiguous()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torchvision 0.29 points to torchcodec; both work
        return decode_image(read_file(path), mode=ImageReadMode.RGB)


def _decode(path: str, size: tuple[int, int] | None):
    try:
        image = _decode_rgb(path)
    except (RuntimeError, ValueError, OSError) as error:
        raise MasbenchError(f"cannot decode image {path}: {' '.join(str(error).split())[:200]}") from None
    if size is not None and tuple(image.shape[1:]) != size:
        raise MasbenchError(
            f"image {path} is {image.shape[2]}x{image.shape[1]}, but the folder's first image is "
            f"{size[1]}x{size[0]}: all images must have one size"
        )
    return image


def _decode_split(items: list[tuple[str, str]], classes: list[str]) -> ImageSplit:
    first = _decode(items[0][1], None)
    size = tuple(first.shape[1:])
    images = torch.empty((len(items), 3, *size), dtype=torch.uint8)
    images[0] = first
    for i, (_, path) in enumerate(items[1:], start=1):
        images[i] = _decode(path, size)
    index = {name: i for i, name in enumerate(classes)}
    labels = torch.tensor([index[c] for c, _ in items], dtype=torch.long)
    return ImageSplit(images, labels)


def _signature(listings: dict[str, list[tuple[str, str]]]) -> str:
    digest = hashlib.sha256()
    for split, items in listings.items():
        for _, path in items:
            stat = os.stat(path)
            digest.update(f"{split}\0{os.path.abspath(path)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


def load_imagefolder(path: str, data_dir: Path) -> ImageDataset:
    root = Path(path).expanduser()
    listings = {split: _listing(root / split) for split in ("train", "test")}
    classes = sorted({c for c, _ in listings["train"]})
    unknown = sorted({c for c, _ in listings["test"]} - set(classes))
    if unknown:
        raise MasbenchError(f"test classes {unknown} in {root / 'test'} have no images in {root / 'train'}")

    def build():
        train = _decode_split(listings["train"], classes)
        test = _decode_split(listings["test"], classes)
        if train.images.shape[1:] != test.images.shape[1:]:
            raise MasbenchError(
                f"train images are {tuple(train.images.shape[2:])} but test images are {tuple(test.images.shape[2:])} in {root}"
            )
        return dict(train_images=train.images, train_labels=train.labels, test_images=test.images,
                    test_labels=test.labels)

    payload = cached_payload(Path(data_dir) / "cache" / f"imagefolder-{_signature(listings)}.pt", build)
    train = ImageSplit(payload["train_images"], payload["train_labels"])
    test = ImageSplit(payload["test_images"], payload["test_labels"])
    mean, std = channel_stats(train.images)
    return ImageDataset(f"imagefolder:{path}", train, test, classes, mean, std, augment=True)

