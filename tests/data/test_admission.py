"""Which records enter the dataset (one rule), physics vs numerics, and exclusions as data."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from optiladder.data.admission import (
    BASELINE_NUMERICS,
    dataset_refusal,
    exclusion,
    exclusions,
    record_numerics,
    record_physics,
)
from optiladder.data.store import MixedPhysicsError, Store
from optiladder.engine.protocols import PROTOCOLS

from .conftest import IDS, RECORDS, load, write_json_gz


def test_the_one_rule():
    assert dataset_refusal("gpaw-pbe-v1") is None and dataset_refusal(PROTOCOLS["gpaw-pbe-v1"]) is None
    assert "not production" in dataset_refusal({"name": "test"})
    assert "unknown" in dataset_refusal("gpaw-lda-v7")


def test_runner_uses_the_rule(tmp_path):
    from optiladder.campaign.runner import CampaignError, resolve_store
    from optiladder.data.store import default_root

    assert resolve_store("gpaw-pbe-v1", None) == (default_root().resolve(), False)
    with pytest.raises(CampaignError, match="own --store"):
        resolve_store("test", None)
    with pytest.raises(CampaignError, match="may not go into the dataset"):
        resolve_store("test", default_root())
    assert resolve_store("test", tmp_path / "t") == ((tmp_path / "t").resolve(), True)


def test_physics_and_numerics_of_a_record():
    rec = load(IDS[0])
    assert (
        record_physics(rec) == "gpaw-pbe-v1" and record_numerics(rec) == BASELINE_NUMERICS == "gpaw-dense-v1"
    )
    assert record_numerics({**rec, "numerics": {"name": "gpaw-sparse-v1", "block": 64}}) == "gpaw-sparse-v1"


def _store_with(tmp_path, changes: dict[str, dict]) -> Store:
    d = tmp_path / "records"
    d.mkdir()
    for mat_id in IDS:
        if mat_id in changes:
            write_json_gz(d / f"{mat_id}.json.gz", {**load(mat_id), **changes[mat_id]})
        else:
            shutil.copy(RECORDS / f"{mat_id}.json.gz", d)
    return Store(d)


def test_numerics_pool_physics_kept_apart(tmp_path):
    rec = load(IDS[1])
    store = _store_with(
        tmp_path,
        {
            IDS[1]: {"numerics": {"name": "gpaw-sparse-v1"}},
            IDS[2]: {"protocol": {**rec["protocol"], "name": "gpaw-pbe-v2"}},
        },
    )
    with pytest.raises(MixedPhysicsError, match="different physics"):
        store.table()
    t = store.table(protocol="gpaw-pbe-v1")  # records differing only in numerics pool
    assert len(t) == len(IDS) - 1 and sorted(set(t.numerics)) == ["gpaw-dense-v1", "gpaw-sparse-v1"]
    assert set(t.protocols) == {"gpaw-pbe-v1"}
    other = store.table(protocol="gpaw-pbe-v2")
    assert other.ids == [IDS[2]]
    both = store.table(mix_physics=True)  # mixing only when asked, and each row says its physics
    assert len(both) == len(IDS) and list(both.protocols).count("gpaw-pbe-v2") == 1
    sub = t.subset(np.array(t.numerics) == "gpaw-sparse-v1")
    assert sub.ids == [IDS[1]] and sub.rpa.shape == (1, 2001)


def test_excluded_materials_stay_on_disk_and_out_of_tables(learn_fixtures, tmp_path):
    from optiladder.data.stats import dataset_stats, format_stats

    reason = "odd number of valence electrons (23): computed closed-shell, the spectrum of a half-filled band"
    assert exclusions() == {"agm001850269": reason, "agm001850264": reason}
    assert exclusion("agm001850264") == reason and exclusion(IDS[0]) is None
    store = Store(learn_fixtures)
    assert store.excluded() == {"agm001850264": reason}
    assert "agm001850264" in store.ids() and "agm001850264" in store  # kept on disk
    assert "agm001850264" not in store.table().ids
    assert "agm001850264" in store.table(include_excluded=True).ids
    st = dataset_stats(store)
    assert st.excluded == {"agm001850264": reason} and st.n == 76
    text = format_stats(st)
    assert "excluded from training and evaluation (1, kept on disk)" in text and reason in text
    assert "numerics: gpaw-dense-v1 76" in text
