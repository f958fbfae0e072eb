"""The GW scissor on spectra: onset moved by exactly Δ, f-sum kept, Re ε by Kramers–Kronig (real records)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from optiladder.engine.records import read_record, record_spectra
from optiladder.spectra import (
    MODEL_GRID,
    Spectrum,
    kk_imag_from_real,
    kk_real_from_imag,
    lorentz_oscillator,
    scissor_imag,
)

RECORDS = Path(__file__).resolve().parents[2] / "dataset" / "records"


@pytest.fixture(scope="module")
def si():
    """The RPA spectrum of Si (agm003157600, gpaw-pbe-v1 record of the dataset) on the uniform model grid."""
    return record_spectra(read_record(RECORDS / "agm003157600.json.gz"))["rpa"].on_grid(MODEL_GRID)


def _onset(omega, im, fraction=0.1):
    return omega[np.argmax(im >= fraction * im.max())]


def _unscaled(w, im, delta):
    """Im ε' with the amplitude factor (ω − Δ)/ω divided out."""
    return np.where(w > delta, im * w / np.where(w > delta, w - delta, 1.0), 0.0)


def test_onset_moves_by_exactly_delta_on_a_real_record(si):
    w, im = si.omega, si.trace_im()
    step = w[1] - w[0]
    assert np.allclose(np.diff(w), step)
    for k in (5, 37, 90):  # shifts by whole grid steps
        delta = k * step
        new = scissor_imag(w, im, delta)
        assert np.all(new[w <= delta + 1e-12] == 0) and np.all(new >= 0)
        # the shifted spectrum is the old one moved by exactly Δ (k points), times (ω − Δ)/ω
        np.testing.assert_allclose(
            new[k + 1 :], im[1 : len(w) - k] * (w[1 : len(w) - k] / w[k + 1 :]), rtol=1e-9
        )
        assert _onset(w, _unscaled(w, new, delta)) == pytest.approx(_onset(w, im) + delta, abs=1e-9)
    off = scissor_imag(w, im, 0.733)  # off the grid: within one grid step
    assert abs(_onset(w, _unscaled(w, off, 0.733)) - _onset(w, im) - 0.733) <= step
    np.testing.assert_array_equal(scissor_imag(w, im, 0.0), im)
    with pytest.raises(ValueError, match=">= 0 eV"):
        scissor_imag(w, im, -0.1)


def test_f_sum_is_kept(si):
    w, im = si.omega, si.trace_im()
    delta = 1.1
    new = scissor_imag(w, im, delta)
    # ∫₀^ωmax ω ε₂'(ω) dω = ∫₀^(ωmax−Δ) ω ε₂(ω) dω (what moves beyond the grid is gone)
    keep = w <= w[-1] - delta
    before = np.trapezoid(w[keep] * im[keep], w[keep])
    after = np.trapezoid(w * new, w)
    assert after == pytest.approx(before, rel=2e-3)
    # a rigid shift (no amplitude factor) would not keep it
    rigid = np.interp(w - delta, w, im, left=0.0)
    assert np.trapezoid(w * rigid, w) > 1.05 * before


def test_re_eps_by_kramers_kronig_is_consistent():
    """Lorentz oscillator on a wide grid: the scissored Spectrum's Re ε is the KK transform of its Im ε, which
    the inverse transform returns; ε∞ falls as the gap opens."""
    w = np.linspace(0.0, 60.0, 3001)
    eps = lorentz_oscillator(w, 4.0, 0.4, 3.0)
    sp = Spectrum(omega=w, im={"trace": eps.imag}, re={"trace": eps.real}, level="rpa", kk_tail=None)
    out = sp.scissor(1.5, source="test")
    assert out.provenance["scissor"] == {"delta_eV": 1.5, "source": "test"}
    np.testing.assert_allclose(out.trace_re(), kk_real_from_imag(w, out.trace_im()), atol=1e-5)
    mid = (w > 1.0) & (w < 30.0)
    back = kk_imag_from_real(w, out.trace_re())
    assert np.max(np.abs(back[mid] - out.trace_im()[mid])) < 0.02 * out.trace_im().max()
    assert 1.0 < out.eps_inf < sp.eps_inf


def test_real_record_eps_inf_drops(si):
    out = si.scissor(0.6)
    assert set(out.re) == set(si.im) and 1.0 < out.eps_inf < si.eps_inf
