"""Numerics of the non-self-consistent step and the response: same physics, different cost.

A protocol (:mod:`.protocols`) fixes the physics: basis, k-points, bands, broadening, local-field cutoff and
frequency grid. A *numerics* option fixes how GPAW is driven to get it. Records carry a top-level
``numerics`` block (``{"name": ..., parameters}``); a record without one was made with ``gpaw-dense-v1``.

``gpaw-dense-v1`` (the baseline, PROTOCOL.md step 2 literally):
    ``calc.fixed_density(...)`` — which in GPAW 26 runs a full iterative (PPCG) solve of ``nocc + 4`` bands
    to ``convergence={'bands': nocc}`` — then ``diagonalize_full_hamiltonian(nbands=NB)``, which builds the
    plane-wave Hamiltonian row by row with one FFT pair per plane wave, then a ``.gpw`` with mode ``'all'``
    is written and read back for the response.

``gpaw-direct-v1`` (measured in ``bench/engine``):
    * no iterative pass: the fixed-density calculator is built as GPAW's ``fixed_density`` builds it, with
      random initial wave functions and without its SCF loop (the dense diagonalisation that follows
      replaces every wave function, so the iterative pass only cost time);
    * the local-potential block of H is read off one FFT of the effective potential,
      ``H[G, G'] = dv / N * FFT(v)[(G' - G) mod grid]`` — exactly what GPAW's row-by-row
      ``FFT(v * IFFT(e_G))`` computes (circular convolution on the same grid), in O(npw²) instead of
      O(npw · N log N); kinetic, PAW-projector and overlap terms as in GPAW;
    * the same generalized eigensolver (LAPACK ``zhegvx`` for the lowest NB pairs, as GPAW's own
      ``diagonalize_full_hamiltonian`` calls it);
    * the response reads the wave functions from memory (no ``.gpw`` written and read back).

The results agree with the baseline to rounding (tests/engine compares H matrices and spectra).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Numerics:
    """How the non-self-consistent step and the response are carried out (not what they compute).

    ``iterative_pass``: run GPAW's fixed-density SCF loop (PPCG, ``nocc + 4`` bands) before the dense
    diagonalisation; ``direct_hamiltonian``: build the plane-wave Hamiltonian from one FFT of the potential;
    ``gpw_roundtrip``: write the ``.gpw`` (mode ``'all'``) and let the response read it back.
    """

    name: str
    iterative_pass: bool = True
    direct_hamiltonian: bool = False
    gpw_roundtrip: bool = True

    def as_record(self) -> dict:
        """The record's top-level ``numerics`` block."""
        return asdict(self)


NUMERICS: dict[str, Numerics] = {
    n.name: n
    for n in (
        Numerics(name="gpaw-dense-v1"),
        Numerics(name="gpaw-direct-v1", iterative_pass=False, direct_hamiltonian=True, gpw_roundtrip=False),
    )
}
#: the numerics of records that carry no ``numerics`` block
BASELINE_NUMERICS = "gpaw-dense-v1"
#: what :func:`optiladder.engine.compute` (and so the campaign) uses unless told otherwise: proven equal to the
#: baseline on every material of bench/engine (SC 1.0000, IPA and RPA, trace and xx/yy/zz) at 1.5–2.8× less CPU
DEFAULT_NUMERICS = "gpaw-direct-v1"


def get_numerics(name: str | Numerics | None) -> Numerics:
    """A :class:`Numerics` by name (``None``: the default)."""
    if isinstance(name, Numerics):
        return name
    if name is None:
        name = DEFAULT_NUMERICS
    try:
        return NUMERICS[name]
    except KeyError:
        raise ValueError(f"unknown numerics {name!r}; known: {', '.join(NUMERICS)}") from None


def record_numerics(rec: dict) -> str:
    """The numerics name of a record (``gpaw-dense-v1`` when it has no ``numerics`` block)."""
    block = rec.get("numerics")
    if isinstance(block, dict) and isinstance(block.get("name"), str):
        return block["name"]
    return BASELINE_NUMERICS


# --- the GPAW side (imported lazily by calculate.py) ------------------------------------------------------------


def fixed_density_without_scf(calc, *, txt, kpts, nbands: int):
    """A fixed-density calculator for new k-points, as GPAW 26's ``ASECalculator.fixed_density`` builds it,
    but with random initial wave functions and without running its SCF loop.

    Only good as input to :func:`diagonalize_full`, which replaces every wave function.
    """
    from gpaw.dft import Parameters
    from gpaw.new.ase_interface import ASECalculator
    from gpaw.new.calculation import DFT
    from gpaw.new.logger import Logger

    old_params = calc.params.todict()
    old_params.pop("h", None)
    dft = calc.dft
    kwargs = {
        **old_params,
        "kpts": kpts,
        "nbands": nbands,
        "random": True,
        "gpts": dft.density.nt_sR.desc.size,
        "mode": {**old_params["mode"]},
    }
    params = Parameters(**kwargs)
    logger = Logger(txt, calc.comm)
    builder = params.dft_component_builder(calc.atoms, log=logger)
    basis_set = builder.create_basis_set()
    kbcomm1 = dft.ibzwfs.kpt_band_comm
    kbcomm2 = builder.communicators["D"]
    potential = dft.potential.redist(
        builder.grid, builder.electrostatic_potential_desc, builder.atomdist, kbcomm1, kbcomm2
    )
    density = dft.density.redist(builder.grid, builder.interpolation_desc, builder.atomdist, kbcomm1, kbcomm2)
    ibzwfs = builder.create_ibz_wave_functions(basis_set, potential)
    ibzwfs.fermi_levels = dft.ibzwfs.fermi_levels
    scf_loop = builder.create_scf_loop()
    scf_loop.update_density_and_potential = False
    scf_loop.fix_fermi_level = True
    for key in ("energy", "density", "forces"):
        scf_loop.convergence.pop(key, None)
    new = DFT.from_components(
        calc.atoms,
        ibzwfs,
        density,
        potential,
        builder.setups,
        scf_loop,
        builder.create_potential_calculator(),
        logger,
        params=params,
        energies=dft.energies,
        converge=False,
    )
    return ASECalculator(params, log=logger, dft=new, atoms=calc.atoms)


def pw_matrix_direct(pw, pt_aiG, dH_aii, dS_aii, vt_R, block: int = 256):
    """H and S of one k-point in the plane-wave basis (serial), as ``gpaw.new.pw.fulldiag.pw_matrix``.

    The local potential enters through its FFT: row G of ``FFT(v · IFFT(e_G))`` is
    ``FFT(v)[(G' - G) mod grid] / N``. Returns (H, S) as GPAW ``Matrix`` objects of shape ``[npw, npw]``.
    """
    from gpaw.core.matrix import create_distribution
    from gpaw.mpi import serial_comm

    assert pw.dtype == complex
    npw = pw.shape[0]
    dist = create_distribution(npw, npw, serial_comm, -1, 1)
    H_GG = dist.matrix(complex)
    S_GG = dist.matrix(complex)
    dv = pw.dv
    v_R = np.asarray(vt_R.data)
    shape = np.array(v_R.shape)
    v_Q = np.fft.fftn(v_R) * (dv / v_R.size)
    m_cG = np.asarray(pw.indices_cG)
    strides = np.array([shape[1] * shape[2], shape[2], 1])
    flat = v_Q.ravel()
    for g1 in range(0, npw, block):
        g2 = min(npw, g1 + block)
        d = (m_cG[:, None, :] - m_cG[:, g1:g2, None]) % shape[:, None, None]
        H_GG.data[g1:g2] = flat[np.tensordot(strides, d, axes=1)]
    H_GG.add_to_diagonal(dv * pw.ekin_G)
    S_GG.data[:] = 0.0
    S_GG.add_to_diagonal(dv)

    pt_aiG._lazy_init()
    f_GI = pt_aiG._lfc.expand()
    nI = f_GI.shape[1]
    dH_II = np.zeros((nI, nI))
    dS_II = np.zeros((nI, nI))
    i1 = 0
    for a, dH_ii in dH_aii.items():
        dS_ii = dS_aii[a]
        i2 = i1 + len(dS_ii)
        dH_II[i1:i2, i1:i2] = dH_ii
        dS_II[i1:i2, i1:i2] = dS_ii
        i1 = i2
    H_GG.data += (f_GI.conj() @ dH_II) @ f_GI.T
    S_GG.data += (f_GI.conj() @ dS_II) @ f_GI.T
    return H_GG, S_GG


def diagonalize_full(calc, nbands: int) -> None:
    """``calc.diagonalize_full_hamiltonian(nbands)`` (serial, PW mode, no meta-GGA) with
    :func:`pw_matrix_direct`; same eigensolver, same occupation step."""
    from gpaw.new.pwfd.ibzwfs import PWFDIBZWaveFunctions
    from gpaw.new.pwfd.wave_functions import PWFDWaveFunctions

    dft = calc.dft
    potential = dft.potential
    ibzwfs = dft.ibzwfs
    assert isinstance(ibzwfs, PWFDIBZWaveFunctions)
    if potential.dedtaut_sR is not None:
        raise NotImplementedError("meta-GGA potentials need GPAW's own diagonalize_full_hamiltonian")
    if ibzwfs.band_comm.size != 1 or ibzwfs.kpt_comm.size != 1:
        raise NotImplementedError("serial only")
    occ_calc = dft.scf_loop.occ_calc
    occ_calc._set_nbands(nbands)
    wfs_u = []
    for wfs in ibzwfs:
        dS_aii = [setup.dO_ii for setup in wfs.setups]
        pw = wfs.psit_nX.desc
        H_GG, S_GG = pw_matrix_direct(
            pw, wfs.pt_aiX, potential.dH_asii[:, wfs.spin], dS_aii, potential.vt_sR[wfs.spin]
        )
        eig_n = H_GG.eigh(S_GG, limit=nbands)
        H_GG.complex_conjugate()
        if not eig_n[0] > -1000:
            raise RuntimeError("eigensolver failure (GPAW issue #241)")
        psit_nG = pw.empty(nbands)
        psit_nG.data[:] = H_GG.data[:nbands]
        new_wfs = PWFDWaveFunctions.from_wfs(wfs, psit_nX=psit_nG)
        new_wfs.eig_n = eig_n
        wfs_u.append(new_wfs)
    new_ibzwfs = PWFDIBZWaveFunctions(
        ibzwfs.ibz,
        ncomponents=ibzwfs.ncomponents,
        wfs_u=wfs_u,
        kpt_comm=ibzwfs.kpt_comm,
        kpt_band_comm=ibzwfs.kpt_band_comm,
        comm=ibzwfs.comm,
    )
    new_ibzwfs.calculate_occs(occ_calc, dft.density.nvalence + dft.density.charge)
    dft.ibzwfs = new_ibzwfs
    calc.params.nbands = new_ibzwfs.nbands
    if "nbands" not in calc.params._non_defaults:
        calc.params._non_defaults.append("nbands")
