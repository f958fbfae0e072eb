"""Data test fixtures: real seed records (tests/data/fixtures/records) and damaged copies of them."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

RECORDS = Path(__file__).parent / "fixtures" / "records"
IDS = sorted(p.name.removesuffix(".json.gz") for p in RECORDS.glob("*.json.gz"))


@pytest.fixture
def record_dir(tmp_path) -> Path:
    """A fresh copy of the four real records."""
    d = tmp_path / "records"
    shutil.copytree(RECORDS, d)
    return d


def load(mat_id: str) -> dict:
    return json.loads(gzip.decompress((RECORDS / f"{mat_id}.json.gz").read_bytes()))


def write_json_gz(path: Path, rec: dict) -> Path:
    """Write a record without validation (Python's json writes NaN as the bare token ``NaN``)."""
    path.write_bytes(gzip.compress(json.dumps(rec).encode()))
    return path


@pytest.fixture
def damaged_dir(tmp_path) -> Path:
    """Two good records, one truncated gzip, one with a NaN in a spectrum, one that is not JSON."""
    d = tmp_path / "damaged"
    d.mkdir()
    for mat_id in IDS[:2]:
        shutil.copy(RECORDS / f"{mat_id}.json.gz", d)
    raw = (RECORDS / f"{IDS[2]}.json.gz").read_bytes()
    (d / f"{IDS[2]}.json.gz").write_bytes(raw[: len(raw) // 2])  # truncated
    rec = load(IDS[3])
    rec["spectra"]["rpa_im_x"][5] = float("nan")
    write_json_gz(d / f"{IDS[3]}.json.gz", rec)
    (d / "agm000000000.json.gz").write_bytes(gzip.compress(b"{not json"))
    return d
