"""The dataset campaign: a job queue in a real database (SQLite or PostgreSQL) executed on Dask.

Flow: structure list → :mod:`.queue` (jobs, leases, heartbeats, failures) → :mod:`.task` on Dask workers
(claim → compute in a killable child process → record into the store → done) → :mod:`.status` (progress, ETA).
Import-light: Dask, psycopg and GPAW are imported where used.
"""

from __future__ import annotations

from .queue import JobQueue, Lease, NewJob, QueueError, open_queue

__all__ = ["JobQueue", "Lease", "NewJob", "QueueError", "open_queue"]
