"""``optiladder dataset import|stats|export`` through Typer's CliRunner."""

from __future__ import annotations

from typer.testing import CliRunner

from optiladder.campaign.queue import NewJob, open_queue
from optiladder.cli import app

from .conftest import IDS

runner = CliRunner()


def test_import_twice_is_idempotent(tmp_path, record_dir):
    store = tmp_path / "store"
    r1 = runner.invoke(app, ["dataset", "import", str(record_dir), "--store", str(store)])
    assert r1.exit_code == 0, r1.output
    assert "4 imported, 0 already present" in r1.output
    r2 = runner.invoke(app, ["dataset", "import", str(record_dir), "--store", str(store)])
    assert r2.exit_code == 0 and "0 imported, 4 already present" in r2.output
    assert sorted(p.name for p in store.iterdir()) == [f"{i}.json.gz" for i in IDS]


def test_import_indexes_into_a_campaign_database(tmp_path, record_dir):
    db = tmp_path / "c.db"
    with open_queue(db) as q:
        q.add_jobs([NewJob("agm004442517", "agm004442517", nsites=1)])
    r = runner.invoke(
        app, ["dataset", "import", str(record_dir), "--store", str(tmp_path / "s"), "--db", str(db)]
    )
    assert r.exit_code == 0, r.output
    assert "4 records indexed" in r.output
    with open_queue(db, create=False) as q:
        assert q.summary()["done"] == 1 and len(q.records_index()) == 4


def test_import_reports_damaged_files(tmp_path, damaged_dir):
    r = runner.invoke(app, ["dataset", "import", str(damaged_dir), "--store", str(tmp_path / "s")])
    assert r.exit_code == 0
    assert "2 imported" in r.output and "3 invalid" in r.output
    assert r.output.count("skipped: ") == 3


def test_stats_with_failures_from_the_database(tmp_path, damaged_dir):
    db = tmp_path / "c.db"
    with open_queue(db) as q:
        q.add_jobs([NewJob("m1", "m1", nsites=2)])
        lease = q.claim()
        q.fail(lease.token, "m1: PBE gap -0.2 eV < 0.5 eV (metallic or nearly so)", permanent=True)
    r = runner.invoke(app, ["dataset", "stats", "--store", str(damaged_dir), "--db", str(db)])
    assert r.exit_code == 0, r.output
    assert "2 valid records" in r.output and "IPA 2, RPA 2" in r.output
    assert "invalid records (3, skipped)" in r.output
    assert "campaign failures" in r.output and "metallic" in r.output
    lines = {ln.split()[0]: ln.split()[1:] for ln in r.output.splitlines() if ln.strip()[:1].isdigit()}
    assert lines["2"][-1] == "2"  # SrO and c-BN: 2 atoms each


def test_export_cli(tmp_path, record_dir):
    out = tmp_path / "train.npz"
    r = runner.invoke(
        app,
        [
            "dataset",
            "export",
            "--store",
            str(record_dir),
            "--level",
            "ipa",
            "--split",
            "train",
            "--out",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    assert "1 materials (train 1)" in r.output and out.exists()
    r = runner.invoke(
        app,
        ["dataset", "export", "--store", str(record_dir), "--split", "test", "--training", "--out", str(out)],
    )
    assert r.exit_code == 1 and "held out" in r.output
