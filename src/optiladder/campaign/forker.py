"""Run a function in a forked child of a pre-imported process: no interpreter start-up and imports per job.

A fresh ``python -m …`` per job pays ~5 s of imports (GPAW, pymatgen, the structure list), a third of a 1-atom
calculation. :func:`fork_call` forks the calling process (which has imported everything once), runs the function
in the child in its own process group (so it and anything it starts can be killed as a whole), and returns the
pickled result, or the error, with the child's CPU time and peak memory from ``wait4``. A time limit kills the
child's process group. The calling process must be single-threaded at the time of the fork (the campaign runs
it in a dedicated pre-imported process, :mod:`.zygote`; the benchmark in its driver).
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class ForkResult:
    """What a forked call returned. ``error``: one line (``None`` on success); ``timed_out``: killed at the limit.

    ``cpu_seconds``: user + system CPU of the child and everything it waited for; ``peak_rss_mb``: its peak RSS.
    """

    value: Any = None
    error: str | None = None
    traceback: str | None = None
    cpu_seconds: float = 0.0
    peak_rss_mb: float = 0.0
    exit_code: int = 0
    timed_out: bool = False


def fork_call(
    fn: Callable[..., Any],
    *args: Any,
    timeout: float | None = None,
    on_start: Callable[[int], None] | None = None,
) -> ForkResult:
    """``fn(*args)`` in a forked child; see the module docstring. ``on_start(pid)`` is called in the parent."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        code = 0
        try:
            os.close(r)
            os.setsid()
            try:
                payload = pickle.dumps(("ok", fn(*args), None))
            except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
                first = (str(exc).strip().splitlines() or [""])[0]
                payload = pickle.dumps(
                    ("error", f"{type(exc).__name__}: {first}", traceback.format_exc()[-4000:])
                )
                code = 1
            view = memoryview(payload)
            while view:
                view = view[os.write(w, view) :]
            os.close(w)
        finally:
            os._exit(code)
    os.close(w)
    if on_start is not None:
        on_start(pid)
    chunks: list[bytes] = []
    t0 = time.time()
    timed_out = False
    try:
        while True:
            wait = None if timeout is None else max(0.0, timeout - (time.time() - t0))
            ready, _, _ = select.select([r], [], [], wait)
            if not ready:
                timed_out = True
                kill_group(pid)
                break
            data = os.read(r, 1 << 20)
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(r)
    _, status, ru = os.wait4(pid, 0)
    res = ForkResult(
        cpu_seconds=ru.ru_utime + ru.ru_stime,
        peak_rss_mb=ru.ru_maxrss / 1024,
        exit_code=os.waitstatus_to_exitcode(status),
        timed_out=timed_out,
    )
    if timed_out:
        res.error = f"timeout after {timeout:g} s"
        return res
    try:
        kind, value, tb = pickle.loads(b"".join(chunks))
    except Exception:  # noqa: BLE001 - the child died without answering
        code = res.exit_code
        res.error = f"child process died ({f'killed by signal {-code}' if code < 0 else f'exit code {code}'})"
        return res
    if kind == "ok":
        res.value = value
    else:
        res.error, res.traceback = value, tb
    return res


def kill_group(pid: int) -> None:
    """SIGKILL the process group led by ``pid`` (a forked child and everything it started)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
