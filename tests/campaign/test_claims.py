"""Two separate processes claiming from one database get disjoint jobs (SQLite file and PostgreSQL server)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter

from optiladder.campaign.dummy import add_dummy_jobs
from optiladder.campaign.queue import open_queue

N_JOBS = 400


def _drainer(url: str, owner: str, start_at: float) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "optiladder.campaign.dummy",
            "drain",
            url,
            "--owner",
            owner,
            "--start-at",
            str(start_at),
            # 2 ms of pretend work per job leaves the lock free between claims, as real jobs do: without it,
            # a process that the OS schedules first can take nearly every job on a loaded machine
            "--work-seconds",
            "0.002",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_processes_claim_disjoint_jobs(db_url):
    with open_queue(db_url) as q:
        assert add_dummy_jobs(q, N_JOBS) == N_JOBS
    start = time.time() + 3.0  # both processes are up and connected before the race starts
    procs = {name: _drainer(db_url, f"{name}:1", start) for name in ("a", "b")}
    claimed = {}
    for name, p in procs.items():
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        claimed[name] = json.loads(out)["claimed"]
    every = claimed["a"] + claimed["b"]
    dupes = [k for k, v in Counter(every).items() if v > 1]
    assert dupes == []
    assert len(every) == N_JOBS
    assert min(len(claimed["a"]), len(claimed["b"])) > 0.1 * N_JOBS, {k: len(v) for k, v in claimed.items()}
    with open_queue(db_url) as q:
        assert q.summary("dummy") == {"queued": 0, "running": 0, "done": N_JOBS, "failed": 0}
        attempts = [a for a in q.attempts() if a["job_id"].startswith("dummy-")]
    # the database's own audit trail agrees: one claim per job, each by the process that reported it
    assert len(attempts) == N_JOBS
    by_owner = Counter(a["owner"].split(":")[0] for a in attempts)
    assert by_owner == {"a": len(claimed["a"]), "b": len(claimed["b"])}
