"""The ``ipa-lite`` job kind: cheap IPA-only spectra of training structures, with the queue's usual discipline."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from optiladder.campaign.kinds import get_kind, kind_jobs
from optiladder.campaign.queue import NewJob, open_queue
from optiladder.campaign.runner import CampaignError, check_meta, resolve_protocol
from optiladder.campaign.task import TaskConfig, run_next
from optiladder.data.store import cheap_ipa_records
from optiladder.engine.protocols import IPA_LITE_PROTOCOL
from optiladder.engine.records import read_record
from optiladder.structures import alexandria

from .conftest import STRUCTURES, run_cli

#: a 2-atom validation material and a 2-atom test material (P, SiC): never computed as cheap training data
VALIDATION, TEST = "agm002125835", "agm003157621"


def test_kind_rules():
    assert resolve_protocol("ipa-lite", None) == IPA_LITE_PROTOCOL
    assert resolve_protocol("material", None) == "gpaw-pbe-v1"
    with pytest.raises(CampaignError, match="use protocol 'gpaw-pbe-ipa-lite'"):
        resolve_protocol("ipa-lite", "gpaw-pbe-v1")
    with pytest.raises(CampaignError, match="another kind"):
        resolve_protocol("material", IPA_LITE_PROTOCOL)
    with pytest.raises(CampaignError, match="unknown job kind"):
        resolve_protocol("no-such-kind", None)
    jobs = [
        NewJob(i, i, nsites=2, split=s)
        for i, s in (("agm003157736", "train"), (VALIDATION, None), (TEST, "test"))
    ]
    keep, refused = kind_jobs("ipa-lite", jobs)
    assert [j.id for j in keep] == ["agm003157736"] and keep[0].kind == "ipa-lite"
    # the published lists decide even where the job carries no split
    assert [r for _, r in refused] == [
        f"{VALIDATION}: a validation material; ipa-lite jobs make training data only",
        f"{TEST}: a test material; ipa-lite jobs make training data only",
    ]
    assert len(kind_jobs("material", jobs)[0]) == 3 and get_kind("material").staged


def test_held_out_job_fails_without_computing(tmp_path):
    """Defence in depth: a validation job that got into an ipa-lite queue anyway fails permanently at claim."""
    db, store = str(tmp_path / "q.db"), tmp_path / "store"
    with open_queue(db) as q:
        check_meta(q, IPA_LITE_PROTOCOL, store, "ipa-lite")
        q.add_jobs([NewJob(VALIDATION, VALIDATION, nsites=2, split=None, kind="ipa-lite")])
    cfg = TaskConfig(
        db, str(store), IPA_LITE_PROTOCOL, str(tmp_path / "work"), "r1", kind="ipa-lite", train_only=True
    )
    out = run_next(cfg)
    assert out["outcome"] == "failed" and "validation material" in out["error"]
    with open_queue(db, create=False) as q:
        [job] = q.jobs(kind="ipa-lite")
        assert job["state"] == "failed" and job["permanent"] == 1
        with pytest.raises(CampaignError, match="is a campaign of 'ipa-lite' jobs"):
            check_meta(q, IPA_LITE_PROTOCOL, store, "material")
    assert not store.exists()
    assert run_next(cfg)["outcome"] == "empty"


@pytest.mark.slow
@pytest.mark.gpaw
def test_ipa_lite_campaign_stores_each_record_once(tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    shutil.copy(STRUCTURES / "agm004442517.json", inputs)  # Ne, 1 atom, training data
    entries = {e["mat_id"]: e for e in alexandria()}
    for mat in (VALIDATION, TEST):
        (inputs / f"{mat}.json").write_text(json.dumps(entries[mat]["structure"]))
    db, store, work = str(tmp_path / "lite.db"), tmp_path / "ipa-lite", tmp_path / "work"
    args = ["campaign", "run", str(inputs), "--kind", "ipa-lite", "--db", db, "--store", str(store)]
    args += ["--workdir", str(work), "--workers", "1", "--no-progress"]

    first = run_cli(*args, cwd=tmp_path, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    assert (
        f"{VALIDATION}: a validation material" in first.stderr and f"{TEST}: a test material" in first.stderr
    )
    [path] = sorted(store.glob("*.json.gz"))
    rec = read_record(path)
    assert rec["mat_id"] == "agm004442517" and rec["protocol"]["name"] == IPA_LITE_PROTOCOL
    assert all(k.startswith("ipa_") for k in rec["spectra"]) and len(rec["spectra"]) == 6
    data = path.read_bytes()

    second = run_cli(*args, cwd=tmp_path, timeout=600)  # nothing left to do: no second calculation
    assert second.returncode == 0, second.stderr[-2000:]
    assert path.read_bytes() == data and len(list(store.glob("*.json.gz"))) == 1
    with open_queue(db, create=False) as q:
        assert q.meta()["kind"] == "ipa-lite" and q.meta()["protocol"] == IPA_LITE_PROTOCOL
        assert [(j["id"], j["state"]) for j in q.jobs(kind=None)] == [("agm004442517", "done")]
        assert [a["outcome"] for a in q.attempts()] == ["done"]
        assert [r["protocol"] for r in q.records_index()] == [IPA_LITE_PROTOCOL]

    status = run_cli("campaign", "status", "--db", db, cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert "ipa-lite jobs, protocol gpaw-pbe-ipa-lite" in status.stdout
    assert "gpaw-pbe-ipa-lite  1 atoms:" in status.stdout  # its own cost per material
    assert cheap_ipa_records(store).ids == ["agm004442517"]

    # the database is bound to its kind: a material campaign on it is refused
    other = run_cli(
        "campaign",
        "run",
        str(inputs),
        "--db",
        db,
        "--protocol",
        "test",
        "--store",
        str(tmp_path / "t"),
        "--no-progress",
        cwd=tmp_path,
    )
    assert other.returncode == 1 and "is a campaign of 'ipa-lite' jobs" in other.stderr
    assert not Path(work).exists() or not any(Path(work).iterdir())
