"""The data layer's cheap IPA set (``cheap_ipa_records``) and where ipa-lite records may be stored."""

from __future__ import annotations

import copy
import shutil

import numpy as np
import pytest

from optiladder.data.splits import split_of
from optiladder.data.store import Store, cheap_ipa_records, cheap_ipa_root, protocol_root
from optiladder.engine import get_protocol, read_record
from optiladder.engine.protocols import IPA_LITE_PROTOCOL
from optiladder.engine.records import RecordError, write_record
from optiladder.targets import DEFAULT_GRID, record_traces


def _lite(rec: dict) -> dict:
    out = copy.deepcopy(rec)
    out["protocol"] = get_protocol(IPA_LITE_PROTOCOL).as_record()
    out["spectra"] = {k: v for k, v in out["spectra"].items() if k.startswith("ipa_")}
    return out


@pytest.fixture
def lite_folder(learn_fixtures, tmp_path):
    """IPA-only records (the IPA spectra of real v1 records under the ipa-lite protocol block) of 4 training
    materials, 1 validation and 1 test material, plus one v1 record that does not belong there."""
    root = tmp_path / "ipa-lite"
    by_split: dict[str, list] = {"train": [], "validation": [], "test": []}
    for p in sorted(learn_fixtures.glob("*.json.gz")):
        s = split_of(p.name.removesuffix(".json.gz"))
        if s in by_split:
            by_split[s].append(p)
    chosen = by_split["train"][:4] + by_split["validation"][:1] + by_split["test"][:1]
    for p in chosen:
        write_record(_lite(read_record(p)), root / p.name)
    stray = by_split["train"][4]
    shutil.copy(stray, root / stray.name)
    return root, chosen, stray


def test_cheap_ipa_records_are_the_training_ipa_spectra(lite_folder):
    root, chosen, stray = lite_folder
    arrays = cheap_ipa_records(root)
    train = [p.name.removesuffix(".json.gz") for p in chosen[:4]]
    assert arrays.ids == train  # no validation/test material, no v1 record
    assert set(arrays.splits) == {"train"} and set(arrays.protocols) == {IPA_LITE_PROTOCOL}
    assert list(arrays.spectra) == ["ipa"] and arrays.ipa.shape == (4, DEFAULT_GRID.n)
    for i, p in enumerate(chosen[:4]):
        np.testing.assert_allclose(arrays.ipa[i], record_traces(read_record(p), levels=("ipa",))["ipa"])
    xyz = cheap_ipa_records(root, components=("x", "y", "z"))
    assert xyz.ipa.shape == (4, 3 * DEFAULT_GRID.n)
    assert len(cheap_ipa_records(root.parent / "nothing-here")) == 0
    with pytest.raises(RecordError, match="holds no rpa spectra"):  # the table of every level: a clear error
        Store(root).table(protocol=IPA_LITE_PROTOCOL)


def test_ipa_lite_records_stay_out_of_the_dataset(lite_folder, tmp_path, monkeypatch):
    root, chosen, stray = lite_folder
    dataset = tmp_path / "dataset" / "records"
    dataset.mkdir(parents=True)
    monkeypatch.setenv("OPTILADDER_DATASET", str(dataset))
    assert protocol_root(IPA_LITE_PROTOCOL) == tmp_path / "dataset" / "ipa-lite"
    assert protocol_root("gpaw-pbe-v1") == dataset and cheap_ipa_root() == tmp_path / "dataset" / "ipa-lite"
    rec = read_record(root / chosen[0].name)
    with pytest.raises(RecordError, match="dataset/ipa-lite"):
        Store(dataset).add(rec)
    report = Store(dataset).import_dir(root)  # only the v1 record goes in; the six IPA-only ones are refused
    assert report.imported == [stray.name.removesuffix(".json.gz")]
    assert len(report.invalid) == 6 and all("dataset/ipa-lite" in e for e in report.invalid)
