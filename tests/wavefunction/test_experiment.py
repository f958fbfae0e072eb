"""The committed experimental n, k table of reports/wavefunction/experiment.py: ε = (n + ik)², sources, onsets."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def exp_mod():
    spec = importlib.util.spec_from_file_location(
        "experiment", REPO / "reports" / "wavefunction" / "experiment.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_table_has_every_source_with_its_reference(exp_mod):
    text = exp_mod.CSV.read_text()
    data = exp_mod.read_experiment()
    assert set(data) == set(exp_mod.SOURCES)
    for formula, (mat_id, page, _) in exp_mod.SOURCES.items():
        assert f"# {formula} (our {mat_id}): refractiveindex.info {page}" in text  # attribution in the header
        d = data[formula]
        assert d["page"] == page and len(d["energy"]) >= 40 and np.all(np.diff(d["energy"]) > 0)
        assert np.all(d["eps2"] >= 0) and (REPO / "dataset" / "records" / f"{mat_id}.json.gz").exists()
    si = data["Si"]  # Aspnes & Studna: n = 3.673, k = 0.005 at 1.5 eV -> eps = n^2 - k^2 + 2ink
    assert si["eps1"][0] == pytest.approx(3.673**2 - 0.005**2) and si["eps2"][0] == pytest.approx(
        2 * 3.673 * 0.005
    )
    # Si's E2 peak of eps2 sits near 4.2-4.3 eV (Aspnes & Studna 1983)
    assert 4.0 < si["energy"][np.argmax(si["eps2"])] < 4.5


def test_onset_interpolates_between_grid_points(exp_mod):
    w = np.array([0.0, 1.0, 2.0, 3.0])
    assert exp_mod.onset(w, np.array([0.0, 0.0, 2.0, 4.0]), 1.0) == pytest.approx(1.5)
    assert exp_mod.onset(w, np.zeros(4), 1.0) is None
