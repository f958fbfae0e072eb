"""Every malformed record file is named and skipped: the store, its index and table, stats and a campaign go on."""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path

import pytest

from optiladder.data.stats import dataset_stats
from optiladder.data.store import Store
from optiladder.engine.records import RecordError, read_record

from .conftest import IDS, RECORDS, load


def _gz(obj) -> bytes:
    return gzip.compress(json.dumps(obj).encode() if not isinstance(obj, bytes) else obj)


def _corrupt_deflate() -> bytes:
    good = (RECORDS / f"{IDS[0]}.json.gz").read_bytes()
    return good[:10] + bytes(b ^ 0x5A for b in good[10:60]) + good[60:]  # header intact, stream broken


def _with(**changes) -> bytes:
    rec = load(IDS[0])
    for dotted, value in changes.items():
        target, *path = dotted.split("__")
        obj = rec
        for k in [target, *path][:-1]:
            obj = obj[k] if not isinstance(obj, list) else obj[int(k)]
        last = [target, *path][-1]
        obj[last if not isinstance(obj, list) else int(last)] = value
    return _gz(rec)


#: file stem → (bytes, a phrase of the one-line problem)
MALFORMED = {
    "agm000000001": (_corrupt_deflate(), "unreadable or truncated"),
    "agm000000002": (_gz(b"[" * 200_000 + b"]" * 200_000), "nested too deeply"),
    "agm000000003": (_with(protocol="gpaw-pbe-v1"), "protocol is not an object"),
    "agm000000004": (_with(nsites="2"), "nsites is not a positive integer"),
    "agm000000005": (_with(structure__sites__0__species__0__element="Xx"), "unknown element 'Xx'"),
    "agm000000006": (_with(structure__sites=["Si"]), "site 0 has no single species"),
    "agm000000007": (_with(spectra=[1, 2, 3]), "spectra is not an object"),
    "agm000000008": (_gz([1, 2, 3]), "not a JSON object"),
    "agm000000009": (_gz(b'{"mat_id": ' + b"9" * 5000 + b"}"), "invalid JSON"),
    "agm000000010": (gzip.compress(b" " * (17 * 1024 * 1024)), "uncompressed"),
    "agm000000011": (gzip.compress(b'{"mat_id": "\xc3\x28"}'), "not UTF-8"),
    "agm000000012": (_with(seconds=[1.0]), "seconds is not an object"),
    "agm000000013": (_with(structure="Si2"), "structure is not an object"),
    "agm000000014": (_with(structure__lattice__matrix=[[1, 0, 0], [0, 1, 0]]), "lattice is not a finite 3×3"),
    "agm000000015": (_with(formula=["Si"]), "formula is not a string"),
    "agm000000016": (zlib.compress(b"{}"), "unreadable or truncated"),
}


@pytest.fixture
def hostile_store(tmp_path) -> Path:
    d = tmp_path / "records"
    d.mkdir()
    for mat_id in IDS[:2]:
        (d / f"{mat_id}.json.gz").write_bytes((RECORDS / f"{mat_id}.json.gz").read_bytes())
    for stem, (data, _) in MALFORMED.items():
        (d / f"{stem}.json.gz").write_bytes(data)
    return d


@pytest.mark.parametrize("stem", sorted(MALFORMED))
def test_each_malformed_file_is_a_named_one_line_record_error(hostile_store, stem):
    path = hostile_store / f"{stem}.json.gz"
    with pytest.raises(RecordError) as err:
        read_record(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: ") and MALFORMED[stem][1] in msg and "\n" not in msg


def test_store_index_table_stats_survive_and_name_every_bad_file(hostile_store):
    store = Store(hostile_store)
    n, errors = store.verify()
    assert n == 2 and len(errors) == len(MALFORMED)
    named = {e.split(": ", 1)[0].rsplit("/", 1)[-1].removesuffix(".json.gz") for e in errors}
    assert named == set(MALFORMED)
    assert [r["mat_id"] for r in store.index()] == IDS[:2]
    table = store.table()
    assert table.ids == IDS[:2] and table.rpa.shape == (2, 2001)
    st = dataset_stats(Store(hostile_store))
    assert st.n == 2 and len(st.invalid) == len(MALFORMED)


def test_campaign_starts_on_a_store_with_bad_files(hostile_store, tmp_path):
    from optiladder.campaign.runner import CampaignOptions, prepare

    opts = CampaignOptions(db=str(tmp_path / "c.db"), store=hostile_store, protocol="test", inputs=[])
    _, _, _, _, report = prepare(opts)
    assert report["indexed"] == 2 and len(report["store_errors"]) == len(MALFORMED)
