"""The calculation process of one campaign job: ``python -m optiladder.campaign.child JOB_DIR``.

The Dask task starts it so that it can kill it (per-job time limit, lost lease, clean stop). It reads
``JOB_DIR/job.json`` (mat_id, source, protocol, split, max_atoms, kind), runs
:func:`optiladder.engine.calculate.compute` (or, for the ``gw`` kind, :func:`optiladder.engine.gw.compute_gw`)
with its private work directory under ``JOB_DIR``, and leaves exactly one of

* ``result.json.gz``: the validated record (written atomically: temporary file, fsync, rename), or
* ``error.json``: ``{"error": one line, "permanent": bool, "kind": class name, "traceback": tail}``.

It dies with its parent (``PR_SET_PDEATHSIG`` plus a watchdog thread), so a killed worker leaves no orphan GPAW run.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

log = logging.getLogger(__name__)

RESULT = "result.json.gz"
ERROR = "error.json"
SPEC = "job.json"


def _die_with_parent(parent: int) -> None:
    """Get SIGKILL when the parent dies (Linux), and check every second in case that is unavailable."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(3)

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(3)

    threading.Thread(target=watch, daemon=True, name="parent-watchdog").start()


def tail(text: str, lines: int = 25, chars: int = 4000) -> str:
    """The last ``lines`` lines (at most ``chars`` characters) of a text."""
    return "\n".join(text.strip().splitlines()[-lines:])[-chars:]


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def run(job_dir: Path) -> int:
    """Compute the job in ``job_dir``; always writes the result or the error file; returns 0."""
    spec = json.loads((job_dir / SPEC).read_text())
    mat_id = spec["mat_id"]
    try:
        from ..engine.calculate import EngineError, compute
        from ..engine.records import encode_record
        from ..structures import StructureError

        gw = _is_gw(spec.get("kind"))
        try:
            if gw:  # a G0W0 record (the gw job kind, optiladder.campaign.gw_jobs)
                from .gw_jobs import compute_job

                rec = compute_job(spec, job_dir)
            else:
                rec = compute(
                    spec["source"],
                    spec["protocol"],
                    mat_id=mat_id,
                    split=spec.get("split"),
                    max_atoms=int(spec.get("max_atoms", 64)),
                    workdir=job_dir,
                    numerics=spec.get("numerics"),
                )
        except StructureError as exc:  # bad input, unsupported element: never retried
            err = {"error": str(exc), "permanent": True, "kind": type(exc).__name__}
        except EngineError as exc:  # MetallicError and OpenShellError are permanent, the others transient
            err = {"error": str(exc), "permanent": bool(exc.permanent), "kind": type(exc).__name__}
        else:
            if gw:
                from .gw_jobs import encode_gw_record

                _write_atomic(job_dir / RESULT, encode_gw_record(rec))
            else:
                _write_atomic(job_dir / RESULT, encode_record(rec))
            return 0
        err["traceback"] = tail(traceback.format_exc())
    except Exception as exc:  # anything else is a bug or an environment problem: transient
        first = (str(exc).strip().splitlines() or [""])[0]
        err = {
            "error": f"{mat_id}: {type(exc).__name__}: {first}",
            "permanent": False,
            "kind": type(exc).__name__,
            "traceback": tail(traceback.format_exc()),
        }
    _write_atomic(job_dir / ERROR, json.dumps(err).encode())
    return 0


def _is_gw(kind: str | None) -> bool:
    from .kinds import get_kind

    return bool(kind) and get_kind(kind).engine == "gw"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        sys.stderr.write("usage: python -m optiladder.campaign.child JOB_DIR PARENT_PID\n")
        return 2
    _die_with_parent(int(argv[1]))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(Path(argv[0]))


if __name__ == "__main__":
    sys.exit(main())
