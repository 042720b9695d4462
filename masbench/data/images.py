"""``imagefolder:PATH``: any torchvision ImageFolder layout with ``train/`` and ``test/`` below PATH.

PATH may be a folder holding ``train/<class>/<image>`` and ``test/<class>/<image>``,
or zip archives with that layout (a folder of them, or one archive): the shared
CIFAR-10 copy's ``cifar10_train_jpg.zip`` and ``cifar10_test_jpg.zip`` work as they
are. The images are decoded once (torchvision.io, no PIL) into one uint8 tensor
per split and cached under ``DATA_DIR/cache``, keyed on the files' names, sizes and
modification times, so that the next run starts in a fraction of a second.
"""

from __future__ import annotations

import hashlib
import os
import warnings
import zipfile
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

import torch

from masbench.data.base import ImageDataset, ImageSplit, channel_stats, check_classes
from masbench.errors import MasbenchError
from masbench.fileio import cached_payload

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
SPLITS = ("train", "test")


class Item(NamedTuple):
    label: str  # the class folder's name
    path: str  # an image file, or the zip archive holding it
    member: str | None  # the name inside the archive


def _from_folder(split_dir: Path) -> list[Item]:
    items = []
    for entry in sorted(os.scandir(split_dir), key=lambda e: e.name):
        if entry.is_dir():
            files = sorted(f.name for f in os.scandir(entry.path) if f.name.lower().endswith(EXTENSIONS))
            items += [Item(entry.name, os.path.join(entry.path, f), None) for f in files]
    return items


def _from_archives(archives: list[Path]) -> dict[str, list[Item]]:
    found: dict[str, list[Item]] = defaultdict(list)
    for archive in archives:
        try:
            with zipfile.ZipFile(archive) as handle:
                names = handle.namelist()
        except (zipfile.BadZipFile, OSError) as error:
            raise MasbenchError(f"cannot read archive {archive}: {error}") from None
        for name in names:
            parts = name.strip("/").split("/")
            # <anything>/train/<class>/<image>: git archives put the tree under a folder of their own.
            if len(parts) >= 3 and parts[-3] in SPLITS and name.lower().endswith(EXTENSIONS):
                found[parts[-3]].append(Item(parts[-2], str(archive), name))
    return {split: sorted(items) for split, items in found.items()}


def collect(root: Path) -> dict[str, list[Item]]:
    """Every image of each split, in ImageFolder order: classes sorted, files sorted within a class."""
    if root.is_file() and zipfile.is_zipfile(root):
        listings = _from_archives([root])
    elif root.is_dir() and all((root / split).is_dir() for split in SPLITS):
        listings = {split: _from_folder(root / split) for split in SPLITS}
    elif root.is_dir() and sorted(root.glob("*.zip")):
        listings = _from_archives(sorted(root.glob("*.zip")))
    else:
        raise MasbenchError(
            f"image folder {root} does not exist or lacks train/ and test/: expected {root}/train/<class>/<image> "
            f"and {root}/test/<class>/<image>, or zip archives with that layout"
        )
    for split in SPLITS:
        if not listings.get(split):
            raise MasbenchError(f"image folder {root} holds no {split} images: expected {split}/<class>/<image> files")
    return listings


def _decode_rgb(data: bytes) -> torch.Tensor:
    """uint8 (3, H, W): torchvision's decoders (libjpeg/libpng, no PIL), else Pillow where torchvision dropped them."""
    try:
        from torchvision.io import ImageReadMode, decode_image
    except ImportError:
        import io

        import numpy as np
        from PIL import Image

        with Image.open(io.BytesIO(data)) as image:
            return torch.from_numpy(np.asarray(image.convert("RGB"))).permute(2, 0, 1).contiguous()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torchvision 0.29 points to torchcodec; both work
        return decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)


def _decode_split(items: list[Item], classes: list[str]) -> ImageSplit:
    archives: dict[str, zipfile.ZipFile] = {}
    images = None
    try:
        for i, item in enumerate(items):
            where = item.path if item.member is None else f"{item.path}:{item.member}"
            try:
                if item.member is None:
                    data = Path(item.path).read_bytes()
                else:
                    archive = archives.get(item.path) or archives.setdefault(item.path, zipfile.ZipFile(item.path))
                    data = archive.read(item.member)
                image = _decode_rgb(data)
            except (RuntimeError, ValueError, OSError, zipfile.BadZipFile) as error:
                raise MasbenchError(f"cannot decode image {where}: {' '.join(str(error).split())[:200]}") from None
            if images is None:
                images = torch.empty((len(items), *image.shape), dtype=torch.uint8)
            elif image.shape != images.shape[1:]:
                raise MasbenchError(
                    f"image {where} is {image.shape[2]}x{image.shape[1]}, but the first image is "
                    f"{images.shape[3]}x{images.shape[2]}: all images must have one size"
                )
            images[i] = image
    finally:
        for archive in archives.values():
            archive.close()
    index = {name: i for i, name in enumerate(classes)}
    return ImageSplit(images, torch.tensor([index[item.label] for item in items], dtype=torch.long))


def _signature(listings: dict[str, list[Item]]) -> str:
    digest = hashlib.sha256()
    stats: dict[str, os.stat_result] = {}
    for split, items in listings.items():
        for item in items:
            stat = stats.get(item.path) or stats.setdefault(item.path, os.stat(item.path))
            digest.update(f"{split}\0{os.path.abspath(item.path)}\0{item.member}\0{stat.st_size}\0"
                          f"{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


def load_imagefolder(path: str, data_dir: Path) -> ImageDataset:
    root = Path(path).expanduser()
    listings = collect(root)
    classes = sorted({item.label for item in listings["train"]})
    check_classes(f"imagefolder:{path}", classes)
    unknown = sorted({item.label for item in listings["test"]} - set(classes))
    if unknown:
        raise MasbenchError(f"test classes {unknown} in {root} have no training images")

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
