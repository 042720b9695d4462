"""Fault injection for the crash-safety and signal tests: real SIGKILLs, or holds, at chosen points.

``MASBENCH_FAULT=POINT:N`` makes this process kill itself with SIGKILL the Nth
time it reaches ``POINT`` (N defaults to 1). The points:

- ``batch``: after an optimizer step, in the middle of an epoch;
- ``store.epoch``: inside the database transaction that writes an epoch's row,
  after the row is sent and before the commit;
- ``checkpoint``: with a checkpoint's temporary file written and not yet renamed
  into place.

``MASBENCH_HOLD=POINT:DIR`` makes this process stop at ``POINT`` instead: it
creates ``DIR/POINT.PID`` and waits there until ``DIR/go`` exists (at most
``HOLD_S``), so that a test can send a signal at exactly that moment. The
points: ``cli.started``: the command line has its signal handlers, its command not yet
parsed; ``epoch.saved``: an epoch is in the store and checkpointed, the next not
begun (so a test sees a cell part-way through, however fast the machine);
``sweep.finished``: a sweep's work is over, its summary not yet made.

Unset, as they always are outside the tests, a point costs two environment lookups.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

HOLD_S = 300.0  # a bound, so that a held process whose test died does not wait forever

_reached: dict[str, int] = {}


def point(name: str) -> None:
    _hold(name)
    spec = os.environ.get("MASBENCH_FAULT")
    if not spec:
        return
    target, _, count = spec.partition(":")
    if target != name:
        return
    _reached[name] = _reached.get(name, 0) + 1
    if _reached[name] == int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def _hold(name: str) -> None:
    target, _, folder = os.environ.get("MASBENCH_HOLD", "").partition(":")
    if target != name or not folder:
        return
    Path(folder, f"{name}.{os.getpid()}").touch()
    deadline = time.monotonic() + HOLD_S
    while not Path(folder, "go").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
