"""The dataset campaign: a job queue in a real database (SQLite or PostgreSQL) executed on Dask.

Flow: structure list → :mod:`.queue` (jobs, leases, heartbeats, failures) → :mod:`.task` on Dask workers
(claim → compute in a killable child process → record into the store → done) → :mod:`.status` (progress, ETA).
Import-light: Dask, psycopg and GPAW are imported where used.
"""

from __future__ import annotations

from typing import Any

from .queue import JobQueue, Lease, NewJob, QueueError, open_queue

#: the rest of the public API, imported on first use (the runner and status modules are heavier)
_LAZY = {"index_store": "runner", "campaign_failures": "status"}

__all__ = ["JobQueue", "Lease", "NewJob", "QueueError", "campaign_failures", "index_store", "open_queue"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
