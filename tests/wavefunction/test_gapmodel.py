"""The QP gap correction for ``--scissor gw``: G0W0 records first, else the ridge gap model on trainable labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from optiladder.cli import app
from optiladder.data.splits import LeakageError
from optiladder.engine.records import read_record, record_spectra
from optiladder.wavefunction.gapmodel import (
    BASELINE_CANDIDATES,
    MIN_LABELS,
    RECORD_SIGMA,
    RIDGE_ALPHA,
    GapModel,
    computed_correction,
    direct_correction,
    load_labels,
    onset_gap,
    record_elements,
    trainable,
    write_scissored,
)

REPO = Path(__file__).resolve().parents[2]
MGO, LIF, BN = "agm002176626", "agm003157770", "agm003157414"  # train, train, test


@pytest.fixture(scope="module")
def labels():
    return load_labels()


def _fake(mid, gap, corr, formula="Si", split="train", template=None):
    rec = dict(template)
    rec.update(mat_id=mid, split=split, gap_pbe_direct=gap, gap_g0w0_direct=gap + corr, formula=formula)
    return rec


def test_labels_prefer_v2_and_keep_v1_only_where_v2_lacks(labels):
    assert labels[MGO]["protocol"]["name"] == "gpaw-g0w0-v2"
    # v1 only (computed as v2 would): the cells of V ≥ ~38 Å³ of the first labels that the gw campaign has not redone
    v1_only = sorted(m for m, r in labels.items() if r["protocol"]["name"] == "gpaw-g0w0-v1")
    v1_files = {p.name.split(".")[0] for p in (REPO / "dataset" / "gw" / "gpaw-g0w0-v1").glob("*.json.gz")}
    v2_files = {p.name.split(".")[0] for p in (REPO / "dataset" / "gw" / "gpaw-g0w0-v2").glob("*.json.gz")}
    assert (
        v1_only == sorted(v1_files - v2_files)
        and labels["agm003157600"]["protocol"]["name"] == "gpaw-g0w0-v2"
    )
    assert labels["C-diamond"]["protocol"]["name"] == "gpaw-g0w0-v2"


def test_model_refuses_held_out_labels_and_recovers_a_linear_law(labels):
    with pytest.raises(LeakageError, match="may not be trained on"):
        GapModel.fit(labels)  # BN, SiC, AlP are test-split materials
    tmpl = labels[MGO]
    gaps = np.array([1.0, 2.0, 3.5, 5.0, 7.0, 9.0])
    fake = {f"f{i}": _fake(f"f{i}", g, 0.2 + 0.45 * g, template=tmpl) for i, g in enumerate(gaps)}
    m = GapModel.fit(fake)
    assert m.loo_rmse < 0.02 and m.features[0] == "gap"
    c = m.predict(4.0, ["Mg", "O"])
    assert c.delta == pytest.approx(0.2 + 0.45 * 4.0, abs=0.03) and c.sigma == pytest.approx(m.loo_rmse)
    assert c.warnings == ["the model rests on 6 labelled materials (< 10)"]
    out = m.predict(15.0, ["Ne"], gap_sigma=0.3)  # outside the gap range: said so; the gap's error propagates
    assert any("outside the labelled range" in w for w in out.warnings) and out.sigma > 0.45 * 0.3 * 0.9


def test_eps_model_recovers_a_dielectric_law_and_needs_eps(labels):
    """Δ = 0.3 + 0.5·gap/ε∞: the ε∞ candidates win the leave-one-out choice; the gap-only baseline, kept callable,
    cannot follow it; a query without ε∞ is refused; with fewer than MIN_LABELS labels with ε∞, gap only."""
    tmpl = labels[MGO]
    rng = np.random.default_rng(1)
    gaps, eps = rng.uniform(1, 12, 14), rng.uniform(1.2, 14, 14)
    fake = {
        f"f{i}": _fake(f"f{i}", g, 0.3 + 0.5 * g / e, template=tmpl)
        for i, (g, e) in enumerate(zip(gaps, eps, strict=True))
    }
    eps_inf = {f"f{i}": e for i, e in enumerate(eps)}
    m = GapModel.fit(fake, eps_inf=eps_inf)
    assert m.needs_eps and "gap_inv_eps" in m.features and m.loo_rmse < 0.1
    base = GapModel.fit(fake, candidates=BASELINE_CANDIDATES, alphas=(RIDGE_ALPHA,), eps_inf=eps_inf)
    assert not base.needs_eps and base.loo_rmse > 3 * m.loo_rmse
    c = m.predict(6.0, ["Mg", "O"], eps_inf=3.0)
    assert c.delta == pytest.approx(0.3 + 0.5 * 2.0, abs=0.15) and "ridge" in c.source
    with pytest.raises(ValueError, match="needs ε∞"):
        m.predict(6.0, ["Mg", "O"])
    few = {k: eps_inf[k] for k in list(eps_inf)[: MIN_LABELS - 1]}
    assert not GapModel.fit(fake, eps_inf=few).needs_eps


def test_real_model_on_trainable_labels_scores_the_test_materials(labels):
    # a fixed set of labels (the campaign adds more): C, MgO, Si, LiF hold no B or N
    fixed = {"C-diamond", MGO, "agm003157600", LIF}
    m = GapModel.fit({k: v for k, v in trainable(labels).items() if k in fixed})
    assert set(m.mat_ids) == fixed
    assert not {BN, "agm003157621", "agm003157747"} & set(m.mat_ids)  # the test-split labels stay out
    assert np.isfinite(m.loo_rmse) and m.loo_rmse < 1.0
    bn = labels[BN]
    c = m.predict(bn["gap_pbe_direct"], record_elements(bn))
    assert any("B, N in no G0W0 label" in w for w in c.warnings)  # B and N are in no trainable label
    assert "OUTSIDE the GW model's domain" in c.line()


def test_computed_correction_takes_the_record_first(labels):
    mgo = read_record(REPO / "dataset" / "records" / f"{MGO}.json.gz")
    c = computed_correction(mgo, labels)
    assert c.delta == pytest.approx(direct_correction(labels[MGO])) and c.sigma == RECORD_SIGMA
    assert "G0W0 record gpaw-g0w0-v2" in c.source and not c.warnings
    # without its record, the gap model on the record's own direct gap
    other = {k: v for k, v in labels.items() if k != MGO}
    c2 = computed_correction(mgo, other, GapModel.fit(trainable(other)))
    assert "gap model" in c2.source and c2.delta > 0


def test_onset_gap_of_real_records():
    for mid in (MGO, LIF, "agm003157600"):
        rec = read_record(REPO / "dataset" / "records" / f"{mid}.json.gz")
        sp = record_spectra(rec)["rpa"]
        assert onset_gap(sp.omega, sp.trace_im()) == pytest.approx(rec["gap_direct"], abs=0.8), mid


def test_write_scissored_shifts_the_record_spectra(tmp_path, labels):
    rec = read_record(REPO / "dataset" / "records" / f"{LIF}.json.gz")
    spectra = record_spectra(rec)
    lines = []
    path = write_scissored(rec, spectra, tmp_path / "x.json", lambda s, err=False: lines.append((s, err)))
    out = json.loads(path.read_text())
    delta = direct_correction(labels[LIF])
    assert (
        out["scissor"]["delta_eV"] == pytest.approx(delta, abs=1e-4) and "record" in out["scissor"]["source"]
    )
    w = np.array(out["omega_eV"])
    im = np.array(out["spectra"]["rpa"]["eps_im"])
    assert np.all(im[w <= delta] == 0) and im.max() > 0
    assert out["spectra"]["rpa"]["eps_inf"] < spectra["rpa"].eps_inf
    assert lines[0][0].startswith(f"{LIF}  scissor gw: Δ = +{delta:.2f} ± 0.15 eV") and not lines[0][1]


def test_predict_scissor_gw_says_delta_and_domain(tmp_path):
    # KInSe: no G0W0 label has In (SrO served here until the gw campaign labelled it)
    cif = REPO / "examples" / "KInSe.POSCAR"
    out = tmp_path / "p.json"
    r = CliRunner().invoke(
        app, ["predict", str(cif), "--level", "rpa", "--scissor", "gw", "--format", "json", "--out", str(out)]
    )
    assert r.exit_code == 0, r.output
    assert "scissor gw: Δ = +" in r.output and "GW scissor outside the GW model's domain" in r.output
    [d] = json.loads(out.read_text())
    sc = d["scissor"]
    assert sc["delta_eV"] > 0 and sc["sigma_eV"] > 0 and sc["warnings"]
    im, w = np.array(d["spectra"]["rpa"]["eps_im"]), np.array(d["spectra"]["rpa"]["omega_eV"])
    assert np.all(im[w <= sc["delta_eV"] - 0.01] == 0)
    bad = CliRunner().invoke(app, ["predict", str(cif), "--scissor", "lda"])
    assert bad.exit_code != 0 and "unknown scissor" in bad.output


@pytest.mark.slow
@pytest.mark.gpaw
def test_compute_scissor_gw_writes_the_shifted_spectra(tmp_path):
    """``optiladder compute --scissor gw`` on rock-salt CsF (``test`` protocol): no G0W0 record, so the gap model, with
    its domain warnings; the scissored file's spectra start above Δ and keep the record's grid."""
    import os
    import subprocess
    import sys

    from ase.build import bulk
    from ase.io import write

    # rock-salt CsF: in no Alexandria list (so no G0W0 record, whatever the gw campaign adds), Cs in no label
    ne = tmp_path / "CsF.extxyz"
    write(ne, bulk("CsF", "rocksalt", a=6.01))
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", PYTHONPATH=str(REPO / "src"))
    res = subprocess.run(
        [sys.executable, "-m", "optiladder", "compute", str(ne), "--protocol", "test", "--out", str(tmp_path),
         "--no-plot", "--scissor", "gw"],
        capture_output=True, text=True, env=env, timeout=900,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    line = next(ln for ln in res.stdout.splitlines() if "scissor gw" in ln)
    assert line.startswith("CsF  scissor gw: Δ = +") and "gap model" in line and "OUTSIDE" in line
    assert "GW scissor outside the GW model's domain: element(s) Cs in no G0W0 label" in res.stderr
    out = json.loads((tmp_path / "CsF.scissor-gw.json").read_text())
    rec = read_record(tmp_path / "CsF.json.gz")
    assert out["omega_eV"] == pytest.approx(rec["omega"]) and set(out["spectra"]) == {"ipa", "rpa"}
    w, im = np.array(out["omega_eV"]), np.array(out["spectra"]["rpa"]["eps_im"])
    assert np.all(im[w <= out["scissor"]["delta_eV"]] == 0)
    assert out["spectra"]["rpa"]["eps_inf"] < record_spectra(rec)["rpa"].eps_inf
