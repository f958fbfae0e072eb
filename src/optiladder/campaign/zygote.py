"""A pre-imported process that forks one calculation child per campaign job.

``python -m optiladder.campaign.child`` per job pays ~5 s of interpreter start-up and imports (GPAW, pymatgen,
the structure list): a third of a 1-atom calculation. Instead each Dask worker process starts one *zygote*
(``python -m optiladder.campaign.zygote PARENT_PID``) that imports all of that once and is single-threaded (so
forking it is safe). For each job the task writes the job folder and sends its path; the zygote forks a child
that runs :func:`optiladder.campaign.child.run` exactly as the per-job process did (own process group, output
to ``child.log``, dies with its parent), answers with the child's pid at once, and with its exit code and CPU
seconds (``wait4``) when it ends. The task keeps its per-job time limit and lease checks and kills the child's
process group as before; the zygote dies with the Dask worker (``PR_SET_PDEATHSIG``), and the child with the
zygote.

Protocol on the zygote's stdin/stdout: one JSON line per request ``{"job_dir": ...}``; answers
``{"pid": n}`` then ``{"pid": n, "exit": code, "cpu": seconds, "peak_mb": mb}``.
"""

from __future__ import annotations

import json
import logging
import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)


def preimport() -> None:
    """Import what every job needs (once, before any fork)."""
    import gpaw.new.pw.fulldiag  # noqa: F401
    import gpaw.response.df  # noqa: F401
    from pymatgen.analysis.structure_matcher import StructureMatcher  # noqa: F401

    from ..engine import (
        calculate,
        records,  # noqa: F401
    )

    calculate._alex_index()
    calculate._versions()


def _serve(parent: int) -> int:
    from . import child

    child._die_with_parent(parent)
    preimport()
    out = sys.stdout
    out.write(json.dumps({"ready": os.getpid()}) + "\n")
    out.flush()
    for line in sys.stdin:
        req = json.loads(line)
        job_dir = Path(req["job_dir"])
        me = os.getpid()
        pid = os.fork()
        if pid == 0:
            code = 3
            try:
                os.setsid()
                fd = os.open(job_dir / "child.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                os.close(fd)
                os.chdir(job_dir)
                sys.stdin.close()
                child._die_with_parent(me)
                logging.basicConfig(
                    level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
                )
                code = child.run(job_dir)
            finally:
                os._exit(code)
        out.write(json.dumps({"pid": pid}) + "\n")
        out.flush()
        _, status, ru = os.wait4(pid, 0)
        out.write(
            json.dumps(
                {
                    "pid": pid,
                    "exit": os.waitstatus_to_exitcode(status),
                    "cpu": ru.ru_utime + ru.ru_stime,
                    "peak_mb": ru.ru_maxrss / 1024,
                }
            )
            + "\n"
        )
        out.flush()
    return 0


class ZygoteError(RuntimeError):
    """The zygote process could not be started or died."""


class Zygote:
    """The handle a Dask worker process keeps on its zygote (started on first use, restarted if it died)."""

    def __init__(self, env: dict[str, str]):
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.lock = threading.Lock()

    def _start(self) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-m", "optiladder.campaign.zygote", str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=self.env,
            text=True,
            bufsize=1,  # line-buffered writes to the zygote; answers are read from the raw descriptor
        )
        ready = _read_line(proc, timeout=300.0)
        if not ready or "ready" not in ready:
            proc.kill()
            raise ZygoteError("the zygote process did not start")
        return proc

    def spawn(self, job_dir: Path) -> ZygoteJob:
        """Fork a child for ``job_dir`` (see :mod:`.child`); returns a Popen-like handle."""
        job_dir = Path(job_dir).resolve()  # relative to this process's folder, not the zygote's
        with self.lock:
            if self.proc is None or self.proc.poll() is not None:
                self.proc = self._start()
            assert self.proc.stdin is not None
            try:
                self.proc.stdin.write(json.dumps({"job_dir": str(job_dir)}) + "\n")
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError) as exc:
                self.proc = None
                raise ZygoteError(f"the zygote process is gone ({exc})") from None
            msg = _read_line(self.proc, timeout=60.0)
            while msg is not None and "exit" in msg:  # a late answer about an earlier (killed) child
                msg = _read_line(self.proc, timeout=60.0)
            if not msg or "pid" not in msg:
                self.close()
                raise ZygoteError("the zygote process did not fork")
            return ZygoteJob(self, int(msg["pid"]))

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


class ZygoteJob:
    """A forked calculation: ``pid`` (its process group), ``wait(timeout)``, ``returncode``, ``cpu_seconds``."""

    def __init__(self, zygote: Zygote, pid: int):
        self.zygote, self.pid, self.args = zygote, pid, f"zygote child {pid}"
        self.returncode: int | None = None
        self.cpu_seconds: float | None = None

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is not None:
            return self.returncode
        proc = self.zygote.proc
        if proc is None:
            raise ZygoteError("the zygote process is gone")
        msg = _read_line(proc, timeout)
        while msg is not None and msg.get("pid") != self.pid:  # an answer about an earlier child
            msg = _read_line(proc, timeout)
        if msg is None:
            if proc.poll() is not None:  # the zygote died: so did its child
                self.returncode = -9
                self.zygote.proc = None
                return self.returncode
            raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
        self.returncode = int(msg["exit"])
        self.cpu_seconds = float(msg["cpu"])
        return self.returncode


_BUFFERS: dict[int, bytearray] = {}


def _read_line(proc: subprocess.Popen, timeout: float | None) -> dict | None:
    """One JSON line from the zygote within ``timeout`` seconds (``None`` on timeout or end of file).

    Reads the pipe's file descriptor directly (a buffered reader could hold a second line that ``select``
    does not see)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buf = _BUFFERS.setdefault(proc.pid, bytearray())
    end = None if timeout is None else time.time() + timeout
    while True:
        if b"\n" in buf:
            line, _, rest = bytes(buf).partition(b"\n")
            buf[:] = rest
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
        wait = None if end is None else max(0.0, end - time.time())
        ready, _, _ = select.select([fd], [], [], wait)
        if not ready:
            return None
        data = os.read(fd, 65536)
        if not data:
            _BUFFERS.pop(proc.pid, None)
            return None
        buf += data


_ZYGOTE: Zygote | None = None


def worker_zygote(env: dict[str, str]) -> Zygote:
    """This process's zygote (one per Dask worker process)."""
    global _ZYGOTE
    if _ZYGOTE is None:
        _ZYGOTE = Zygote(env)
    return _ZYGOTE


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.stderr.write("usage: python -m optiladder.campaign.zygote PARENT_PID\n")
        sys.exit(2)
    sys.exit(_serve(int(sys.argv[1])))
