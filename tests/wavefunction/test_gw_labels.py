"""The committed G0W0 labels (dataset/gw/gpaw-g0w0-v1) and the ``optiladder wavefunction show`` command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from optiladder.cli import app
from optiladder.engine.gw import get_gw_protocol, read_gw_record

GW_ROOT = Path(__file__).resolve().parents[2] / "dataset" / "gw"
LABELS = GW_ROOT / "gpaw-g0w0-v1"


def _records():
    return [read_gw_record(p) for p in sorted(GW_ROOT.glob("*/*.json.gz"))]


def test_committed_labels_are_complete_and_physical():
    recs = _records()
    assert len(recs) >= 2
    for r in recs:
        assert r["protocol"] == get_gw_protocol(r["protocol"]["name"]).as_record(), r["mat_id"]
        assert r["provenance"]["versions"]["gpaw"] and r["provenance"]["structure_hash"]
        eps, qp = np.asarray(r["eps_dft"]), np.asarray(r["eps_qp"])
        assert eps.shape == qp.shape == (len(r["ibz_kpts"]), len(r["bands"]))
        assert len(r["bz_kpts"]) == 64 and max(r["bz2ibz"]) == len(r["ibz_kpts"]) - 1
        # G0W0 opens every gap of these sp semiconductors and insulators, by 10-80 %
        assert r["gap_pbe"] * 1.1 < r["gap_g0w0"] < r["gap_pbe"] * 1.8 + 0.5, r["mat_id"]
    v2 = [r for r in recs if r["protocol"]["name"] == "gpaw-g0w0-v2"]
    assert all(r["nbands_response"] >= 40 for r in v2)
    si = next(r for r in recs if r["formula"] == "Si")
    assert si["gap_g0w0"] == pytest.approx(1.12, abs=0.3)  # Shishkin & Kresse G0W0@PBE


def test_cli_show_prints_the_gaps():
    path = sorted(LABELS.glob("*.json.gz"))[0]
    res = CliRunner().invoke(app, ["wavefunction", "show", str(path)])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["gap_g0w0"] == read_gw_record(path)["gap_g0w0"]
    bad = CliRunner().invoke(app, ["wavefunction", "show", str(LABELS / "missing.json.gz")])
    assert bad.exit_code != 0


def test_export_from_gw_lists_the_labelled_materials_without_an_export(tmp_path):
    """The regenerate step after a gw campaign: every labelled material whose export is missing, by id (bundled
    Alexandria materials) or by the record's own structure (others, e.g. diamond)."""
    from pymatgen.core import Structure

    from optiladder.cli.wavefunction import _missing_exports
    from optiladder.engine.wavefunctions import wavefunction_path

    gw = tmp_path / "gw"
    gw.mkdir()
    for name in ("agm002176626.json.gz", "C-diamond.json.gz"):
        (gw / name).write_bytes((GW_ROOT / "gpaw-g0w0-v2" / name).read_bytes())
    (gw / "broken.json.gz").write_bytes(b"not gzip")
    out = tmp_path / "wf"
    todo = dict((mid, src) for src, mid in _missing_exports([gw], "wf-pbe-v1", out))
    assert set(todo) == {"agm002176626", "C-diamond"}
    assert todo["agm002176626"] == "agm002176626" and isinstance(todo["C-diamond"], Structure)
    done = wavefunction_path("agm002176626", "wf-pbe-v1", out)
    done.parent.mkdir(parents=True)
    done.write_bytes(b"")
    assert [mid for _, mid in _missing_exports([gw], "wf-pbe-v1", out)] == ["C-diamond"]
