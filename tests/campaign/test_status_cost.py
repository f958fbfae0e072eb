"""The campaign status's cost per material by protocol, numerics and cell size, from the records' own timings."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from optiladder.campaign.status import record_cpu_cost

DATASET = Path(__file__).resolve().parents[2] / "dataset" / "records"


def _write(path, *, numerics=None, cpu=None, wall=None):
    rec = {"seconds": wall or {}, "provenance": {} if cpu is None else {"cpu_seconds": cpu}}
    if numerics:
        rec["numerics"] = {"name": numerics}
    path.write_bytes(gzip.compress(json.dumps(rec).encode()))
    return str(path)


def test_record_cpu_cost_splits_protocol_numerics_and_size(tmp_path):
    rows = [
        {"nsites": 3, "protocol": "gpaw-pbe-v1", "path": _write(tmp_path / "a.json.gz", numerics="gpaw-direct-v2",
                                                                cpu={"gs": 2.0, "nscf": 1.0, "df": 3.0}, wall={"gs": 9.0})},
        {"nsites": 3, "protocol": "gpaw-pbe-v1", "path": _write(tmp_path / "b.json.gz", numerics="gpaw-direct-v2",
                                                                cpu={"gs": 4.0, "nscf": 2.0, "df": 4.0}, wall={"gs": 9.0})},
        # an older record without CPU seconds nor numerics block: gpaw-dense-v1, wall seconds
        {"nsites": 3, "protocol": "gpaw-pbe-v1", "path": _write(tmp_path / "c.json.gz", wall={"gs": 5.0, "df": 15.0})},
        {"nsites": 4, "protocol": "gpaw-pbe-ipa-lite", "path": _write(tmp_path / "d.json.gz", numerics="gpaw-direct-v2",
                                                                      cpu={"gs": 1.0, "nscf": 1.0, "df": 1.0})},
        {"nsites": 4, "protocol": "gpaw-pbe-v1", "path": str(tmp_path / "missing.json.gz")},  # unreadable: skipped
    ]  # fmt: skip
    cost = record_cpu_cost(rows)
    assert cost[("gpaw-pbe-v1", "gpaw-direct-v2", 3)] == (8.0, 2, "CPU")
    assert cost[("gpaw-pbe-v1", "gpaw-dense-v1", 3)] == (20.0, 1, "wall")
    assert cost[("gpaw-pbe-ipa-lite", "gpaw-direct-v2", 4)] == (3.0, 1, "CPU")
    assert ("gpaw-pbe-v1", "?", 4) not in cost


# ---- the per-structure model in the status -------------------------------------------------------------------
def _v2_records(n):
    """``n`` real gpaw-direct-v2 records of the repository's dataset (skips where it is not here)."""
    from optiladder.data.costs import read_timing

    paths = [
        p
        for p in sorted(DATASET.glob("*.json.gz"))
        if (read_timing(p) or {}).get("numerics") == "gpaw-direct-v2"
    ]
    if len(paths) < n:
        pytest.skip(f"{DATASET}: fewer than {n} gpaw-direct-v2 records")
    return paths[:n]


def _status_of(tmp_path, monkeypatch, paths, *args):
    from typer.testing import CliRunner

    from optiladder.cli import app

    store = tmp_path / "dataset" / "records"
    store.mkdir(parents=True)
    for p in paths:
        shutil.copy(p, store / p.name)
    monkeypatch.setenv("OPTILADDER_DATASET", str(store))
    r = CliRunner().invoke(app, ["campaign", "status", "--db", str(tmp_path / "none.db"), *args])
    assert r.exit_code == 0, r.output
    return r.output


def test_status_shows_the_per_structure_model_and_prices_the_queue_with_it(tmp_path, monkeypatch):
    out = _status_of(tmp_path, monkeypatch, _v2_records(20))
    assert "per-structure cost model from the records' own timings" in out
    assert "gpaw-pbe-v1 gpaw-direct-v2: 20 records (CPU s): ln s = " in out and "leave-one-out" in out
    assert (
        "by the per-structure model of gpaw-pbe-v1/gpaw-direct-v2" in out and "per-size medians alone" in out
    )
    assert "predicted" in out.splitlines()[3]  # the size table's column beside the measured medians


def test_status_eta_is_the_sum_of_the_per_structure_predictions(tmp_path, monkeypatch):
    from optiladder.campaign.inputs import alexandria_jobs
    from optiladder.campaign.kinds import get_kind, kind_jobs
    from optiladder.campaign.queue import open_queue
    from optiladder.campaign.runner import check_meta, index_store
    from optiladder.campaign.status import campaign_status
    from optiladder.data.costs import bundled_features

    store = tmp_path / "records"
    store.mkdir()
    for p in _v2_records(16):
        shutil.copy(p, store / p.name)
    with open_queue(str(tmp_path / "q.db")) as q:
        check_meta(q, "gpaw-pbe-v1", store, "material")
        q.add_jobs(kind_jobs(get_kind("material"), alexandria_jobs())[0])
        index_store(q, store, "material")
        st = campaign_status(q)
        queued = q.jobs(state="queued")
    g = st.model.groups[("gpaw-pbe-v1", "gpaw-direct-v2")]
    feats = bundled_features()
    expect = sum(g.seconds(feats[j["id"]], j["nsites"]) for j in queued)
    assert st.priced == {"model": len(queued), "median": 0}
    assert abs(st.remaining_core_seconds - expect) < 1e-6 * expect
    assert st.remaining_median_core_seconds != st.remaining_core_seconds
    # other numerics: no fitted model of theirs, the per-size medians price the queue
    with open_queue(str(tmp_path / "q.db"), create=False) as q:
        other = campaign_status(q, numerics="gpaw-dense-v1")
    assert other.priced["model"] == 0 and other.remaining_core_seconds == other.remaining_median_core_seconds
    assert "no gpaw-pbe-v1/gpaw-dense-v1 records" in other.model_note


def test_status_with_few_records_falls_back_to_the_size_medians(tmp_path, monkeypatch):
    out = _status_of(tmp_path, monkeypatch, _v2_records(5))
    assert "gpaw-pbe-v1 gpaw-direct-v2: 5 records (CPU s): per-size medians" in out
    assert "remaining: ~" in out and "(per-size medians: gpaw-pbe-v1/gpaw-direct-v2:" in out
