"""Export of trace Im ε on the model grid (.npz, .parquet) and the training split guard."""

from __future__ import annotations

import numpy as np
import pytest

from optiladder.data.export import ExportError, export, read_export, training_arrays
from optiladder.data.splits import LeakageError
from optiladder.data.store import Store
from optiladder.engine.records import record_spectra
from optiladder.spectra import MODEL_GRID, interpolate

from .conftest import load


@pytest.mark.parametrize("suffix", [".npz", ".parquet"])
@pytest.mark.parametrize("level", ["ipa", "rpa"])
def test_export_round_trip(tmp_path, record_dir, suffix, level):
    out = tmp_path / f"x{suffix}"
    result = export(Store(record_dir), out, level=level, splits=("train", "test", "none"))
    assert result.n == 3 and result.by_split == {"train": 1, "test": 1, "none": 1}
    data = read_export(out)
    assert list(data["ids"]) == ["agm001192057", "agm003157614", "agm004442517"]
    assert list(data["splits"]) == ["train", "test", "none"]
    assert list(data["nsites"]) == [2, 2, 1]
    assert data["eps_im"].shape == (3, 2001) and data["omega"].shape == (2001,)
    np.testing.assert_allclose(data["omega"], MODEL_GRID, atol=1e-4)
    # the stored values are the trace (xx+yy+zz)/3 interpolated from the record's own grid
    sp = record_spectra(load("agm003157614"))[level]
    expected = interpolate(sp.omega, np.mean([sp.im[c] for c in "xyz"], axis=0))
    np.testing.assert_allclose(data["eps_im"][1], expected, rtol=1e-5, atol=1e-5)
    assert data["eps_im"][1].max() > 1.0  # a real absorption spectrum, not zeros


def test_training_export_refuses_held_out_splits(tmp_path, record_dir):
    store = Store(record_dir)
    for split in ("validation", "test"):
        with pytest.raises(LeakageError):
            export(store, tmp_path / "x.npz", splits=("train", split), training=True)
    assert not (tmp_path / "x.npz").exists()
    ok = export(store, tmp_path / "x.npz", splits=("train", "none"), training=True)
    assert ok.n == 2


def test_training_arrays_check_names_and_ids(tmp_path, record_dir):
    ids, eps = training_arrays(("train",), level="ipa", store=Store(record_dir))
    assert ids == ["agm001192057"] and eps.shape == (1, 2001)
    with pytest.raises(LeakageError):
        training_arrays(("validation",), store=Store(record_dir))
    # a validation material labelled "train" in its record is still caught by its id
    rec = load("agm003157423")
    rec["split"] = "train"
    bad = Store(tmp_path / "mislabelled")
    bad.add(rec)
    with pytest.raises(LeakageError, match="agm003157423"):
        training_arrays(("train",), store=bad)


def test_export_errors_are_one_line(tmp_path, record_dir):
    store = Store(record_dir)
    with pytest.raises(ExportError, match="unknown format"):
        export(store, tmp_path / "x.csv")
    with pytest.raises(ExportError, match="level"):
        export(store, tmp_path / "x.npz", level="gw")  # type: ignore[arg-type]
    with pytest.raises(ExportError, match="unknown split"):
        export(store, tmp_path / "x.npz", splits=("training",))


def test_export_skips_damaged_records(tmp_path, damaged_dir):
    result = export(Store(damaged_dir), tmp_path / "x.npz", splits=("train", "test", "none", "validation"))
    assert result.n == 2 and len(result.skipped) == 3
    assert "invalid record(s) skipped" in result.line()
