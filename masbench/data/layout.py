"""The images of an ``imagefolder:PATH`` and their order, read from the file system alone (no torch).

PATH is a folder holding ``train/<class>/<image>`` and ``test/<class>/<image>``, or zip
archives with that layout (a folder of them, or one archive). ``collect`` lists every
image of each split in ImageFolder order; the loader decodes that list and the data's
fingerprint (``masbench.data.identity``) hashes it, so that both see the same images.
"""

from __future__ import annotations

import os
import zipfile
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

from masbench.errors import MasbenchError

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
SPLITS = ("train", "test")


class Item(NamedTuple):
    label: str  # the class folder's name
    path: str  # an image file, or the zip archive holding it
    member: str | None  # the name inside the archive
    size: int | None = None  # in an archive: the member's size and CRC-32, from the central directory
    crc: int | None = None


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
                infos = handle.infolist()
        except (zipfile.BadZipFile, OSError) as error:
            raise MasbenchError(f"cannot read archive {archive}: {error}") from None
        for info in infos:
            name = info.filename
            parts = name.strip("/").split("/")
            # <anything>/train/<class>/<image>: git archives put the tree under a folder of their own.
            if len(parts) >= 3 and parts[-3] in SPLITS and name.lower().endswith(EXTENSIONS):
                found[parts[-3]].append(Item(parts[-2], str(archive), name, info.file_size, info.CRC))
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
