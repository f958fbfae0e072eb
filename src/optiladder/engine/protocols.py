"""Ab initio protocols as frozen, named data.

``gpaw-pbe-v1`` is the project's default and is fixed by PROTOCOL.md: never change it in place; add a new name.
``test`` is a cheap preset for unit tests and reliability tests only (spectra not for the dataset).
``gpaw-pbe-v2`` is gpaw-pbe-v1 at a 500 eV plane-wave cutoff (converged gaps of first-row anion compounds,
PROTOCOL.md "Known limitations"): for costing and convergence studies; not for the dataset until a decision
(``production=False``: its records need their own store).
``gpaw-pbe-ipa-lite`` is the cheap lower rung of the ladder (issue 12): IPA only (no local fields, no RPA), a
coarser ground state (k-density 1.5, SCF density criterion 1e-3) on v1's non-self-consistent k-grid and bands (coarser grids were measured and rejected: k-sampling is what IPA spectra are most sensitive to); its
records hold only the ``ipa`` spectra and live in their own folder (``dataset/ipa-lite``), never among the
IPA + RPA records of ``dataset/records``. Cost and fidelity against gpaw-pbe-v1: ``bench/engine/ipa_lite.md``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Protocol:
    """Every parameter of one IPA + RPA calculation (energies in eV, k-point densities in points per Å⁻¹)."""

    name: str
    xc: str = "PBE"
    pw_ecut: float = 300.0
    gs_kdensity: float = 2.5
    nscf_kdensity: float = 4.0
    smearing: float = 0.01
    #: NB = max(nocc + nbands_extra, ceil(nbands_per_volume * V / Å³))
    nbands_extra: int = 8
    nbands_per_volume: float = 0.5
    eta: float = 0.3
    lfe_ecut: float = 50.0
    domega0: float = 0.05
    omega2: float = 10.0
    omegamax: float = 25.0
    #: materials with a (nscf, indirect) gap below this are refused as metallic
    min_gap: float = 0.5
    #: for the dataset? (``test`` records must never be mixed into the dataset)
    production: bool = True
    #: the rungs a record of this protocol holds (a subset of ``targets.LEVELS``); IPA alone skips the
    #: local-field (RPA) part of the response
    levels: tuple[str, ...] = ("ipa", "rpa")
    #: the dataset folder (under ``dataset/``) where its records belong; only ``records`` is the IPA + RPA dataset
    folder: str = "records"
    #: ground-state SCF convergence (GPAW's ``convergence`` keys); ``None``: GPAW's defaults
    gs_convergence: tuple[tuple[str, float], ...] | None = None

    @property
    def ipa_only(self) -> bool:
        """True if the protocol computes the IPA rung alone (no local fields)."""
        return tuple(self.levels) == ("ipa",)

    def nbands(self, nocc: int, volume: float) -> int:
        return max(nocc + self.nbands_extra, math.ceil(self.nbands_per_volume * volume))

    def frequencies(self) -> dict:
        """A fresh GPAW nonlinear frequency dict (GPAW writes into it: never reuse one)."""
        return {
            "type": "nonlinear",
            "domega0": self.domega0,
            "omega2": self.omega2,
            "omegamax": self.omegamax,
        }

    def as_record(self) -> dict:
        """The protocol block of a record, in the PROTOCOL.md key names."""
        d = asdict(self)
        d.pop("production")
        d.pop("nbands_extra")
        d.pop("nbands_per_volume")
        d.pop("folder")
        # keys of the original v1 block stay as they were (records of v1 are compared and pooled by name)
        if tuple(self.levels) == ("ipa", "rpa"):
            d.pop("levels")
        else:
            d["levels"] = list(self.levels)
        if self.gs_convergence is None:
            d.pop("gs_convergence")
        else:
            d["gs_convergence"] = dict(self.gs_convergence)
        d["symmetrize"] = (
            "spglib primitive standard cell at the smallest symprec recovering the source space group"
        )
        d["nbands_rule"] = f"max(nocc+{self.nbands_extra}, ceil({self.nbands_per_volume}*V/A^3))"
        d["grid"] = f"gpaw nonlinear, stored to {self.omegamax:g} eV"
        return d


#: the cheap IPA-only rung: records hold IPA spectra alone and live in ``dataset/ipa-lite``
IPA_LITE_PROTOCOL = "gpaw-pbe-ipa-lite"

PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (
        Protocol(name="gpaw-pbe-v1"),
        Protocol(name="gpaw-pbe-v2", pw_ecut=500.0, production=False),
        # the cheap IPA rung (issue 12; chosen by bench/engine/ipa_lite.py --choose, measured by --measure)
        Protocol(
            name=IPA_LITE_PROTOCOL,
            gs_kdensity=1.5,
            gs_convergence=(("density", 1e-3),),
            nscf_kdensity=4.0,  # k-sampling is what IPA spectra are most sensitive to: 3.5 gave SC 0.82–0.95
            # bands as v1: max(nocc + 6, ceil(0.35 V)) cost CaO SC 0.85 (its Ca 3d bands) for little time
            lfe_ecut=1.0,  # IPA needs only the head G = G' = 0 of χ0: no local-field matrix
            levels=("ipa",),
            folder="ipa-lite",
        ),
        Protocol(
            name="test",
            pw_ecut=200.0,
            gs_kdensity=1.5,
            nscf_kdensity=2.0,
            nbands_extra=6,
            nbands_per_volume=0.3,
            lfe_ecut=20.0,
            production=False,
        ),
    )
}
DEFAULT_PROTOCOL = "gpaw-pbe-v1"


def get_protocol(name: str | Protocol) -> Protocol:
    if isinstance(name, Protocol):
        return name
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ValueError(f"unknown protocol {name!r}; known: {', '.join(PROTOCOLS)}") from None
