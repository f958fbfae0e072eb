"""Domain of applicability (:mod:`optiladder.domain`): crystals outside what the shipped models have seen get
warnings and an uncertain verdict; crystals inside get none."""

from __future__ import annotations

import pytest

METALS_AND_ODD = {
    "Al": ("POSCAR_Al", "Al\n1.0\n0 2.02 2.02\n2.02 0 2.02\n2.02 2.02 0\nAl\n1\ndirect\n0 0 0\n"),
    "Na": ("POSCAR_Na", "Na\n1.0\n-2.11 2.11 2.11\n2.11 -2.11 2.11\n2.11 2.11 -2.11\nNa\n1\ndirect\n0 0 0\n"),
    "Mg": (
        "POSCAR_Mg",
        "Mg\n1.0\n3.21 0 0\n-1.605 2.78 0\n0 0 5.21\nMg\n2\ndirect\n0.3333 0.6667 0.25\n0.6667 0.3333 0.75\n",
    ),
    "H2": ("POSCAR_H2", "H\n1.0\n3 0 0\n0 3 0\n0 0 3\nH\n2\ncartesian\n0 0 0\n0 0 0.74\n"),
    "SrTiO3-like 5 atoms": (
        "POSCAR_perovskite",
        "SrSnO3\n1.0\n4.1 0 0\n0 4.1 0\n0 0 4.1\nSr Sn O\n1 1 3\ndirect\n0 0 0\n0.5 0.5 0.5\n"
        "0.5 0.5 0\n0.5 0 0.5\n0 0.5 0.5\n",
    ),
    "Si in a 7 Å box": ("POSCAR_Si7", "Si\n1.0\n7 0 0\n0 7 0\n0 0 7\nSi\n2\ndirect\n0 0 0\n0.3 0.3 0.3\n"),
}


@pytest.mark.parametrize("key", sorted(METALS_AND_ODD))
def test_out_of_domain_crystals_get_no_silent_confident_verdict(predictor, key):
    filename, text = METALS_AND_ODD[key]
    res = predictor.predict_text(text, filename)
    assert res.ok, res.error
    assert res.warnings and "UNCERTAIN: outside the training domain" in res.verdict()
    d = res.to_dict(optics=False, stride=100)
    assert d["in_domain"] is False and d["warnings"] == res.warnings


def test_in_domain_example_has_no_warning(predictor, examples):
    res = predictor.predict_one(examples / "KInSe.POSCAR")
    assert res.ok and res.warnings == [] and "UNCERTAIN" not in res.verdict()
    assert res.to_dict(optics=False)["in_domain"] is True


def test_cell_size_warning_starts_above_the_calibrated_cells(predictor):
    """Models trained on ≤ 4-atom cells (few of 4 atoms) whose uncertainty was calibrated on 2–4-atom validation
    cells: a 4-atom cell gets no static size warning (the calibrated expected SC speaks for it), a 5-atom cell does."""
    from pymatgen.core import Structure

    from optiladder.domain import static_warnings
    from optiladder.structures import alexandria

    d = predictor.domain
    assert d.max_nsites == 4 and d.calibrated_max_nsites == 4 and d.warn_nsites == 4
    four = next(e for e in alexandria("test") if e["nsites"] == 4)
    five = next(e for e in alexandria("train") if e["nsites"] == 5)
    assert not any("atoms per cell" in w for w in static_warnings(Structure.from_dict(four["structure"]), d))
    (w,) = [w for w in static_warnings(Structure.from_dict(five["structure"]), d) if "atoms per cell" in w]
    assert w.startswith("5 atoms per cell") and "(at most 4)" in w


def test_domain_comes_from_the_cards_training_ids(predictor):
    d = predictor.domain
    card = predictor.models["rpa"].card
    assert d is not None and d.n_train == len(set(card["training"]["train_ids"]))
    assert d.max_nsites == card["data"]["max_nsites"]
    assert {"Si", "O", "H"} <= d.elements
