"""What a Dask worker runs for the campaign: claim → heartbeat → compute → write record → mark done.

:func:`run_next` is the Dask task. It claims the next job in the database (smallest cell first), keeps the lease
alive from a heartbeat thread, runs the calculation in a child process (:mod:`.child`) in a private directory
``<work_root>/<mat_id>.<token>`` so that it can be killed (per-job time limit, lost lease), writes the record
atomically into the store (append-only: a second writer of the same material cannot replace it) and marks the
job done with the record's index data. The work directory is removed in every case; one left behind by a killed
worker is removed by the next claim of that job or by the next campaign start.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data.splits import held_out
from ..data.store import record_index  # noqa: F401  (re-exported: the runner imports it from here)
from . import child
from .queue import JobQueue, Lease, QueueError, is_postgres, open_queue, owner_name, sqlite_path
from .zygote import ZygoteError, worker_zygote

log = logging.getLogger(__name__)

#: environment of every calculation: one core per worker (PROTOCOL.md)
SERIAL_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@dataclass(frozen=True)
class TaskConfig:
    """Everything a task needs (picklable: sent to the Dask workers).

    Times in seconds; ``deadline``: epoch seconds after which no new job is claimed (``None``: no limit);
    ``work_root`` empty: the node-local default (:func:`default_work_root`) of the worker's machine.
    """

    db: str
    store: str
    protocol: str
    work_root: str
    run_id: str
    lease: float = 120.0
    heartbeat: float = 20.0
    per_job_timeout: float = 3600.0
    max_atoms: int = 64
    deadline: float | None = None
    allow_test: bool = False
    numerics: str | None = None
    fork: bool = False
    #: the job kind this run claims (:data:`optiladder.campaign.kinds.KINDS`)
    kind: str = "material"
    #: refuse validation and test materials (kinds that make training data only, e.g. ``ipa-lite``)
    train_only: bool = False


def normalize_db(db: str | os.PathLike) -> str:
    """An absolute SQLite path or a PostgreSQL URL (so that every worker opens the same database)."""
    s = str(db)
    if is_postgres(s):
        return s
    return str(sqlite_path(s).expanduser().resolve())


def default_work_root(db: str) -> Path:
    """``$TMPDIR/optiladder-campaign-<hash of the database>``: node-local, one per campaign database."""
    h = hashlib.sha1(normalize_db(db).encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / f"optiladder-campaign-{h}"


def job_dir_name(mat_id: str, token: str) -> str:
    return f"{mat_id}.{token}"


def clean_stale_dirs(work_root: Path, mat_id: str, keep: str | None = None) -> list[Path]:
    """Remove work directories of earlier attempts of ``mat_id`` (their lease is gone: we hold the job)."""
    removed = []
    if not work_root.is_dir():
        return removed
    for p in work_root.glob(f"{mat_id}.*"):
        if p.is_dir() and p.name != keep:
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


class _Heartbeat(threading.Thread):
    """Renews a lease every ``interval`` s on its own connection; sets ``lost`` when the lease is gone."""

    def __init__(self, cfg: TaskConfig, token: str):
        super().__init__(daemon=True, name=f"heartbeat-{token}")
        self.cfg, self.token = cfg, token
        self.lost = threading.Event()
        self.stop = threading.Event()
        self.last_ok = time.time()

    def run(self) -> None:
        q: JobQueue | None = None
        try:
            while not self.stop.wait(self.cfg.heartbeat):
                try:
                    q = q or open_queue(self.cfg.db, create=False)
                    if not q.heartbeat(self.token, self.cfg.lease):
                        self.lost.set()
                        return
                    self.last_ok = time.time()
                except QueueError as exc:  # database unreachable: keep trying until the lease would expire
                    log.warning("heartbeat: %s", exc)
                    if q is not None:
                        q.close()
                        q = None
                    if time.time() - self.last_ok > self.cfg.lease:
                        self.lost.set()
                        return
        finally:
            if q is not None:
                q.close()


def _kill(proc) -> None:
    """Kill the calculation and everything it started (its own process group)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:  # pragma: no cover
        log.error("%s: calculation process %d does not die", proc.args, proc.pid)


def run_next(cfg: TaskConfig) -> dict[str, Any]:
    """Claim the next job and run it (the Dask task). Returns ``{"outcome": ..., "mat_id": ..., ...}``.

    Outcomes: ``empty`` (nothing to claim), ``stopped`` (past the deadline), ``done``, ``retry`` (transient
    failure, re-queued), ``failed``, ``lost`` (lease lost: released or expired meanwhile).
    """
    if cfg.deadline is not None and time.time() >= cfg.deadline:
        return {"outcome": "stopped"}
    with open_queue(cfg.db, create=False) as q:
        lease = q.claim(
            owner=owner_name(),
            run_id=cfg.run_id,
            lease_seconds=cfg.lease,
            max_nsites=cfg.max_atoms,
            kind=cfg.kind,
            not_after=cfg.deadline,
        )
        if lease is None:
            if cfg.deadline is not None and time.time() >= cfg.deadline:
                return {"outcome": "stopped"}
            return {"outcome": "empty"}
        try:
            return run_job(q, lease, cfg)
        except BaseException as exc:  # a bug in this module or the database gone: give the job back
            tb = child.tail(traceback.format_exc())
            log.error("%s: task failed (%s)", lease.job.id, exc)
            try:
                q.fail(
                    lease.token,
                    f"{lease.job.id}: campaign task error {type(exc).__name__}: {exc}",
                    traceback=tb,
                )
            except QueueError:
                pass
            raise


def run_job(q: JobQueue, lease: Lease, cfg: TaskConfig) -> dict[str, Any]:
    """Run one claimed job to its end (see the module docstring)."""
    from ..engine.records import RecordError

    job = lease.job
    base = {"mat_id": job.id, "nsites": job.nsites, "split": job.split, "attempt": job.attempts}
    store, read_record, index_of = kind_records(cfg.kind, Path(cfg.store))
    t0 = time.time()

    split = held_out(job.id, job.split) if cfg.train_only else None
    if split:  # never computed as training data, at any level
        msg = f"{job.id}: a {split} material; {cfg.kind} jobs make training data only (train and unlisted)"
        state = q.fail(lease.token, msg, permanent=True, seconds=0.0)
        return {**base, "outcome": state or "lost", "error": msg, "seconds": 0.0}

    # already in the store (written by an attempt that lost its lease, or imported): index it, no recompute
    if job.id in store:
        try:
            rec = store.get(job.id)
        except RecordError as exc:  # never overwrite: a person must look at it
            state = q.fail(lease.token, f"store holds an invalid record: {exc}", permanent=True, seconds=0.0)
            return {**base, "outcome": state or "lost", "error": str(exc), "seconds": 0.0}
        path = store.root / f"{job.id}.json.gz"
        ok = q.complete(lease.token, index_of(rec, path), seconds=0.0)
        return {**base, "outcome": "done" if ok else "lost", "seconds": 0.0, "existing": True}

    work_root = Path(cfg.work_root) if cfg.work_root else default_work_root(cfg.db)
    work_root.mkdir(parents=True, exist_ok=True)
    name = job_dir_name(job.id, lease.token)
    clean_stale_dirs(work_root, job.id, keep=name)
    job_dir = work_root / name
    job_dir.mkdir()
    beat = _Heartbeat(cfg, lease.token)
    try:
        spec = {
            "mat_id": job.id,
            "source": job.source,
            "protocol": cfg.protocol,
            "split": job.split,
            "max_atoms": cfg.max_atoms,
            "numerics": cfg.numerics,
            "kind": cfg.kind,
        }
        (job_dir / child.SPEC).write_text(json.dumps(spec))
        env = {**os.environ, **SERIAL_ENV}
        with open(job_dir / "child.log", "wb") as logf:
            proc = None
            if cfg.fork:  # a child forked from this worker's pre-imported zygote (no imports per job)
                try:
                    proc = worker_zygote(env).spawn(job_dir)
                except ZygoteError as exc:
                    log.warning("%s: %s; starting a fresh process instead", job.id, exc)
            if proc is None:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "optiladder.campaign.child", str(job_dir), str(os.getpid())],
                    cwd=job_dir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=logf,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # own process group: killable as a whole, deaf to the terminal's ^C
                )
            beat.start()
            verdict = None
            while True:
                try:
                    proc.wait(timeout=0.5)
                    break
                except subprocess.TimeoutExpired:
                    pass
                if beat.lost.is_set():
                    _kill(proc)
                    verdict = "lost"
                    break
                if time.time() - t0 > cfg.per_job_timeout:
                    _kill(proc)
                    verdict = "timeout"
                    break
        seconds = round(time.time() - t0, 2)
        beat.stop.set()
        beat.join(timeout=5)
        if verdict == "lost" or beat.lost.is_set():
            log.warning("%s: lease lost (released or expired); calculation abandoned", job.id)
            return {**base, "outcome": "lost", "seconds": seconds}
        if verdict == "timeout":
            msg = f"{job.id}: timeout after {cfg.per_job_timeout:g} s (per-job time limit)"
            state = q.fail(lease.token, msg, traceback=_log_tail(job_dir), seconds=seconds)
            return {**base, "outcome": _outcome(state), "error": msg, "seconds": seconds}
        result, error = job_dir / child.RESULT, job_dir / child.ERROR
        if result.exists():
            try:
                rec = read_record(result)
                if rec["mat_id"] != job.id:
                    raise RecordError(result, f"holds material {rec['mat_id']}, not {job.id}")
            except RecordError as exc:
                state = q.fail(lease.token, f"{job.id}: invalid result ({exc.problem})", seconds=seconds)
                return {**base, "outcome": _outcome(state), "error": str(exc), "seconds": seconds}
            try:
                path = store.add(rec, allow_test=cfg.allow_test)
            except RecordError as exc:
                if job.id not in store:
                    raise
                log.warning("%s", exc)  # written meanwhile by an attempt that lost its lease: keep that one
                path = store.root / f"{job.id}.json.gz"
                rec = read_record(path)
            index = index_of(rec, path)
            if not q.complete(lease.token, index, seconds=seconds):
                q.mark_done(index)  # lease lost after the record was written: the store is the truth
            gap = rec.get("gap_indirect", rec.get("gap_g0w0"))
            return {**base, "outcome": "done", "seconds": seconds, "gap": gap}
        if error.exists():
            err = json.loads(error.read_text())
            if err.get("permanent") and err.get("kind") in REFUSALS:
                _keep_refusal(store, job.id, err, cfg)
            state = q.fail(
                lease.token,
                err["error"],
                traceback=err.get("traceback"),
                permanent=bool(err.get("permanent")),
                seconds=seconds,
            )
            return {**base, "outcome": _outcome(state), "error": err["error"], "seconds": seconds}
        code = proc.returncode
        how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
        msg = f"{job.id}: calculation process died ({how})"
        state = q.fail(lease.token, msg, traceback=_log_tail(job_dir), seconds=seconds)
        return {**base, "outcome": _outcome(state), "error": msg, "seconds": seconds}
    finally:
        beat.stop.set()
        shutil.rmtree(job_dir, ignore_errors=True)


#: permanent engine failures that are facts about the material under its protocol, kept in the store
REFUSALS = ("MetallicError", "OpenShellError")


def _keep_refusal(store, mat_id: str, err: dict, cfg: TaskConfig) -> None:
    """Write the refusal into the store (``refused/<mat_id>.json``), so no later campaign computes it again."""
    try:
        store.add_refusal(
            mat_id, kind=err["kind"], error=err["error"], protocol=cfg.protocol, numerics=cfg.numerics
        )
    except OSError as exc:
        log.warning("%s: refusal not kept in the store (%s)", mat_id, exc)


def kind_records(kind: str, root: Path):
    """(store, reader of a result file, index function) of a job kind's records: the spectra store, or the G0W0
    store of the ``gw`` kind (:mod:`.gw_jobs`)."""
    from .kinds import get_kind

    if get_kind(kind).engine == "gw":
        from .gw_jobs import GWStore, gw_index, read_gw_result

        return GWStore(root), read_gw_result, gw_index
    from ..data.store import Store
    from ..engine.records import read_record

    return Store(root), read_record, record_index


def _outcome(state: str | None) -> str:
    return {"queued": "retry", "failed": "failed", None: "lost"}.get(state, str(state))


def _log_tail(job_dir: Path) -> str | None:
    try:
        return child.tail((job_dir / "child.log").read_text(errors="replace"))
    except OSError:
        return None
