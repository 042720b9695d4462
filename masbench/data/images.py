"""``imagefolder:PATH``: any torchvision ImageFolder layout with ``train/`` and ``test/`` below PATH.

PATH may be a folder holding ``train/<class>/<image>`` and ``test/<class>/<image>``,
or zip archives with that layout (a folder of them, or one archive: ``masbench.data.layout``
lists them): the shared CIFAR-10 copy's ``cifar10_train_jpg.zip`` and ``cifar10_test_jpg.zip``
work as they are. The images are decoded once (torchvision.io; Pillow for BMP and TIFF) into one uint8 tensor
per split and cached under ``DATA_DIR/cache``, keyed on the images' contents (names,
sizes and CRC-32s, as the cell's data fingerprint), so that the next run starts in a fraction of a second.
"""

from __future__ import annotations

import hashlib
import os
import warnings
import zipfile
from pathlib import Path

import torch

from masbench.data.base import ImageDataset, ImageSplit, channel_stats, check_classes
from masbench.data.layout import EXTENSIONS, SPLITS, Item, collect
from masbench.data.identity import MISSING, images_fingerprint
from masbench.errors import MasbenchError
from masbench.fileio import cached_payload
from masbench.text.shown import one_line

__all__ = ["EXTENSIONS", "SPLITS", "Item", "collect", "load_imagefolder"]


# Formats layout.EXTENSIONS lists that torchvision's decode_image does not read (it reads JPEG, PNG, GIF, WebP):
# told by their first bytes, not their suffix, and decoded by Pillow (a dependency of torchvision).
PILLOW_MAGIC = (b"BM", b"II*\x00", b"MM\x00*")  # BMP, TIFF (little-endian), TIFF (big-endian)


def _decode_rgb(data: bytes) -> torch.Tensor:
    """uint8 (3, H, W): torchvision's decoders (libjpeg/libpng, no PIL), else Pillow (BMP, TIFF, or where
    torchvision dropped its decoders)."""
    try:
        from torchvision.io import ImageReadMode, decode_image
    except ImportError:
        return _decode_pillow(data)
    if data.startswith(PILLOW_MAGIC):
        return _decode_pillow(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torchvision 0.29 points to torchcodec; both work
        return decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)


def _decode_pillow(data: bytes) -> torch.Tensor:
    import io

    import numpy as np
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.mode in ("I", "F") or image.mode.startswith("I;"):
                # convert("RGB") clips 16-bit to 255 and maps [0, 1] floats to 0: images of one colour, silently
                raise ValueError(f"its pixels are {image.mode} (more than 8 bits a channel); masbench reads 8-bit "
                                 f"images: convert it to 8-bit (L or RGB)")
            return torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1).contiguous()
    except Image.DecompressionBombError as error:  # a header that claims gigapixels: no OSError, said as one
        raise ValueError(str(error)) from None


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
                raise MasbenchError(f"cannot decode image {where}: {one_line(error, 200)}") from None
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

    # The decode cache is keyed on the images' contents (names, sizes, CRC-32s: the cell's own fingerprint),
    # never on mtimes: images swapped or rewritten with their sizes and mtimes kept must not be served stale.
    fingerprint = images_fingerprint(str(root))
    if fingerprint == MISSING:  # a file went unreadable since the listing: no key to trust, so no cache
        payload = build()
    else:
        digest = hashlib.sha256(fingerprint.encode()).hexdigest()[:24]
        payload = cached_payload(Path(data_dir) / "cache" / f"imagefolder-{digest}.pt", build)
    train = ImageSplit(payload["train_images"], payload["train_labels"])
    test = ImageSplit(payload["test_images"], payload["test_labels"])
    mean, std = channel_stats(train.images)
    return ImageDataset(f"imagefolder:{path}", train, test, classes, mean, std, augment=True)
