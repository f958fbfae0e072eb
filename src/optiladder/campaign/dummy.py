"""Synthetic ``dummy`` jobs: claims without work, for the claim tests and the queue-overhead benchmark.

``python -m optiladder.campaign.dummy add URL N`` enqueues N rows; ``python -m optiladder.campaign.dummy drain URL``
claims → heartbeats → completes them until none is left and prints ``{"claimed": [ids], "seconds": s}`` as JSON.
Several drainers in separate processes must together claim every row exactly once.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from .queue import JobQueue, NewJob, QueueError, open_queue


def add_dummy_jobs(q: JobQueue, n: int, prefix: str = "dummy") -> int:
    """Enqueue ``n`` synthetic ``dummy`` jobs (no work attached)."""
    return q.add_jobs(
        NewJob(f"{prefix}-{i:06d}", "dummy", nsites=1, volume=float(i), kind="dummy") for i in range(n)
    )


def drain(
    url: str, *, owner: str | None = None, work_seconds: float = 0.0, lease_seconds: float = 60.0
) -> dict[str, Any]:
    """Claim → heartbeat → complete ``dummy`` jobs until none is left; returns ``{claimed: [...], seconds}``.

    ``work_seconds``: pretend work per job (s), to interleave with a concurrent drainer.
    """
    claimed: list[str] = []
    t0 = time.perf_counter()
    with open_queue(url) as q:
        while True:
            lease = q.claim(owner=owner, lease_seconds=lease_seconds, kind="dummy")
            if lease is None:
                break
            if work_seconds:
                time.sleep(work_seconds)
            if not q.heartbeat(lease.token, lease_seconds):
                raise QueueError(q.name, f"lease of {lease.job.id} lost")
            if not q.complete(lease.token, None, seconds=0.0):
                raise QueueError(q.name, f"completion of {lease.job.id} refused")
            claimed.append(lease.job.id)
    return {"claimed": claimed, "seconds": time.perf_counter() - t0}


def _main(argv: list[str] | None = None) -> int:
    """``python -m optiladder.campaign.dummy {add,drain} URL``."""
    p = argparse.ArgumentParser(prog="python -m optiladder.campaign.dummy")
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("add", help="enqueue N synthetic jobs")
    a.add_argument("url")
    a.add_argument("n", type=int)
    d = sub.add_parser("drain", help="claim synthetic jobs until none is left; print the ids as JSON")
    d.add_argument("url")
    d.add_argument("--owner", default=None)
    d.add_argument("--work-seconds", type=float, default=0.0)
    d.add_argument("--start-at", type=float, default=None, help="wait until this epoch time before starting")
    args = p.parse_args(argv)
    if args.cmd == "add":
        with open_queue(args.url) as q:
            print(add_dummy_jobs(q, args.n))
        return 0
    if args.start_at:
        time.sleep(max(0.0, args.start_at - time.time()))
    out = drain(args.url, owner=args.owner, work_seconds=args.work_seconds)
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(_main())
