"""Files written so that a crash never leaves a torn one in place, and read so that a damaged one is never trusted.

``atomic_torch_save`` writes to a temporary file beside the target, fsyncs and
renames it into place, with SIGINT and SIGTERM held back meanwhile (``signals.deferred``): an
interrupt that lands inside ``torch.save`` would come out of its zip writer as
a ``RuntimeError``, and a Ctrl-C must stay a ``KeyboardInterrupt``. The
temporary file names its writer (host and process id), so that the files a
SIGKILL left behind can be told from another live writer's.

``load_torch_file`` checks the zip archive that ``torch.save`` writes (its
directory and every member's CRC-32) before ``torch.load`` sees it: a torn or
damaged file raises ``CorruptFile``, where torch alone raises a dozen kinds of
errors for a torn file and loads most flipped bits without a word.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import pickle
import socket
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from masbench import faults, signals
from masbench.errors import DiskFull
from masbench.text.numbers import is_digits
from masbench.text.shown import one_line


class CorruptFile(Exception):
    """A file that is not what ``torch.save`` wrote: torn by a crash, or damaged since."""


def _host() -> str:
    return socket.gethostname().replace(os.sep, "_") or "localhost"


def atomic_torch_save(obj, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, fsync, then rename it into place.

    SIGINT and SIGTERM are held back until the file is in place (or the write failed and its temporary file
    is gone), so an interrupt leaves either the previous file or the new one, complete, and comes out as
    itself. Temporary files that killed writes of ``path`` left behind are removed first.
    """
    with atomic_torch_saves([(obj, path)]) as place:
        place(0)


@contextlib.contextmanager
def atomic_torch_saves(items: Sequence[tuple[Any, Path]]) -> Iterator[Callable[[int], Path]]:
    """``atomic_torch_save`` of several files: ``with atomic_torch_saves([(obj, path), ...]) as place:`` writes
    every temporary file, then fsyncs them all at once (their waits for the disk overlap, where one after
    the other each would wait for its own journal commit); ``place(i)`` renames item ``i``'s into place and
    returns its path. Each file is whole and durable before its rename, as ``atomic_torch_save``'s. On
    leaving, the temporary files not placed are removed and their targets are as they were.

    SIGINT and SIGTERM are held back from the first write until the block is left.
    """
    paths = [Path(path) for _, path in items]
    staged: dict[int, str] = {}
    with signals.deferred():
        try:
            handles = {}
            try:
                for i, (obj, _) in enumerate(items):
                    staged[i], handles[i] = _write_temporary(obj, paths[i])
                _fsync_all(handles, paths)
            finally:
                for handle in handles.values():
                    handle.close()

            def place(i: int) -> Path:
                faults.point("checkpoint")
                try:
                    os.replace(staged[i], paths[i])
                except OSError as error:
                    raise _disk_full(error, paths[i]) or error from None
                del staged[i]
                return paths[i]

            yield place
        finally:
            for tmp in staged.values():
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)


def _write_temporary(obj, path: Path):
    """(name, open handle) of a new temporary file beside ``path`` holding ``torch.save(obj)``, flushed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_host()}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise _disk_full(error, path) or error from None
    handle = os.fdopen(fd, "wb")
    try:
        writer = _Writer(handle)
        try:
            torch.save(obj, writer)
        except RuntimeError:
            # torch's zip writer turns a failed write into "[enforce fail at inline_container.cc]":
            # the OSError it met says what happened.
            if writer.error is None:
                raise
            raise writer.error from None
        handle.flush()
    except BaseException as error:
        with contextlib.suppress(OSError):  # closing flushes what the failed write left: the same error again
            handle.close()
        os.unlink(tmp)
        full = _disk_full(error, path) if isinstance(error, OSError) else None
        if full is not None:
            raise full from None
        raise
    return tmp, handle


def _fsync_all(handles: dict, paths: list[Path]) -> None:
    """fsync every handle; several at once from threads (fsync lets go of the GIL while it waits)."""
    def fsync(i: int) -> None:
        try:
            os.fsync(handles[i].fileno())
        except OSError as error:
            raise _disk_full(error, paths[i]) or error from None

    if len(handles) == 1:
        fsync(next(iter(handles)))
        return
    with ThreadPoolExecutor(max_workers=len(handles)) as pool:
        for done in [pool.submit(fsync, i) for i in handles]:
            done.result()


class _Writer:
    """A file for ``torch.save`` that keeps the OSError of a failed write, which torch's error hides."""

    def __init__(self, handle) -> None:
        self.handle, self.error = handle, None

    def write(self, data) -> int:
        try:
            return self.handle.write(data)
        except OSError as error:
            self.error = error
            raise

    def flush(self) -> None:
        self.handle.flush()


def _disk_full(error: OSError, path: Path) -> DiskFull | None:
    if error.errno not in (errno.ENOSPC, errno.EDQUOT):
        return None
    return DiskFull(f"disk full: cannot write {path} ({error.strerror}); the file there, if any, is unchanged: "
                    f"free space in {path.parent} and run the same command again")


def _writer(tmp: Path, name: str) -> tuple[str, int] | None:
    """(host, pid) of the process that wrote the temporary file ``tmp`` of ``name``; None if it does not say."""
    middle = tmp.name[len(name) + 2 : -len(".tmp")]  # ".{name}.{host}.{pid}.{random}.tmp"
    parts = middle.rsplit(".", 2)
    if len(parts) != 3 or not is_digits(parts[1]):
        return None
    return parts[0], int(parts[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temporaries(path: Path, *, exclusive: bool = False) -> list[Path]:
    """Remove the temporary files that killed writes of ``path`` left behind; returns them.

    A temporary file whose writer is a dead process on this host is removed; a live writer's is left alone.
    ``exclusive``: the caller alone may write ``path`` (it holds the claim on the cell), so every temporary
    file of ``path`` but this process's is stale, whichever host wrote it. Other files' are never touched.
    """
    path = Path(path)
    host, me = _host(), os.getpid()
    removed = []
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        writer = _writer(tmp, path.name)
        if writer == (host, me):
            continue
        if exclusive or (writer is not None and writer[0] == host and not _alive(writer[1])):
            with contextlib.suppress(FileNotFoundError):  # another process cleaning up at the same moment
                tmp.unlink()
            removed.append(tmp)
    return removed


def check_archive(path: Path) -> None:
    """Raise ``CorruptFile`` unless ``path`` is a whole zip archive whose members match their CRC-32."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except OSError as error:
        if error.errno != errno.EINVAL:  # EINVAL: a seek to an offset that a damaged directory gave
            raise
        raise CorruptFile(f"damaged zip directory ({error})") from None
    # What zipfile raises for bytes that are not a whole archive: BadZipFile mostly; a damaged directory
    # can also give EOFError, NotImplementedError (a flag or method), ValueError (a name that does not
    # decode) or RuntimeError (an encryption flag).
    except (zipfile.BadZipFile, EOFError, NotImplementedError, ValueError, RuntimeError) as error:
        raise CorruptFile(f"{type(error).__name__}: {error}") from None
    if bad is not None:
        raise CorruptFile(f"member {bad} fails its CRC-32 check")


def load_torch_file(path: Path):
    """``torch.load(path)`` onto the CPU, tensors and plain containers only; ``CorruptFile`` if torn or damaged."""
    check_archive(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (EOFError, pickle.UnpicklingError) as error:
        raise CorruptFile(f"{type(error).__name__}: {one_line(error, 120)}") from None
    except RuntimeError as error:
        if not str(error).startswith("PytorchStreamReader failed"):  # torch's zip reader; anything else is a bug
            raise
        raise CorruptFile(one_line(error, 120)) from None


def cached_payload(path: Path, build):
    """The tensors saved at ``path``, or ``build()``'s, saved there for next time.

    A torn or unreadable cache file is rebuilt, never trusted; a read-only
    directory or a full disk only costs the cache.
    """
    path = Path(path)
    if path.exists():
        try:
            return load_torch_file(path)
        except CorruptFile:
            pass
    payload = build()
    try:
        atomic_torch_save(payload, path)
    except (OSError, DiskFull):
        pass
    return payload
