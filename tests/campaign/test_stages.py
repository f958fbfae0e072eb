"""Campaign order as stages, the --order file, and the additive migration of older databases (real SQLite)."""

from __future__ import annotations

import sqlite3

import pytest

from optiladder.campaign.queue import NewJob, open_queue
from optiladder.campaign.stages import diversity_order, plan_stages, read_order, restage


def _job(i: str, n: int, split: str, formula: str = "NaCl", volume: float = 50.0) -> NewJob:
    return NewJob(i, i, nsites=n, volume=volume, split=split, formula=formula)


def _queue_jobs() -> list[NewJob]:
    return [
        _job("big5", 5, "test", volume=10.0),
        _job("tr4a", 4, "train", "NaCl", 40.0),
        _job("tr4b", 4, "train", "KBr", 60.0),
        _job("ev4t", 4, "test", volume=90.0),
        _job("ev4v", 4, "validation", volume=80.0),
        _job("s3", 3, "train", volume=99.0),
        _job("s1", 1, "test", volume=5.0),
    ]


def _claim_all(q) -> list[str]:
    out = []
    while (lease := q.claim(lease_seconds=60)) is not None:
        out.append(lease.job.id)
    return out


def test_claims_follow_the_stages(db_url):
    with open_queue(db_url) as q:
        q.add_jobs(_queue_jobs())
        plan = restage(q)
        assert plan.eval_done == {"test": 0, "validation": 0}
        # eval-4 (by size), small (by size), train-4 (diversity: both new; smaller volume first), rest
        assert _claim_all(q) == ["ev4v", "ev4t", "s1", "s3", "tr4a", "tr4b", "big5"]


def test_quota_moves_evaluation_cells_to_the_rest():
    jobs = [
        {"id": f"t{i}", "nsites": 4, "split": "test", "state": "done", "formula": "NaCl"} for i in range(2)
    ] + [
        {"id": "t-next", "nsites": 4, "split": "test", "state": "queued", "formula": "NaCl"},
        {"id": "v-next", "nsites": 4, "split": "validation", "state": "queued", "formula": "NaCl"},
    ]
    plan = plan_stages(jobs, quota={"test": 2, "validation": 1}, diversity=False)
    assert plan.eval_done == {"test": 2, "validation": 0}
    assert plan.stage_of["t-next"] == "rest" and plan.stage_of["v-next"] == "eval-4"
    assert plan.stage_of["t0"] == "eval-4"  # done evaluation cells stay counted in their stage


def test_diversity_prefers_new_elements_then_new_prototypes():
    cands = [
        {"id": "a", "formula": "NaCl", "volume": 10.0},
        {"id": "b", "formula": "KBrI", "volume": 90.0},
        {"id": "c", "formula": "NaBr", "volume": 5.0},
        {"id": "d", "formula": "NaCl", "volume": 20.0},
    ]
    protos = {"a": "p1", "b": "p2", "c": "p1", "d": "p3"}
    # b adds 3 new elements; then a (Na, Cl new, smaller than d); c adds nothing new, old prototype; d new proto
    assert diversity_order(cands, set(), set(), protos) == ["b", "a", "d", "c"]
    assert diversity_order(cands, {"K", "Br", "I", "Na", "Cl"}, {"p1", "p2"}, protos)[0] == "d"


def test_order_file_ranks_within_the_stage(db_url, tmp_path):
    f = tmp_path / "ranked.txt"
    f.write_text("# acquisition order\ntr4b, 0.93\nunknown-id\n\ns3\ntr4b\n")
    with open_queue(db_url) as q:
        q.add_jobs(_queue_jobs())
        ids = read_order(f, known={j["id"] for j in q.jobs()})
        assert ids == ["tr4b", "s3"]
        assert q.set_order(ids) == 2
        restage(q)
        assert _claim_all(q) == ["ev4v", "ev4t", "s3", "s1", "tr4b", "tr4a", "big5"]


def test_order_file_errors_are_one_line(tmp_path):
    with pytest.raises(ValueError, match=r"missing\.txt: cannot read"):
        read_order(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(ValueError, match=r"empty\.txt: no known material ids"):
        read_order(tmp_path / "empty.txt")


def test_version1_database_migrates_additively(tmp_path):
    """A database made by the schema-1 code (no stage columns) keeps its rows and gains the columns."""
    db = tmp_path / "old.db"
    con = sqlite3.connect(db)
    con.executescript(
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('schema_version', '1'), ('protocol', 'gpaw-pbe-v1');
        CREATE TABLE jobs (id TEXT PRIMARY KEY, kind TEXT NOT NULL DEFAULT 'material', source TEXT NOT NULL,
            split TEXT, formula TEXT, nsites INTEGER NOT NULL, volume REAL, state TEXT NOT NULL DEFAULT 'queued',
            attempts INTEGER NOT NULL DEFAULT 0, max_attempts INTEGER NOT NULL DEFAULT 3, lease_token TEXT,
            owner_host TEXT, owner_pid INTEGER, run_id TEXT, lease_expires REAL, claimed_at REAL,
            heartbeat_at REAL, finished_at REAL, seconds REAL, error TEXT, traceback TEXT, permanent INTEGER,
            created_at REAL);
        INSERT INTO jobs (id, source, split, nsites, volume, state) VALUES
            ('old-done', 'x', 'test', 4, 10.0, 'done'), ('old-q', 'y', 'train', 2, 20.0, 'queued');
        CREATE TABLE attempts (id INTEGER PRIMARY KEY, job_id TEXT NOT NULL, token TEXT NOT NULL, owner TEXT,
            run_id TEXT, claimed_at REAL, ended_at REAL, outcome TEXT, seconds REAL, error TEXT);
        CREATE TABLE records (mat_id TEXT PRIMARY KEY, split TEXT, nsites INTEGER, formula TEXT,
            spacegroup INTEGER, gap REAL, gap_direct REAL, seconds REAL, protocol TEXT, path TEXT, sha256 TEXT,
            indexed_at REAL);
        """
    )
    con.commit()
    con.close()
    with open_queue(db, create=False) as q:  # status-style open: migrates too
        rows = {j["id"]: j for j in q.jobs()}
        assert set(rows) == {"old-done", "old-q"} and rows["old-done"]["state"] == "done"
        assert rows["old-q"]["stage"] is None
    with open_queue(db) as q:
        assert q.meta()["schema_version"] == "2" and q.meta()["protocol"] == "gpaw-pbe-v1"
        restage(q)
        assert {j["id"]: j["stage"] for j in q.jobs()} == {"old-done": "eval-4", "old-q": "small"}
        assert q.claim().job.id == "old-q"
