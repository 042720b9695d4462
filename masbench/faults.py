"""Fault injection for the crash-safety tests: real SIGKILLs at chosen points.

``MASBENCH_FAULT=POINT:N`` makes this process kill itself with SIGKILL the Nth
time it reaches ``POINT`` (N defaults to 1). The points:

- ``batch``: after an optimizer step, in the middle of an epoch;
- ``store.epoch``: inside the database transaction that writes an epoch's row,
  after the row is sent and before the commit;
- ``checkpoint``: with a checkpoint's temporary file written and not yet renamed
  into place.

Unset, as it always is outside the tests, a point costs one environment lookup.
"""

from __future__ import annotations

import os
import signal

_reached: dict[str, int] = {}


def point(name: str) -> None:
    spec = os.environ.get("MASBENCH_FAULT")
    if not spec:
        return
    target, _, count = spec.partition(":")
    if target != name:
        return
    _reached[name] = _reached.get(name, 0) + 1
    if _reached[name] == int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)
