"""The ``gw`` job kind: G0W0 labels of ≤ 2-atom cells with the queue's usual discipline (leases, append-only
store, failures with reasons), trainable cells first, validation/test cells computed but only for scoring."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from optiladder.campaign.gw_jobs import GWStore, gw_index, gw_store_root, resolve_gw_store
from optiladder.campaign.kinds import get_kind, kind_jobs, split_stages
from optiladder.campaign.queue import NewJob, open_queue
from optiladder.campaign.runner import (
    CampaignError,
    CampaignOptions,
    check_meta,
    index_store,
    prepare,
    resolve_protocol,
    resolve_store,
)
from optiladder.campaign.task import TaskConfig, run_next
from optiladder.engine.gw import read_gw_record
from optiladder.engine.records import RecordError

from .conftest import STRUCTURES, run_cli

REPO = Path(__file__).resolve().parents[2]
#: a committed gpaw-g0w0-v2 record (MgO, train split)
MGO = REPO / "dataset" / "gw" / "gpaw-g0w0-v2" / "agm002176626.json.gz"
#: 2-atom cells: Si (train), P (validation), SiC (test), O2 (none); a 4-atom train cell
TRAIN, VALIDATION, TEST, NONE = "agm003157600", "agm002125835", "agm003157621", "agm003157631"


def test_kind_rules(tmp_path):
    k = get_kind("gw")
    assert k.engine == "gw" and k.max_atoms == 2 and not k.train_only and k.trainable_first
    assert resolve_protocol("gw", None) == "gpaw-g0w0-v2"
    assert resolve_protocol("gw", "test") == "test"
    with pytest.raises(CampaignError, match=r"use protocol 'gpaw-g0w0-v2' \(or gpaw-g0w0-v1, test\)"):
        resolve_protocol("gw", "gpaw-pbe-v1")
    with pytest.raises(ValueError, match="unknown protocol"):
        resolve_protocol("material", "gpaw-g0w0-v2")
    # validation/test cells are computed (labels to score), larger cells are not this kind's
    jobs = [
        NewJob(i, i, nsites=n, split=s)
        for i, n, s in ((TRAIN, 2, "train"), (VALIDATION, 2, None), ("big", 4, "train"))
    ]
    keep, refused = kind_jobs("gw", jobs)
    assert [j.id for j in keep] == [TRAIN, VALIDATION] and {j.kind for j in keep} == {"gw"}
    assert [r for _, r in refused] == ["big: 4 atoms; gw jobs take cells of <= 2 atoms"]
    # stores: the dataset's dataset/gw/<protocol> for production; the test preset needs its own folder
    assert gw_store_root("gpaw-g0w0-v2") == REPO / "dataset" / "gw" / "gpaw-g0w0-v2"
    assert resolve_store("gpaw-g0w0-v2", None, "gw") == (gw_store_root("gpaw-g0w0-v2").resolve(), False)
    with pytest.raises(CampaignError, match="need their own --store"):
        resolve_store("test", None, "gw")
    with pytest.raises(ValueError, match="may not go into"):
        resolve_gw_store("test", REPO / "dataset" / "gw" / "test")
    assert resolve_gw_store("test", tmp_path) == (tmp_path.resolve(), True)


def test_trainable_cells_are_claimed_before_held_out_ones(tmp_path):
    db, store = str(tmp_path / "gw.db"), tmp_path / "gw"
    with open_queue(db) as q:
        check_meta(q, "test", store, "gw")
        # volumes chosen so that size order alone would put the test cell first
        q.add_jobs(
            [
                NewJob(TEST, TEST, nsites=2, volume=10.0, split="test", kind="gw"),
                NewJob(VALIDATION, VALIDATION, nsites=2, volume=11.0, split=None, kind="gw"),
                NewJob(NONE, NONE, nsites=2, volume=40.0, split="none", kind="gw"),
                NewJob(TRAIN, TRAIN, nsites=2, volume=30.0, split="train", formula="Si", kind="gw"),
                # a second, smaller Si polymorph comes first; a third one after the other formulas
                NewJob("si-b", "si-b", nsites=2, volume=20.0, split="train", formula="Si", kind="gw"),
            ]
        )
        assert split_stages(q, "gw") == 5
        stage = {j["id"]: j["stage"] for j in q.jobs(kind="gw")}
        assert stage == {TRAIN: "label", "si-b": "label", NONE: "label", TEST: "score", VALIDATION: "score"}
        order = []
        while (lease := q.claim(kind="gw", max_nsites=2)) is not None:
            order.append(lease.job.id)
        # label stage (one cell per formula by volume, then the other polymorphs), then the score stage
        assert order == ["si-b", NONE, TRAIN, TEST, VALIDATION]


def test_store_is_append_only_and_indexed(tmp_path):
    rec = read_gw_record(MGO)
    store = GWStore(tmp_path / "gw")
    path = store.add(rec)
    assert rec["mat_id"] in store and store.ids() == [rec["mat_id"]] and store.get(rec["mat_id"]) == rec
    before = path.read_bytes()
    with pytest.raises(RecordError, match="exists already"):
        store.add({**rec, "gap_g0w0": 0.0})
    assert path.read_bytes() == before
    with pytest.raises(RecordError, match="non-production"):
        store.add({**rec, "mat_id": "x", "protocol": {**rec["protocol"], "name": "test"}})
    idx = gw_index(rec, path)
    assert idx["gap"] == rec["gap_g0w0"] and idx["protocol"] == "gpaw-g0w0-v2" and idx["split"] == "train"
    assert idx["seconds"] == pytest.approx(sum(rec["seconds"].values()), abs=1e-3)
    # an invalid file is reported by name and left alone; the valid one is indexed and its job marked done
    bad = tmp_path / "gw" / f"{TRAIN}.json.gz"
    garbage = gzip.compress(json.dumps({"kind": "spectra"}).encode())
    bad.write_bytes(garbage)
    with open_queue(str(tmp_path / "q.db")) as q:
        check_meta(q, "gpaw-g0w0-v2", store.root, "gw")
        q.add_jobs([NewJob(m, m, nsites=2, kind="gw") for m in (rec["mat_id"], TRAIN)])
        n, errors = index_store(q, store.root, "gw")
        assert n == 1 and len(errors) == 1 and f"{TRAIN}.json.gz: not a G0W0 record" in errors[0]
        assert {j["id"]: j["state"] for j in q.jobs(kind="gw")} == {rec["mat_id"]: "done", TRAIN: "queued"}
        # the job of the invalid file fails permanently at claim, with the reason; the file is not replaced
        cfg = TaskConfig(
            str(tmp_path / "q.db"), str(store.root), "gpaw-g0w0-v2", str(tmp_path / "w"), "r", kind="gw"
        )
        out = run_next(cfg)
        assert out["outcome"] == "failed" and "not a G0W0 record" in out["error"]
        [job] = q.jobs(state="failed", kind="gw")
        assert (
            job["id"] == TRAIN and job["permanent"] == 1 and "store holds an invalid record" in job["error"]
        )
    assert bad.read_bytes() == garbage


def test_prepare_enqueues_only_small_cells_and_stages_them(tmp_path, monkeypatch):
    # an empty dataset copy: the default store is dataset/gw/<protocol> beside it
    monkeypatch.setenv("OPTILADDER_DATASET", str(tmp_path / "dataset" / "records"))
    opts = CampaignOptions(db=str(tmp_path / "gw.db"), kind="gw", work_root=tmp_path / "w")
    db, store, allow_test, _, report = prepare(opts)
    assert store == (tmp_path / "dataset" / "gw" / "gpaw-g0w0-v2").resolve() and not allow_test
    with open_queue(db, create=False) as q:
        jobs = q.jobs(kind="gw")
        assert q.meta()["kind"] == "gw" and q.meta()["protocol"] == "gpaw-g0w0-v2"
    assert report["new_jobs"] == len(jobs) == 101 and all(j["nsites"] <= 2 for j in jobs)
    first = [j for j in jobs if j["stage"] == "score"]
    assert len(first) == 20 and all(j["split"] in ("validation", "test") for j in first)
    assert jobs[0]["stage"] == "label"  # jobs() lists in claim order


@pytest.mark.slow
@pytest.mark.gpaw
def test_gw_campaign_stores_each_record_once(tmp_path):
    """A real G0W0 (tiny ``test`` protocol) of solid Ne through the CLI; bad inputs fail with their reasons."""
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for name in ("agm004442517.json", "TcO_nosetup.json", "garbage.cif"):
        shutil.copy(STRUCTURES / name, inputs)
    db, store, work = str(tmp_path / "gw.db"), tmp_path / "gw", tmp_path / "work"
    args = ["campaign", "run", str(inputs), "--kind", "gw", "--protocol", "test", "--db", db]
    args += ["--store", str(store), "--workdir", str(work), "--workers", "1", "--no-progress"]
    first = run_cli(*args, cwd=tmp_path, timeout=900)
    assert first.returncode == 0, first.stderr[-2000:]
    [path] = sorted(store.glob("*.json.gz"))
    rec = read_gw_record(path)
    assert rec["mat_id"] == "agm004442517" and rec["protocol"]["name"] == "test" and rec["formula"] == "Ne"
    assert rec["gap_g0w0"] > rec["gap_pbe"] > 5.0  # G0W0 opens the gap of solid Ne
    data = path.read_bytes()
    second = run_cli(*args, cwd=tmp_path, timeout=600)  # nothing left to do: no second calculation
    assert second.returncode == 0, second.stderr[-2000:]
    assert path.read_bytes() == data and len(list(store.glob("*.json.gz"))) == 1
    with open_queue(db, create=False) as q:
        assert q.meta()["kind"] == "gw" and q.meta()["protocol"] == "test"
        states = {j["id"]: (j["state"], j["error"]) for j in q.jobs(kind=None)}
        assert states["agm004442517"] == ("done", None)
        assert {s for s, _ in states.values()} == {"done", "failed"} and len(states) == 3
        assert all(e for s, e in states.values() if s == "failed")  # each failure keeps its reason
        [idx] = q.records_index()
        assert idx["protocol"] == "test" and idx["gap"] == rec["gap_g0w0"]
        assert [a["outcome"] for a in q.attempts() if a["job_id"] == "agm004442517"] == ["done"]
    status = run_cli("campaign", "status", "--db", db, cwd=tmp_path)
    assert status.returncode == 0 and "gw jobs, protocol test" in status.stdout
    assert not Path(work).exists() or not any(Path(work).iterdir())
