"""The campaign driver: fill the queue, run jobs on Dask, stop cleanly.

The database is the source of truth; Dask only executes :func:`.task.run_next` (claim → heartbeat → compute →
record → done). The driver keeps at most ``workers + 1`` tasks in flight, stops submitting after the time budget
or on SIGINT/SIGTERM, and then gives the jobs its run still holds back to the queue (a running calculation is
killed with its worker; nothing is half-written because records are written atomically and only then marked
done). Running it again continues where it stopped.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .inputs import alexandria_jobs, file_jobs
from .kinds import get_kind, kind_jobs, split_stages
from .queue import JobQueue, QueueError, display_url, open_queue
from .stages import read_order, restage
from .task import SERIAL_ENV, TaskConfig, default_work_root, kind_records, normalize_db, run_next

log = logging.getLogger(__name__)


class CampaignError(RuntimeError):
    """A campaign that cannot start; ``str(err)`` is one line, ``"<name>: <problem>"``."""

    def __init__(self, name: str, problem: str):
        self.name, self.problem = str(name), " ".join(str(problem).split())
        super().__init__(f"{self.name}: {self.problem}")


@dataclass
class CampaignOptions:
    """Options of ``optiladder campaign run`` (times in seconds)."""

    db: str = "campaign.db"
    store: Path | None = None
    #: None: the job kind's protocol, else the engine's default (gpaw-pbe-v1)
    protocol: str | None = None
    inputs: list[str] | None = None
    workers: int | None = None
    scheduler: str | None = None
    max_atoms: int = 64
    time_budget: float | None = None
    grace: float = 0.0
    per_job_timeout: float = 3600.0
    lease: float = 120.0
    heartbeat: float | None = None
    max_attempts: int = 3
    work_root: Path | None = None
    progress: bool = True
    #: a ranked id list (one id per line) that orders jobs within their stage (:mod:`.stages`)
    order: Path | None = None
    #: how GPAW is driven (:mod:`optiladder.engine.numerics`; None: the engine's default)
    numerics: str | None = None
    #: run each job in a child forked from a pre-imported process (no ~5 s of imports per job)
    fork: bool = True
    #: the job kind (:mod:`.kinds`): ``material`` (IPA + RPA, by stage) or ``ipa-lite`` (cheap IPA, training only)
    kind: str = "material"


@dataclass
class CampaignSummary:
    """What one ``campaign run`` did."""

    outcomes: dict[str, int] = field(default_factory=dict)
    released: list[str] = field(default_factory=list)
    stopped_by: str | None = None
    seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        o = self.outcomes
        parts = [f"{o.get(k, 0)} {k}" for k in ("done", "failed", "retry", "lost") if o.get(k)]
        head = ", ".join(parts) or "no jobs run"
        tail = f"; stopped by {self.stopped_by}" if self.stopped_by else ""
        rel = f"; {len(self.released)} released back to the queue" if self.released else ""
        c = self.counts
        queue = f" | queue: {c.get('done', 0)} done, {c.get('running', 0)} running, {c.get('queued', 0)} queued, {c.get('failed', 0)} failed"
        return f"campaign: {head} in {self.seconds / 60:.1f} min{tail}{rel}{queue}"


def resolve_store(protocol: str, store: Path | None, kind: str = "material") -> tuple[Path, bool]:
    """The store folder for a protocol, and whether test records are allowed in it.

    A ``gw`` campaign stores G0W0 records (:func:`.gw_jobs.resolve_gw_store`: ``dataset/gw/<protocol>``, or an
    explicit folder outside the dataset for the ``test`` preset).

    Records of a non-production protocol (``test``) must go to a separate folder given explicitly, never into
    the dataset's ``dataset/records``. Records of a protocol with its own dataset folder (``gpaw-pbe-ipa-lite``:
    ``dataset/ipa-lite``) go there by default, or to ``store``, but never into ``dataset/records``.
    """
    from ..data.admission import dataset_refusal
    from ..data.store import default_root, protocol_root

    if get_kind(kind).engine == "gw":
        from .gw_jobs import resolve_gw_store

        try:
            return resolve_gw_store(protocol, store)
        except ValueError as exc:
            raise CampaignError("--store", str(exc)) from None
    proto = _protocol(protocol)  # unknown names raise here
    dataset = default_root().resolve()
    if proto.production and proto.folder != "records":
        root = Path(store).resolve() if store else protocol_root(protocol).resolve()
        if root == dataset:
            raise CampaignError(
                str(store),
                f"records of protocol {protocol!r} may not go into the dataset ({dataset_refusal(protocol)})",
            )
        return root, True
    why = dataset_refusal(protocol)  # the one rule for which records enter the dataset
    if why is None:
        return (Path(store).resolve() if store else dataset), False
    if store is None:
        raise CampaignError(protocol, "records of a non-production protocol need their own --store folder")
    root = Path(store).resolve()
    if root == dataset or (root / "..").resolve().name == "dataset" and root.name == "records":
        raise CampaignError(
            str(store), f"records of protocol {protocol!r} may not go into the dataset ({why})"
        )
    return root, True


def _protocol(name: str):
    from ..engine.protocols import get_protocol

    return get_protocol(name)


def resolve_protocol(kind: str, protocol: str | None) -> str:
    """The protocol of a campaign of ``kind``: the kind's own (``ipa-lite``: gpaw-pbe-ipa-lite), else ``protocol``
    or the engine's default. A ``protocol`` that contradicts the kind is a :class:`CampaignError`."""
    from ..engine.protocols import DEFAULT_PROTOCOL

    try:
        k = get_kind(kind)
    except ValueError as exc:
        raise CampaignError("--kind", str(exc)) from None
    if k.protocol is not None:
        if protocol not in (None, k.protocol, *k.alt_protocols):
            also = f" (or {', '.join(k.alt_protocols)})" if k.alt_protocols else ""
            raise CampaignError(
                "--protocol", f"jobs of kind {k.name!r} use protocol {k.protocol!r}{also}, not {protocol!r}"
            )
        return protocol or k.protocol
    name = protocol or DEFAULT_PROTOCOL
    if _protocol(name).folder != "records":
        raise CampaignError("--protocol", f"{name!r} records are made by jobs of another kind (see --kind)")
    return name


def check_meta(q: JobQueue, protocol: str, store: Path, kind: str = "material") -> None:
    """Bind a database to one job kind, one protocol and one store at first use; refuse a mismatch later.

    A database made before job kinds existed holds material jobs only, so a missing ``kind`` is ``material``
    when the database has jobs of that kind (or none)."""
    if "kind" not in q.meta():  # a database of material jobs made before job kinds existed stays one
        q.set_meta("kind", "material" if q.count(kind="material") else kind, overwrite=False)
    q.set_meta("protocol", protocol, overwrite=False)
    q.set_meta("store", str(store), overwrite=False)
    meta = q.meta()
    if meta["kind"] != kind:
        raise CampaignError(
            q.name, f"is a campaign of {meta['kind']!r} jobs, not {kind!r} (use another --db)"
        )
    if meta["protocol"] != protocol:
        raise CampaignError(
            q.name, f"is a campaign of protocol {meta['protocol']!r}, not {protocol!r} (use another --db)"
        )
    if Path(meta["store"]) != store:
        raise CampaignError(
            q.name, f"is a campaign writing to {meta['store']}, not {store} (use another --db)"
        )


def index_store(q: JobQueue, store_root: Path, kind: str = "material") -> tuple[int, list[str]]:
    """Index the records of the store that the database does not know yet and mark their jobs done.

    Invalid files are reported (``file: problem``) and skipped; they stay as they are (their jobs will fail
    with that reason instead of overwriting them). Returns (records indexed, errors).
    """
    from ..engine.records import RecordError

    store, _, index_of = kind_records(kind, store_root)
    known = q.indexed_ids() & q.done_ids()
    n, errors = 0, []
    for mat_id in store.ids():
        if mat_id in known:
            continue
        path = store.root / f"{mat_id}.json.gz"
        try:
            data = path.read_bytes()
            rec = store.get(mat_id)
            if rec["mat_id"] != mat_id:
                raise RecordError(path, f"holds material {rec['mat_id']}, not the one its name says")
        except (RecordError, OSError) as exc:
            errors.append(str(exc))
            log.warning("%s", exc)
            continue
        q.mark_done(index_of(rec, path, data))
        n += 1
    return n, errors


def index_refusals(q: JobQueue, store_root: Path, kind: str = "material") -> int:
    """Fail, without computing them, the queued jobs of materials the store records as refused (metallic, open
    shell: :data:`~.task.REFUSALS`, kept by earlier campaigns on any machine). Returns how many."""
    store, _, _ = kind_records(kind, store_root)
    n = sum(q.mark_refused(mat_id, f"{ref['error']} (refused before: {ref.get('date', '?')})")
            for mat_id, ref in store.refusals().items())  # fmt: skip
    for problem in store.errors:
        log.warning("%s", problem)
    return n


def max_atoms_of(kind: str, max_atoms: int) -> int:
    """``--max-atoms``, capped by the kind's own limit (``gw``: 2)."""
    k = get_kind(kind)
    return max_atoms if k.max_atoms is None else min(max_atoms, k.max_atoms)


def clean_work_root(q: JobQueue, work_root: Path) -> list[Path]:
    """Remove job directories under the work root whose lease is not alive (left by killed workers)."""
    if not work_root.is_dir():
        return []
    live = q.live_tokens()
    removed = []
    for p in work_root.iterdir():
        token = p.name.rpartition(".")[2]
        if p.is_dir() and token not in live:
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def prepare(opts: CampaignOptions) -> tuple[str, Path, bool, Path, dict[str, Any]]:
    """Open (or create) the database, enqueue the inputs, index the store, recover from killed runs.

    Returns (database URL, store root, allow_test, work root, report).
    """
    from ..engine.numerics import get_numerics

    try:
        get_numerics(opts.numerics)
    except ValueError as exc:
        raise CampaignError("--numerics", str(exc)) from None
    try:
        protocol = resolve_protocol(opts.kind, opts.protocol)
    except ValueError as exc:
        raise CampaignError("--protocol", str(exc)) from None
    kind = get_kind(opts.kind)
    store, allow_test = resolve_store(protocol, opts.store, kind.name)
    db = normalize_db(opts.db)
    report: dict[str, Any] = {}
    with open_queue(db) as q:
        check_meta(q, protocol, store, kind.name)
        if opts.inputs:
            jobs, bad = file_jobs(opts.inputs)
            jobs, refused = kind_jobs(kind, jobs)
            for job, reason in bad:
                if q.add_failed(replace(job, kind=kind.name), reason):
                    log.warning("%s", reason)
            for _, reason in refused:  # validation/test structures given to a training-only kind
                log.warning("%s (not queued)", reason)
            report["bad_inputs"] = len(bad)
        else:
            jobs, refused = kind_jobs(kind, alexandria_jobs())
            if refused and kind.train_only:
                log.info(
                    "%s: %d validation/test structures left out (training data only)", kind.name, len(refused)
                )
            elif refused:
                log.info(
                    "%s: %d structures left out (cells of > %s atoms)",
                    kind.name,
                    len(refused),
                    kind.max_atoms,
                )
        report["refused"] = len(refused)
        report["new_jobs"] = q.add_jobs(jobs, max_attempts=opts.max_attempts)
        report["indexed"], report["store_errors"] = index_store(q, store, kind.name)
        report["refused_before"] = index_refusals(q, store, kind.name)
        if opts.order is not None:
            ids = read_order(opts.order, known={j["id"] for j in q.jobs(kind=kind.name)})
            report["ordered"] = q.set_order(ids)
        report["eval_done"] = restage(q).eval_done if kind.staged else {}
        if kind.trainable_first:  # labels of trainable cells first; validation/test cells are only scored
            split_stages(q, kind)
        report["expired_dead"] = q.expire_dead_owners()
        work_root = Path(opts.work_root) if opts.work_root else default_work_root(db)
        report["cleaned_dirs"] = len(clean_work_root(q, work_root))
    return db, store, allow_test, work_root, report


class _Stop:
    """SIGINT/SIGTERM → a stop request (a second signal while stopping is ignored until cleanup ends)."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self.event = threading.Event()
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _Stop:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.reason is None:
            self.reason = signal.Signals(signum).name
            log.warning("%s received: no new jobs; releasing running jobs", self.reason)
        self.event.set()

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _start_dask(opts: CampaignOptions):
    """A Dask client: on an existing scheduler, or a LocalCluster of single-threaded worker processes."""
    os.environ.update(SERIAL_ENV)  # inherited by the worker processes (set before they start)
    from distributed import Client, LocalCluster

    for noisy in ("distributed", "tornado", "bokeh"):  # after the import: distributed configures its loggers
        logging.getLogger(noisy).setLevel(logging.ERROR)
    if opts.scheduler:
        client = Client(opts.scheduler, timeout="60s")
        return client, None
    cluster = LocalCluster(
        n_workers=opts.workers or 1,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",  # a free port: several campaigns may run on one machine
        env=dict(SERIAL_ENV),
        silence_logs=logging.ERROR,
    )
    client = Client(cluster)
    log.info("Dask dashboard: %s", client.dashboard_link)
    return client, cluster


def _n_slots(client, opts: CampaignOptions) -> int:
    if opts.workers:
        return opts.workers
    try:
        info = client.scheduler_info()["workers"]
        return max(1, sum(w.get("nthreads", 1) for w in info.values()))
    except Exception:  # pragma: no cover
        return 1


def run_campaign(opts: CampaignOptions) -> CampaignSummary:
    """Run a campaign until the queue is empty, the time budget is spent, or a signal arrives."""
    t_start = time.time()
    summary = CampaignSummary()
    db, store, allow_test, work_root, report = prepare(opts)
    kind = get_kind(opts.kind)
    log.info(
        "campaign %s: %d new jobs, %d records indexed, %d refused before (not recomputed), %d dead leases expired,"
        " %d stale work dirs removed",
        display_url(db),
        report["new_jobs"],
        report["indexed"],
        report["refused_before"],
        len(report["expired_dead"]),
        report["cleaned_dirs"],
    )
    deadline = t_start + opts.time_budget if opts.time_budget else None
    if deadline is not None:
        log.info(
            "time budget %.0f s: no job is claimed after %s (epoch %.3f)",
            opts.time_budget,
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(deadline)),
            deadline,
        )
    run_id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
    cfg = TaskConfig(
        db=db,
        store=str(store),
        protocol=resolve_protocol(kind.name, opts.protocol),
        # on an external scheduler each node uses its own node-local default (unless --workdir was given)
        work_root="" if (opts.scheduler and not opts.work_root) else str(work_root),
        run_id=run_id,
        lease=opts.lease,
        heartbeat=opts.heartbeat or max(1.0, opts.lease / 6),
        per_job_timeout=opts.per_job_timeout,
        max_atoms=max_atoms_of(kind.name, opts.max_atoms),
        deadline=deadline,
        allow_test=allow_test,
        numerics=opts.numerics,
        fork=opts.fork,
        kind=kind.name,
        train_only=kind.train_only,
    )
    q = open_queue(db, create=False)
    todo = q.claimable(cfg.max_atoms, kind=kind.name) + q.summary(kind.name)["running"]
    if todo == 0:
        summary.counts = q.summary(kind.name)
        summary.seconds = time.time() - t_start
        q.close()
        return summary

    with _Stop() as stop:
        try:
            client, cluster = _start_dask(opts)
            bar = _progress(todo, opts.progress)
            redirect = _redirect_logging(bar)
            try:
                slots = _n_slots(client, opts)
                summary.stopped_by = _loop(client, cfg, q, slots, stop, deadline, opts, bar, summary)
            finally:
                redirect.close()
                bar.close()
                # release before the workers go: a calculation killed by the shutdown then finds its lease
                # gone, so its task records nothing (no failed attempt for a clean stop)
                summary.released = q.release_run(run_id)
                _close_dask(client, cluster)  # kills the calculations of LocalCluster workers with them
        finally:
            # and whatever a task claimed meanwhile (after the workers are gone, no task of this run can
            # claim anything more)
            summary.released += [j for j in q.release_run(run_id) if j not in summary.released]
            if summary.released:
                log.warning("released back to the queue: %s", ", ".join(summary.released))
            q.close()
    # workers are gone now: remove what this run's killed calculations left behind
    with open_queue(db, create=False) as q2:
        clean_work_root(q2, work_root)
        summary.counts = q2.summary(kind.name)
    with contextlib.suppress(OSError):
        work_root.rmdir()
    summary.seconds = time.time() - t_start
    return summary


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    tty = sys.stderr.isatty()
    return tqdm(
        total=total,
        unit="mat",
        desc="campaign",
        disable=not enabled,
        mininterval=1.0 if tty else 60.0,
        dynamic_ncols=True,
        smoothing=0.05,
    )


def _redirect_logging(bar) -> contextlib.ExitStack:
    """While the bar is shown, log lines go through ``tqdm.write`` so that they do not break it."""
    stack = contextlib.ExitStack()
    if not bar.disable:
        from tqdm.contrib.logging import logging_redirect_tqdm

        stack.enter_context(logging_redirect_tqdm())
    return stack


def _loop(
    client, cfg: TaskConfig, q: JobQueue, slots: int, stop: _Stop, deadline, opts, bar, summary
) -> str | None:
    """Submit ``run_next`` tasks, at most ``slots + 1`` in flight, until nothing is left or a stop."""
    inflight: set = set()
    idle_until = 0.0  # after an "empty" answer, poll the database instead of spinning
    stopped_by = None
    while True:
        now = time.time()
        if stop.reason:
            stopped_by = stop.reason
            break
        if deadline is not None and now >= deadline:
            stopped_by = "time budget"
            break
        if now >= idle_until:
            while len(inflight) < slots + 1:
                inflight.add(
                    client.submit(run_next, cfg, pure=False, key=f"optiladder-job-{secrets.token_hex(6)}")
                )
        done = {f for f in inflight if f.done()}
        if not done:
            stop.event.wait(0.5)
        empty = False
        n_done = summary.outcomes.get("done", 0)
        for fut in done:
            inflight.discard(fut)
            empty |= _handle(fut, bar, summary)
        if summary.outcomes.get("done", 0) != n_done and get_kind(cfg.kind).staged:
            try:  # an evaluation quota may be met now: later 4-atom evaluation cells move to "rest"
                restage(q, diversity=False)
            except QueueError as exc:
                log.warning("restage: %s", exc)
        if empty:
            q.expire_dead_owners()  # a worker of this host killed: its job need not wait for the lease
            counts = q.summary(cfg.kind)
            if q.claimable(cfg.max_atoms, kind=cfg.kind) == 0:
                if counts["running"] == 0 and not inflight:
                    return None  # all done
                idle_until = time.time() + min(10.0, max(1.0, cfg.lease / 4))
    # stopping: no new submissions; pending tasks are cancelled; running ones may finish within the grace time
    grace_end = time.time() + (opts.grace if stopped_by == "time budget" else 0.0)
    pending = list(inflight)
    while pending and time.time() < grace_end and not (stop.reason and stopped_by == "time budget"):
        for fut in [f for f in pending if f.done()]:
            _handle(fut, bar, summary)
            pending.remove(fut)
        stop.event.wait(0.5)
    for fut in pending:
        if fut.done():
            _handle(fut, bar, summary)
    client.cancel(pending)
    return stopped_by


def _handle(fut, bar, summary: CampaignSummary) -> bool:
    """Account for a finished task; returns True if it found nothing to claim."""
    try:
        res = fut.result()
    except Exception as exc:  # a worker died (KilledWorker) or a task bug: the lease takes care of the job
        log.warning("task %s: %s: %s", fut.key, type(exc).__name__, exc)
        summary.outcomes["error"] = summary.outcomes.get("error", 0) + 1
        return False
    outcome = res["outcome"]
    summary.outcomes[outcome] = summary.outcomes.get(outcome, 0) + 1
    if outcome in ("empty", "stopped"):
        return outcome == "empty"
    if outcome in ("done", "failed"):
        bar.update(1)
    msg = f"{res['mat_id']} ({res['nsites']} atoms, {res.get('split')}): {outcome} in {res.get('seconds', 0):.0f} s"
    if res.get("error"):
        msg += f" — {res['error']}"
    if outcome == "done":
        log.info("%s", msg)
    else:
        log.warning("%s", msg)
    bar.set_postfix(
        done=summary.outcomes.get("done", 0), failed=summary.outcomes.get("failed", 0), refresh=False
    )
    return False


def _close_dask(client, cluster) -> None:
    with contextlib.suppress(Exception):
        client.close(timeout=10)
    if cluster is not None:
        with contextlib.suppress(Exception):
            cluster.close(timeout=20)


__all__ = [
    "CampaignError",
    "CampaignOptions",
    "CampaignSummary",
    "QueueError",
    "run_campaign",
]
