"""Paths a user types (``--benchmarks``, ``--db``'s SQLite file, ``--baseline``, ``--output``, ``--checkpoint-dir``,
data files): one check, which tells "does not exist" apart from "is not a regular file" (a directory, a FIFO, a
device such as /dev/null). A FIFO read as a file would block the command forever; a directory read as one gives
an error that names neither the option nor the reason.

Example:
    >>> check_file("/dev/null", "benchmarks file")
    Traceback (most recent call last):
    ...
    masbench.errors.MasbenchError: benchmarks file /dev/null is not a regular file (it is a character device)
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from masbench.errors import MasbenchError

KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
         (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def kind_of(path: Path | str) -> str | None:
    """What ``path`` is (links followed): ``file``, ``a directory``, ``a FIFO``, ...; None when absent."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return None
    except NotADirectoryError:  # a file where a folder of the path should be: nothing can be there
        return None
    if stat.S_ISREG(mode):
        return "file"
    return next((name for test, name in KINDS if test(mode)), "not a regular file")


def check_file(path: Path | str, what: str) -> Path:
    """``path``, which must be a regular file (or a link to one): else one line saying it does not exist, or
    what it is instead."""
    return _checked(path, what, "file", "is not a regular file")


def check_folder(path: Path | str, what: str) -> Path:
    """``path``, which must be a folder (or a link to one): else one line saying it does not exist, or what it is."""
    return _checked(path, what, "a directory", "is not a folder")


def _checked(path: Path | str, what: str, wanted: str, refusal: str) -> Path:
    path = Path(path).expanduser()
    kind = kind_of(path)
    if kind is None:
        raise MasbenchError(f"{what} {path} does not exist")
    if kind != wanted:
        raise MasbenchError(f"{what} {path} {refusal} (it is {_named(kind)})")
    return path


def _named(kind: str) -> str:
    return "a regular file" if kind == "file" else kind


def check_new_file(path: Path | str, what: str) -> Path:
    """``path`` to be written: absent (it will be created) or a regular file (it will be replaced), in a folder
    that exists; else one line naming the problem."""
    path = Path(path).expanduser()
    kind = kind_of(path)
    if kind is not None and kind != "file":
        raise MasbenchError(f"{what} {path} is not a regular file (it is {kind})")
    check_folder(path.parent, f"{what} folder")
    return path


def check_new_folder(path: Path | str, what: str) -> Path:
    """``path`` for a folder that may be made: a folder, or absent with its nearest existing parent a folder; else
    one line naming the part of the path that is something else (a file, a FIFO, a device)."""
    path = Path(path).expanduser()
    for part in (path, *path.parents):
        kind = kind_of(part)
        if kind is None:
            continue
        if kind != "a directory":
            where = "" if part == path else f": {part}"
            raise MasbenchError(f"{what} {path}{where} is not a folder (it is {_named(kind)})")
        break
    return path
