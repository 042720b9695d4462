"""SIGINT and SIGTERM: every handler and mask masbench sets, the exit code they leave and their names.

Three layers, from the outside in:

- ``ending_the_command()``, around every command of the CLI: where no cell is held (planning, opening
  the store, the last report) a signal raises ``Signalled``, which the CLI tells in one line with the
  shell's exit code, ``exit_code(signum)`` = 128 + the signal (130, 143).
- ``stop_on_signals()``, around ``run`` and a sweep (``install`` in a sweep's worker process): the first
  SIGINT or SIGTERM records which signal it was and raises ``KeyboardInterrupt`` in the main thread; the
  cell being trained gives its claim back (``run_unit``) and the sweep stops. Later signals are only
  recorded, so that they cannot cut the release of a claim short. An exception that surfaces while a stop
  is pending (a ``RuntimeError`` out of a ``torch.save`` that the interrupt cut short) is the stop, not the
  cell's failure: ``run_unit`` asks ``interrupted()`` before it records ``failed``. Two moments take a
  signal without raising it: ``held()`` (a block that must run whole, such as starting worker processes,
  raises the stop when it ends) and ``finishing()`` (the work is over, so a late signal is recorded and the
  sweep finishes and reports as it would have without it).
- ``deferred()``, around an atomic file write: the signals wait until the file is in place, then reach
  whichever handler the layers above had set.

Masks: ``blocked_for_children`` protects worker processes from their first instruction, ``block`` and
``unblock`` are a worker's own; ``handlers_kept`` puts back the handlers a library replaced.

The state is process-wide because signal handlers are.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from masbench.errors import MasbenchError

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def name(signum: int) -> str:
    """``SIGINT``, ``SIGTERM``: how a signal is named to users."""
    return signal.Signals(signum).name


def exit_code(signum: int) -> int:
    """What the shell expects of a process stopped by a signal: 128 + its number (130, 143)."""
    return 128 + signum


class Stopped(MasbenchError):
    """Stopped by a signal, with every claim given back; ``exit_code`` is the shell's 128 + the signal."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.exit_code = exit_code(signum)
        super().__init__(f"interrupted by {name(signum)}: claims released; run the same command again to resume")


class Signalled(BaseException):
    """SIGINT or SIGTERM inside ``ending_the_command`` but outside ``stop_on_signals``, where no cell is held.

    A BaseException that is not a KeyboardInterrupt, so that click does not turn it into "Aborted!" after a
    blank line, and no ``except Exception`` on the way takes it for an error.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
        self.exit_code = exit_code(signum)


def _raise_signalled(signum: int, frame) -> None:
    raise Signalled(signum)


def _on_main_thread() -> bool:
    """Only the main thread can set handlers; the others need none, since Python runs handlers there."""
    return threading.current_thread() is threading.main_thread()


@contextmanager
def _handlers(handler) -> Iterator[None]:
    """``handler`` for SIGINT and SIGTERM while the block runs, the previous handlers put back after it."""
    previous = {signum: signal.signal(signum, handler) for signum in SIGNALS}
    try:
        yield
    finally:
        for signum, before in previous.items():
            signal.signal(signum, before)


@contextmanager
def ending_the_command() -> Iterator[None]:
    """SIGINT and SIGTERM raise ``Signalled`` in the block (off the main thread they keep their usual effect).

    The CLI says so in one line, with the shell's exit code, instead of a traceback, or a silent death by SIGTERM.
    """
    if not _on_main_thread():
        yield
        return
    with _handlers(_raise_signalled):
        yield


class _State:
    signum: int | None = None  # the first signal received
    depth = 0  # nested stop_on_signals blocks (the CLI's, run_sweep's)
    holding = 0  # nested held() blocks: a signal is recorded, and raised when the outermost ends
    finishing = False  # the work is over: a signal is recorded, never raised

    def reset(self) -> None:
        self.signum, self.holding, self.finishing = None, 0, False


_state = _State()


def requested() -> int | None:
    """The signal that asked this process to stop, or None."""
    return _state.signum


def interrupted(error: BaseException) -> bool:
    """Whether ``error`` is the stop itself: a stop is pending, or an interrupt is in its chain of causes."""
    if _state.signum is not None:
        return True
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, KeyboardInterrupt):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def _on_signal(signum: int, frame) -> None:
    if _state.signum is None:
        _state.signum = signum
        if not _state.holding and not _state.finishing:
            raise KeyboardInterrupt


def install() -> None:
    """Handle SIGINT and SIGTERM for the rest of this process's life (a sweep worker's)."""
    _state.reset()
    _state.depth += 1
    for signum in SIGNALS:
        signal.signal(signum, _on_signal)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGINT and SIGTERM stop the block cleanly; a stop that leaves it is raised as ``Stopped``.

    The outermost block alone installs the handlers. Off the main thread signals keep their usual effect.
    """
    if not _on_main_thread():
        yield
        return
    if _state.depth:
        with _stopped_as_one():
            yield
        return
    _state.reset()
    try:
        with _handlers(_on_signal), _stopped_as_one():
            yield
    finally:
        _state.reset()


@contextmanager
def _stopped_as_one() -> Iterator[None]:
    _state.depth += 1
    try:
        yield
    except KeyboardInterrupt:
        raise Stopped(_state.signum or signal.SIGINT) from None
    finally:
        _state.depth -= 1


@contextmanager
def held() -> Iterator[None]:
    """Run the block whole: a stop requested meanwhile is raised (``KeyboardInterrupt``) once it ends.

    Python runs handlers in the main thread whichever thread the kernel picked, so blocking the signals
    in this thread alone would not hold them back; this does, for any thread.
    """
    before = _state.signum
    _state.holding += 1
    try:
        yield
    finally:
        _state.holding -= 1
    if before is None and _state.signum is not None and not _state.holding and not _state.finishing:
        raise KeyboardInterrupt


def next_round() -> None:
    """Work starts again after ``finishing`` (an adaptive sweep's next round): a signal stops it again.

    A signal recorded meanwhile is raised here, as it would have been had the work not paused.
    """
    _state.finishing = False
    if _state.signum is not None and not _state.holding:
        raise KeyboardInterrupt


def finishing() -> None:
    """The work is over: until the outermost ``stop_on_signals`` block ends, a signal is only recorded.

    What comes next (a summary, an exit) is not cut short, and whoever reports asks ``requested()``
    whether the stop changed anything.
    """
    _state.finishing = True


@contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back while the block runs, then deliver them through the handlers they had before.

    A handler set outside Python (``getsignal`` gives None) could not be put back: such a signal is not held.
    """
    if not _on_main_thread():
        yield
        return
    received: list[int] = []
    previous = {}
    for signum in SIGNALS:
        if signal.getsignal(signum) is not None:
            previous[signum] = signal.signal(signum, lambda number, frame: received.append(number))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in dict.fromkeys(received):
            signal.raise_signal(signum)


def block() -> None:
    """Block SIGINT and SIGTERM in this thread (a worker whose work is over: it is only exiting)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)


def unblock() -> None:
    """Unblock SIGINT and SIGTERM in this thread: one that waited is handled now."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)


@contextmanager
def blocked_for_children() -> Iterator[None]:
    """SIGINT and SIGTERM blocked in this thread, and so in the processes it starts until the block ends.

    A blocked signal stays blocked across fork and exec, so a worker is protected from its first
    instruction (multiprocessing's bootstrap, before any masbench code) until it unblocks them itself.
    """
    from multiprocessing import resource_tracker

    # Starting the resource tracker ends with SIG_UNBLOCK of both signals (CPython's ensure_running), which
    # would leave the workers started after it unprotected: start it first.
    resource_tracker.ensure_running()
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextmanager
def handlers_kept() -> Iterator[None]:
    """This process's Python handlers of SIGINT and SIGTERM put back when the block ends, whatever it set
    (none off the main thread, which has none of the sweep's)."""
    if not _on_main_thread():
        yield
        return
    handlers = {signum: signal.getsignal(signum) for signum in SIGNALS}
    try:
        yield
    finally:
        for signum, handler in handlers.items():
            if handler is not None:
                signal.signal(signum, handler)
