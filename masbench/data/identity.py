"""What a cell knows of its path-based data: a fingerprint of their content, not of their location.

``csv:PATH`` (and its ``test_file``): the SHA-256 of each file's bytes. ``imagefolder:PATH``: a SHA-256
over its images in the loader's order (``layout.collect``), each as split, class, file name, size and
CRC-32; a zip archive's central directory holds the last two, so nothing is decompressed, while a
folder's files are read once for their CRC-32. The same data in another folder, another clone or another
archive file get the same fingerprint; a changed byte, an image added, removed, renamed or moved to
another class gets another (CRC-32 catches changed data, not a forger's). Measured on CIFAR-10's 60,000
JPEGs (a loaded 2-core CPU, warm page cache): 0.65 s from the two zips, 0.85 s from the unpacked folder;
AG News's 1.8 MB test.csv, 2 ms. The fingerprint enters the run's canonical form (``RunSpec.canonical``), so
that two data sets written the same way (``csv:data.csv`` in two folders) are two cells.

Data that cannot be read as such (no such path, no train/ and test/, a file that cannot be opened) are
fingerprinted ``missing``: planning never fails on the data (a dry run, a benchmarks file naming data this
machine lacks), such a cell shares no key with real data, and its run fails when it loads them, with the
loader's one-line error. Data that appear or change between planning and loading are refused
(``masbench.data.check_fingerprint``). Nothing here imports torch.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from collections.abc import Callable
from pathlib import Path

from masbench.data.layout import SPLITS, collect
from masbench.errors import MasbenchError

MISSING = "missing"
CHUNK = 1 << 20


def under(base: Path | str | None, path: str | None) -> str | None:
    """``path`` as the loaders read it: relative paths are relative to ``base`` (``None``: the working directory)."""
    if path is None:
        return None
    if base is None or Path(path).expanduser().is_absolute():
        return str(Path(path).expanduser())
    return os.path.normpath(Path(base) / path)


def file_fingerprint(path: str) -> str:
    """``sha256:<hex>`` of the file's bytes, or ``missing``."""
    if not os.path.isfile(path):
        return MISSING
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
    except OSError:  # unreadable: the loader says why
        return MISSING
    return f"sha256:{digest.hexdigest()[:32]}"


def images_fingerprint(path: str) -> str:
    """``images:<hex>`` over every image of both splits in the loader's order, or ``missing``."""
    digest = hashlib.sha256()
    try:  # whatever stops the fingerprint stops the loader too, which says why
        listings = collect(Path(path))
        for split in SPLITS:
            for item in listings[split]:
                if item.member is None:
                    size, crc = _file_crc(item.path)
                    name = os.path.basename(item.path)
                else:
                    size, crc = item.size, item.crc
                    name = item.member.rstrip("/").rsplit("/", 1)[-1]
                digest.update(f"{split}\0{item.label!r}\0{name!r}\0{size}\0{crc}\n".encode())
    except (MasbenchError, OSError):
        return MISSING
    return f"images:{digest.hexdigest()[:32]}"


def _file_crc(path: str) -> tuple[int, int]:
    with open(path, "rb") as handle:
        data = handle.read()
    return len(data), zlib.crc32(data)


def csv_fingerprint(argument: str, options: dict, base: Path | str | None, cache: dict | None = None) -> str:
    """The CSV file's fingerprint, joined by ``+`` with its ``test_file``'s when it has one; ``missing`` if either is."""
    paths = [argument] + ([options["test_file"]] if options.get("test_file") else [])
    parts = [_cached(cache, "file", under(base, p), file_fingerprint) for p in paths]
    return MISSING if MISSING in parts else "+".join(parts)


def imagefolder_fingerprint(argument: str, options: dict, base: Path | str | None, cache: dict | None = None) -> str:
    return _cached(cache, "images", under(base, argument), images_fingerprint)


def _cached(cache: dict | None, kind: str, path: str, compute: Callable[[str], str]) -> str:
    """``compute(path)``, once per ``cache`` (the cells of one grid share their data: one fingerprint)."""
    if cache is None:
        return compute(path)
    key = (kind, os.path.abspath(path))
    if key not in cache:
        cache[key] = compute(path)
    return cache[key]
