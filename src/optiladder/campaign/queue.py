"""The campaign's job queue in a real database: SQLite (stdlib) or PostgreSQL (psycopg 3), one interface.

The database is the source of truth of a campaign; executors (Dask workers) only run what they claim here.

* A **claim** is an atomic lease: SQLite takes the database write lock with ``BEGIN IMMEDIATE``; PostgreSQL picks
  the row with ``SELECT … FOR UPDATE SKIP LOCKED``, so concurrent claimers never get the same job and never wait
  on each other. Each claim gets a fresh random ``token``; every later change of the job (heartbeat, complete,
  fail, release) must present it and only succeeds while the job is still ``running`` under that token.
* A **heartbeat** extends the lease (``lease_expires`` = database clock + lease seconds). A lease that expires
  (worker killed, node lost) is *reaped* by the next claim: the job goes back to ``queued`` (or to ``failed`` once
  it has used up ``max_attempts``).
* **Failures** keep a one-line ``error`` and the traceback tail. Transient ones are re-queued until
  ``max_attempts`` claims were made; permanent ones (metal, unsupported element, bad structure) fail at once.
* Every claim is logged in the ``attempts`` table with its outcome (done, retry, failed, released, expired,
  lost) and wall seconds: the audit trail for "every job ran exactly once" and for core-hours.

Times are seconds since the epoch on the **database's** clock (so workers on several nodes agree).

Besides the ``material`` jobs of the campaign, the queue knows a ``dummy`` kind (synthetic rows, no work) used by
tests and the benchmark to measure claims (:mod:`.dummy`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import socket
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger(__name__)

State = Literal["queued", "running", "done", "failed"]
STATES: tuple[str, ...] = ("queued", "running", "done", "failed")
SCHEMA_VERSION = 2
DEFAULT_MAX_ATTEMPTS = 3

JOB_COLUMNS = (
    "id",
    "kind",
    "source",
    "split",
    "formula",
    "nsites",
    "volume",
    "state",
    "attempts",
    "max_attempts",
    "lease_token",
    "owner_host",
    "owner_pid",
    "run_id",
    "lease_expires",
    "claimed_at",
    "heartbeat_at",
    "finished_at",
    "seconds",
    "error",
    "traceback",
    "permanent",
    "created_at",
    "stage",
    "priority",
    "rank",
    "order_rank",
)
#: columns added after schema version 1 (added in place to existing databases: additive migration)
ADDED_JOB_COLUMNS = {"stage": "TEXT", "priority": "INTEGER", "rank": "{real}", "order_rank": "{real}"}
#: the claim order: stage priority, then the --order file's rank, then the stage's own rank, then size
CLAIM_ORDER = "COALESCE(priority, 1000), COALESCE(order_rank, 1e18), COALESCE(rank, 1e18), nsites, volume, id"
INDEX_COLUMNS = (
    "mat_id",
    "split",
    "nsites",
    "formula",
    "spacegroup",
    "gap",
    "gap_direct",
    "seconds",
    "protocol",
    "path",
    "sha256",
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL DEFAULT 'material',
    source TEXT NOT NULL,
    split TEXT,
    formula TEXT,
    nsites INTEGER NOT NULL,
    volume {real},
    state TEXT NOT NULL DEFAULT 'queued',
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL DEFAULT 3,
    lease_token TEXT,
    owner_host TEXT,
    owner_pid INTEGER,
    run_id TEXT,
    lease_expires {real},
    claimed_at {real},
    heartbeat_at {real},
    finished_at {real},
    seconds {real},
    error TEXT,
    traceback TEXT,
    permanent INTEGER,
    created_at {real},
    stage TEXT,
    priority INTEGER,
    rank {real},
    order_rank {real}
);
CREATE INDEX IF NOT EXISTS jobs_claim ON jobs (state, kind, nsites, volume, id);
CREATE INDEX IF NOT EXISTS jobs_lease ON jobs (state, lease_expires);
CREATE TABLE IF NOT EXISTS attempts (
    id {serial},
    job_id TEXT NOT NULL,
    token TEXT NOT NULL,
    owner TEXT,
    run_id TEXT,
    claimed_at {real},
    ended_at {real},
    outcome TEXT,
    seconds {real},
    error TEXT
);
CREATE INDEX IF NOT EXISTS attempts_token ON attempts (token);
CREATE INDEX IF NOT EXISTS attempts_job ON attempts (job_id);
CREATE TABLE IF NOT EXISTS records (
    mat_id TEXT PRIMARY KEY,
    split TEXT,
    nsites INTEGER,
    formula TEXT,
    spacegroup INTEGER,
    gap {real},
    gap_direct {real},
    seconds {real},
    protocol TEXT,
    path TEXT,
    sha256 TEXT,
    indexed_at {real}
);
"""


class QueueError(RuntimeError):
    """A database problem; ``str(err)`` is one line, ``"<database>: <problem>"``."""

    def __init__(self, name: str, problem: str):
        self.name, self.problem = str(name), " ".join(str(problem).split())
        super().__init__(f"{self.name}: {self.problem}")


@dataclass(frozen=True)
class Job:
    """One row of the ``jobs`` table as a claimer sees it."""

    id: str
    kind: str
    source: str
    split: str | None
    formula: str | None
    nsites: int
    volume: float | None
    attempts: int
    max_attempts: int


@dataclass(frozen=True)
class Lease:
    """A claimed job and the token that proves the claim (valid while the job is ``running`` under it)."""

    job: Job
    token: str
    owner: str


@dataclass(frozen=True)
class NewJob:
    """A job to enqueue. ``nsites`` (atoms) and ``volume`` (Å³) order the queue: smallest cells first."""

    id: str
    source: str
    nsites: int
    volume: float | None = None
    split: str | None = None
    formula: str | None = None
    kind: str = "material"


def owner_name(host: str | None = None, pid: int | None = None) -> str:
    """``host:pid`` of the process holding a lease (the one that heartbeats)."""
    return f"{host or socket.gethostname()}:{pid or os.getpid()}"


def is_postgres(url: str | os.PathLike) -> bool:
    return str(url).startswith(("postgresql://", "postgres://"))


def display_url(url: str | os.PathLike) -> str:
    """The URL without its password (for messages and logs)."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", str(url))


def sqlite_path(url: str | os.PathLike) -> Path:
    """The file of a ``sqlite:///path`` URL or a plain path."""
    s = str(url)
    if s.startswith("sqlite:///"):
        s = s[len("sqlite:///") - 1 :] if s.startswith("sqlite:////") else s[len("sqlite:///") :]
    elif s.startswith("sqlite://"):
        s = s[len("sqlite://") :]
    return Path(s)


def open_queue(url: str | os.PathLike, *, create: bool = True) -> JobQueue:
    """Connect to a queue: ``postgresql://user@host:port/db`` or a SQLite file (path or ``sqlite:///path``).

    ``create``: create the tables if missing (idempotent, additive only); otherwise the database must exist.
    """
    q = JobQueue(url, create=create)
    if create:
        q.init_schema()
    elif not q.has_schema():
        q.close()
        raise QueueError(display_url(url), "no campaign database here (run `optiladder campaign run` first)")
    else:
        q.ensure_columns()
    return q


class JobQueue:
    """One connection to a campaign database (not thread-safe: one per thread or process).

    Use as a context manager or call :meth:`close`.
    """

    def __init__(self, url: str | os.PathLike, *, create: bool = True):
        self.url = str(url)
        self.name = display_url(url)
        self.backend: Literal["sqlite", "postgresql"]
        if is_postgres(url):
            try:
                import psycopg
            except ImportError:
                raise QueueError(
                    self.name, "PostgreSQL needs psycopg 3 (pip install 'psycopg[binary]')"
                ) from None
            self.backend = "postgresql"
            try:
                self._conn: Any = psycopg.connect(self.url, autocommit=True, connect_timeout=20)
            except psycopg.Error as exc:
                raise QueueError(self.name, f"cannot connect ({str(exc).strip().splitlines()[0]})") from None
            self._now = "extract(epoch from clock_timestamp())::double precision"
        else:
            self.backend = "sqlite"
            path = sqlite_path(url)
            if not create and not path.is_file():
                raise QueueError(self.name, "no campaign database here (run `optiladder campaign run` first)")
            if path.parent and not path.parent.exists():
                raise QueueError(self.name, f"folder {path.parent} does not exist")
            self.path = path
            try:
                # isolation_level=None: no implicit transactions; we issue BEGIN IMMEDIATE ourselves
                self._conn = sqlite3.connect(str(path), timeout=120.0, isolation_level=None)
                self._conn.execute("PRAGMA busy_timeout = 120000")
                self._conn.execute("PRAGMA journal_mode = WAL")
                self._conn.execute("PRAGMA synchronous = NORMAL")
            except sqlite3.Error as exc:
                raise QueueError(self.name, f"cannot open ({exc})") from None
            self._now = "((julianday('now') - 2440587.5) * 86400.0)"

    # -- plumbing ---------------------------------------------------------------------------------------------
    def __enter__(self) -> JobQueue:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._conn.close()

    def _sql(self, sql: str) -> str:
        sql = sql.replace("{now}", self._now)
        return sql.replace("?", "%s") if self.backend == "postgresql" else sql

    def _exec(self, sql: str, params: Sequence[Any] = ()):
        try:
            return self._conn.execute(self._sql(sql), tuple(params))
        except (sqlite3.Error, _pg_error()) as exc:
            raise QueueError(self.name, f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}") from exc

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """A write transaction: ``BEGIN IMMEDIATE`` (SQLite) or a psycopg transaction block (PostgreSQL)."""
        if self.backend == "postgresql":
            with self._conn.transaction():
                yield
            return
        self._exec("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            with contextlib.suppress(Exception):
                self._conn.execute("ROLLBACK")
            raise
        self._exec("COMMIT")

    def now(self) -> float:
        """The database clock, seconds since the epoch."""
        return float(self._exec("SELECT {now}").fetchone()[0])

    # -- schema and metadata ----------------------------------------------------------------------------------
    def has_schema(self) -> bool:
        if self.backend == "postgresql":
            row = self._exec("SELECT to_regclass('jobs')").fetchone()
            return row[0] is not None
        row = self._exec("SELECT name FROM sqlite_master WHERE type='table' AND name='jobs'").fetchone()
        return row is not None

    def init_schema(self) -> None:
        """Create the tables and indexes if they do not exist (idempotent; later versions only add)."""
        types = self._types()
        statements = [s.strip() for s in _SCHEMA.format(**types).split(";") if s.strip()]
        with self.transaction():
            if self.backend == "postgresql":  # serialize concurrent first-time creators
                self._exec("SELECT pg_advisory_xact_lock(712417)")
            for s in statements:
                self._exec(s)
            self._migrate(types)
            self._exec(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?) ON CONFLICT (key) DO NOTHING",
                (str(SCHEMA_VERSION),),
            )
            self._exec(
                "UPDATE meta SET value = ? WHERE key = 'schema_version' AND value < ?",
                (str(SCHEMA_VERSION), str(SCHEMA_VERSION)),
            )

    def _types(self) -> dict[str, str]:
        if self.backend == "postgresql":
            return {"real": "DOUBLE PRECISION", "serial": "BIGSERIAL PRIMARY KEY"}
        return {"real": "REAL", "serial": "INTEGER PRIMARY KEY"}

    def ensure_columns(self) -> None:
        """Migrate an existing database of an older schema version in place (adds columns, never removes)."""
        if self.backend == "sqlite":
            have = {r[1] for r in self._exec("PRAGMA table_info(jobs)").fetchall()}
            if set(ADDED_JOB_COLUMNS) <= have:
                return
        with self.transaction():
            self._migrate(self._types())

    def _migrate(self, types: dict[str, str]) -> None:
        """Add the columns of later schema versions to an existing ``jobs`` table (additive only)."""
        if self.backend == "postgresql":
            for col, typ in ADDED_JOB_COLUMNS.items():
                self._exec(f"ALTER TABLE jobs ADD COLUMN IF NOT EXISTS {col} {typ.format(**types)}")
        else:
            have = {r[1] for r in self._exec("PRAGMA table_info(jobs)").fetchall()}
            for col, typ in ADDED_JOB_COLUMNS.items():
                if col not in have:
                    self._exec(f"ALTER TABLE jobs ADD COLUMN {col} {typ.format(**types)}")

    def meta(self) -> dict[str, str]:
        return dict(self._exec("SELECT key, value FROM meta").fetchall())

    def set_meta(self, key: str, value: str, *, overwrite: bool = True) -> None:
        conflict = "DO UPDATE SET value = excluded.value" if overwrite else "DO NOTHING"
        self._exec(f"INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) {conflict}", (key, value))

    # -- enqueue ----------------------------------------------------------------------------------------------
    def add_jobs(self, jobs: Iterable[NewJob], *, max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> int:
        """Insert jobs that are not there yet (by id); returns how many were new."""
        rows = [
            (j.id, j.kind, j.source, j.split, j.formula, int(j.nsites), j.volume, max_attempts) for j in jobs
        ]
        before = self.count()
        sql = (
            "INSERT INTO jobs (id, kind, source, split, formula, nsites, volume, state, attempts, max_attempts,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'queued', 0, ?, {now}) ON CONFLICT (id) DO NOTHING"
        )
        with self.transaction():
            if self.backend == "postgresql":
                with self._conn.cursor() as cur:
                    cur.executemany(self._sql(sql), rows)
            else:
                self._conn.executemany(self._sql(sql), rows)
        return self.count() - before

    def add_failed(self, job: NewJob, error: str) -> bool:
        """Record an input that cannot become a job (unreadable structure): ``failed``, permanent, with reason.

        Returns False if the job was known already (nothing changed)."""
        cur = self._exec(
            "INSERT INTO jobs (id, kind, source, split, formula, nsites, volume, state, attempts, max_attempts,"
            " error, permanent, created_at, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'failed', 0, 0, ?, 1,"
            " {now}, {now}) ON CONFLICT (id) DO NOTHING",
            (job.id, job.kind, job.source, job.split, job.formula, int(job.nsites), job.volume, error),
        )
        return cur.rowcount == 1

    def mark_refused(self, job_id: str, error: str) -> bool:
        """Fail a queued job permanently with a refusal the store holds (the engine refused the material before,
        e.g. metallic), without computing it again. Returns True if the job changed."""
        cur = self._exec(
            "UPDATE jobs SET state = 'failed', permanent = 1, error = ?, finished_at = {now}"
            " WHERE id = ? AND state = 'queued'",
            (error, job_id),
        )
        return cur.rowcount == 1

    def count(self, state: str | None = None, kind: str | None = None) -> int:
        sql, params = "SELECT count(*) FROM jobs WHERE 1=1", []
        if state:
            sql, params = sql + " AND state = ?", [*params, state]
        if kind:
            sql, params = sql + " AND kind = ?", [*params, kind]
        return int(self._exec(sql, params).fetchone()[0])

    # -- the lease life cycle ---------------------------------------------------------------------------------
    def _reap_expired(self) -> int:
        """Jobs whose lease expired go back to the queue (or fail after ``max_attempts``). In a transaction."""
        pick = "SELECT id FROM jobs WHERE state = 'running' AND lease_expires < {now}"
        if self.backend == "postgresql":
            pick += " FOR UPDATE SKIP LOCKED"
        rows = self._exec(
            "UPDATE jobs SET state = CASE WHEN attempts >= max_attempts THEN 'failed' ELSE 'queued' END,"
            " error = id || ': lease expired, worker lost or killed (attempt ' || attempts || ' of ' || max_attempts || ')',"
            " traceback = NULL, permanent = 0, finished_at = {now}"
            f" WHERE id IN ({pick}) RETURNING id, lease_token, state",
        ).fetchall()
        for job_id, token, state in rows:
            log.warning("%s: lease expired (worker lost); job is %s again", job_id, state)
            self._end_attempt(token, "expired", "lease expired: worker lost or killed")
        return len(rows)

    def _end_attempt(self, token: str, outcome: str, error: str | None = None, seconds: float | None = None):
        self._exec(
            "UPDATE attempts SET outcome = ?, ended_at = {now}, error = ?,"
            " seconds = COALESCE(?, {now} - claimed_at) WHERE token = ? AND outcome = 'running'",
            (outcome, error, seconds, token),
        )

    def claim(
        self,
        *,
        owner: str | None = None,
        run_id: str | None = None,
        lease_seconds: float = 120.0,
        max_nsites: int | None = None,
        kind: str = "material",
        not_after: float | None = None,
    ) -> Lease | None:
        """Atomically lease the next queued job; ``None`` if none (or if the clock is past ``not_after``).

        Order: the job's stage priority (:mod:`.stages`), the rank of a ``--order`` file, the stage's own
        rank, then smallest cell first (nsites, volume, id); jobs without a stage come after staged ones.

        Reaps expired leases first. ``lease_seconds``: how long the lease lasts without a heartbeat.
        ``not_after``: epoch seconds (a time budget's end); checked in the claiming statement itself, so a
        claim that waited for the database lock past it takes nothing.
        """
        owner = owner or owner_name()
        host, _, pid = owner.rpartition(":")
        token = secrets.token_hex(8)
        where = "state = 'queued' AND kind = ?"
        params: list[Any] = [kind]
        if max_nsites is not None:
            where += " AND nsites <= ?"
            params.append(int(max_nsites))
        pick = f"SELECT id FROM jobs WHERE {where} ORDER BY {CLAIM_ORDER} LIMIT 1"
        if self.backend == "postgresql":
            pick += " FOR UPDATE SKIP LOCKED"
        deadline = ""
        if not_after is not None:
            deadline = " AND {now} < ?"
            params.append(float(not_after))
        with self.transaction():
            self._reap_expired()
            row = self._exec(
                "UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_token = ?, owner_host = ?,"
                " owner_pid = ?, run_id = ?, claimed_at = {now}, heartbeat_at = {now},"
                f" lease_expires = {{now}} + ? WHERE state = 'queued' AND id = ({pick}){deadline}"
                " RETURNING id, kind, source, split, formula, nsites, volume, attempts, max_attempts",
                (
                    token,
                    host or None,
                    int(pid) if pid.isdigit() else None,
                    run_id,
                    float(lease_seconds),
                    *params,
                ),
            ).fetchone()
            if row is None:
                return None
            self._exec(
                "INSERT INTO attempts (job_id, token, owner, run_id, claimed_at, outcome)"
                " VALUES (?, ?, ?, ?, {now}, 'running')",
                (row[0], token, owner, run_id),
            )
        return Lease(Job(*row), token, owner)

    def heartbeat(self, token: str, lease_seconds: float = 120.0) -> bool:
        """Extend a lease; ``False`` if it is lost (expired and reaped, released, or the job finished)."""
        cur = self._exec(
            "UPDATE jobs SET heartbeat_at = {now}, lease_expires = {now} + ?"
            " WHERE lease_token = ? AND state = 'running'",
            (float(lease_seconds), token),
        )
        return cur.rowcount == 1

    def complete(self, token: str, index: dict | None = None, seconds: float | None = None) -> bool:
        """Mark a leased job done (and index its record); ``False`` if the lease was lost (nothing changed)."""
        with self.transaction():
            row = self._exec(
                "UPDATE jobs SET state = 'done', finished_at = {now}, seconds = ?, error = NULL,"
                " traceback = NULL, permanent = NULL WHERE lease_token = ? AND state = 'running' RETURNING id",
                (seconds, token),
            ).fetchone()
            if row is None:
                return False
            self._end_attempt(token, "done", None, seconds)
            if index is not None:
                self._upsert_index(index)
        return True

    def fail(
        self,
        token: str,
        error: str,
        *,
        traceback: str | None = None,
        permanent: bool = False,
        seconds: float | None = None,
    ) -> str | None:
        """Record a failed attempt; returns the job's new state (``queued`` = will be retried, ``failed``),
        or ``None`` if the lease was lost."""
        error = " ".join(str(error).split())[:1000]
        with self.transaction():
            row = self._exec(
                "UPDATE jobs SET state = CASE WHEN ? = 1 OR attempts >= max_attempts THEN 'failed'"
                " ELSE 'queued' END, error = ?, traceback = ?, permanent = ?, finished_at = {now}, seconds = ?"
                " WHERE lease_token = ? AND state = 'running' RETURNING state",
                (int(permanent), error, traceback, int(permanent), seconds, token),
            ).fetchone()
            if row is None:
                return None
            self._end_attempt(token, "failed" if row[0] == "failed" else "retry", error, seconds)
        return str(row[0])

    def release(self, token: str) -> bool:
        """Give a leased job back to the queue without counting the attempt (clean stop)."""
        with self.transaction():
            row = self._exec(
                "UPDATE jobs SET state = 'queued', attempts = attempts - 1"
                " WHERE lease_token = ? AND state = 'running' RETURNING id",
                (token,),
            ).fetchone()
            if row is not None:
                self._end_attempt(token, "released")
        return row is not None

    def release_run(self, run_id: str) -> list[str]:
        """Give back every job leased by one campaign run (its clean stop); returns their ids."""
        with self.transaction():
            rows = self._exec(
                "UPDATE jobs SET state = 'queued', attempts = attempts - 1"
                " WHERE run_id = ? AND state = 'running' RETURNING id, lease_token",
                (run_id,),
            ).fetchall()
            for _, token in rows:
                self._end_attempt(token, "released")
        return [r[0] for r in rows]

    def expire_dead_owners(self, host: str | None = None) -> list[str]:
        """Expire at once the leases held by processes of this host that no longer exist (killed workers).

        They count as a failed attempt, like any expired lease; the next claim reaps them.
        """
        host = host or socket.gethostname()
        rows = self._exec(
            "SELECT id, owner_pid FROM jobs WHERE state = 'running' AND owner_host = ?", (host,)
        ).fetchall()
        dead = [(i, p) for i, p in rows if p and not _pid_alive(int(p))]
        for job_id, pid in dead:
            self._exec(
                "UPDATE jobs SET lease_expires = {now} - 1 WHERE id = ? AND state = 'running' AND owner_pid = ?",
                (job_id, pid),
            )
        if dead:
            with self.transaction():
                self._reap_expired()
        return [i for i, _ in dead]

    def live_tokens(self) -> set[str]:
        """Tokens of leases that are held and not expired."""
        rows = self._exec(
            "SELECT lease_token FROM jobs WHERE state = 'running' AND lease_expires >= {now}"
        ).fetchall()
        return {r[0] for r in rows}

    # -- the record index -------------------------------------------------------------------------------------
    def _upsert_index(self, index: dict) -> None:
        cols = ", ".join(INDEX_COLUMNS)
        marks = ", ".join("?" for _ in INDEX_COLUMNS)
        updates = ", ".join(f"{c} = excluded.{c}" for c in INDEX_COLUMNS[1:])
        self._exec(
            f"INSERT INTO records ({cols}, indexed_at) VALUES ({marks}, {{now}})"
            f" ON CONFLICT (mat_id) DO UPDATE SET {updates}, indexed_at = excluded.indexed_at",
            [index.get(c) for c in INDEX_COLUMNS],
        )

    def mark_done(self, index: dict) -> None:
        """Index a record found in the store and mark its job done whatever its state (the store is the truth)."""
        with self.transaction():
            rows = self._exec(
                "UPDATE jobs SET state = 'done', finished_at = COALESCE(finished_at, {now}), error = NULL,"
                " traceback = NULL, permanent = NULL WHERE id = ? AND state <> 'done' RETURNING lease_token, state",
                (index["mat_id"],),
            ).fetchall()
            for token, _ in rows:
                if token:
                    self._end_attempt(token, "lost", "record already in the store")
            self._upsert_index(index)

    def indexed_ids(self) -> set[str]:
        return {r[0] for r in self._exec("SELECT mat_id FROM records").fetchall()}

    def done_ids(self) -> set[str]:
        return {r[0] for r in self._exec("SELECT id FROM jobs WHERE state = 'done'").fetchall()}

    # -- reporting --------------------------------------------------------------------------------------------
    def jobs(self, state: str | None = None, kind: str | None = "material") -> list[dict]:
        sql, params = f"SELECT {', '.join(JOB_COLUMNS)} FROM jobs WHERE 1=1", []
        if state:
            sql, params = sql + " AND state = ?", [*params, state]
        if kind:
            sql, params = sql + " AND kind = ?", [*params, kind]
        rows = self._exec(sql + f" ORDER BY {CLAIM_ORDER}", params).fetchall()
        return [dict(zip(JOB_COLUMNS, r, strict=True)) for r in rows]

    def set_stages(self, rows: Iterable[tuple[str, str | None, int | None, float | None]]) -> int:
        """Set ``(id, stage, priority, rank)`` of jobs; returns how many rows were given."""
        rows = [(stage, prio, rank, job_id) for job_id, stage, prio, rank in rows]
        if not rows:
            return 0
        sql = self._sql("UPDATE jobs SET stage = ?, priority = ?, rank = ? WHERE id = ?")
        with self.transaction():
            if self.backend == "postgresql":
                with self._conn.cursor() as cur:
                    cur.executemany(sql, rows)
            else:
                self._conn.executemany(sql, rows)
        return len(rows)

    def set_order(self, ids: Sequence[str]) -> int:
        """Replace the ``--order`` ranks: ``ids[i]`` gets rank i, every other job none. Returns how many matched."""
        with self.transaction():
            self._exec("UPDATE jobs SET order_rank = NULL WHERE order_rank IS NOT NULL")
            sql = self._sql("UPDATE jobs SET order_rank = ? WHERE id = ?")
            rows = [(float(i), j) for i, j in enumerate(ids)]
            if self.backend == "postgresql":
                with self._conn.cursor() as cur:
                    cur.executemany(sql, rows)
            else:
                self._conn.executemany(sql, rows)
        return int(self._exec("SELECT count(*) FROM jobs WHERE order_rank IS NOT NULL").fetchone()[0])

    def attempts(self, job_id: str | None = None) -> list[dict]:
        cols = ("job_id", "token", "owner", "run_id", "claimed_at", "ended_at", "outcome", "seconds", "error")
        sql, params = f"SELECT {', '.join(cols)} FROM attempts", []
        if job_id:
            sql, params = sql + " WHERE job_id = ?", [job_id]
        rows = self._exec(sql + " ORDER BY id", params).fetchall()
        return [dict(zip(cols, r, strict=True)) for r in rows]

    def records_index(self) -> list[dict]:
        rows = self._exec(f"SELECT {', '.join(INDEX_COLUMNS)} FROM records ORDER BY mat_id").fetchall()
        return [dict(zip(INDEX_COLUMNS, r, strict=True)) for r in rows]

    def summary(self, kind: str = "material") -> dict[str, int]:
        """``{state: count}`` with every state present."""
        rows = self._exec(
            "SELECT state, count(*) FROM jobs WHERE kind = ? GROUP BY state", (kind,)
        ).fetchall()
        out = dict.fromkeys(STATES, 0)
        out.update({s: int(n) for s, n in rows})
        return out

    def claimable(self, max_nsites: int | None = None, kind: str = "material") -> int:
        """Jobs a claim could take now: queued (within ``max_nsites``) plus running ones with an expired lease."""
        sql = (
            "SELECT count(*) FROM jobs WHERE kind = ? AND (state = 'queued'"
            " OR (state = 'running' AND lease_expires < {now}))"
        )
        params: list[Any] = [kind]
        if max_nsites is not None:
            sql += " AND nsites <= ?"
            params.append(int(max_nsites))
        return int(self._exec(sql, params).fetchone()[0])


def _pg_error() -> type[BaseException]:
    try:
        import psycopg

        return psycopg.Error
    except ImportError:  # pragma: no cover
        return sqlite3.Error


def _pid_alive(pid: int) -> bool:
    """Whether a process of this host exists and is not a zombie (a killed worker whose parent died as well
    may stay a zombie until init reaps it, and ``kill(pid, 0)`` still succeeds on zombies)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (not Linux): trust kill()
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")
