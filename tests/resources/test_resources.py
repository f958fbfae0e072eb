"""The bundled resources: the published split lists and the Alexandria structure list (read without network)."""

from __future__ import annotations

from collections import Counter

from optiladder.data.splits import split_ids, split_of
from optiladder.structures import alexandria


def test_split_lists_are_the_published_ones_and_disjoint():
    s = split_ids()
    assert {k: len(v) for k, v in s.items()} == {"train": 7743, "validation": 945, "test": 1060}
    assert not (s["train"] & s["validation"] or s["train"] & s["test"] or s["validation"] & s["test"])
    assert all(i.startswith("agm") and len(i) == 12 for ids in s.values() for i in ids)


def test_structure_list_agrees_with_the_splits():
    entries = alexandria()
    assert len(entries) == 3538 and len({e["mat_id"] for e in entries}) == 3538
    for e in entries[::97]:
        assert e["split"] == split_of(e["mat_id"]), e["mat_id"]
        assert e["nsites"] == len(e["structure"]["sites"]) and e["pbe_band_gap_ind"] >= 0
    by_split = Counter(e["split"] for e in entries)
    assert by_split["none"] == 115 and by_split["test"] > 0 and by_split["validation"] > 0
