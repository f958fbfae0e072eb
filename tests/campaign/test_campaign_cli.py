"""The real ``optiladder campaign`` CLI in subprocesses: real Dask workers, real GPAW (``test`` protocol), real kills.

Inputs (tests/campaign/fixtures/structures): He, Ne (1 atom each, a few seconds each), TcO (no PAW setup:
a permanent failure in the engine) and garbage.cif (unreadable: failed at enqueue).
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from optiladder.campaign.queue import open_queue
from optiladder.engine.records import read_record

from .conftest import calculations, run_cli, start_cli, wait_for

GOOD = ["agm004442517", "agm004442529"]  # Ne, He

pytestmark = [pytest.mark.slow, pytest.mark.gpaw]


# the kill tests need a calculation that outlives its detection: the default gpaw-direct-v2 numerics finish a
# 1-atom job in about a second on an idle machine (the fresh-clone run of 2026-12-06 caught it), the dense
# diagonalisation of gpaw-dense-v1 takes several
SLOW = ("--numerics", "gpaw-dense-v1")


def _args(inputs: Path, db: str, store: Path, work: Path, *extra: str) -> list[str]:
    return [
        "campaign",
        "run",
        str(inputs),
        "--protocol",
        "test",
        "--db",
        db,
        "--store",
        str(store),
        "--workdir",
        str(work),
        "--workers",
        "1",
        "--lease",
        "8s",
        "--no-progress",
        *extra,
    ]


def _descendants(pid: int) -> set[int]:
    """All live descendants of a process (from /proc/*/stat)."""
    parent = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parent[int(d.name)] = int(fields[1])
    out, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, pp in parent.items() if pp in frontier} - out
        out |= frontier
    return out


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for p in pids:
        try:
            state = next(
                ln for ln in Path(f"/proc/{p}/status").read_text().splitlines() if ln.startswith("State:")
            )
        except (OSError, StopIteration):
            continue
        if "zombie" not in state:
            alive.add(p)
    return alive


def _wait_calculation(work: Path, db: str) -> dict:
    """Wait until a calculation process runs and its job is leased; return the job row."""
    wait_for(lambda: calculations(work), 120, "a calculation process to start")

    def running():
        with open_queue(db, create=False) as q:
            rows = q.jobs(state="running")
        return rows[0] if rows else None

    job = wait_for(running, 30, "a running job in the database")
    time.sleep(0.5)  # inside the calculation (2-4 s each): a longer wait lets an idle machine finish it
    assert calculations(work), "the calculation ended before it could be killed; use a slower input"
    return job


def assert_exactly_once(db: str, store: Path, work: Path, good: list[str] = GOOD) -> None:
    """Every good job done once (one 'done' attempt, one record), failures kept with reasons, nothing left over."""
    with open_queue(db, create=False) as q:
        jobs = {j["id"]: j for j in q.jobs()}
        attempts = q.attempts()
        index = {r["mat_id"]: r for r in q.records_index()}
    assert {i for i, j in jobs.items() if j["state"] == "done"} == set(good)
    done = Counter(a["job_id"] for a in attempts if a["outcome"] == "done")
    assert done == dict.fromkeys(good, 1)
    assert not [a for a in attempts if a["outcome"] == "running"]
    assert sorted(p.name for p in store.iterdir()) == sorted(f"{i}.json.gz" for i in good)  # no dupes, no tmp
    for i in good:
        rec = read_record(store / f"{i}.json.gz")
        assert rec["mat_id"] == i and rec["protocol"]["name"] == "test" and rec["nsites"] == 1
        assert index[i]["path"] == str((store / f"{i}.json.gz").resolve()) and len(index[i]["sha256"]) == 64
    tco = jobs["TcO_nosetup"]
    assert tco["state"] == "failed" and tco["permanent"] == 1 and "no GPAW PAW setup for Tc" in tco["error"]
    assert tco["attempts"] == 1  # permanent: never retried
    garbage = jobs["garbage"]
    assert garbage["state"] == "failed" and garbage["error"].startswith(str(Path(garbage["source"])))
    assert not work.exists() or list(work.iterdir()) == []  # no orphaned work directory
    assert calculations(work) == []


def test_sigterm_then_kill9_then_resume(tmp_path, tiny_inputs):
    """SIGTERM releases the running job cleanly; kill -9 mid-calculation loses nothing; a rerun finishes once."""
    db, store, work = str(tmp_path / "c.db"), tmp_path / "store", tmp_path / "work"
    args = _args(tiny_inputs, db, store, work, *SLOW)

    # 1. SIGTERM in the middle of a calculation: exit 0, the job goes back to the queue, nothing half-written
    p = start_cli(*args, cwd=tmp_path, log=tmp_path / "run1.log")
    job = _wait_calculation(work, db)
    tree = _descendants(p.pid)
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=90) == 0, (tmp_path / "run1.log").read_text()
    log1 = (tmp_path / "run1.log").read_text()
    assert "stopped by SIGTERM" in log1 and "released back to the queue" in log1
    wait_for(lambda: not _alive(tree), 30, "every process of the campaign to end")
    with open_queue(db, create=False) as q:
        after = {j["id"]: j for j in q.jobs()}
    assert after[job["id"]]["state"] == "queued" and after[job["id"]]["attempts"] == 0
    assert not list(store.glob(".*")) and all(read_record(f) for f in store.glob("*.json.gz"))
    assert not work.exists() or list(work.iterdir()) == []

    # 2. kill -9 of the campaign process in the middle of a calculation: its workers and the calculation die too
    p = start_cli(*args, cwd=tmp_path, log=tmp_path / "run2.log")
    job = _wait_calculation(work, db)
    tree = _descendants(p.pid)
    assert len(tree) >= 3  # Dask nanny, worker, calculation (at least)
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=30)
    wait_for(lambda: not _alive(tree), 30, "the workers and the calculation to die with the campaign")
    with open_queue(db, create=False) as q:
        (stuck,) = q.jobs(state="running")  # its lease is still held by a dead worker
    assert stuck["id"] == job["id"]
    assert list(work.glob(f"{job['id']}.*")), "the killed calculation's work directory should be there"

    # 3. run again: the dead worker's lease is recovered at once, every job completes exactly once
    r = run_cli(*args, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 dead leases expired, 1 stale work dirs removed" in r.stderr
    assert_exactly_once(db, store, work)
    with open_queue(db, create=False) as q:
        outcomes = [a["outcome"] for a in q.attempts(job["id"])]
    assert outcomes == ["released", "expired", "done"] or outcomes[-2:] == ["expired", "done"]

    # 4. a further run finds nothing to do and changes nothing
    before = {f.name: f.stat().st_mtime_ns for f in store.iterdir()}
    r = run_cli(*args, cwd=tmp_path)
    assert r.returncode == 0 and "no jobs run" in r.stdout
    assert {f.name: f.stat().st_mtime_ns for f in store.iterdir()} == before

    status = run_cli("campaign", "status", "--db", db, cwd=tmp_path)
    assert status.returncode == 0
    assert "core-hours spent" in status.stdout and "no GPAW PAW setup for Tc" in status.stdout
    rows = {ln.split()[0]: ln.split()[1:6] for ln in status.stdout.splitlines() if ln.strip()[:1].isdigit()}
    assert rows["1"] == ["2", "0", "0", "0", "2"]  # atoms 1: done, running, queued, failed, total
    assert rows["2"] == ["0", "0", "0", "1", "1"]  # TcO


def test_kill9_worker_mid_calculation(tmp_path, tiny_inputs):
    """A Dask worker killed with SIGKILL mid-calculation: the campaign carries on and completes every job once."""
    db, store, work = str(tmp_path / "c.db"), tmp_path / "store", tmp_path / "work"
    p = start_cli(*_args(tiny_inputs, db, store, work, *SLOW), cwd=tmp_path, log=tmp_path / "run.log")
    job = _wait_calculation(work, db)
    worker = int(job["owner_pid"])
    assert worker != p.pid and worker in _descendants(p.pid)
    calc = set(calculations(work))
    os.kill(worker, signal.SIGKILL)
    wait_for(lambda: not _alive(calc), 20, "the calculation to die with its worker")
    assert p.wait(timeout=180) == 0, (tmp_path / "run.log").read_text()
    assert_exactly_once(db, store, work)
    with open_queue(db, create=False) as q:
        outcomes = [a["outcome"] for a in q.attempts(job["id"])]
    assert outcomes == ["expired", "done"]


def test_per_job_time_limit_kills_and_retries(tmp_path, tiny_inputs):
    """A calculation over the per-job limit is killed, failed as transient (timeout), retried, then failed (0.3 s:
    with the gpaw-direct-v2 numerics the He job itself can finish within 2 s on a quiet machine)."""
    db, store, work = str(tmp_path / "c.db"), tmp_path / "store", tmp_path / "work"
    only_he = tmp_path / "he"
    only_he.mkdir()
    (only_he / "agm004442529.json").write_bytes((tiny_inputs / "agm004442529.json").read_bytes())
    args = _args(only_he, db, store, work, "--per-job-timeout", "0.3s", "--max-attempts", "2")
    t0 = time.time()
    r = run_cli(*args, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    with open_queue(db, create=False) as q:
        (job,) = q.jobs()
        outcomes = [a["outcome"] for a in q.attempts()]
    assert job["state"] == "failed" and job["attempts"] == 2 and not job["permanent"]
    assert job["error"] == "agm004442529: timeout after 0.3 s (per-job time limit)"
    assert outcomes == ["retry", "failed"]
    assert time.time() - t0 < 90
    assert not store.exists() or list(store.iterdir()) == []
    assert not work.exists() or list(work.iterdir()) == []
    assert calculations(work) == []


def test_time_budget_stops_cleanly(tmp_path, tiny_inputs):
    """After the budget no job is claimed; what is left stays queued, nothing runs on, nothing is left over."""
    db, store, work = str(tmp_path / "c.db"), tmp_path / "store", tmp_path / "work"
    t0 = time.time()
    r = run_cli(*_args(tiny_inputs, db, store, work, "--time-budget", "6s"), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    with open_queue(db, create=False) as q:
        s = q.summary()
        attempts = q.attempts()
    assert s["running"] == 0
    if s["queued"]:  # (on a fast, idle machine all three may finish within the budget)
        assert "stopped by time budget" in r.stdout
    assert not [a for a in attempts if a["outcome"] == "running"]
    # the budget counts from the campaign's own start (after its imports: on a loaded machine several seconds after
    # t0), which it logs: no claim after it (the workers may even start after the budget: then nothing is claimed
    # and all three stay queued)
    m = re.search(r"no job is claimed after .* \(epoch ([0-9.]+)\)", r.stdout + r.stderr)
    assert m, r.stdout + r.stderr
    deadline = float(m.group(1))
    assert t0 + 6.0 <= deadline
    if s[
        "queued"
    ]:  # stopped by the budget (else, on an idle machine, every job finished before the deadline)
        assert deadline < time.time()
    if attempts:
        assert max(a["claimed_at"] for a in attempts) < deadline
    else:
        assert s["queued"] == 3 and s["done"] == 0
    assert not work.exists() or list(work.iterdir()) == []


@pytest.mark.postgres
def test_campaign_on_postgres(tmp_path, tiny_inputs, pg_url):
    """The same campaign with the queue in PostgreSQL, run by two campaign processes at once."""
    store, work = tmp_path / "store", tmp_path / "work"
    args = _args(tiny_inputs, pg_url, store, work)
    p1 = start_cli(*args, cwd=tmp_path, log=tmp_path / "a.log")
    p2 = start_cli(*args, cwd=tmp_path, log=tmp_path / "b.log")
    assert p1.wait(timeout=180) == 0, (tmp_path / "a.log").read_text()
    assert p2.wait(timeout=180) == 0, (tmp_path / "b.log").read_text()
    assert_exactly_once(pg_url, store, work)


def test_refusals_are_kept_in_the_store_and_never_recomputed(tmp_path):
    """A material the engine refuses for good (here an open shell: one H atom, 1 valence electron) leaves
    ``refused/<id>.json`` in the store; a fresh database over the same store fails its job at once, unclaimed."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "H_atom.cif").write_text(
        "data_H\n_cell_length_a 3.0\n_cell_length_b 3.0\n_cell_length_c 3.0\n_cell_angle_alpha 90\n"
        "_cell_angle_beta 90\n_cell_angle_gamma 90\n_symmetry_space_group_name_H-M 'P 1'\nloop_\n"
        "_atom_site_label\n_atom_site_type_symbol\n_atom_site_fract_x\n_atom_site_fract_y\n_atom_site_fract_z\n"
        "H1 H 0 0 0\n"
    )
    store, work = tmp_path / "store", tmp_path / "work"
    first = run_cli(*_args(inputs, str(tmp_path / "a.db"), store, work), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    refusal = store / "refused" / "H_atom.json"
    ref = json.loads(refusal.read_text())
    assert ref["kind"] == "OpenShellError" and "odd number of valence electrons (1)" in ref["error"]
    assert ref["protocol"] == "test"
    assert not list(store.glob("*.json.gz"))  # no record, and nothing else written beside the refusal

    fresh = tmp_path / "b.db"
    second = run_cli(*_args(inputs, str(fresh), store, work), cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "1 refused before (not recomputed)" in second.stderr + second.stdout
    with open_queue(str(fresh), create=False) as q:
        (job,) = q.jobs()
        assert q.attempts() == []  # never claimed
    assert job["state"] == "failed" and job["permanent"] == 1 and "refused before" in job["error"]
    assert refusal.read_text() == json.dumps(ref, indent=1, sort_keys=True) + "\n"  # kept as it was
