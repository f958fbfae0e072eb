"""The record store: validation on read and write, append-only writes, idempotent import, the index."""

from __future__ import annotations

import hashlib
import logging

import pytest

from optiladder.data.store import Store, record_index
from optiladder.engine.records import RecordError

from .conftest import IDS, RECORDS, load, write_json_gz


def test_reads_real_records(record_dir):
    store = Store(record_dir)
    assert store.ids() == IDS
    recs = list(store.iter_records())
    assert [r["mat_id"] for r in recs] == IDS and store.errors == []
    table = store.table()
    assert table.ipa.shape == (4, 2001) and table.rpa.shape == (4, 2001)
    assert sorted(set(table.splits)) == ["none", "test", "train", "validation"]


def test_corrupt_and_nan_records_are_reported_by_name_and_skipped(damaged_dir, caplog):
    before = {p.name: p.read_bytes() for p in damaged_dir.iterdir()}
    store = Store(damaged_dir)
    with caplog.at_level(logging.WARNING):
        good = [r["mat_id"] for r in store.iter_records()]
    assert good == IDS[:2]
    assert len(store.errors) == 3
    by_file = {e.split(": ", 1)[0].rsplit("/", 1)[-1]: e for e in store.errors}
    assert "truncated" in by_file[f"{IDS[2]}.json.gz"]
    assert "rpa_im_x has non-finite values" in by_file[f"{IDS[3]}.json.gz"]
    assert "invalid JSON" in by_file["agm000000000.json.gz"]
    assert all("\n" not in e for e in store.errors)
    assert sum(f"{IDS[3]}.json.gz" in r.message for r in caplog.records) == 1
    # never overwritten: neither reading nor adding a valid record for the same id touches the damaged files
    with pytest.raises(RecordError, match="exists already"):
        store.add(load(IDS[3]))
    assert {p.name: p.read_bytes() for p in damaged_dir.iterdir()} == before


def test_add_refuses_invalid_and_test_records(tmp_path):
    store = Store(tmp_path / "s")
    rec = load(IDS[0])
    bad = load(IDS[0])
    bad["spectra"]["ipa_im_y"][0] = float("inf")
    with pytest.raises(RecordError, match="non-finite"):
        store.add(bad)
    test_rec = dict(rec, protocol=dict(rec["protocol"], name="test"))
    with pytest.raises(RecordError, match="test"):
        store.add(test_rec)
    assert store.ids() == []
    path = store.add(rec)
    assert store.ids() == [IDS[0]] and store.get(IDS[0]) == rec
    assert not list(path.parent.glob(".*"))  # no temporary file left behind


def test_import_is_idempotent_and_keeps_bytes(tmp_path, record_dir):
    store = Store(tmp_path / "store")
    first = store.import_dir(record_dir)
    assert sorted(first.imported) == IDS and first.invalid == [] and first.conflicts == []
    for i in IDS:  # .json.gz files are copied byte for byte
        assert (store.root / f"{i}.json.gz").read_bytes() == (RECORDS / f"{i}.json.gz").read_bytes()
    stamps = {p.name: p.stat().st_mtime_ns for p in store.root.iterdir()}
    second = store.import_dir(record_dir)
    assert second.imported == [] and sorted(second.present) == IDS
    assert {p.name: p.stat().st_mtime_ns for p in store.root.iterdir()} == stamps


def test_import_skips_damaged_and_leaves_conflicts_alone(tmp_path, damaged_dir):
    store = Store(tmp_path / "store")
    other = load(IDS[0])
    other["gap_indirect"] = 99.0
    store.root.mkdir()
    write_json_gz(store.root / f"{IDS[0]}.json.gz", other)
    report = store.import_dir(damaged_dir)
    assert report.imported == [IDS[1]] and report.conflicts == [IDS[0]]
    assert len(report.invalid) == 3
    assert store.get(IDS[0])["gap_indirect"] == 99.0  # the stored record wins (append-only)
    assert "1 imported" in report.line() and "3 invalid" in report.line()


def test_import_accepts_plain_json_and_refuses_test_protocol(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    rec = load(IDS[1])
    (src / f"{IDS[1]}.json").write_text(__import__("json").dumps(rec))
    t = dict(load(IDS[2]), protocol=dict(load(IDS[2])["protocol"], name="test"))
    write_json_gz(src / f"{IDS[2]}.json.gz", t)
    store = Store(tmp_path / "store")
    report = store.import_dir(src)
    assert report.imported == [IDS[1]] and len(report.invalid) == 1 and "'test'" in report.invalid[0]
    assert store.get(IDS[1]) == rec
    assert Store(tmp_path / "t").import_dir(src, allow_test=True).imported == [IDS[1], IDS[2]]


def test_import_of_a_missing_folder_is_one_line(tmp_path):
    with pytest.raises(RecordError, match="not a folder"):
        Store(tmp_path / "s").import_dir(tmp_path / "nope")


def test_index_rows(record_dir):
    rows = {r["mat_id"]: r for r in Store(record_dir).index()}
    assert set(rows) == set(IDS)
    r = rows["agm003157614"]  # c-BN, a test-split material
    path = record_dir / "agm003157614.json.gz"
    assert (
        r["split"] == "test" and r["nsites"] == 2 and r["formula"] == "BN" and r["protocol"] == "gpaw-pbe-v1"
    )
    assert r["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert r["gap"] == pytest.approx(load("agm003157614")["gap_indirect"])
    assert r["seconds"] == pytest.approx(sum(load("agm003157614")["seconds"].values()), abs=1e-3)
    assert record_index(load("agm003157614"), path) == r


def test_verify_counts(damaged_dir):
    n, errors = Store(damaged_dir).verify()
    assert n == 2 and len(errors) == 3


def test_records_with_unknown_ids_are_reported_and_skipped(tmp_path, record_dir, caplog):
    """The project's dataset only holds bundled Alexandria materials: a stray id is reported, not read."""
    from optiladder.data.store import alexandria_ids

    rec = load(IDS[0])
    rec["mat_id"] = "agm999999999"
    write_json_gz(record_dir / "agm999999999.json.gz", rec)
    store = Store(record_dir, known_ids=alexandria_ids())
    with caplog.at_level(logging.WARNING):
        ids = [r["mat_id"] for r in store.iter_records()]
    assert sorted(ids) == sorted(IDS)
    assert any("agm999999999.json.gz: unknown material id agm999999999" in e for e in store.errors)
    # another folder (a user's own campaign) takes any id
    assert "agm999999999" in [r["mat_id"] for r in Store(record_dir).iter_records()]
    # the project's dataset folder checks by default
    assert Store().known_ids is not None and IDS[0] in Store().known_ids
