"""Absorption-onset rule: no predicted Im ε below a (predicted) direct gap, beyond the broadening tail.

Im ε of a semiconductor sets in at its direct gap; our reference spectra (gpaw-pbe-v1, η = 0.3 eV Lorentzian-like
broadening) carry a tail below it. A spectrum model that has never seen a wide-gap crystal like c-BN can put
absorption far below the gap; this rule damps it:

.. math::  m(ω) = 1 \\text{ for } ω ≥ E_g − δ, \\qquad m(ω) = \\exp\\big(−((E_g − δ − ω)/w)^2\\big) \\text{ below},

with ``E_g`` our own direct gap (records' ``gap_direct``, or a model's prediction of it: never Alexandria's VASP
gap, which is up to 0.9 eV higher for N/O/F compounds), ``δ`` the allowance for broadening and gap error and
``w`` the width of the damping (eV). :func:`reference_tail` measures how much Im ε the reference spectra have
below their gap, to check a rule against (a test does).
"""

from __future__ import annotations

import numpy as np

#: allowance below the gap (eV): the 0.3 eV broadening plus a typical gap error of the gap model
ONSET_DELTA = 0.5
#: width of the damping below E_g − δ (eV)
ONSET_WIDTH = 0.3


def onset_mask(
    grid: np.ndarray, gap: np.ndarray, delta: float = ONSET_DELTA, width: float = ONSET_WIDTH
) -> np.ndarray:
    """Multiplier ``[n, G]`` (0–1) for spectra on ``grid`` (eV, ``[G]``) of materials with direct gaps ``gap``
    ``[n]`` (eV)."""
    g = np.asarray(grid, float)[None, :]
    edge = np.asarray(gap, float).reshape(-1, 1) - delta
    below = np.clip(edge - g, 0.0, None)
    return np.exp(-((below / width) ** 2))


def apply_onset(
    spectra: np.ndarray,
    grid: np.ndarray,
    gap: np.ndarray,
    delta: float = ONSET_DELTA,
    width: float = ONSET_WIDTH,
) -> np.ndarray:
    """Im ε ``[n, G]`` with the onset rule applied (see module docstring)."""
    return np.asarray(spectra, float) * onset_mask(grid, gap, delta, width)


def reference_tail(spectra: np.ndarray, grid: np.ndarray, gap: np.ndarray, below: float = 0.5) -> np.ndarray:
    """Largest Im ε ``[n]`` of reference spectra at energies more than ``below`` eV under their direct gap,
    relative to each spectrum's maximum (the broadening tail the rule must leave room for)."""
    s = np.asarray(spectra, float)
    m = np.asarray(grid, float)[None, :] < (np.asarray(gap, float).reshape(-1, 1) - below)
    peak = np.maximum(s.max(axis=1), 1e-12)
    return np.where(m, s, 0.0).max(axis=1) / peak
