"""The job queue on a real database (SQLite file; PostgreSQL when the test server is there)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from optiladder.campaign.queue import NewJob, QueueError, open_queue, owner_name


def _jobs(n: int = 4) -> list[NewJob]:
    # deliberately not in claim order: sizes 3, 1, 2, 1 (the 1-atom ones ordered by volume)
    return [
        NewJob("m-c", "src-c", nsites=3, volume=30.0, split="train"),
        NewJob("m-a", "src-a", nsites=1, volume=20.0, split="test"),
        NewJob("m-b", "src-b", nsites=2, volume=5.0, split="validation"),
        NewJob("m-0", "src-0", nsites=1, volume=10.0, split="none"),
    ][:n]


def test_claims_smallest_cells_first_and_only_once(db_url):
    with open_queue(db_url) as q:
        assert q.add_jobs(_jobs()) == 4
        assert q.add_jobs(_jobs()) == 0  # idempotent
        order = []
        while (lease := q.claim(lease_seconds=60)) is not None:
            order.append(lease.job.id)
            assert lease.job.attempts == 1
        assert order == ["m-0", "m-a", "m-b", "m-c"]
        assert q.summary() == {"queued": 0, "running": 4, "done": 0, "failed": 0}


def test_max_nsites_leaves_big_cells_queued(db_url):
    with open_queue(db_url) as q:
        q.add_jobs(_jobs())
        got = [q.claim(max_nsites=1).job.id, q.claim(max_nsites=1).job.id]
        assert got == ["m-0", "m-a"]
        assert q.claim(max_nsites=1) is None
        assert q.claimable(max_nsites=1) == 0 and q.claimable() == 2


def test_no_claim_past_a_time_budget(db_url):
    """``not_after`` is checked by the claiming statement itself: a claim that arrives late takes nothing."""
    with open_queue(db_url) as q:
        q.add_jobs(_jobs(2))
        assert q.claim(not_after=time.time() - 0.01) is None
        assert q.summary()["queued"] == 2 and q.attempts() == []
        lease = q.claim(not_after=time.time() + 60, max_nsites=1)
        assert lease is not None and lease.job.id == "m-a"
        assert q.claim(not_after=time.time() - 0.01, max_nsites=3) is None
        assert q.summary() == {"queued": 1, "running": 1, "done": 0, "failed": 0}


def test_complete_indexes_and_rejects_a_stale_token(db_url):
    with open_queue(db_url) as q:
        q.add_jobs(_jobs(1))
        lease = q.claim()
        assert q.heartbeat(lease.token, 30)
        index = {
            "mat_id": "m-c",
            "split": "train",
            "nsites": 3,
            "gap": 1.5,
            "protocol": "test",
            "sha256": "ab",
        }
        assert q.complete(lease.token, index, seconds=12.5)
        assert not q.complete(lease.token, index)  # done already: the token is dead
        assert not q.heartbeat(lease.token, 30)
        assert q.fail(lease.token, "late") is None
        (row,) = q.records_index()
        assert row["mat_id"] == "m-c" and row["gap"] == 1.5 and row["nsites"] == 3
        (att,) = q.attempts("m-c")
        assert att["outcome"] == "done" and att["seconds"] == pytest.approx(12.5)


def test_transient_failures_are_retried_up_to_the_limit(db_url):
    with open_queue(db_url) as q:
        q.add_jobs(_jobs(1), max_attempts=3)
        states = []
        for i in range(3):
            lease = q.claim()
            assert lease.job.attempts == i + 1
            states.append(
                q.fail(lease.token, f"m-c: flaky {i}", traceback="Traceback ...\nError", seconds=1.0)
            )
        assert states == ["queued", "queued", "failed"]
        assert q.claim() is None
        (job,) = q.jobs()
        assert (
            job["state"] == "failed" and job["error"] == "m-c: flaky 2" and job["traceback"].endswith("Error")
        )
        assert [a["outcome"] for a in q.attempts("m-c")] == ["retry", "retry", "failed"]


def test_permanent_failure_is_not_retried(db_url):
    with open_queue(db_url) as q:
        q.add_jobs(_jobs(1))
        lease = q.claim()
        assert q.fail(lease.token, "m-c: PBE gap -0.2 eV < 0.5 eV\n(metallic)", permanent=True) == "failed"
        (job,) = q.jobs()
        assert job["permanent"] == 1 and job["attempts"] == 1
        assert job["error"] == "m-c: PBE gap -0.2 eV < 0.5 eV (metallic)"  # one line


def test_expired_lease_returns_the_job_and_counts_the_attempt(db_url):
    with open_queue(db_url) as q:
        q.add_jobs(_jobs(1), max_attempts=2)
        first = q.claim(lease_seconds=0.3)
        assert q.claim() is None  # still leased
        time.sleep(0.6)
        second = q.claim(lease_seconds=0.3)  # reaps the expired lease, then claims the job again
        assert second.job.id == "m-c" and second.job.attempts == 2 and second.token != first.token
        assert not q.heartbeat(first.token, 30)  # the first worker lost its lease
        time.sleep(0.6)
        assert q.claim() is None  # second expiry used up the attempts
        (job,) = q.jobs()
        assert (
            job["state"] == "failed" and "lease expired" in job["error"] and job["error"].startswith("m-c: ")
        )
        assert [a["outcome"] for a in q.attempts("m-c")] == ["expired", "expired"]


def test_heartbeat_keeps_the_lease(db_url):
    with open_queue(db_url) as q:
        q.add_jobs(_jobs(1))
        lease = q.claim(lease_seconds=0.5)
        for _ in range(4):
            time.sleep(0.25)
            assert q.heartbeat(lease.token, 0.5)
        assert q.claim() is None  # never expired


def test_release_does_not_count_an_attempt(db_url):
    with open_queue(db_url) as q:
        q.add_jobs(_jobs(2))
        a = q.claim(run_id="run-1")
        b = q.claim(run_id="run-1")
        assert q.release(a.token)
        assert q.release_run("run-1") == [b.job.id]
        assert {j["attempts"] for j in q.jobs()} == {0}
        assert q.summary()["queued"] == 2


def test_dead_local_owner_is_expired_at_once(db_url):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # a pid that no longer exists
    with open_queue(db_url) as q:
        q.add_jobs(_jobs(2))
        dead = q.claim(owner=owner_name(pid=proc.pid), lease_seconds=3600)
        alive = q.claim(owner=owner_name(), lease_seconds=3600)
        assert q.expire_dead_owners() == [dead.job.id]
        (job,) = q.jobs(state="queued")
        assert job["id"] == dead.job.id and job["attempts"] == 1
        assert q.heartbeat(alive.token, 60)


def test_mark_done_wins_over_a_running_lease(db_url):
    with open_queue(db_url) as q:
        q.add_jobs(_jobs(1))
        lease = q.claim()
        q.mark_done({"mat_id": "m-c", "nsites": 3})
        assert not q.heartbeat(lease.token, 30)
        assert q.summary()["done"] == 1
        assert q.attempts("m-c")[0]["outcome"] == "lost"


def test_unreadable_input_is_a_failed_job_with_its_reason(db_url):
    with open_queue(db_url) as q:
        q.add_failed(NewJob("bad", "/x/bad.cif", nsites=0), "/x/bad.cif: unreadable structure")
        (job,) = q.jobs()
        assert (
            job["state"] == "failed"
            and job["permanent"] == 1
            and job["error"].endswith("unreadable structure")
        )


def test_status_needs_an_existing_database(tmp_path):
    with pytest.raises(QueueError, match="no campaign database"):
        open_queue(tmp_path / "missing.db", create=False)
    assert not (tmp_path / "missing.db").exists()


def test_bad_postgres_url_is_one_line():
    with pytest.raises(QueueError) as err:
        open_queue("postgresql://nobody:secret@127.0.0.1:1/none")
    assert "\n" not in str(err.value) and "secret" not in str(err.value)


def test_zombie_owner_counts_as_dead(tmp_path):
    """A killed worker may linger as a zombie (its parent died too); kill(pid, 0) succeeds on it, we must not."""
    from pathlib import Path

    proc = subprocess.Popen([sys.executable, "-c", "pass"])  # exits, and stays a zombie until we wait()
    stat = Path(f"/proc/{proc.pid}/stat")
    deadline = time.time() + 20
    while stat.read_text().rsplit(")", 1)[-1].split()[0] != "Z":
        assert time.time() < deadline, "child did not exit"
        time.sleep(0.05)
    try:
        with open_queue(tmp_path / "q.db") as q:
            q.add_jobs(_jobs(1))
            q.claim(owner=owner_name(pid=proc.pid), lease_seconds=3600)
            assert q.expire_dead_owners() == ["m-c"]
    finally:
        proc.wait()
