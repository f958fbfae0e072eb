"""Fuzz fixtures: a hang detector that kills the test process with a traceback of every thread."""

from __future__ import annotations

import faulthandler
import sys
from collections.abc import Iterator
from contextlib import contextmanager

#: No single input (or request) may go unanswered this long (s): a hang detector, not a speed test.
HANG_SECONDS = 60


@contextmanager
def hang_detector(seconds: float = HANG_SECONDS) -> Iterator[None]:
    """Dump every thread's stack and exit if the block runs longer than ``seconds``. faulthandler's watchdog is a
    C thread, so it fires even when a C loop holds the GIL (a Python timer could not)."""
    faulthandler.dump_traceback_later(seconds, exit=True, file=sys.stderr)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()
