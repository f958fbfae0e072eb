"""Per-structure costs: GPAW's own k-points and bands from the structure, the bundled feature table, and the
log-linear cost model on synthetic records with known coefficients."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from optiladder.data.costs import (
    Features,
    bundled_features,
    fit_costs,
    irreducible_kpoints,
    loo_size_median,
    read_timing,
    read_timings,
    structure_features,
)

REPO = Path(__file__).resolve().parents[2]
DATASET = REPO / "dataset" / "records"
NACL, GAP = "agm003157609", "agm003157626"  # rock salt NaCl, zinc blende GaP (gpaw-pbe-v1 records)


def _entry(mat_id):
    from optiladder.structures import alexandria

    return next(e for e in alexandria() if e["mat_id"] == mat_id)


def _record(mat_id):
    path = DATASET / f"{mat_id}.json.gz"
    if not path.exists():
        pytest.skip(f"{path} not here")
    return json.loads(gzip.decompress(path.read_bytes()))


# ---- features --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mat_id", [NACL, GAP])
def test_features_of_rock_salt_and_zinc_blende_are_gpaws(mat_id):
    rec = _record(mat_id)
    e = _entry(mat_id)
    f = structure_features(e["structure"], spacegroup=e["spg"])
    assert (f.n_ibz_k, f.nbands) == (rec["n_ibz_k"], rec["nbands"])
    vol = abs(np.linalg.det(np.array(rec["structure"]["lattice"]["matrix"])))
    assert f.volume == pytest.approx(vol, rel=1e-5)
    # the record's own (symmetrized) cell gives the same, and so does the table
    assert structure_features(rec["structure"], symmetrized=True)[:2] == (rec["n_ibz_k"], rec["nbands"])
    assert bundled_features()[mat_id][:2] == (rec["n_ibz_k"], rec["nbands"])


def test_features_of_an_ase_built_rock_salt():
    from ase.build import bulk

    rec = _record(NACL)
    a = (4 * abs(np.linalg.det(np.array(rec["structure"]["lattice"]["matrix"])))) ** (1 / 3)
    f = structure_features(bulk("NaCl", "rocksalt", a=a), spacegroup=225)
    assert (f.n_ibz_k, f.nbands) == (rec["n_ibz_k"], rec["nbands"]) == (29, 24)


def _orbits(n, ops):
    """Brute force: orbits of the Γ-centred mesh ``n`` under ``ops`` and their negatives (time reversal)."""
    pts = {tuple(int(v) for v in p) for p in np.indices(n).reshape(3, -1).T}
    seen, count = set(), 0
    for p in sorted(pts):
        if p in seen:
            continue
        count += 1
        for u in [*ops, *(-o for o in ops)]:
            q = np.asarray(u) @ (np.asarray(p) / n) * n
            seen.add(tuple(int(v) for v in np.mod(np.rint(q), n)))
    return count


def test_screw_axes_do_not_reduce_the_kpoints():
    """GPAW uses symmorphic operations only: atoms related by a 2₁ screw alone keep the identity (and time
    reversal), so the k-points are those of the identity, more than the screw's point group (C₂) would give;
    without the half translation the C₂ is used."""
    from optiladder.data.costs import kpoint_mesh, symmorphic_rotations

    cell = np.diag([3.0, 3.5, 4.0])
    screw = np.array([[0.1, 0.2, 0.13], [0.9, 0.8, 0.63]])  # (x, y, z) → (−x, −y, z + ½)
    c2 = np.array([[0.1, 0.2, 0.13], [0.9, 0.8, 0.13]])  # (x, y, z) → (−x, −y, z)
    identity, c2z = np.eye(3, dtype=int), np.diag([-1, -1, 1])
    assert len(symmorphic_rotations(cell, screw, [3, 3])) == 1
    assert {tuple(u.ravel()) for u in symmorphic_rotations(cell, c2, [3, 3])} == {
        tuple(identity.ravel()), tuple(c2z.ravel())}  # fmt: skip
    n = kpoint_mesh(cell, 2.0)
    nk_screw = irreducible_kpoints(cell, screw, [3, 3], 2.0)
    assert nk_screw == _orbits(n, [identity]) > _orbits(n, [identity, c2z])
    assert irreducible_kpoints(cell, c2, [3, 3], 2.0) == _orbits(n, [identity, c2z])


def _sample(n_with=10, n_without=10):
    """Structures of every cell size: some with a record in the dataset, some without."""
    from optiladder.structures import alexandria

    have = {p.name.removesuffix(".json.gz") for p in DATASET.glob("*.json.gz")}
    entries = alexandria()
    rng = np.random.default_rng(12)
    with_rec = [e for e in entries if e["mat_id"] in have]
    without = [e for e in entries if e["mat_id"] not in have]
    pick = [with_rec[i] for i in rng.choice(len(with_rec), min(n_with, len(with_rec)), replace=False)]
    by_size = sorted(without, key=lambda e: e["nsites"])
    pick += [by_size[i] for i in np.linspace(0, len(by_size) - 1, n_without).astype(int)]
    return pick


def test_table_matches_a_fresh_computation_and_the_records():
    table = bundled_features()
    assert len(table) == 3538
    checked_records = 0
    for e in _sample():
        fresh = structure_features(e["structure"], spacegroup=e["spg"])
        got = table[e["mat_id"]]
        assert (fresh.n_ibz_k, fresh.nbands) == (got.n_ibz_k, got.nbands), e["mat_id"]
        assert fresh.volume == pytest.approx(got.volume, rel=1e-5)
        path = DATASET / f"{e['mat_id']}.json.gz"
        if path.exists():
            t = read_timing(path)
            assert (t["n_ibz_k"], t["nbands"]) == (got.n_ibz_k, got.nbands), e["mat_id"]
            checked_records += 1
    if DATASET.is_dir():
        assert checked_records >= 5


def test_table_is_for_the_default_protocols_k_density_and_bands():
    assert bundled_features("gpaw-pbe-ipa-lite") == bundled_features(
        "gpaw-pbe-v1"
    )  # same nscf grid and bands
    assert bundled_features("test") == {}  # another k-density: no table


def test_valence_from_the_table_without_gpaw(monkeypatch):
    import optiladder.engine.calculate as calc

    e = _entry(GAP)
    with_gpaw = structure_features(e["structure"], spacegroup=e["spg"])

    def no_gpaw(*a, **k):
        raise ImportError("no gpaw")

    monkeypatch.setattr(calc, "valence_electrons", no_gpaw)
    assert structure_features(e["structure"], spacegroup=e["spg"]) == with_gpaw


@pytest.mark.gpaw
def test_kpoints_match_gpaws_own_reduction_on_structures_without_records():
    from ase.calculators.calculator import kpts2sizeandoffsets
    from gpaw.new.brillouin import MonkhorstPackKPoints
    from gpaw.new.symmetry import create_symmetries_object

    from optiladder import structures as st

    table = bundled_features()
    for e in _sample(n_with=0, n_without=8):
        atoms = st.to_atoms(st.symmetrize(st.from_any(e["structure"]), e["spg"]).structure)
        size, off = kpts2sizeandoffsets(density=4.0, gamma=True, atoms=atoms)
        ibz = MonkhorstPackKPoints(size, off).reduce(create_symmetries_object(atoms), strict=False)
        assert len(ibz) == table[e["mat_id"]].n_ibz_k, e["mat_id"]


# ---- timings ---------------------------------------------------------------------------------------------
def test_read_timing_is_light_and_tolerant(tmp_path):
    partial = {"mat_id": "x", "nsites": 2, "protocol": {"name": "gpaw-pbe-v1"}, "seconds": {"gs": 1.0, "df": 2.0},
               "provenance": {"cpu_seconds": {"gs": 0.5, "df": 1.5}}, "n_ibz_k": 10, "nbands": 12,
               "structure": {"lattice": {"matrix": [[2, 0, 0], [0, 3, 0], [0, 0, 4]]}}}  # fmt: skip
    p = tmp_path / "x.json.gz"
    p.write_bytes(gzip.compress(json.dumps(partial).encode()))
    t = read_timing(p)
    assert (t["cpu"], t["wall"], t["volume"], t["numerics"]) == (
        2.0,
        3.0,
        pytest.approx(24.0),
        "gpaw-dense-v1",
    )
    (tmp_path / "bad.json.gz").write_bytes(b"not gzip")
    assert read_timing(tmp_path / "bad.json.gz") is None and read_timing(tmp_path / "none.json.gz") is None
    assert len(read_timings([p, tmp_path / "bad.json.gz"])) == 1


# ---- the model -------------------------------------------------------------------------------------------
TRUE = np.array([-10.8, 1.5, 1.4, 1.0])


def _rows(n, coef, *, numerics="gpaw-direct-v2", protocol="gpaw-pbe-v1", noise=0.1, seed=0, cpu=True):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        nsites = int(rng.integers(1, 6))
        vol = float(rng.uniform(20, 80) * nsites)
        f = (int(rng.integers(4, 200)), int(max(rng.integers(10, 40), np.ceil(0.5 * vol * rng.uniform(0.8, 1.3)))),
             vol)  # fmt: skip
        s = float(np.exp(coef @ [1, *np.log(f)] + rng.normal(0, noise)))
        out.append({"mat_id": f"{numerics}-{i}", "protocol": protocol, "numerics": numerics, "nsites": nsites,
                    "cpu": s if cpu else None, "wall": 1.1 * s, "n_ibz_k": f[0], "nbands": f[1], "volume": f[2]})  # fmt: skip
    return out


def test_fit_recovers_known_coefficients():
    rows = _rows(80, TRUE, noise=0.1)
    m = fit_costs(rows)
    g = m.groups[("gpaw-pbe-v1", "gpaw-direct-v2")]
    assert g.method == "fit" and g.n == 80 and g.time == "CPU"
    assert np.allclose(g.coef[1:], TRUE[1:], atol=0.15) and abs(g.coef[0] - TRUE[0]) < 0.8
    assert 0.07 < g.rms < 0.13 and g.rms <= g.loo_rms < 0.16
    assert g.median_loo_rms > 3 * g.loo_rms  # the per-size median knows nothing of k-points and bands
    f = Features(50, 30, 120.0)
    assert m.seconds(f) == pytest.approx(np.exp(np.asarray(g.coef) @ [1, *np.log(f)]))
    many = m.seconds(np.array([f, f]), [3, 3])
    assert many.shape == (2,) and np.allclose(many, m.seconds(f))
    # a structure without features falls back on its cell size's median
    assert m.seconds(None, 3) == g.sizes.seconds(3)
    with pytest.raises(ValueError, match="nsites"):
        m.seconds(None)


def test_shared_slopes_with_an_own_offset_for_a_small_group_and_medians_below():
    rows = _rows(60, TRUE, noise=0.05)
    rows += _rows(8, TRUE + [-1.0, 0, 0, 0], protocol="gpaw-pbe-ipa-lite", noise=0.05, seed=1)
    rows += _rows(2, TRUE, numerics="gpaw-direct-v1", noise=0.05, seed=2)
    m = fit_costs(rows)
    lite = m.groups[("gpaw-pbe-ipa-lite", "gpaw-direct-v2")]
    assert lite.method == "offset" and lite.donor == ("gpaw-pbe-v1", "gpaw-direct-v2") and lite.n == 8
    assert lite.coef[0] == pytest.approx(m.groups[("gpaw-pbe-v1", "gpaw-direct-v2")].coef[0] - 1.0, abs=0.15)
    few = m.groups[("gpaw-pbe-v1", "gpaw-direct-v1")]
    assert few.method == "median" and few.coef is None and "per-size medians" in few.note
    assert few.seconds(Features(10, 10, 10.0), 3) == few.sizes.seconds(3)
    assert any("offset on the slopes" in line for line in m.describe())


def test_a_group_borrows_slopes_only_where_that_predicts_better():
    big = _rows(200, TRUE, noise=0.3)
    # 16 noisy records with the big group's slopes: four own parameters overfit, an offset on borrowed ones wins
    same = _rows(16, TRUE + [0.7, 0, 0, 0], numerics="gpaw-direct-v1", noise=0.3, seed=3)
    g = fit_costs(big + same).groups[("gpaw-pbe-v1", "gpaw-direct-v1")]
    assert g.method == "offset" and g.donor == ("gpaw-pbe-v1", "gpaw-direct-v2") and "< " in g.note
    # records whose cost follows other slopes keep their own fit
    other = _rows(30, np.array([-6.0, 0.5, 2.5, 0.0]), numerics="gpaw-direct-v1", noise=0.05, seed=4)
    h = fit_costs(big + other).groups[("gpaw-pbe-v1", "gpaw-direct-v1")]
    assert h.method == "fit" and np.allclose(h.coef[1:], [0.5, 2.5, 0.0], atol=0.3)


def test_wall_seconds_where_records_lack_cpu_and_resolution_across_numerics():
    rows = _rows(20, TRUE, numerics="gpaw-dense-v1", cpu=False)
    m = fit_costs(rows)
    g = m.groups[("gpaw-pbe-v1", "gpaw-dense-v1")]
    assert g.time == "wall" and g.method == "fit"
    # the default numerics has no records: the protocol's fitted group prices, and says so
    got, note = m.resolve("gpaw-pbe-v1")
    assert got is g and "priced with gpaw-dense-v1" in note
    assert m.resolve("gpaw-pbe-ipa-lite") == (None, "no records of gpaw-pbe-ipa-lite")
    with pytest.raises(KeyError):
        m.seconds(Features(10, 10, 10.0), protocol="gpaw-pbe-ipa-lite")
    assert fit_costs([]).groups == {}


def test_few_records_fall_back_to_per_size_medians():
    rows = _rows(5, TRUE)
    g = fit_costs(rows).groups[("gpaw-pbe-v1", "gpaw-direct-v2")]
    assert g.method == "median" and g.n == 5 and "no fitted group" in g.note
    rms, n = loo_size_median([2, 2, 3], [1.0, np.e, 5.0])
    assert n == 2 and rms == pytest.approx(1.0)
